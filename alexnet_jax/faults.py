"""What a training run does when something goes wrong (docs/reliability.md): a SIGTERM, a
NaN or infinite step, a full disk, a lost peer process.

`train.train_and_evaluate` runs its loop inside a `RunGuard`: it hands the guard each step's
finiteness flag, asks it after each step whether to save and stop, and leaves to it turning
an error into one that says where the run can resume, and the cleanup on the way out.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import jax
from absl import logging

from alexnet_jax.checkpoints import Checkpoints
from alexnet_jax.errors import DiskFullError, NonFiniteError, PeerLostError, is_disk_full


class Preemption:
  """Whether to checkpoint and stop now. One process: our SIGTERM handler sets a flag. Several:
  JAX's preemption service through Orbax (it receives the notice on any process and agrees on
  a step at which all of them save)."""

  def __init__(self, checkpoints: Checkpoints):
    self._checkpoints = checkpoints
    self._multi = jax.process_count() > 1
    self._event = threading.Event()
    self._previous = None
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())

  def reached(self, step: int) -> bool:
    if self._multi:
      return self._checkpoints.reached_preemption(step)
    return self._event.is_set()

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class NonfiniteWatch:
  """Reads each step's metrics['finite'] one step late, so that the device always has the
  next step queued, and stops the run once more than `allowed` steps were not finite (the
  step itself never applies such an update: train_step.make_train_step)."""

  def __init__(self, allowed: int, count: int):
    self.allowed, self.count = allowed, count
    self._pending = None

  def after_step(self, step: int, finite: jax.Array) -> None:
    self.check()
    self._pending = (step, finite)

  def check(self) -> None:
    """Reads the flag of the step still pending (if any)."""
    if self._pending is None:
      return
    (step, finite), self._pending = self._pending, None
    if bool(jax.device_get(finite)):
      return
    self.count += 1
    if self.count > self.allowed:
      count = (f' (the {self.count} such steps are more than config.max_nonfinite_steps='
               f'{self.allowed})' if self.allowed else '')
      raise NonFiniteError(
          f'the loss or the gradients were NaN or infinite at step {step}{count}; its update '
          f'was not applied and training stopped. Lower config.learning_rate, or let up to N '
          f'such steps be skipped with --config.max_nonfinite_steps=N.')
    logging.warning('Step %d: the loss or the gradients were NaN or infinite; the step was '
                    'skipped (%d of at most config.max_nonfinite_steps=%d).', step, self.count,
                    self.allowed)


def is_peer_failure(error: BaseException) -> bool:
  """Whether a multi-process run's error is a collective that lost its peer: XLA reports a
  failed cross-process operation as a runtime error with a status code."""
  return isinstance(error, (jax.errors.JaxRuntimeError, ValueError)) and str(error).startswith(
      ('UNKNOWN:', 'UNAVAILABLE:', 'INTERNAL:', 'ABORTED:', 'DEADLINE_EXCEEDED:',
       'CANCELLED:', 'FAILED_PRECONDITION:'))


def explained(error: BaseException, step: int, checkpoints: Checkpoints,
              workdir: str) -> Exception | None:
  """The user-facing error for a fault that stopped the run at `step`, saying where it can
  resume; None for an error that is not a known fault."""
  steps = checkpoints.complete_steps()
  if steps:
    where = f'The last complete checkpoint is step {steps[-1]} in {checkpoints.directory}'
    again = 'run the same command to resume from it'
  else:
    where = f'No checkpoint is complete yet in {checkpoints.directory}'
    again = 'run the same command to start over'
  if is_disk_full(error):
    # Gives the space back now. Best effort: TensorStore may still finish a write it had
    # started, and the next run deletes what is left (cleanup_tmp_directories).
    checkpoints.remove_partial()
    return DiskFullError(
        f'the disk holding {workdir} is full (no space left on device) at '
        f'step {step}. {where}, intact. Free some space, then {again} (it first deletes any '
        f'partial checkpoint).')
  if isinstance(error, NonFiniteError):
    return NonFiniteError(f'{error} {where}{", with finite parameters" if steps else ""}.')
  if jax.process_count() > 1 and is_peer_failure(error):
    return PeerLostError(
        f'process {jax.process_index()} of {jax.process_count()} lost contact with another '
        f'process at step {step} ({str(error).splitlines()[0]}); it has probably stopped, see '
        f'its log. {where}: on every process, {again}.')
  return None


class RunGuard:
  """The training loop's fault handling and cleanup, as a context manager around the loop.

  Inside: `after_step` watches for non-finite steps, `stop_requested` says when a preemption
  asks to save and stop. On the way out of an error: (one process) waits for the saves in
  flight, then raises a fault the user can act on as an `errors.UserError` naming the last
  complete checkpoint. Always: runs `closers` (the input stream, the metric writer) and closes
  the checkpoints, waiting for every save first unless the run failed; a failed
  multi-process run leaves the manager open, since another process may be gone and closing
  would wait for it at a barrier until the timeout.
  """

  def __init__(self, checkpoints: Checkpoints, workdir: str, step: int, *,
               allowed_nonfinite: int, nonfinite_count: int,
               closers: tuple[Callable[[], None], ...] = ()):
    self.step = step
    self._checkpoints, self._workdir, self._closers = checkpoints, workdir, closers
    self._nonfinite = NonfiniteWatch(allowed_nonfinite, nonfinite_count)
    self._preemption = None
    self._single = jax.process_count() == 1

  def __enter__(self) -> RunGuard:
    self._preemption = Preemption(self._checkpoints)
    return self

  def after_step(self, step: int, finite: jax.Array) -> None:
    self.step = step
    self._nonfinite.after_step(step, finite)

  def check_before_save(self) -> None:
    """A saved step is a checked one: raises for a pending non-finite step."""
    self._nonfinite.check()

  def stop_requested(self, step: int) -> bool:
    return self._preemption.reached(step)

  def __exit__(self, kind, error, traceback) -> None:
    failed = isinstance(error, Exception)
    explanation = None
    try:
      if failed:
        if self._single:
          self._checkpoints.wait_quietly()  # let the saves in flight finish before naming one
        explanation = explained(error, self.step, self._checkpoints, self._workdir)
    finally:
      for close in self._closers:
        close()
      if not failed:
        self._checkpoints.wait()
        self._checkpoints.close()
      elif self._single:
        self._checkpoints.close_quietly()
      self._preemption.close()
    if explanation is not None:
      raise explanation from error
