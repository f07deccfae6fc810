"""Faults a user can cause or fix, as opposed to bugs.

The commands print a UserError as one line, `Error: <message>`, with no traceback, and exit
with status 1 (`alexnet_jax.commands.cli`): each message names the problem and what to do about it.
Every class also derives from the builtin error it refines, for callers that catch those.
"""

from __future__ import annotations

import errno
import re


class UserError(Exception):
  """An error whose message is the whole story."""


class ConfigError(UserError, ValueError):
  """A config field that cannot work."""


class DataError(UserError, ValueError):
  """A data set that cannot be opened as asked: unknown name or split, wrong layout."""


class MissingDataError(UserError, FileNotFoundError):
  """Files a data set or a workdir needs are not where they belong."""


class WorkdirError(UserError, OSError):
  """The workdir cannot hold a run: it is a file, or it cannot be written."""


class ModelMismatchError(UserError, ValueError):
  """The workdir's checkpoints are of another network than the config asks for."""


class ImageReadError(UserError, ValueError):
  """An image file that cannot be read or decoded."""


class StorageError(UserError, OSError):
  """Object storage (gs://) could not be reached, or refused this process."""


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


def in_one_line(error: BaseException | str, limit: int = 200) -> str:
  """`error`'s message (or a message) on one line, cut at `limit` characters: gcsfs's,
  TensorStore's, TFDS's and XLA's run over several lines (a 403's reason is on the second)."""
  return ' '.join(str(error).split())[:limit] or type(error).__name__


# curl's codes for a failed connection (6 host unknown, 7 refused, 28 timed out, 35 TLS
# handshake, 52 empty reply, 55 and 56 send and receive), as TensorStore quotes them.
_CURL_NETWORK_FAILURE = re.compile(r"curl_code='(6|7|28|35|52|55|56)'")


def is_unreachable(error: BaseException | None) -> bool:
  """Whether `error`, or an error it was raised from, is a failure to reach storage over the
  network (refused or reset connection, timeout, unknown host) rather than an answer from it.
  gcsfs raises aiohttp's connector errors once its retries (about 30 s) are spent; TensorStore
  raises ValueErrors whose text carries its status and the gs:// path (JAX's own UNAVAILABLE,
  a lost peer, names none), or, once its retries are spent, curl's code."""
  while error is not None:
    if isinstance(error, (ConnectionError, TimeoutError)):
      return True
    if type(error).__name__.startswith('ClientConnector'):  # aiohttp's, without importing it
      return True
    text = str(error)
    if 'Could not resolve host' in text or ('UNAVAILABLE' in text and 'gs://' in text):
      return True
    if _CURL_NETWORK_FAILURE.search(text):  # TensorStore's, once its retries are spent
      return True
    error = error.__cause__ or error.__context__
  return False
