"""Orbax checkpoints in DIR/checkpoints: the train state and the run record (`RunRecord`),
which says what the train state does not: which network the parameters belong to, and where
each process's data stream stands.

Saves are asynchronous (training goes on while the arrays are written). Locally, Orbax
writes into a temporary directory and renames it when complete; on an object store (no
rename) it writes the step's directory and, last, its commit_success.txt. Either way a
half-written checkpoint is never taken for one (`Workdir.checkpoint_steps`). Orbax decides
the cadence (every `save_every` steps) and, with several processes, the step at which all
of them save on a preemption notice. Kept: the latest `keep`
and the `keep_best` with the lowest evaluation top-1 error. All processes call every method
(Orbax coordinates the writes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies
from orbax.checkpoint._src.serialization import tensorstore_utils

from alexnet_jax.errors import ModelMismatchError, in_one_line
from alexnet_jax.run.workdir import Workdir

BEST_METRIC = 'eval_top1_error'
# Bumped when the train state or the run record changes shape. 2: the state counts non-finite
# steps, the record every process's skipped-image count. 3: the optimiser state is optax's.
FORMAT = 3

# How long TensorStore, which writes and reads Orbax's arrays, retries a gs:// request that
# fails (about 1 + 2 + 4 + 8 + 16 + 16 s, as long as gcsfs's retries). Its default, 32
# retries of up to 32 s, would keep a save in flight, and the training loop waiting on it,
# for a quarter of an hour after storage is lost, before the run could say so.
STORAGE_RETRIES = {'max_retries': 6, 'initial_delay': '1s', 'max_delay': '16s'}


def bound_storage_retries() -> None:
  """Puts STORAGE_RETRIES into the TensorStore context Orbax builds for every checkpoint
  read and write (orbax-checkpoint 0.12 offers no setting for it: its context comes from
  these module defaults)."""
  for context in (tensorstore_utils._BASE_TS_CONTEXT,  # noqa: SLF001
                  tensorstore_utils._DEFAULT_OCDBT_TS_CONTEXT):  # noqa: SLF001
    context['gcs_request_retries'] = STORAGE_RETRIES


bound_storage_retries()


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """Saved with each checkpoint (JSON)."""
  model: dict  # `network.identity`: a checkpoint restores only into the same network
  positions: list[int]  # each process's next position in its training stream
  skipped_images: list[int]  # each process's undecodable training images so far
  process_count: int
  format: int = FORMAT

  @classmethod
  def start(cls, model: dict, process_count: int = 1) -> RunRecord:
    """The record of a run that has not read any data yet."""
    return cls(model, [0] * process_count, [0] * process_count, process_count)

  @classmethod
  def from_json(cls, saved: dict, step: int, directory: str) -> RunRecord:
    if saved.get('format', 1) != FORMAT:
      raise ModelMismatchError(
          f'checkpoint {step} in {directory} was written by another version of alexnet_jax '
          f'(checkpoint format {saved.get("format", 1)}; this version reads {FORMAT}). Resume '
          f'it with that version, or start a new run in another --workdir; nothing was '
          f'overwritten.')
    return cls(**{field.name: saved[field.name] for field in dataclasses.fields(cls)})

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  def check_model(self, model: dict, directory: str) -> None:
    """ModelMismatchError unless the checkpoint is of the network `model` describes."""
    for field, value in model.items():
      saved = self.model.get(field)
      if saved != value:
        raise ModelMismatchError(
            f'the checkpoints in {directory} are of a model with {field}={saved!r}, but the '
            f'config asks for {field}={value!r}. Use the checkpoint\'s value, or another '
            f'--workdir to start a new run; nothing was overwritten.')

  def stream_start(self, step: int, process_index: int, process_count: int,
                   host_batch_size: int) -> tuple[int, int]:
    """(position, skipped images) at which this process's training stream resumes: exactly
    where it stopped, or, with another number of processes than wrote the checkpoint, the
    nominal position of `step` (the stream is per process, so it cannot be exact)."""
    if self.process_count == process_count:
      return self.positions[process_index], self.skipped_images[process_index]
    logging.warning('Checkpoint %d was written by %d processes, this run has %d: the data '
                    'stream restarts at its nominal position, not the exact one.', step,
                    self.process_count, process_count)
    return step * host_batch_size, 0


class Checkpoints:

  def __init__(self, workdir: Workdir, *, keep: int, keep_best: int, save_every: int = 1):
    self.directory = workdir.checkpoints_dir
    self._workdir = workdir
    preserve = [policies.LatestN(n=keep)]
    if keep_best > 0:
      preserve.append(policies.BestN(get_metric_fn=lambda metrics: metrics[BEST_METRIC],
                                     reverse=True, n=keep_best,
                                     keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        # The default policy would also save the first step of a run with no checkpoint.
        save_decision_policy=policies.AnySavePolicy([
            policies.FixedIntervalPolicy(save_every), policies.PreemptionCheckpointingPolicy()]),
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        # best_fn also makes Orbax write each checkpoint's metrics to disk, so that a resumed
        # run still knows which checkpoint is the best (without it they live in memory only).
        best_fn=lambda metrics: metrics[BEST_METRIC], best_mode='min',
        # A process killed while writing leaves a temporary directory (on an object store,
        # a step directory without its commit file), never taken for a checkpoint; the next
        # run removes it before its first save.
        cleanup_tmp_directories=True, enable_async_checkpointing=True, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'run'))
    # Known complete without asking storage, for the error that says where a run stopped by
    # unreachable storage can resume: those found at the start, and each save that Orbax
    # finished (it waits for the previous save before it starts the next).
    self._known_complete = list(self._manager.all_steps())
    self._in_flight: int | None = None

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The kept checkpoint with the lowest evaluation top-1 error."""
    return self._manager.best_step()

  def scored(self, step: int) -> bool:
    """Whether checkpoint `step` was saved with an evaluation's score (BEST_METRIC)."""
    return self._manager.metrics(step) is not None

  def should_save(self, step: int) -> bool:
    """Whether `step` is due by the cadence, or (several processes) is the step all of them
    agreed to save at after a preemption notice."""
    return self._manager.should_save(step)

  def reached_preemption(self, step: int) -> bool:
    """Several processes: whether `step` is the one all agreed to stop at after a
    preemption notice (JAX's preemption service)."""
    return self._manager.reached_preemption(step)

  def save(self, step: int, state: Any, run: RunRecord, metrics: dict | None = None) -> None:
    """Starts writing checkpoint `step` (returns once the arrays are copied off the device)."""
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     run=ocp.args.JsonSave(run.to_json())),
                       metrics=metrics, force=True)
    self._finished()
    self._in_flight = step

  def read_run(self, step: int) -> RunRecord:
    saved = self._manager.restore(step, args=ocp.args.Composite(run=ocp.args.JsonRestore())).run
    return RunRecord.from_json(saved, step, self.directory)

  def restore(self, step: int, like_state: Any, model: dict) -> tuple[Any, RunRecord]:
    """Checkpoint `step`'s state, laid out (shapes, dtypes, shardings) like `like_state`, and
    its run record; ModelMismatchError if it holds another network than `model` describes."""
    run = self.read_run(step)
    run.check_model(model, self.directory)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                            like_state)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored.state, run

  def complete_steps(self) -> list[int]:
    """The steps whose checkpoint is complete in storage."""
    return self._workdir.checkpoint_steps()

  def known_complete_steps(self) -> list[int]:
    """The steps this process knows to be complete without asking storage (which may be
    unreachable): those there at the start, and the saves finished since."""
    return sorted(set(self._known_complete))

  def _finished(self) -> None:
    if self._in_flight is not None:
      self._known_complete.append(self._in_flight)
      self._in_flight = None

  def remove_partial(self) -> None:
    """Deletes the checkpoints that were not completed (after a failed write, to give the
    space back at once). Process 0 only."""
    if jax.process_index() != 0 or not self.directory.is_dir():
      return
    complete = set(self.complete_steps())
    for path in self.directory.iterdir():
      if path.is_dir() and not (path.name.isdigit() and int(path.name) in complete):
        try:
          path.rmtree()
        except OSError:
          pass  # the next run's cleanup_tmp_directories removes what is left

  def wait(self) -> None:
    """Blocks until every started save is complete in storage."""
    self._manager.wait_until_finished()
    self._finished()

  def close(self) -> None:
    self._manager.close()

  def wait_quietly(self) -> None:
    """`wait` on the way out of a failed run: a failed save is logged, not raised, so
    that it does not hide the error that stopped the run."""
    try:
      self.wait()
    except Exception as error:  # noqa: BLE001  (reported by the caller's error)
      logging.warning('A checkpoint save failed: %s', in_one_line(error))

  def close_quietly(self) -> None:
    """`close` on the way out of a failed run, after `wait_quietly`."""
    try:
      self.close()
    except Exception as error:  # noqa: BLE001
      logging.warning('Closing the checkpoint manager failed: %s', in_one_line(error))
