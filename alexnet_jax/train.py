"""Training and evaluation: `train_and_evaluate(config, workdir)`, what `alexnet-train` and
`python train.py` run.

    data (this host's tf.data stream) -> global batch over the `data` mesh -> jitted step
    -> metrics every log_every_steps -> evaluation (centre or 10 crops) every eval_every_steps
    -> Orbax checkpoint every checkpoint_every_steps, after each evaluation, at the end, and
       on SIGTERM and on a first Ctrl-C

Restarting with the same workdir resumes from the latest checkpoint: state, schedule, random
keys and each process's position in its data stream, so the result equals an uninterrupted
run's. Faults (a NaN step, a full disk, a lost process) stop the run with an error that says
where it can resume (alexnet_jax/faults.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import flags, logging

import alexnet_jax
from alexnet_jax import (checkpoints as checkpoints_lib, cli, compilation_cache, config_checks,
                         distributed, evaluate, faults, model, optim, pixel_stats, train_step)
from alexnet_jax.metric_writer import MetricWriter, ProgressReporter
from alexnet_jax.pixels import Normalization
from alexnet_jax.workdir import RunRecord, Workdir


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The run's length and cadences in steps (a cadence of 0 in the config is once per epoch)."""
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  checkpoint_every: int

  @classmethod
  def of(cls, config: ml_collections.ConfigDict, num_train: int) -> Schedule:
    per_epoch = max(num_train // config.batch_size, 1)
    return cls(per_epoch, config.num_train_steps or math.ceil(config.num_epochs * per_epoch),
               config.eval_every_steps or per_epoch, config.checkpoint_every_steps or per_epoch)

  def learning_rate(self, config: ml_collections.ConfigDict):
    return optim.learning_rate_schedule(
        config.lr_schedule, optim.base_learning_rate(config), total_steps=self.total_steps,
        warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
        drop_steps=[round(e * self.steps_per_epoch) for e in config.lr_drop_epochs],
        drop_factor=config.lr_drop_factor)


def use_compilation_cache(config: ml_collections.ConfigDict) -> None:
  if config.compilation_cache:
    logging.info('Compiled steps are cached in %s.',
                 compilation_cache.enable(config.compilation_cache_dir))
  else:
    compilation_cache.disable()


@dataclasses.dataclass(frozen=True)
class Steps:
  """The jitted steps of a run, and its first train state."""
  initial_state: train_step.TrainState
  train: Callable
  eval: Callable
  plateau_update: Callable

  @classmethod
  def build(cls, config: ml_collections.ConfigDict, num_classes: int,
            normalization: Normalization, schedule: Schedule, mesh) -> Steps:
    on_device = normalization.on_device(distributed.replicated(mesh), config.model.dtype)
    optimizer = optim.from_config(config)
    network, state = train_step.init(
        lambda rngs: model.from_config(config, num_classes, rngs), optimizer, config.seed, mesh)
    return cls(state,
               train_step.make_train_step(network, optimizer, schedule.learning_rate(config),
                                          on_device, config.seed, mesh),
               train_step.make_eval_step(network, on_device, mesh),
               train_step.make_plateau_update(config.plateau_patience, config.plateau_max_drops,
                                              config.plateau_min_delta, mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, location: str, *,
                       allowed_changes: tuple[str, ...] = ()) -> dict[str, float]:
  """Trains and evaluates as `config` says, in the workdir at `location`; returns the last
  evaluation. Safe to call again with the same workdir: it resumes where the last checkpoint
  left off, and returns at once (after an evaluation) if the run is already complete. A
  resume logs each config field changed since the run's config.json, and refuses a change
  that breaks exact resumption (config_checks.FIXED_AT_RESUME) unless `allowed_changes`
  names the field. Faults the user can act on raise an `errors.UserError` that says what
  happened and where the run can resume."""
  from alexnet_jax import sources
  mesh = distributed.data_mesh()
  config_checks.validate(config, jax.device_count())
  workdir, is_main = Workdir(location), jax.process_index() == 0
  workdir.check_usable()
  if workdir.checkpoint_steps():
    config_checks.check_resume(workdir.saved_config(), config, str(workdir), allowed_changes)
  use_compilation_cache(config)
  source = sources.open_configured(config)
  schedule = Schedule.of(config, source.num_examples(config.train_split))
  stats = pixel_stats.load_or_compute(
      source, config.train_split, config.resize_size, fast_decode=config.fast_decode,
      cache_dir=config.mean_cache_dir or None, **distributed.hosts())
  normalization = Normalization.from_stats(stats, config.mean, config.normalize_std)
  steps = Steps.build(config, source.num_classes, normalization, schedule, mesh)

  checkpoints = checkpoints_lib.Checkpoints(workdir, keep=config.keep_checkpoints,
                                            keep_best=config.keep_best_checkpoints,
                                            save_every=schedule.checkpoint_every)
  identity = model.identity(config, source.num_classes)
  state, record = restore(checkpoints, steps.initial_state, identity)
  step = first_step = int(jax.device_get(state.step))
  batches = training_stream(config, source, stats, record, step)
  writer = MetricWriter(workdir, enabled=is_main, first_step=step)
  reporter = ProgressReporter(writer, total_steps=schedule.total_steps,
                              batch_size=config.batch_size, log_every=config.log_every_steps,
                              first_step=step)

  log_start(config, source, schedule, workdir)
  last_eval: dict[str, float] = {}
  with faults.RunGuard(checkpoints, str(workdir), step,
                       allowed_nonfinite=config.max_nonfinite_steps,
                       nonfinite_count=int(jax.device_get(state.nonfinite_steps)),
                       closers=(batches.close, writer.close)) as guard:
    if is_main:  # after the restore: a refused restart changes nothing
      workdir.write_run_files(config, normalization, source.class_names)
    while step < schedule.total_steps:
      state, metrics = steps.train(state, distributed.global_batch(next(batches), mesh))
      step += 1
      guard.after_step(step, metrics.pop('finite'))
      reporter.after_step(step, metrics)
      scores = None
      if step % schedule.eval_every == 0 or step == schedule.total_steps:
        state, last_eval = evaluation(steps, state, step, source, config, mesh, reporter)
        scores = {checkpoints_lib.BEST_METRIC: last_eval['eval_top1_error']}
      stop = guard.stop_requested(step)
      if scores or stop or checkpoints.should_save(step):
        guard.check_before_save()  # a saved step is a checked one
        checkpoints.save(step, state, gathered_record(identity, batches), scores)
      if stop:
        checkpoints.wait()
        logging.warning('Stopped by %s at step %d; checkpoint saved in %s. Run the same '
                        'command again to resume.', guard.stop_cause, step,
                        checkpoints.directory)
        return last_eval
    if first_step >= schedule.total_steps:  # already complete: report the final checkpoint
      state, last_eval = evaluation(steps, state, step, source, config, mesh, reporter)
  if batches.skipped:
    logging.warning('%d training image(s) could not be decoded and were skipped.',
                    batches.skipped)
  return last_eval


def evaluation(steps: Steps, state: train_step.TrainState, step: int, source, config, mesh,
               reporter: ProgressReporter) -> tuple[train_step.TrainState, dict[str, float]]:
  """Scores the state on the eval split and reports it; with the plateau schedule, the state
  with its plateau bookkeeping advanced."""
  result = evaluate.score(steps.eval, state.params, source, config, mesh,
                          ten_crop=config.ten_crop_eval)
  if config.lr_schedule == 'plateau':
    state = steps.plateau_update(state, result['eval_top1_error'])
  view = evaluate.VIEWS['ten_crop' if config.ten_crop_eval else 'centre']
  reporter.evaluation(step, result, view, train_step.first_layer_kernels(state.params))
  return state, result


def training_stream(config: ml_collections.ConfigDict, source, stats, record: RunRecord,
                    step: int):
  """This process's training batches from where `record` says its stream stands."""
  from alexnet_jax import input_pipeline
  hosts = distributed.hosts()
  host_batch_size = config.batch_size // hosts['process_count']
  position, skipped = record.stream_start(step, **hosts, host_batch_size=host_batch_size)
  return input_pipeline.train_batches(
      source, config.train_split, batch_size=host_batch_size,
      image_size=model.image_size(config), resize_size=config.resize_size,
      seed=config.seed, shuffle_buffer=config.shuffle_buffer, fast_decode=config.fast_decode,
      cache=config.cache, lighting=stats, lighting_std=config.lighting_std,
      start_position=position, skipped=skipped, first_step=step, **hosts)


def log_start(config: ml_collections.ConfigDict, source, schedule: Schedule,
              workdir: Workdir) -> None:
  logging.info('Training %s on %s (%d examples, %d classes) for %d steps of %d images (%d per '
               'epoch) on %d devices in %d processes; workdir %s.', config.model.variant,
               source.name, source.num_examples(config.train_split), source.num_classes,
               schedule.total_steps, config.batch_size, schedule.steps_per_epoch,
               jax.device_count(), jax.process_count(), workdir)
  if jax.default_backend() == 'cpu':
    logging.info('XLA:CPU kernels: %s.', alexnet_jax.CPU_KERNELS)


def restore(checkpoints: checkpoints_lib.Checkpoints, state: train_step.TrainState,
            identity: dict) -> tuple[train_step.TrainState, RunRecord]:
  """The latest checkpoint's state and run record, or `state` and a new record."""
  latest = checkpoints.latest_step()
  if latest is None:
    return state, RunRecord.start(identity, jax.process_count())
  try:
    state, record = checkpoints.restore(latest, state, identity)
  except BaseException:
    checkpoints.close()
    raise
  logging.info('Resumed from checkpoint %d in %s.', latest, checkpoints.directory)
  return state, record


def gathered_record(identity: dict, batches) -> RunRecord:
  """The run record of this moment: every process's stream position and skip count (a
  collective with several processes; Orbax writes the JSON from process 0)."""
  streams = np.array([[batches.next_position, batches.skipped]])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    streams = multihost_utils.process_allgather(streams[0])
  return RunRecord(identity, [int(p) for p, _ in streams], [int(s) for _, s in streams],
                   len(streams))


def define_flags() -> None:
  from ml_collections import config_flags
  config_flags.DEFINE_config_file('config', 'configs/default.py', 'Configuration file; '
                                  'override any field with --config.FIELD=VALUE.')
  cli.define_workdir('Directory for checkpoints and metrics; run again to resume.')
  flags.DEFINE_list('allow_config_changes', [], 'Config fields a resumed run may change '
                    'although the run then does not continue exactly (seed, batch_size, '
                    'dataset, ...: docs/reliability.md).')


def main(argv):
  cli.no_arguments(argv)
  config = flags.FLAGS.config
  distributed.initialize_if_requested(timeout_seconds=config.peer_timeout_seconds)
  train_and_evaluate(config, flags.FLAGS.workdir,
                     allowed_changes=tuple(flags.FLAGS.allow_config_changes))


def run():
  cli.run(main, define_flags)
