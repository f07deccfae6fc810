"""Faults a user can cause or fix, as opposed to bugs.

The command-line tools print a UserError as one line, `Error: <message>`, with no traceback,
and exit with status 1: each message names the problem and what to do about it. Every class
also derives from the builtin error it refines, for callers that catch those.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys


class UserError(Exception):
  """An error whose message is the whole story."""


class ConfigError(UserError, ValueError):
  """A config field that cannot work."""


class DataError(UserError, ValueError):
  """A data set that cannot be opened as asked: unknown name or split, wrong layout."""


class MissingDataError(UserError, FileNotFoundError):
  """Files a data set or a workdir needs are not where they belong."""


class ModelMismatchError(UserError, ValueError):
  """The workdir's checkpoints are of another network than the config asks for."""


class DiskFullError(UserError, OSError):
  """The disk filled up while the run was writing to its workdir."""


class NonFiniteError(UserError, FloatingPointError):
  """The loss or the gradients became NaN or infinite."""


class PeerLostError(UserError, RuntimeError):
  """Another process of a multi-process run stopped."""


def is_disk_full(error: BaseException | None) -> bool:
  """Whether `error`, or an error it was raised from, is "no space left on device". Orbax
  reports TensorStore's write failures as ValueErrors whose text carries the OS error."""
  while error is not None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if 'No space left on device' in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def exit_on_user_error(main):
  """Wraps a command's main: a UserError ends the program with `Error: <message>` on stderr
  and status 1, without a traceback."""

  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except PeerLostError as error:
      print(f'Error: {error}', file=sys.stderr, flush=True)
      # Not sys.exit: JAX's exit barrier would wait for the lost process until the timeout,
      # then abort with a stack dump that buries this message.
      os._exit(1)
    except UserError as error:
      print(f'Error: {error}', file=sys.stderr, flush=True)
      # The message is the last line: a failed checkpoint write leaves Orbax's sibling write
      # tasks to fail the same way, and at exit its threads print "Event loop is closed"
      # tracebacks (and asyncio "exception was never retrieved") that would bury it. The
      # exit handlers still run; only their noise is dropped.
      logging.getLogger('asyncio').setLevel(logging.CRITICAL)
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, sys.stderr.fileno())
      sys.exit(1)

  return wrapped
