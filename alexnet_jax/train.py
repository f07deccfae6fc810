"""Training and evaluation: `train_and_evaluate(config, workdir)`, what `python train.py` runs.

    data (this host's tf.data stream) -> global batch over the `data` mesh -> jitted step
    -> metrics every log_every_steps -> evaluation (centre or 10 crops) every eval_every_steps
    -> Orbax checkpoint every checkpoint_every_steps, after each evaluation, at the end, and
       on SIGTERM

Restarting with the same workdir resumes from the latest checkpoint: state, schedule, random
keys and each process's position in its data stream, so the result equals an uninterrupted
run's. Faults (a NaN step, a full disk, a lost process) stop the run with an error that says
where it can resume (alexnet_jax/faults.py).
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from alexnet_jax import (compilation_cache, config_checks, device_input, distributed, faults,
                         optim, train_step)
from alexnet_jax.checkpoints import BEST_METRIC, Checkpoints
from alexnet_jax.errors import ConfigError, DataError
from alexnet_jax.files import npz_bytes, write_atomically
from alexnet_jax.metric_writer import MetricWriter, kernel_grid
from alexnet_jax.model import AlexNet

CONFIG_FILE = 'config.json'  # the run's config, for evaluate/predict
NORMALIZATION_FILE = 'normalization.npz'  # the mean image and pixel scale, for evaluate/predict


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                rngs: nnx.Rngs) -> AlexNet:
  m = config.model
  return AlexNet(m.variant, num_classes, config_checks.image_size(config), m.dropout_rate,
                 jnp.dtype(m.dtype), init=m.init, grouped_conv=m.grouped_conv, width=m.width,
                 rngs=rngs)


def model_identity(config: ml_collections.ConfigDict, num_classes: int) -> dict:
  """What a checkpoint's parameters depend on: a checkpoint restores only into the same."""
  return {'variant': config.model.variant, 'num_classes': num_classes,
          'image_size': config_checks.image_size(config), 'width': config.model.width}


def _hosts() -> dict:
  return {'process_index': jax.process_index(), 'process_count': jax.process_count()}


def open_data(config: ml_collections.ConfigDict):
  """The configured source, checked against the config: its splits and number of classes.
  Reads the data set's description only, no examples."""
  from alexnet_jax import sources
  try:
    source = sources.open_source(config.dataset, config.data_dir or None,
                                 config.manual_dir or None)
  except DataError as error:
    raise ConfigError(f'config.dataset={config.dataset!r}: {error}') from None
  for field in ('train_split', 'eval_split'):
    try:
      source.num_examples(config[field])
    except DataError as error:
      raise ConfigError(f'config.{field}={config[field]!r}: {error}') from None
  if config.num_classes and config.num_classes != source.num_classes:
    raise ConfigError(
        f'config.num_classes={config.num_classes} but {source.name} has '
        f'{source.num_classes} classes: set it to {source.num_classes}, or 0 to follow the data.')
  return source


def pixel_statistics(config: ml_collections.ConfigDict, source):
  """The training split's mean image and RGB PCA (computed once, then cached)."""
  from alexnet_jax import pixel_stats
  return pixel_stats.load_or_compute(
      source, config.train_split, config.resize_size, fast_decode=config.fast_decode,
      cache_dir=config.mean_cache_dir or None, **_hosts())


def normalization(config: ml_collections.ConfigDict, stats) -> dict[str, np.ndarray]:
  """The mean image to subtract (config.mean) and the per-channel factor after it: 1, or with
  config.normalize_std one over each channel's standard deviation over the split."""
  scale = np.ones(3, np.float32)
  if config.normalize_std:
    covariance = (stats.rgb_eigenvectors * stats.rgb_eigenvalues) @ stats.rgb_eigenvectors.T
    scale = (1.0 / (255.0 * np.sqrt(np.diag(covariance)))).astype(np.float32)
  return {'mean_image': stats.mean(config.mean), 'pixel_scale': scale}


def write_run_files(workdir: str, config: ml_collections.ConfigDict, norm: dict,
                    names: list[str]) -> None:
  """DIR/config.json and DIR/normalization.npz: what `evaluate` and `predict` read besides a
  checkpoint (inference.load)."""
  write_atomically(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))
  write_atomically(os.path.join(workdir, NORMALIZATION_FILE), npz_bytes(
      mean_image=norm['mean_image'], pixel_scale=norm['pixel_scale'],
      class_names=np.array(names)))


def make_preprocess(config, norm: dict, mesh) -> train_step.Preprocess:
  put = lambda x: jax.device_put(jnp.asarray(x, jnp.float32), train_step.replicated(mesh))  # noqa: E731
  return train_step.Preprocess(put(norm['mean_image']), put(norm['pixel_scale']),
                               jnp.dtype(config.model.dtype))


def evaluate(eval_step, params, source, config, mesh, *, ten_crop: bool) -> dict[str, float]:
  """Top-1 and top-5 accuracy, loss, the number of examples scored on config.eval_split and
  the number that could not be decoded (all processes together)."""
  from alexnet_jax import input_pipeline
  hosts = _hosts()
  batch_size = (config.eval_batch_size or config.batch_size) // hosts['process_count']
  batches = input_pipeline.eval_batches(
      source, config.eval_split, batch_size=batch_size,
      image_size=config_checks.image_size(config), resize_size=config.resize_size,
      ten_crop=ten_crop, fast_decode=config.fast_decode, **hosts)
  totals = None
  for batch in batches:
    batch.pop('index')
    sums = eval_step(params, device_input.global_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = {name: value.item() for name, value in jax.device_get(totals).items()}
  count = max(totals['count'], 1)
  return {'eval_top1': totals['top1_correct'] / count, 'eval_top5': totals['top5_correct'] / count,
          'eval_loss': totals['loss_sum'] / count, 'eval_examples': totals['count'],
          'eval_skipped': source.num_examples(config.eval_split) - totals['count']}


def _every(config_value: int, steps_per_epoch: int) -> int:
  return config_value if config_value > 0 else steps_per_epoch


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}h{seconds // 60 % 60:02d}m' if seconds >= 3600 else \
      f'{seconds // 60}m{seconds % 60:02d}s'


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains and evaluates as `config` says, in `workdir`; returns the last evaluation.

  Safe to call again with the same workdir: it resumes where the last checkpoint left off,
  and returns at once (after an evaluation) if the run is already complete. Faults the user
  can act on (README "Reliability") raise an `errors.UserError` that says what happened and
  where the run can resume.
  """
  from alexnet_jax import input_pipeline
  mesh = distributed.data_mesh()
  config_checks.validate(config, jax.device_count())
  if config.compilation_cache:
    logging.info('Compiled steps are cached in %s.',
                 compilation_cache.enable(config.compilation_cache_dir))
  else:
    compilation_cache.disable()
  hosts = _hosts()
  is_main = hosts['process_index'] == 0
  source = open_data(config)
  num_classes = source.num_classes
  num_train = source.num_examples(config.train_split)
  steps_per_epoch = max(num_train // config.batch_size, 1)
  total_steps = config.num_train_steps or math.ceil(config.num_epochs * steps_per_epoch)
  log_every = config.log_every_steps
  eval_every = _every(config.eval_every_steps, steps_per_epoch)
  checkpoint_every = _every(config.checkpoint_every_steps, steps_per_epoch)

  stats = pixel_statistics(config, source)
  norm = normalization(config, stats)
  preprocess = make_preprocess(config, norm, mesh)

  optimizer = optim.paper_sgd(config.momentum, config.weight_decay)
  learning_rate = optim.learning_rate_schedule(
      config.lr_schedule, config.learning_rate, total_steps=total_steps,
      warmup_steps=round(config.warmup_epochs * steps_per_epoch),
      drop_steps=[round(e * steps_per_epoch) for e in config.lr_drop_epochs],
      drop_factor=config.lr_drop_factor)
  network, state = train_step.init(lambda rngs: build_model(config, num_classes, rngs),
                                   optimizer, config.seed, mesh)
  step_fn = train_step.make_train_step(network, optimizer, learning_rate, preprocess,
                                       config.seed, mesh)
  eval_step = train_step.make_eval_step(network, preprocess, mesh)
  plateau_update = train_step.make_plateau_update(
      config.plateau_patience, config.plateau_max_drops, config.plateau_min_delta, mesh)

  checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints,
                            keep_best=config.keep_best_checkpoints)
  identity = model_identity(config, num_classes)
  position, skipped = 0, 0
  latest = checkpoints.latest_step()
  if latest is not None:
    try:
      state, run = checkpoints.restore(latest, state, identity)
    except BaseException:
      checkpoints.close()
      raise
    if run['process_count'] == hosts['process_count']:
      position = run['positions'][hosts['process_index']]
      skipped = run['skipped_images'][hosts['process_index']]
    else:
      position = latest * (config.batch_size // hosts['process_count'])
      logging.warning('Checkpoint %d was written by %d processes, this run has %d: the data '
                      'stream restarts at its nominal position, not the exact one.',
                      latest, run['process_count'], hosts['process_count'])
    logging.info('Resumed from checkpoint %d in %s.', latest, checkpoints.directory)
  step = int(jax.device_get(state.step))
  first_step = step

  batches = input_pipeline.train_batches(
      source, config.train_split, batch_size=config.batch_size // hosts['process_count'],
      image_size=config_checks.image_size(config), resize_size=config.resize_size,
      seed=config.seed, shuffle_buffer=config.shuffle_buffer, fast_decode=config.fast_decode,
      cache=config.cache, lighting=stats, lighting_std=config.lighting_std,
      start_position=position, skipped=skipped, **hosts)
  writer = MetricWriter(workdir, enabled=is_main, first_step=first_step)
  preemption = faults.Preemption()
  nonfinite = faults.NonfiniteWatch(config.max_nonfinite_steps,
                                    int(jax.device_get(state.nonfinite_steps)))

  def save(metrics: dict | None = None) -> None:
    nonfinite.check()  # a saved step is a checked one
    # Every process's stream position and skip count (Orbax writes the JSON from process 0).
    streams = np.array([[batches.next_position, batches.skipped]])
    if hosts['process_count'] > 1:
      from jax.experimental import multihost_utils
      streams = multihost_utils.process_allgather(streams[0])
    checkpoints.save(step, state, {'model': identity, 'positions': streams[:, 0].tolist(),
                                   'skipped_images': streams[:, 1].tolist(),
                                   'process_count': hosts['process_count']}, metrics)

  def run_evaluation() -> dict[str, float]:
    nonlocal state
    result = evaluate(eval_step, state.params, source, config, mesh,
                      ten_crop=config.ten_crop_eval)
    if config.lr_schedule == 'plateau':
      state = plateau_update(state, 1.0 - result['eval_top1'])
    writer.write_scalars(step, result)
    writer.write_image(step, 'conv1_kernels',
                       kernel_grid(train_step.first_layer_kernels(state.params)))
    logging.info('step %d/%d: eval top-1 error %.2f%%, top-5 error %.2f%% on %d examples '
                 '(%s); %d could not be decoded.', step, total_steps,
                 100 * (1 - result['eval_top1']), 100 * (1 - result['eval_top5']),
                 result['eval_examples'], '10 crops' if config.ten_crop_eval else 'centre crop',
                 result['eval_skipped'])
    return result

  logging.info('Training %s on %s (%d examples, %d classes) for %d steps of %d images '
               '(%d per epoch) on %d devices in %d processes; workdir %s.',
               config.model.variant, source.name, num_train, num_classes, total_steps,
               config.batch_size, steps_per_epoch, jax.device_count(),
               hosts['process_count'], workdir)
  last_eval: dict[str, float] = {}
  pending: list[dict] = []  # this log interval's step metrics, still on the device
  interval_start = time.time()
  failed = False
  try:
    if is_main:  # after the restore: a refused restart leaves the workdir as it was
      write_run_files(workdir, config, norm, class_names(source))
    while step < total_steps:
      batch = next(batches)
      batch.pop('position')
      for epoch, skipped_in_epoch in batches.ended_epochs():
        logging.info('Epoch %d of the training data%s ended at step %d: %d image(s) in it '
                     'could not be decoded and were skipped.', epoch + 1,
                     ' (this process\'s part)' if hosts['process_count'] > 1 else '', step,
                     skipped_in_epoch)
      state, metrics = step_fn(state, device_input.global_batch(batch, mesh))
      step += 1
      nonfinite.after_step(step, metrics.pop('finite'))
      pending.append(metrics)
      if step == first_step + 1:
        jax.block_until_ready(metrics)
        logging.info('First step (with compilation) took %.1f s.', time.time() - interval_start)
        pending, interval_start = [], time.time()
      if pending and (step % log_every == 0 or step == total_steps):
        fetched = jax.device_get(pending)
        elapsed = time.time() - interval_start
        images_per_second = len(fetched) * config.batch_size / max(elapsed, 1e-9)
        left = (total_steps - step) * elapsed / len(fetched)
        finite = [m for m in fetched if np.isfinite(m['loss'])] or fetched
        logged = {'loss': float(np.mean([m['loss'] for m in finite])),
                  'top1': float(np.mean([m['top1'] for m in finite])),
                  'top5': float(np.mean([m['top5'] for m in finite])),
                  'learning_rate': float(fetched[-1]['learning_rate']),
                  'images_per_second': images_per_second}
        writer.write_scalars(step, logged)
        logging.info('step %d/%d: loss %.4f, train top-1 error %.2f%%, top-5 error %.2f%%, '
                     'lr %.5g, %.1f images/s, %s left.', step, total_steps, logged['loss'],
                     100 * (1 - logged['top1']), 100 * (1 - logged['top5']),
                     logged['learning_rate'], images_per_second, _duration(left))
        pending, interval_start = [], time.time()
      if step % eval_every == 0 or step == total_steps:
        # Not taken out of the interval's time: the input pipeline keeps filling its buffer
        # during an evaluation, so images/s and the time left are wall-clock, evaluations in.
        last_eval = run_evaluation()
        save({BEST_METRIC: 1.0 - last_eval['eval_top1']})
      elif step % checkpoint_every == 0:
        save()
      if preemption.reached(step):
        if checkpoints.latest_step() != step:
          save()
        checkpoints.wait()
        logging.warning('Stopped by SIGTERM at step %d; checkpoint saved in %s. Run the same '
                        'command again to resume.', step, checkpoints.directory)
        return last_eval
    if first_step == total_steps:  # already complete: report the final checkpoint
      last_eval = run_evaluation()
  except Exception as error:
    failed = True
    if hosts['process_count'] == 1:
      checkpoints.wait_quietly()  # let the saves in flight finish before naming the last
    explained = faults.explained(error, step, checkpoints, workdir)
    if explained is None:
      raise
    raise explained from error
  finally:
    batches.close()
    if not failed:
      checkpoints.wait()
      checkpoints.close()
    elif hosts['process_count'] == 1:
      checkpoints.close_quietly()
    # A failed multi-process run leaves the manager open: another process may be gone, and
    # closing would wait for it at a barrier until the timeout.
    writer.close()
    preemption.close()
  if batches.skipped:
    logging.warning('%d training image(s) could not be decoded and were skipped.',
                    batches.skipped)
  return last_eval


def class_names(source) -> list[str]:
  """The data set's class names in label order (numbers where it has none)."""
  names = getattr(source, 'classes', None)
  if names is None and hasattr(source, 'builder'):
    names = source.builder.info.features['label'].names
  return list(names) if names else [str(i) for i in range(source.num_classes)]
