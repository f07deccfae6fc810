"""What a training run does when something goes wrong (docs/reliability.md): a SIGTERM or a
Ctrl-C, a NaN or infinite step, a full disk, a lost peer process.

`training.loop.train_and_evaluate` runs its loop inside a `RunGuard`: it hands the guard each
step's finiteness flag, asks it after each step whether to save and stop, and leaves to it
turning an error into one that says where the run can resume, and the cleanup on the way out.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import jax
from absl import logging

from alexnet_jax import files
from alexnet_jax.errors import (DiskFullError, NonFiniteError, PeerLostError, StorageError,
                                in_one_line, is_disk_full, is_unreachable)
from alexnet_jax.run.checkpoints import Checkpoints


class Preemption:
  """Whether to checkpoint and stop now: after a SIGTERM (a preemption notice) or a first
  Ctrl-C. One process: our handlers set a flag. Several: JAX's preemption service through
  Orbax, which receives the notice on any process (it catches SIGTERM itself; a Ctrl-C is
  passed on to it as one) and agrees on a step at which all of them save.

  The first Ctrl-C restores the default SIGINT action, so that a second one ends the process
  at once: what it was writing is a temporary checkpoint directory, never restored."""

  def __init__(self, checkpoints: Checkpoints):
    self._checkpoints = checkpoints
    self._multi = jax.process_count() > 1
    self._event = threading.Event()
    self.cause = 'a preemption notice (SIGTERM)'  # what a peer's notice is, seen from here
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      if not self._multi:
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_ctrl_c)

  def _on_sigterm(self, *_) -> None:
    self.cause = 'SIGTERM'
    self._event.set()

  def _on_ctrl_c(self, *_) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    self.cause = 'Ctrl-C'
    steps = self._checkpoints.complete_steps()
    logging.warning('Ctrl-C: saving a checkpoint at %s, then stopping. Ctrl-C again stops at '
                    'once; the run would then resume from %s.',
                    'a step all processes agree on' if self._multi else 'the end of this step',
                    f'step {steps[-1]}' if steps else 'the start (no checkpoint yet)')
    if self._multi:
      os.kill(os.getpid(), signal.SIGTERM)
    else:
      self._event.set()

  def asked(self) -> bool:
    """Whether to leave an evaluation at once: one process, after a SIGTERM or a first Ctrl-C.
    Several processes finish it (each of its batches is a collective, and JAX's service
    agrees on training steps only) and stop at the step they agree on."""
    return not self._multi and self._event.is_set()

  def reached(self, step: int) -> bool:
    if self._multi:
      return self._checkpoints.reached_preemption(step)
    return self._event.is_set()

  def close(self) -> None:
    """Restores the signal handlers; after a Ctrl-C, SIGINT keeps its default action, so
    that a second Ctrl-C while the run shuts down still ends it at once."""
    for number, previous in self._previous.items():
      if not (number == signal.SIGINT and self.cause == 'Ctrl-C'):
        signal.signal(number, previous)


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


def storage_lost(error: BaseException, workdir: str) -> bool:
  """Whether `error` is the object store holding `workdir` becoming unreachable (a local
  workdir's run has no such fault: a connection error there is a peer's or the data's)."""
  return files.is_url(workdir) and is_unreachable(error)


def explained(error: BaseException, step: int, checkpoints: Checkpoints,
              workdir: str) -> Exception | None:
  """The user-facing error for a fault that stopped the run at `step`, saying where it can
  resume; None for an error that is not a known fault."""
  unreachable = storage_lost(error, workdir)
  # Storage that cannot be reached cannot be listed either (another 30 s of retries).
  steps = checkpoints.known_complete_steps() if unreachable else checkpoints.complete_steps()
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
  if unreachable:
    return StorageError(
        f'the storage of {workdir} could not be reached at step {step} '
        f'({in_one_line(error, 200)}). {where}; once storage is reachable again, '
        f'{again}.')
  if isinstance(error, NonFiniteError):
    return NonFiniteError(f'{error} {where}{", with finite parameters" if steps else ""}.')
  if jax.process_count() > 1 and is_peer_failure(error):
    return PeerLostError(
        f'process {jax.process_index()} of {jax.process_count()} lost contact with another '
        f'process at step {step} ({in_one_line(error)}); it has probably stopped, see '
        f'its log. {where}: on every process, {again}.')
  return None


class RunGuard:
  """The training loop's fault handling and cleanup, as a context manager around the loop.

  Inside: `after_step` watches for non-finite steps, `stop_requested` says when a preemption
  asks to save and stop, `stop_requested_now` whether an evaluation should stop midway. On
  the way out of an error: (one process) waits for the saves in flight, then raises a fault
  the user can act on as an `errors.UserError` naming the last complete checkpoint. Always:
  runs `closers` (the input stream, the metric writer) and closes the checkpoints, waiting
  for every save first unless the run failed; a failed multi-process run leaves the manager
  open, since another process may be gone and closing would wait for it at a barrier until
  the timeout.
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

  def stop_requested_now(self) -> bool:
    """Whether an evaluation should stop before its next batch (`Preemption.asked`)."""
    return self._preemption.asked()

  @property
  def stop_cause(self) -> str:
    """What asked the run to stop: 'SIGTERM', 'Ctrl-C', or a peer's preemption notice."""
    return self._preemption.cause

  def __exit__(self, kind, error, traceback) -> None:
    failed = isinstance(error, Exception)
    if failed and storage_lost(error, self._workdir):
      # Storage is gone: each wait, upload or close would spend its own retries (gcsfs about
      # 30 s, TensorStore minutes) and fail. Nothing more can be saved; say where to resume.
      raise explained(error, self.step, self._checkpoints, self._workdir) from error
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
