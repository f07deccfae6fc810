"""Training and evaluation: `train_and_evaluate(config, workdir)`, what `alexnet-train` and
`python train.py` run.

    data (this host's tf.data stream) -> global batch over the `data` mesh -> jitted step
    -> metrics every log_every_steps -> evaluation (centre or 10 crops) every eval_every_steps
    -> Orbax checkpoint every checkpoint_every_steps, after each evaluation, at the end, and
       on SIGTERM and on a first Ctrl-C

Restarting with the same workdir resumes from the latest checkpoint: state, schedule, random
keys and each process's position in its data stream, so the result equals an uninterrupted
run's. Faults (a NaN step, a full disk, a lost process) stop the run with an error that says
where it can resume (`alexnet_jax.training.faults`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from alexnet_jax.data import input_pipeline, pixel_stats, sources
from alexnet_jax.model import cpu_kernels
from alexnet_jax.model import network as network_lib
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run import compilation_cache, distributed, workdir_lock
from alexnet_jax.run import checkpoints as checkpoints_lib
from alexnet_jax.run.checkpoints import RunRecord
from alexnet_jax.run.metric_writer import MetricWriter, ProgressReporter
from alexnet_jax.run.workdir import Workdir
from alexnet_jax.training import config_checks, evaluation, faults, optim, train_step


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The run's length and cadences in steps (a cadence of 0 in the config is once per epoch)."""
  steps_per_epoch: int
  total_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int

  @classmethod
  def of(cls, config: ml_collections.ConfigDict, num_train: int) -> Schedule:
    per_epoch = max(num_train // config.batch_size, 1)
    return cls(per_epoch, config.num_train_steps or math.ceil(config.num_epochs * per_epoch),
               config.log_every_steps or per_epoch, config.eval_every_steps or per_epoch,
               config.checkpoint_every_steps or per_epoch)

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
        lambda rngs: network_lib.from_config(config, num_classes, rngs), optimizer, config.seed,
        mesh)
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
  names the field. Another run training in the same workdir stops this one before it writes
  anything (run.workdir_lock). Faults the user can act on raise an `errors.UserError` that
  says what happened and where the run can resume."""
  config_checks.validate(config, jax.device_count())
  workdir = Workdir(location)
  workdir.check_usable()
  with workdir_lock.held_for_run(workdir.path, config.workdir_lease_seconds) as lock:
    return train_holding(config, workdir, lock, allowed_changes)


def train_holding(config: ml_collections.ConfigDict, workdir: Workdir, lock,
                  allowed_changes: tuple[str, ...]) -> dict[str, float]:
  """train_and_evaluate's run, once this run holds its workdir (`lock`)."""
  run = Run.set_up(config, workdir, lock, allowed_changes)
  state, record = restore(run.checkpoints, run.steps.initial_state, run.identity)
  step = int(jax.device_get(state.step))
  batches = training_stream(config, run.source, run.stats, record, step)
  writer = MetricWriter(run.workdir, enabled=jax.process_index() == 0, first_step=step)
  reporter = ProgressReporter(writer, total_steps=run.schedule.total_steps,
                              batch_size=config.batch_size, log_every=run.schedule.log_every,
                              first_step=step)
  log_start(config, run.source, run.schedule, run.workdir)
  with faults.RunGuard(run.checkpoints, str(run.workdir), step,
                       allowed_nonfinite=config.max_nonfinite_steps,
                       nonfinite_count=int(jax.device_get(state.nonfinite_steps)),
                       closers=(batches.close, writer.close)) as guard:
    if jax.process_index() == 0:  # after the restore: a refused restart changes nothing
      run.workdir.write_run_files(config, run.normalization, run.source.class_names)
    last_eval = run.train(state, batches, reporter, guard)
  if batches.skipped:
    logging.warning('%d training image(s) could not be decoded and were skipped.',
                    batches.skipped)
  return last_eval


@dataclasses.dataclass(frozen=True)
class Run:
  """What a run is set up with before its first step: the checked config and workdir, the
  data, the pixel statistics, the compiled steps and the checkpoints."""
  config: ml_collections.ConfigDict
  workdir: Workdir
  mesh: jax.sharding.Mesh
  source: object  # data.sources.Source
  schedule: Schedule
  stats: object  # data.pixel_stats.PixelStats
  normalization: Normalization
  steps: Steps
  checkpoints: checkpoints_lib.Checkpoints
  identity: dict  # network.identity: what the checkpoints' parameters are of
  lock: object  # run.workdir_lock's hold on the workdir

  @classmethod
  def set_up(cls, config: ml_collections.ConfigDict, workdir: Workdir, lock,
             allowed_changes: tuple[str, ...]) -> Run:
    """Checks, on a resume, the config's changes before any data is read."""
    mesh = distributed.data_mesh()
    if workdir.checkpoint_steps():
      config_checks.check_resume(workdir.saved_config(), config, str(workdir), allowed_changes)
    use_compilation_cache(config)
    source = sources.open_configured(config)
    schedule = Schedule.of(config, source.num_examples(config.train_split))
    stats = pixel_stats.load_or_compute(
        source, config.train_split, config.resize_size, fast_decode=config.fast_decode,
        cache_dir=config.mean_cache_dir or None, **distributed.hosts())
    normalization = Normalization.from_stats(stats, config.mean, config.normalize_std)
    checkpoints = checkpoints_lib.Checkpoints(workdir, keep=config.keep_checkpoints,
                                              keep_best=config.keep_best_checkpoints,
                                              save_every=schedule.checkpoint_every)
    return cls(config, workdir, mesh, source, schedule, stats, normalization,
               Steps.build(config, source.num_classes, normalization, schedule, mesh),
               checkpoints, network_lib.identity(config, source.num_classes), lock)

  def train(self, state: train_step.TrainState, batches, reporter: ProgressReporter,
            guard: faults.RunGuard) -> dict[str, float]:
    """Steps from the state's step to the end, or until `guard` asks to stop; returns the last
    evaluation."""
    step = first_step = int(jax.device_get(state.step))
    schedule, checkpoints, last_eval = self.schedule, self.checkpoints, {}
    if first_step >= schedule.total_steps or (
        0 < first_step and first_step % schedule.eval_every == 0
        and not checkpoints.scored(first_step)):
      # Already complete: report the final checkpoint. Or resumed from a checkpoint that a stop
      # saved midway through its step's evaluation: run that evaluation now, where an
      # uninterrupted run runs it (the plateau schedule counts it).
      state, last_eval = self.evaluate_and_report(state, step, reporter, guard)
      if last_eval is None:
        return self.stopped(step, guard, {})
    while step < schedule.total_steps:
      asked = time.perf_counter()
      batch = next(batches)
      reporter.waited(time.perf_counter() - asked)
      state, metrics = self.steps.train(state, distributed.global_batch(batch, self.mesh))
      step += 1
      guard.after_step(step, metrics.pop('finite'))
      self.lock.check()  # a run that lost its workdir to another stops before it writes
      reporter.after_step(step, metrics)
      scores = None
      if step % schedule.eval_every == 0 or step == schedule.total_steps:
        state, evaluated = self.evaluate_and_report(state, step, reporter, guard)
        if evaluated is not None:  # None: a stop cut it short, its checkpoint keeps no score
          last_eval, scores = evaluated, {checkpoints_lib.BEST_METRIC:
                                          evaluated['eval_top1_error']}
      stop = guard.stop_requested(step)
      if scores or stop or checkpoints.should_save(step):
        guard.check_before_save()  # a saved step is a checked one
        checkpoints.save(step, state, gathered_record(self.identity, batches), scores)
      if stop:
        return self.stopped(step, guard, last_eval)
    return last_eval

  def stopped(self, step: int, guard: faults.RunGuard,
              last_eval: dict[str, float]) -> dict[str, float]:
    """Ends a run that `guard` asked to stop at `step`, whose checkpoint is saved or being
    saved; returns `last_eval`."""
    self.checkpoints.wait()
    logging.warning('Stopped by %s at step %d; checkpoint saved in %s. Run the same command '
                    'again to resume.', guard.stop_cause, step, self.checkpoints.directory)
    return last_eval

  def evaluate_and_report(self, state: train_step.TrainState, step: int,
                          reporter: ProgressReporter, guard: faults.RunGuard
                          ) -> tuple[train_step.TrainState, dict[str, float] | None]:
    """Scores the state on the eval split and reports it; with the plateau schedule, the
    state with its plateau bookkeeping advanced. None, and the state as it was, when `guard`
    asks to stop midway (one process: `RunGuard.stop_requested_now`)."""
    config = self.config
    result = evaluation.evaluate_split(self.steps.eval, state.params, self.source, config,
                                       self.mesh, ten_crop=config.ten_crop_eval,
                                       stop_requested=guard.stop_requested_now)
    if result is None:
      return state, None
    if config.lr_schedule == 'plateau':
      state = self.steps.plateau_update(state, result['eval_top1_error'])
    view = evaluation.VIEWS['ten_crop' if config.ten_crop_eval else 'centre']
    reporter.report_evaluation(step, result, view, train_step.first_layer_kernels(state.params))
    return state, result


def training_stream(config: ml_collections.ConfigDict, source, stats, record: RunRecord,
                    step: int):
  """This process's training batches from where `record` says its stream stands."""
  hosts = distributed.hosts()
  host_batch_size = distributed.host_batch_size(config.batch_size)
  position, skipped = record.stream_start(step, **hosts, host_batch_size=host_batch_size)
  return input_pipeline.train_batches(
      source, config.train_split, batch_size=host_batch_size,
      image_size=network_lib.image_size(config), resize_size=config.resize_size,
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
    logging.info('XLA:CPU kernels: %s.', cpu_kernels.APPLIED)


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
    streams = multihost_utils.process_allgather(streams[0])
  return RunRecord(identity, [int(p) for p, _ in streams], [int(s) for _, s in streams],
                   len(streams))
