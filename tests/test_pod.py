"""configs/imagenet_pod.py, the large-batch recipe: its numbers on a v4-32 slice, its learning
rate at the warmup's boundaries, and the recipe shrunk to `shapes` on 8 simulated devices
against the same run on 1."""

import jax
import numpy as np
import pytest

from tests.test_train import config_flags, final_params, read_metrics, run_cli, tiny_config

pytest.importorskip('ml_collections')  # absent on accelerator machines with only jax

IMAGENET_TRAIN = 1_281_167  # imagenet2012's training images


def pod_config():
  from configs import imagenet_pod
  return imagenet_pod.get_config()


def test_pod_config_is_the_large_batch_recipe_on_a_v4_32():
  from alexnet_jax.training import config_checks
  from alexnet_jax.training import optim
  config = pod_config()
  config_checks.validate(config, device_count=16)  # a v4-32: 16 chips, one device each
  assert config.batch_size // 16 == 256 and config.batch_size // 4 == 1024  # chip, host
  assert (config.optimizer, config.lars_trust_coefficient) == ('lars', 0.001)
  assert (config.learning_rate, config.learning_rate_batch_size) == (0.01, 128)
  assert optim.base_learning_rate(config) == pytest.approx(0.32, rel=1e-12)
  assert (config.warmup_epochs, config.lr_schedule) == (5.0, 'polynomial')
  # The rest is configs/imagenet.py's: the paper's data, network and SGD constants.
  assert (config.dataset, config.num_epochs, config.momentum, config.weight_decay) == (
      'imagenet2012', 90, 0.9, 5e-4)


def test_pod_learning_rate_at_the_warmup_boundaries():
  from alexnet_jax.training.loop import Schedule
  config = pod_config()
  schedule = Schedule.of(config, IMAGENET_TRAIN)
  assert (schedule.steps_per_epoch, schedule.total_steps) == (312, 28_080)
  lr = schedule.learning_rate(config)
  total, warmup = 28_080, 1_560  # 90 and 5 epochs of 312 steps

  def expected(step):  # 0.32 * (step + 1) / 1560 during the warmup, * (1 - step / total)^2
    return 0.32 * min(1.0, (step + 1) / warmup) * (1 - step / total) ** 2

  steps = {'first': 0, 'second': 1, 'last of the warmup': warmup - 1,
           'first after it': warmup, 'last': total - 1}
  got = {name: float(lr(np.int32(step), np.int32(0))) for name, step in steps.items()}
  # optax computes the warmup factor in float32 as 1 - (1 - 1/1560) (1 - step/1559): within
  # float32's spacing at 1 (1.2e-7) of the exact factor, so of the rate up to 0.32 times that.
  for name, step in steps.items():
    assert got[name] == pytest.approx(expected(step), rel=1e-6, abs=0.32 * 1.2e-7), name
  assert got['first'] == pytest.approx(0.32 / 1560, abs=0.32 * 1.2e-7)  # 2.05e-4
  assert got['last of the warmup'] == pytest.approx(0.32 * (1 - 1559 / 28_080) ** 2, rel=1e-6)
  assert got['first after it'] == pytest.approx(0.32 * (1 - 1560 / 28_080) ** 2, rel=1e-6)
  # The decay runs from step 0, so the warmup's last step is the run's highest rate: 0.2855.
  assert got['last of the warmup'] > got['first after it'] > 0.285
  assert got['last'] == pytest.approx(0.32 / 28_080 ** 2, rel=1e-4)


def tiny_pod_config(data_dir):
  """configs/imagenet_pod.py's recipe (LARS, the linear scaling rule from batch 128,
  warmup, polynomial decay) at tiny_config's sizes: `shapes`, 1/8 width, batch 16, 8 steps,
  of which the first 3 warm up. The rates are raised so that each kernel moves by about 1% of
  its norm a step: at the pod's (0.01 at 128 is 0.00125 at 16, times a trust coefficient of
  0.001) it would move by 1e-6, inside the comparison's tolerance."""
  pod = pod_config()
  recipe = {field: pod[field] for field in ('optimizer', 'learning_rate_batch_size',
                                            'lr_schedule', 'momentum', 'weight_decay')}
  return tiny_config(data_dir, **recipe, num_train_steps=8, warmup_epochs=3 / 187,
                     learning_rate=4.0, lars_trust_coefficient=0.02)  # 0.5 at batch 16


def initial_params(config):
  from alexnet_jax.run import distributed
  from alexnet_jax.model import network
  from alexnet_jax.training import optim
  from alexnet_jax.training import train_step
  _, state = train_step.init(lambda rngs: network.from_config(config, 6, rngs),
                             optim.from_config(config), config.seed, distributed.data_mesh())
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


# Slow (about 40 to 55 s on 2 CPU cores, most of it the 8-device subprocess's start and
# compilation): the fast suite is near its 10-minute budget.
@pytest.mark.slow
def test_pod_recipe_on_eight_devices_gives_the_parameters_of_one(tf, shapes_data_dir,
                                                                 tmp_path):
  """The same 8 LARS steps on this process's one CPU device and, in a subprocess, on 8
  simulated devices (each with 2 of the 16 images): the trust ratios' norms are of the whole
  replicated kernels and gradients on both, so equal parameters up to float reassociation."""
  from alexnet_jax.training.loop import train_and_evaluate
  config = tiny_pod_config(shapes_data_dir)
  one, eight = tmp_path / 'one', tmp_path / 'eight'
  train_and_evaluate(config, str(one))
  result = run_cli(['train.py', f'--workdir={eight}', *config_flags(config)],
                   env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'for 8 steps of 16 images (187 per epoch) on 8 devices in 1 processes' in result.stderr

  # Both ran the recipe's rates: 0.5 = 4.0 * 16 / 128, 3 warmup steps, (1 - step / 8)^2. The
  # log at step 4 and 8 gives the rate of the interval's last step, 3 and 7.
  for workdir in (one, eight):
    logged = {m['step']: m['learning_rate'] for m in read_metrics(workdir) if 'train_loss' in m}
    assert logged == {4: pytest.approx(0.5 * (1 - 3 / 8) ** 2, rel=1e-6),
                      8: pytest.approx(0.5 * (1 - 7 / 8) ** 2, rel=1e-6)}

  start = initial_params(config)
  (step_a, a), (step_b, b) = final_params(one), final_params(eight)
  assert step_a == step_b == 8
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=2e-4, atol=2e-6, err_msg=name)
    if name.endswith("['kernel'].value"):  # each kernel moved far beyond the tolerance
      moved = np.linalg.norm(a[name] - start[name]) / np.linalg.norm(start[name])
      assert moved > 0.01, (name, moved)
  assert any(not np.array_equal(a[name], b[name]) for name in a)  # really another program
