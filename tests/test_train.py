"""Training on the embedded `shapes` data with a narrow network: the loop, its outputs,
checkpoints and exact resumption, the evaluation and prediction commands."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, **overrides):
  """The default config at 1/8 width, batch 16: a step takes a few milliseconds on a CPU."""
  from configs import default
  config = default.get_config()
  config.data_dir = str(data_dir)
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 200
  config.shuffle_buffer = 200
  config.cache = False
  config.num_train_steps = 12
  config.log_every_steps = 4
  config.eval_every_steps = 10_000  # only at the end
  config.lr_schedule = 'steps'
  config.update_from_flattened_dict(overrides)  # 'model.width' names a nested field
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def final_params(workdir):
  """The parameters of the latest checkpoint in `workdir`, as host arrays by path."""
  from alexnet_jax.training import inference
  trained = inference.load(str(workdir))
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(trained.params))
  return trained.step, {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def run_cli(args, env=None, timeout=300):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2', **(env or {})}
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def config_flags(config):
  """The command-line overrides that turn configs/default.py into `config`."""
  from configs import default
  flags = []
  defaults = default.get_config().to_dict()
  for field, value in config.to_dict().items():
    if isinstance(value, dict):
      flags += [f'--config.{field}.{k}={v}' for k, v in value.items()
                if defaults[field][k] != v]
    elif defaults[field] != value:
      flags.append(f'--config.{field}={value}')
  return flags


@pytest.fixture(scope='module')
def trained_workdir(tf, shapes_data_dir, tmp_path_factory):
  """40 steps at the default learning rate, evaluated at the end: shared by the tests that
  read a finished run."""
  from alexnet_jax.training.loop import train_and_evaluate
  workdir = tmp_path_factory.mktemp('trained')
  config = tiny_config(shapes_data_dir, num_train_steps=40, lr_schedule='constant',
                       checkpoint_every_steps=20)
  result = train_and_evaluate(config, str(workdir))
  return workdir, result


def test_loss_falls_and_every_value_is_logged(trained_workdir):
  workdir, result = trained_workdir
  metrics = read_metrics(workdir)
  train = [m for m in metrics if 'train_loss' in m]
  assert [m['step'] for m in train] == list(range(4, 41, 4))
  # Averages over 4 steps of 16 images: the loss of the last 12 steps is clearly below that
  # of the first 12 (ln 6 = 1.79 at chance).
  first = np.mean([m['train_loss'] for m in train[:3]])
  last = np.mean([m['train_loss'] for m in train[-3:]])
  assert last < first - 0.1, (first, last)
  for m in train:
    assert set(m) == {'step', 'train_loss', 'train_top1_error', 'train_top5_error',
                      'learning_rate', 'images_per_second', 'input_wait'}
    assert 0 <= m['input_wait'] <= 1
    assert m['learning_rate'] == pytest.approx(0.01)
  evaluation = [m for m in metrics if 'eval_top1_error' in m]
  assert len(evaluation) == 1 and evaluation[0]['step'] == 40
  assert evaluation[0]['eval_examples'] == 600  # every validation example, none padded in
  assert 0 <= evaluation[0]['eval_top5_error'] <= evaluation[0]['eval_top1_error'] <= 1
  assert result['eval_top1_error'] == evaluation[0]['eval_top1_error']


def test_run_leaves_checkpoints_kernels_and_event_files(trained_workdir):
  from PIL import Image
  workdir, _ = trained_workdir
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['20', '40']
  kernels = np.asarray(Image.open(workdir / 'conv1_kernels.png'))
  # 1/8 width: 12 kernels of 11x11 in one row of 16 cells, 1-pixel borders, zoomed 3x.
  assert kernels.shape == (3 * 13, 3 * (16 * 12 + 1), 3)
  events = os.listdir(workdir / 'tensorboard')
  assert events and all(name.startswith('events.out.tfevents') for name in events)


def test_tensorboard_events_hold_the_logged_scalars_and_the_kernel_image(tf, trained_workdir):
  workdir, _ = trained_workdir
  from tensorflow.core.util import event_pb2
  tags = {}
  for name in os.listdir(workdir / 'tensorboard'):
    for record in tf.data.TFRecordDataset(str(workdir / 'tensorboard' / name)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append((event.step, value.metadata.plugin_data.plugin_name))
  assert tags['train_loss'][-1] == tags['train_top5_error'][-1] == (40, 'scalars')
  assert tags['eval_top1_error'] == [(40, 'scalars')]
  assert tags['conv1_kernels'] == [(40, 'images')]


def test_resumed_run_equals_an_uninterrupted_one(tf, shapes_data_dir, tmp_path):
  """Stop after 6 steps, restart the same command to 12: the same parameters, bit for bit,
  as 12 steps without a stop, through a learning-rate drop after the restart and dropout."""
  from alexnet_jax.training.loop import train_and_evaluate
  # 187 steps per epoch at batch 16: a drop at epoch 0.05 is step 9.
  overrides = {'lr_drop_epochs': (0.05,), 'checkpoint_every_steps': 3}
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  train_and_evaluate(tiny_config(shapes_data_dir, **overrides), str(straight))
  train_and_evaluate(tiny_config(shapes_data_dir, num_train_steps=6, **overrides), str(resumed))
  train_and_evaluate(tiny_config(shapes_data_dir, **overrides), str(resumed))
  (step_a, a), (step_b, b) = final_params(straight), final_params(resumed)
  assert step_a == step_b == 12
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
  lrs = {m['step']: m['learning_rate'] for m in read_metrics(resumed) if 'train_loss' in m}
  assert lrs[8] == pytest.approx(0.01) and lrs[12] == pytest.approx(0.001)


def test_restart_with_another_model_is_refused_and_keeps_the_checkpoints(
    tf, shapes_data_dir, trained_workdir):
  from alexnet_jax.errors import ModelMismatchError
  from alexnet_jax.training.loop import train_and_evaluate
  workdir, _ = trained_workdir
  before = sorted(os.listdir(workdir / 'checkpoints'))
  with pytest.raises(ModelMismatchError, match=r'width=0\.125.*width=0\.25'):
    train_and_evaluate(tiny_config(shapes_data_dir, **{'model.width': 0.25}), str(workdir))
  assert sorted(os.listdir(workdir / 'checkpoints')) == before


def test_evaluate_scores_centre_and_ten_crops_of_every_example(trained_workdir):
  from alexnet_jax.training.evaluation import evaluate_checkpoint
  workdir, result = trained_workdir
  scores = evaluate_checkpoint(str(workdir))
  assert scores['step'] == 40
  assert scores['centre']['eval_examples'] == scores['ten_crop']['eval_examples'] == 600
  for field in ('eval_top1_error', 'eval_top5_error', 'eval_loss'):  # the run's own final one
    assert scores['centre'][field] == pytest.approx(result[field], rel=1e-6)
  assert scores['class_names'] == ['circle', 'ring', 'square', 'triangle', 'cross', 'star']
  for view in ('centre', 'ten_crop'):
    confusion = np.array(scores[view]['confusion'])
    assert confusion.sum(axis=1).tolist() == [100] * 6  # shapes' validation split is balanced
    assert 1 - np.trace(confusion) / 600 == pytest.approx(scores[view]['eval_top1_error'])
    per_class = scores[view]['per_class']
    assert [c['class'] for c in per_class] == scores['class_names']
    assert [c['top1_error'] for c in per_class] == pytest.approx(
        1 - np.diag(confusion) / 100)


def test_evaluate_writes_the_scores_and_a_confusion_picture(trained_workdir, tmp_path):
  import shutil

  from alexnet_jax.training.evaluation import evaluate_checkpoint, write_results
  workdir, _ = trained_workdir
  scores = evaluate_checkpoint(str(workdir))
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  written = write_results(scores, str(copy))
  assert written == [str(copy / 'eval-40.json'), str(copy / 'confusion-40.png')]
  assert json.loads((copy / 'eval-40.json').read_text()) == json.loads(json.dumps(scores))
  from matplotlib.image import imread
  picture = imread(copy / 'confusion-40.png')
  assert picture.shape[0] > 400 and picture.shape[1] > 400


def test_ten_crop_evaluation_averages_the_softmax_of_the_views(tf, trained_workdir):
  import jax.numpy as jnp

  from alexnet_jax.run import distributed
  from alexnet_jax.training import inference
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import sources
  from alexnet_jax.training import train_step
  workdir, _ = trained_workdir
  trained = inference.load(str(workdir))
  source = sources.open_configured(trained.config)
  batch = next(input_pipeline.eval_batches(source, 'validation', batch_size=12, image_size=67,
                                           resize_size=76, ten_crop=True))
  batch['mask'] = np.arange(12) < 10  # two padding rows must not count
  eval_step = train_step.make_eval_step(trained.network, trained.normalization, trained.mesh)
  sums = jax.device_get(eval_step(trained.params, distributed.global_batch(batch, trained.mesh)))

  model = trained.network.model(trained.params, train=False)
  images = trained.normalization.apply(jax.tree.map(jnp.asarray, batch), lighting=False,
                                             view_size=67)
  probs = np.mean([jax.nn.softmax(model(images[:, view])) for view in range(10)], axis=0)
  labels, mask = batch['label'], batch['mask']
  ranked = np.argsort(-probs, axis=1)
  assert sums['count'] == 10
  assert sums['top1_misses'] == np.sum((ranked[:, 0] != labels) & mask)
  assert sums['top5_misses'] == np.sum(~(ranked[:, :5] == labels[:, None]).any(1) & mask)
  expected_loss = -np.log(probs[np.arange(12), labels])[mask].sum()
  np.testing.assert_allclose(sums['loss_sum'], expected_loss, rtol=1e-5)


def test_predict_names_the_top_classes(tf, trained_workdir, shapes_data_dir, tmp_path):
  from alexnet_jax.training import inference
  from alexnet_jax.training.prediction import predict
  from alexnet_jax.data.shapes_dataset import CLASS_NAMES, draw_example
  workdir, _ = trained_workdir
  trained = inference.load(str(workdir))
  assert trained.step == 40 and inference.load(str(workdir), '20').step == 20
  assert inference.load(str(workdir), 'best').step == 40  # the one evaluated checkpoint
  with pytest.raises(FileNotFoundError, match=r'no checkpoint 30 in .*; it has \[20, 40\]'):
    inference.load(str(workdir), 30)
  paths = []
  for index in range(3):
    image, label = draw_example(1, index)
    path = tmp_path / f'{index}.jpg'
    tf.io.write_file(str(path), tf.io.encode_jpeg(image, quality=95))
    paths.append(str(path))
  predictions = predict(trained, paths, top=3)
  for classes in predictions:
    names = [name for name, _ in classes]
    probs = [p for _, p in classes]
    assert len(set(names)) == 3 and set(names) <= set(CLASS_NAMES)
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_predict_names_an_unreadable_file_and_classifies_the_others(tf, trained_workdir,
                                                                     tmp_path):
  """alexnet-predict with a good image, a file that is not an image and a path that does not
  exist: one Error line for each of the two, the good one classified, exit status 1."""
  from alexnet_jax.data.shapes_dataset import CLASS_NAMES, draw_example
  workdir, _ = trained_workdir
  good, text, missing = tmp_path / 'good.jpg', tmp_path / 'notes.jpg', tmp_path / 'gone.png'
  tf.io.write_file(str(good), tf.io.encode_jpeg(draw_example(1, 0)[0], quality=95))
  text.write_text('not an image')
  result = run_cli(['-m', 'alexnet_jax.commands.predict', f'--workdir={workdir}', '--top=2',
                    str(text),
                    str(good), str(missing)])
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith('Error: ')]
  assert len(errors) == 2 and 'Traceback' not in result.stderr
  assert errors[0].startswith(f'Error: {text} could not be read as an image (')
  assert errors[1].startswith(f'Error: {missing} could not be read as an image (')
  assert all(line.endswith('); it was not classified.') for line in errors)
  printed = result.stdout.splitlines()
  assert printed[0] == str(good) and len(printed) == 3
  assert all(line.split('%  ')[1] in CLASS_NAMES for line in printed[1:])


def test_eight_devices_give_the_parameters_of_one(tf, shapes_data_dir, tmp_path):
  """The same 6 steps on this process's one CPU device and, in a subprocess, on 8 simulated
  devices (each with 2 of the 16 images): equal parameters up to float reassociation."""
  from alexnet_jax.training.loop import train_and_evaluate
  config = tiny_config(shapes_data_dir, num_train_steps=6)
  one, eight = tmp_path / 'one', tmp_path / 'eight'
  train_and_evaluate(config, str(one))
  cache = tmp_path / 'xla_cache'  # its own: an 8-device program is compiled nowhere else
  result = run_cli(['train.py', f'--workdir={eight}', *config_flags(config),
                    f'--config.compilation_cache_dir={cache}'],
                   env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'on 8 devices in 1 processes' in result.stderr
  # The command added the project's kernel choice to the caller's $XLA_FLAGS.
  assert ('XLA:CPU kernels: convolution on eigen, dot on ynnpack, reduce on xla '
          '($XLA_FLAGS=--xla_force_host_platform_device_count=8 '
          '--xla_cpu_experimental_ynn_fusion_type=individual_dot).') in result.stderr
  # The persistent compilation cache holds the compiled steps for the next run.
  assert f'Compiled steps are cached in {cache}.' in result.stderr
  assert len(list(cache.iterdir())) >= 2  # at least the train and eval steps
  (step_a, a), (step_b, b) = final_params(one), final_params(eight)
  assert step_a == step_b == 6
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=2e-4, atol=2e-6, err_msg=name)
  assert any(not np.array_equal(a[name], b[name]) for name in a)  # really another program


# Slow (75 s: three two-process runs): it pushed .ci/run past 10 minutes. The two-process
# paths stay in .ci/run through test_multihost.py (sharded data, global batches) and
# test_reliability.py's lost-peer tests; single-process SIGTERM resume through the reliability
# chain test.
@pytest.mark.slow
@pytest.mark.parametrize('signal_name,storage', [('SIGTERM', 'gs'), ('SIGINT', 'local')])
def test_two_processes_stop_on_sigterm_or_ctrl_c_and_resume_exactly(
    tf, shapes_data_dir, tmp_path, request, signal_name, storage):
  """Two JAX processes on localhost (gloo collectives), each reading its half of the data,
  sharing one workdir: on gs:// (a GCS emulator, tests/gcs_emulator.py) or a local disk.
  SIGTERM (a preempted host) or SIGINT (Ctrl-C in its terminal) to one of them: both save at
  the same step and exit cleanly; the same command then resumes on both and ends with the
  parameters of an uninterrupted two-process run, bit for bit."""
  import re
  import signal
  import time

  from alexnet_jax import files
  from tests.test_multihost import free_port
  steps = 40

  def run_two(workdir, signal_after_logs=0):
    # 'plateau': its update after each evaluation is a collective step too. The only
    # checkpoints are the one SIGTERM asks for and the last (one epoch is 187 steps).
    config = tiny_config(shapes_data_dir, num_train_steps=steps, lr_schedule='plateau',
                         log_every_steps=1 if signal_after_logs else 10)
    port = free_port()
    processes = [subprocess.Popen(
        [sys.executable, 'train.py', f'--workdir={workdir}', *config_flags(config)], cwd=ROOT,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2',
             'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
             'JAX_PROCESS_ID': str(i)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    if signal_after_logs:
      metrics, deadline = files.path(workdir) / 'metrics.jsonl', time.time() + 240
      while not (metrics.exists() and
                 len(metrics.read_text().splitlines()) >= signal_after_logs):
        ended = [p for p in processes if p.poll() is not None]
        assert not ended, ended[0].communicate()[0][-3000:]
        assert time.time() < deadline
        time.sleep(0.1)
      processes[1].send_signal(getattr(signal, signal_name))
    logs = [p.communicate(timeout=300)[0] for p in processes]
    for p, log in zip(processes, logs):
      assert p.returncode == 0, log[-3000:]
    return logs

  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  if storage == 'gs':
    from tests.gcs_emulator import BUCKET
    request.getfixturevalue('gcs')
    resumed = f'gs://{BUCKET}/two_processes'
  logs = run_two(straight)
  assert 'on 2 devices in 2 processes' in logs[0]
  logs = run_two(resumed, signal_after_logs=3)
  # A Ctrl-C is named by the process that got it; JAX's preemption service, which catches
  # SIGTERM itself, tells both processes only that a notice came.
  notice = 'a preemption notice (SIGTERM)'
  causes = [notice, 'Ctrl-C' if signal_name == 'SIGINT' else notice]
  stops = [re.search(rf'Stopped by {re.escape(cause)} at step (\d+)', log)
           for cause, log in zip(causes, logs)]
  assert all(stops), logs[0][-3000:]
  if signal_name == 'SIGINT':
    assert ('Ctrl-C: saving a checkpoint at a step all processes agree on, then stopping.'
            in logs[1])
  stop = int(stops[0].group(1))
  assert int(stops[1].group(1)) == stop and 3 <= stop < steps
  logs = run_two(resumed)
  assert all(f'Resumed from checkpoint {stop} ' in log for log in logs)
  (step_a, a), (step_b, b) = final_params(straight), final_params(resumed)
  assert step_a == step_b == steps
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.slow
def test_default_config_ends_far_above_chance(tf, shapes_data_dir, tmp_path):
  """The README's main command, as shipped: about 2 minutes on 2 CPU cores (README Results)."""
  from configs import default
  from alexnet_jax.training.loop import train_and_evaluate
  config = default.get_config()
  config.data_dir = str(shapes_data_dir)
  result = train_and_evaluate(config, str(tmp_path))
  assert result['eval_examples'] == 600
  assert result['eval_top1_error'] < 0.4  # chance is 5/6; 0.255 measured (README Results)
