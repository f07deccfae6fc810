"""One writer per workdir: a training run holds its workdir for as long as it trains, and a
second run on it stops before it writes anything, with one line naming the holder.

    DIR/lock.json    who holds the workdir: host, process id, since when

A holder that dies leaves nothing that blocks the next run:
- On a local or network disk the hold is the OS's own lock on lock.json (flock), which the
  kernel drops with the process, however it ends (SIGKILL, a crash; a power loss drops the
  whole machine's). The file is removed when the run ends.
- On an object store (gs://), which has no locks, lock.json is a lease: written only if the
  object is still the generation this process read (GCS's ifGenerationMatch), so that of two
  processes racing for it exactly one succeeds, and renewed every quarter of
  `config.workdir_lease_seconds`. A lease that no renewal has changed for that long is
  taken over; so is one whose holder is a process of this machine that no longer exists.
  A holder that finds its lease taken over (it was frozen, or cut off, for longer than
  that) stops at its next step without saving.

With several processes, process 0 holds the workdir for the run (`held_for_run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import socket
import threading
import time

import fsspec
import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from alexnet_jax import files
from alexnet_jax.errors import StorageError, UserError, WorkdirError, in_one_line

LOCK_FILE = 'lock.json'


def _machine() -> str:
  """What makes a process id mean one process: this boot of this kernel, and the process id
  namespace (containers on one machine share the boot but not the namespace)."""
  try:
    with open('/proc/sys/kernel/random/boot_id') as boot:
      return f'{boot.read().strip()}/{os.stat("/proc/self/ns/pid").st_ino}'
  except OSError:
    return ''


@dataclasses.dataclass(frozen=True)
class Holder:
  """The process that holds a workdir, as lock.json records it."""
  host: str
  pid: int
  since: str  # when it took the workdir, ISO 8601 UTC
  machine: str  # _machine() of the holder
  renewed: float = 0.0  # a lease's last renewal, seconds since the epoch

  @classmethod
  def this_process(cls) -> Holder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return cls(socket.gethostname(), os.getpid(), now.isoformat(timespec='seconds'),
               _machine(), time.time())

  @classmethod
  def from_json(cls, text: str | bytes) -> Holder | None:
    """The holder lock.json names, or None for an empty or unreadable file (a holder killed
    while it wrote it: nobody holds the workdir then)."""
    try:
      fields = json.loads(text)
      return cls(str(fields['host']), int(fields['pid']), str(fields['since']),
                 str(fields.get('machine', '')), float(fields.get('renewed', 0.0)))
    except (ValueError, KeyError, TypeError):
      return None

  def to_json(self) -> bytes:
    return json.dumps(dataclasses.asdict(self)).encode()

  def renewed_now(self) -> Holder:
    return dataclasses.replace(self, renewed=time.time())

  def is_dead_here(self) -> bool:
    """Whether the holder was a process of this machine that no longer exists."""
    if not self.machine or self.machine != _machine():
      return False
    try:
      os.kill(self.pid, 0)
    except ProcessLookupError:
      return True
    except PermissionError:  # it exists, as another user's process
      return False
    return False

  def __str__(self) -> str:
    return f'process {self.pid} on host {self.host} (since {self.since})'


def in_use(workdir: str, holder: Holder | str) -> WorkdirError:
  return WorkdirError(
      f'the workdir {workdir} is in use by the training run of {holder}. Wait for that run '
      f'to end or stop it, then run this command again, or give --workdir another '
      f'directory; nothing was written.')


class LocalLock:
  """The OS's lock on a local (or NFS) DIR/lock.json."""

  def __init__(self, workdir: epath.Path):
    self._workdir = workdir
    self._path = os.fspath(workdir / LOCK_FILE)
    self._fd = None
    self._made_workdir = False

  def acquire(self) -> None:
    self._made_workdir = not self._workdir.exists()
    self._workdir.mkdir(parents=True, exist_ok=True)
    while True:
      fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = Holder.from_json(os.pread(fd, 4096, 0))
        os.close(fd)
        raise in_use(str(self._workdir), holder or 'another process') from None
      # The holder before us removes the file while it still holds it (release): a lock taken
      # on the removed file holds nothing, so take the one now at the path.
      try:
        if os.fstat(fd).st_ino == os.stat(self._path).st_ino:
          break
      except FileNotFoundError:
        pass
      os.close(fd)
    self._fd = fd
    os.ftruncate(fd, 0)
    os.pwrite(fd, Holder.this_process().to_json(), 0)

  def check(self) -> None:
    """The kernel never takes a lock away from a living process."""

  def release(self) -> None:
    if self._fd is None:
      return
    os.unlink(self._path)
    os.close(self._fd)
    self._fd = None
    if self._made_workdir:  # a run that wrote nothing leaves no directory behind
      try:
        os.rmdir(self._workdir)
      except OSError:
        pass


class ObjectLease:
  """A lease on gs://BUCKET/DIR/lock.json, through GCS's JSON API with generation
  preconditions (gcsfs, the project's one client for gs://, gives no preconditions for the
  writes it makes itself)."""

  def __init__(self, workdir: epath.Path, seconds: float):
    self._workdir, self._seconds = workdir, seconds
    self._fs = fsspec.filesystem('gs')
    self._bucket, _, self._key = os.fspath(workdir / LOCK_FILE).split('://', 1)[1].partition('/')
    self._holder = Holder.this_process()
    self._generation = None
    self._lost = None
    self._stop = threading.Event()
    self._renewals = None

  def _read(self) -> tuple[str | None, Holder | None]:
    """The lease's generation and holder; (None, None) when there is no lease."""
    try:
      headers, content = self._fs.call('GET', 'b/{}/o/{}', self._bucket, self._key,
                                       alt='media')
    except FileNotFoundError:
      return None, None
    return headers['x-goog-generation'], Holder.from_json(content)

  def _write(self, holder: Holder, generation: str) -> str | None:
    """Writes `holder` if the lease is still at `generation` ('0': if there is none); the
    new generation, or None if another process wrote or removed it first."""
    try:
      written = self._fs.call(
          'POST', f'{self._fs._location}/upload/storage/v1/b/{self._bucket}/o',
          uploadType='media', name=self._key, ifGenerationMatch=generation,
          data=holder.to_json(), json_out=True)
    except FileExistsError:  # gcsfs's name for 412 Precondition Failed
      return None
    except FileNotFoundError:  # GCS answers 404 to a precondition on a removed object
      return None
    return str(written['generation'])

  def acquire(self) -> None:
    """Takes the lease, waiting at most `seconds` for one that may be stale; WorkdirError
    if another process holds it."""
    first_seen = {}  # generation -> when this process first read it (its own clock)
    waiting_logged = False
    while True:
      generation, holder = self._read()
      if generation is None:
        self._generation = self._write(self._holder, '0')
      else:
        seen = first_seen.setdefault(generation, time.monotonic())
        if len(first_seen) > 1:  # renewed while we watched: the holder is alive
          raise in_use(str(self._workdir), holder or 'another process')
        stale_for = time.monotonic() - seen
        if (holder is None or holder.is_dead_here() or stale_for >= self._seconds
            # Its own clock says it has not renewed for two lease times: a clock of another
            # machine may differ from ours, but not by a lease time.
            or time.time() - holder.renewed > 2 * self._seconds):
          self._generation = self._write(self._holder, generation)
          if self._generation:
            logging.warning('Took over the workdir %s from %s, whose lease had expired.',
                            self._workdir, holder)
        elif time.time() - holder.renewed < self._seconds / 2:
          raise in_use(str(self._workdir), holder)  # renewed on schedule: it is alive
        elif not waiting_logged:
          waiting_logged = True
          logging.warning('The workdir %s is leased by %s, who has not renewed it for %.0f s: '
                          'waiting up to %.0f s for it to renew or expire.', self._workdir,
                          holder, time.time() - holder.renewed, self._seconds - stale_for)
      if self._generation:
        break
      time.sleep(min(1.0, self._seconds / 8))
    self._renewals = threading.Thread(target=self._renew, daemon=True,
                                      name='workdir-lease-renewal')
    self._renewals.start()

  def _renew(self) -> None:
    while not self._stop.wait(self._seconds / 4):
      try:
        generation = self._write(self._holder.renewed_now(), self._generation)
      except Exception as error:  # noqa: BLE001  (storage away: the next renewal tries again)
        logging.warning('Could not renew the lease of the workdir %s: %s', self._workdir,
                        in_one_line(error))
        continue
      if generation is None:
        _, holder = self._read()
        self._lost = holder or 'another process'
        return
      self._generation = generation

  def check(self) -> None:
    """WorkdirError once another process has taken the lease over."""
    if self._lost:
      raise WorkdirError(
          f'this run lost the workdir {self._workdir} to {self._lost}, which took it over '
          f'after this process failed to renew its lease for {self._seconds:.0f} s (frozen, '
          f'or cut off from storage); it stopped without saving so that two runs never write '
          f'one workdir. Let the other run go on, or stop it and run this command again.')

  def release(self) -> None:
    if self._renewals is None:
      return
    self._stop.set()
    self._renewals.join()
    self._renewals = None
    if self._lost:
      return
    try:
      self._fs.call('DELETE', 'b/{}/o/{}', self._bucket, self._key,
                    ifGenerationMatch=self._generation)
    except Exception as error:  # noqa: BLE001  (it then expires: nothing is lost)
      logging.warning('Could not remove the lease of the workdir %s (%s); it expires in %.0f '
                      's.', self._workdir, in_one_line(error), self._seconds)


class NoLock:
  """What processes other than 0 hold: nothing (process 0 holds the workdir for the run)."""

  def check(self) -> None:
    pass

  def release(self) -> None:
    pass


def acquire(workdir: epath.Path, lease_seconds: float) -> LocalLock | ObjectLease:
  """This process's hold on `workdir`: WorkdirError naming the holder if another has it, or
  if a local lock file cannot be made and locked; StorageError if the store cannot be
  reached."""
  lock = ObjectLease(workdir, lease_seconds) if files.is_url(workdir) else LocalLock(workdir)
  try:
    lock.acquire()
  except UserError:
    raise
  except Exception as error:  # noqa: BLE001  (storage refused or unreachable; a file system)
    if isinstance(lock, LocalLock):  # a local disk is no storage fault: release() runs
      raise WorkdirError(f'cannot lock {workdir / LOCK_FILE} ({in_one_line(error)}). Give '
                         f'--workdir a directory whose file system takes a file and its lock '
                         f'(flock), or remove what is in that path\'s way.') from error
    raise StorageError(f'cannot take the lease {workdir / LOCK_FILE} of the workdir '
                       f'({in_one_line(error)}). Check the storage, then run the same command '
                       f'again.') from error
  return lock


@contextlib.contextmanager
def held_for_run(workdir: epath.Path, lease_seconds: float):
  """Process 0's hold on `workdir`, released on the way out; every process raises if process
  0 could not take it."""
  lock, error = NoLock(), None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir, lease_seconds)
    except UserError as raised:
      error = raised
  if jax.process_count() > 1:
    taken = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not taken and error is None:
      raise WorkdirError(f'process 0 of this run could not take the workdir {workdir} (its '
                         f'log names why); nothing was written.')
  if error is not None:
    raise error
  try:
    yield lock
  except StorageError:
    # Storage is out of reach: removing the lease would only spend gcsfs's retries before the
    # error is shown. The next run takes it over (its holder is gone).
    raise
  except BaseException:
    lock.release()
    raise
  lock.release()
