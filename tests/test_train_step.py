"""The jitted steps on synthetic batches: no TensorFlow, so these run on accelerator machines."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax.model.network import AlexNet
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run import distributed
from alexnet_jax.training import optim, train_step

SIZE, RESIZE, CLASSES, LR, WD = 67, 76, 6, 0.05, 5e-4


def setup(dtype=jnp.float32, dropout_rate=0.0, lr=LR):
  mesh = distributed.data_mesh()
  build = lambda rngs: AlexNet('paper', CLASSES, SIZE, dropout_rate, dtype, width=0.125,  # noqa: E731
                               init='he', rngs=rngs)
  optimizer = optim.paper_sgd(0.9, WD)
  network, state = train_step.init(build, optimizer, 0, mesh)
  rng = np.random.default_rng(0)
  normalization = Normalization(jnp.asarray(rng.uniform(0, 255, (RESIZE, RESIZE, 3)),
                                            jnp.float32),
                                jnp.full((3,), 1 / 60, jnp.float32), jnp.dtype(dtype))
  step = train_step.make_train_step(
      network, optimizer, optim.learning_rate_schedule('constant', lr, total_steps=10),
      normalization, 0, mesh)
  return mesh, network, state, normalization, step


def synthetic_batch(rng, batch=8):
  return {'image': rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8),
          'label': rng.integers(0, CLASSES, batch).astype(np.int32),
          'crop_offset': rng.integers(0, RESIZE - SIZE + 1, (batch, 2)).astype(np.int32),
          'flipped': rng.random(batch) < 0.5,
          'lighting': rng.normal(0, 5, (batch, 3)).astype(np.float32)}


def test_train_step_applies_the_paper_update_to_the_gradient_of_the_loss():
  # Full float32 convolutions and matmuls in both programs: on a GPU the default (TF32) let
  # the step's gradient and the reference's differ by 0.2% (H200).
  with jax.default_matmul_precision('highest'):
    check_first_update()


def check_first_update():
  mesh, network, state, normalization, step = setup()
  batch = distributed.global_batch(synthetic_batch(np.random.default_rng(8)), mesh)

  def loss(params):
    images = normalization.apply(batch, lighting=True, view_size=SIZE)
    logits = network.model(params, train=True)(images)
    return (optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean(),
            logits)

  params0 = jax.device_get(state.params)
  (expected_loss, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      state.params)
  grads = jax.device_get(grads)
  labels = np.asarray(batch['label'])
  ranked = np.argsort(-np.asarray(logits), axis=1, kind='stable')
  top1_error = np.mean(ranked[:, 0] != labels)
  top5_error = np.mean(~(ranked[:, :5] == labels[:, None]).any(1))
  assert 0 < top5_error < top1_error < 1  # a batch on which top-1, top-5 and all classes differ
  state, metrics = step(state, batch)  # donates the old state
  assert int(state.step) == 1
  assert float(metrics['train_loss']) == pytest.approx(float(expected_loss), rel=1e-6)
  assert (float(metrics['train_top1_error']), float(metrics['train_top5_error'])) == (
      top1_error, top5_error)
  assert float(metrics['learning_rate']) == pytest.approx(LR)
  # First step from zero velocity: w1 = w0 + v1 = w0 - lr (wd w0 + g).
  expected = jax.tree.map(lambda w, g: w - LR * (WD * w + g), params0, grads)
  for got, want in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_bfloat16_steps_keep_float32_parameters_and_follow_float32():
  rng_batches = [synthetic_batch(np.random.default_rng(i)) for i in range(3)]
  losses = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    mesh, _, state, _, step = setup(dtype, lr=1e-3)
    losses[dtype] = []
    for batch in rng_batches:
      state, metrics = step(state, distributed.global_batch(batch, mesh))
      losses[dtype].append(float(metrics['train_loss']))
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype('float32')}
    assert {leaf.dtype for leaf in jax.tree.leaves(state.opt_state)} == {jnp.dtype('float32')}
  np.testing.assert_allclose(losses[jnp.bfloat16], losses[jnp.float32], rtol=0.02)
  assert losses[jnp.bfloat16] != losses[jnp.float32]  # it did compute in bfloat16


def test_dropout_masks_follow_the_step_not_the_call():
  """The same state and batch give the same loss however often the step is compiled or called:
  the dropout key is a function of (seed, step) only."""
  batch = synthetic_batch(np.random.default_rng(2))
  losses = []
  for _ in range(2):
    mesh, _, state, _, step = setup(dropout_rate=0.5)
    global_batch = distributed.global_batch(batch, mesh)
    state, first = step(state, global_batch)
    _, second = step(state, global_batch)
    losses.append((float(first['train_loss']), float(second['train_loss'])))
  assert losses[0] == losses[1]
  assert losses[0][0] != losses[0][1]


def test_eval_step_counts_only_unmasked_examples():
  mesh, network, state, normalization, _ = setup()
  evaluate = train_step.make_eval_step(network, normalization, mesh)
  batch = synthetic_batch(np.random.default_rng(3), batch=8)
  batch['mask'] = np.arange(8) < 5
  sums = jax.device_get(evaluate(state.params, distributed.global_batch(batch, mesh)))
  logits = network.model(state.params, train=False)(
      normalization.apply(jax.tree.map(jnp.asarray, batch), lighting=False, view_size=SIZE))
  ranked = np.argsort(-np.asarray(logits), axis=1)
  assert sums['count'] == 5
  assert sums['top1_misses'] == np.sum(ranked[:5, 0] != batch['label'][:5])
  assert sums['top5_misses'] == np.sum(~(ranked[:5, :5] == batch['label'][:5, None]).any(1))
  confusion = np.zeros((logits.shape[-1],) * 2, int)
  np.add.at(confusion, (batch['label'][:5], ranked[:5, 0]), 1)
  np.testing.assert_array_equal(sums['confusion'], confusion)


@pytest.mark.parametrize('classes', [1000, 7, 3])
def test_top1_top5_misses_rank_as_top_k_does_ties_and_nans_included(classes):
  rng = np.random.default_rng(classes)
  # Few distinct values, so that many scores tie with the label's; NaNs in some rows, one of
  # NaNs only.
  scores = rng.choice([0.0, 0.25, 0.5, 1.0], size=(64, classes),
                      p=[0.4, 0.3, 0.2, 0.1]).astype(np.float32)
  scores[32:] = np.where(rng.random((32, classes)) < 0.1, np.nan, scores[32:])
  scores[0] = np.nan
  scores[1] = 0.5
  labels = rng.integers(0, classes, 64).astype(np.int32)
  scores[range(2, 12), labels[2:12]] = 1.0  # the top score, often tied
  scores[range(12, 16), labels[12:16]] = 2.0  # the top score alone
  top1, top5 = jax.jit(train_step.top1_top5_misses)(scores, labels)
  ranked = np.asarray(jax.lax.top_k(scores, min(5, classes))[1])
  np.testing.assert_array_equal(top1, ranked[:, 0] != labels)
  np.testing.assert_array_equal(top5, ~(ranked == labels[:, None]).any(1))
  assert 0 < int(top1.sum()) < 64 and (classes <= 5 or 0 < int(top5.sum()) < int(top1.sum()))


def test_normalize_std_divides_each_channel_by_its_standard_deviation():
  pytest.importorskip('ml_collections')
  from alexnet_jax.data.pixel_stats import PixelStats
  from configs import default
  rng = np.random.default_rng(4)
  mixing = np.linalg.qr(rng.normal(size=(3, 3)))[0]
  covariance = mixing @ np.diag([0.04, 0.01, 0.0025]) @ mixing.T  # [0, 1] pixel units
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  stats = PixelStats(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), eigenvalues[::-1],
                     eigenvectors[:, ::-1], 10)
  config = default.get_config()
  config.normalize_std, config.mean = True, 'per_channel'
  from_config = lambda: Normalization.from_stats(  # noqa: E731
      stats, mean=config.mean, normalize_std=config.normalize_std)
  norm = from_config()
  np.testing.assert_allclose(norm.pixel_scale, 1 / (255 * np.sqrt(np.diag(covariance))),
                             rtol=1e-6)
  np.testing.assert_allclose(norm.mean_image, np.broadcast_to(
      stats.mean_image.mean((0, 1)), (8, 8, 3)), rtol=1e-6)
  config.normalize_std = False
  np.testing.assert_array_equal(from_config().pixel_scale, np.ones(3))


def test_a_step_with_a_nonfinite_gradient_is_not_applied_and_is_counted():
  """A batch whose lighting offset is infinite makes the loss and the gradients NaN: the step
  returns the parameters and velocity it was given, counts the step, and reports it; the
  next finite step updates as usual."""
  mesh, _, state, _, step = setup()
  rng = np.random.default_rng(3)
  good = synthetic_batch(rng)
  state, _ = step(state, distributed.global_batch(good, mesh))  # a non-zero velocity
  before = jax.device_get((state.params, state.opt_state))
  poisoned = {**synthetic_batch(rng), 'lighting': np.full((8, 3), np.inf, np.float32)}
  state, metrics = step(state, distributed.global_batch(poisoned, mesh))
  assert not bool(metrics['finite']) and np.isnan(float(metrics['train_loss']))
  assert (int(state.step), int(state.nonfinite_steps)) == (2, 1)
  for got, want in zip(jax.tree.leaves(jax.device_get((state.params, state.opt_state))),
                       jax.tree.leaves(before)):
    np.testing.assert_array_equal(got, want)
  state, metrics = step(state, distributed.global_batch(good, mesh))
  assert bool(metrics['finite']) and int(state.nonfinite_steps) == 1
  assert not np.array_equal(jax.device_get(state.params['conv1']['kernel'].get_value()),
                            before[0]['conv1']['kernel'].get_value())
