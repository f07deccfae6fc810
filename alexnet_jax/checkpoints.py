"""Orbax checkpoints in DIR/checkpoints: the train state and a JSON record of the run.

Each checkpoint holds two items:
  state: the TrainState (step, parameters, velocity, plateau bookkeeping), replicated arrays;
  run:   JSON: the model's identity (variant, classes, image size, width) and every
         process's position in its training stream, so that a resumed run reads on exactly
         where the stopped one was.
Saves are asynchronous (training goes on while the arrays are written); Orbax writes into a
temporary directory and renames it when complete, so a half-written checkpoint is never
taken for one. Kept: the latest `keep` and the `keep_best` with the lowest evaluation top-1
error. All processes call every method (Orbax coordinates the writes).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

from alexnet_jax.errors import ModelMismatchError

BEST_METRIC = 'eval_top1_error'
TMP_DIR_SUFFIX = '.orbax-checkpoint-tmp'  # Orbax's name for a checkpoint still being written
# Bumped when the train state or the run record changes shape. 2: the state counts non-finite
# steps; the record keeps every process's skipped-image count.
FORMAT = 2


class Checkpoints:

  def __init__(self, workdir: str, *, keep: int, keep_best: int):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    preserve = [policies.LatestN(n=keep)]
    if keep_best > 0:
      preserve.append(policies.BestN(get_metric_fn=lambda metrics: metrics[BEST_METRIC],
                                     reverse=True, n=keep_best,
                                     keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        # best_fn also makes Orbax write each checkpoint's metrics to disk, so that a resumed
        # run still knows which checkpoint is the best (without it they live in memory only).
        best_fn=lambda metrics: metrics[BEST_METRIC], best_mode='min',
        # A process killed while writing leaves a temporary directory, never taken for a
        # checkpoint; the next run removes it.
        cleanup_tmp_directories=True, enable_async_checkpointing=True, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'run'))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The kept checkpoint with the lowest evaluation top-1 error."""
    return self._manager.best_step()

  def save(self, step: int, state: Any, run: dict, metrics: dict | None = None) -> None:
    """Starts writing checkpoint `step` (returns once the arrays are copied off the device)."""
    run = {**run, 'format': FORMAT}
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     run=ocp.args.JsonSave(run)),
                       metrics=metrics, force=True)

  def read_run(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(run=ocp.args.JsonRestore())).run

  def restore(self, step: int, like_state: Any, model: dict) -> tuple[Any, dict]:
    """Checkpoint `step`'s state, laid out (shapes, dtypes, shardings) like `like_state`, and
    its run record; ModelMismatchError if it holds another network than `model` describes."""
    run = self.read_run(step)
    if run.get('format', 1) != FORMAT:
      raise ModelMismatchError(
          f'checkpoint {step} in {self.directory} was written by another version of '
          f'alexnet_jax (checkpoint format {run.get("format", 1)}; this version reads '
          f'{FORMAT}). Resume it with that version, or start a new run in another --workdir; '
          f'nothing was overwritten.')
    for field, value in model.items():
      saved = run['model'].get(field)
      if saved != value:
        raise ModelMismatchError(
            f'the checkpoints in {self.directory} are of a model with {field}={saved!r}, but '
            f'the config asks for {field}={value!r}. Use the checkpoint\'s value, or another '
            f'--workdir to start a new run; nothing was overwritten.')
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                            like_state)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored.state, run

  def complete_steps(self) -> list[int]:
    """The steps whose checkpoint is complete on disk (Orbax renames a checkpoint's
    temporary directory to its step number once everything is written)."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(name) for name in os.listdir(self.directory) if name.isdigit())

  def remove_partial(self) -> None:
    """Deletes the temporary directories of checkpoints that were not completed (after a
    failed write, to give the space back at once). Process 0 only."""
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if TMP_DIR_SUFFIX in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def wait(self) -> None:
    """Blocks until every started save is complete on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def wait_quietly(self) -> None:
    """`wait` on the way out of a failed run: a failed save is logged, not raised, so
    that it does not hide the error that stopped the run."""
    try:
      self.wait()
    except Exception as error:  # noqa: BLE001  (reported by the caller's error)
      logging.warning('A checkpoint save failed: %s', str(error).splitlines()[0])

  def close_quietly(self) -> None:
    """`close` on the way out of a failed run, after `wait_quietly`."""
    try:
      self.close()
    except Exception as error:  # noqa: BLE001
      logging.warning('Closing the checkpoint manager failed: %s', str(error).splitlines()[0])


def quiet_library_logs() -> None:
  """Keeps Orbax's per-save INFO lines (a dozen per checkpoint) out of the training log;
  its warnings and errors still show."""
  import logging as python_logging

  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or
      f'{os.sep}orbax{os.sep}' not in record.pathname)
