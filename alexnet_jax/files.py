"""The one path layer: every read and write of a workdir or a cache goes through here.

Paths are `etils.epath.Path`s, which take local paths and object store URLs (gs://) alike,
so that where a run keeps its files is decided in one place. Files that a resumed run
trusts are replaced whole. Locally: written under a temporary name, then renamed over the
old one, so that a kill or a full disk never leaves one half-written. On an object store,
which has no rename and no append: uploaded as one object, which the store shows only once
the upload is complete, so that the old object stays until then.

gs:// goes through fsspec's gcsfs (etils' fsspec backend) everywhere, also where TensorFlow
is installed: one client for the whole project, the one the tests run against a local GCS
emulator. With STORAGE_EMULATOR_HOST=http://HOST:PORT set, `configure_object_stores` points
every library that touches gs:// at that emulator.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator

import numpy as np
from etils import epath

from alexnet_jax.errors import StorageError, in_one_line, is_unreachable

_URL = re.compile(r'^[a-z][a-z0-9+.-]*://')
EMULATOR_VARIABLE = 'STORAGE_EMULATOR_HOST'


def configure_object_stores(environ=os.environ) -> None:
  """Sets, where the user has not, what the libraries read from the environment to reach
  gs://. Runs when this module is first imported, before any library opens a gs:// path."""
  # etils' default for gs:// where TensorFlow is installed is TensorFlow's file system, which
  # no endpoint setting points at an emulator, and which first asks a gRPC service whether
  # each bucket is zonal.
  environ.setdefault('EPATH_USE_TF', 'false')
  # gcsfs caches directory listings, so a process would not see the checkpoints another
  # process (or TensorStore, which bypasses gcsfs) wrote since it last listed.
  import fsspec.config
  fsspec.config.conf.setdefault('gcs', {}).setdefault('use_listings_cache', False)
  emulator = environ.get(EMULATOR_VARIABLE, '')
  if emulator:
    if '://' not in emulator:
      emulator = environ[EMULATOR_VARIABLE] = f'http://{emulator}'
    # TensorStore writes Orbax's arrays; it reads its own variable, not gcsfs's.
    environ.setdefault('TENSORSTORE_GCS_HTTP_URL', emulator)
    # gcsfs's extended client asks each bucket's layout over gRPC, which the emulator does
    # not serve: it waits 60 s before it falls back to the JSON API.
    environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')


configure_object_stores()


def is_url(location: str | os.PathLike) -> bool:
  return bool(_URL.match(os.fspath(location)))


def path(location: str | os.PathLike) -> epath.Path:
  """`location` as a Path: a URL as given, a local path with ~ expanded and made absolute."""
  if isinstance(location, epath.Path):
    return location
  location = os.fspath(location)
  if is_url(location):
    return epath.Path(location)
  return epath.Path(os.path.abspath(os.path.expanduser(location)))


def check_writable_url(url: epath.Path, what: str, flag: str) -> None:
  """StorageError unless this process can write objects under the URL `url`: writes and
  deletes an empty object there. `what` names the directory in the message ('the workdir'),
  `flag` the command-line flag that sets it."""
  bucket = f'{url.parts[1]}://{url.parts[2]}' if len(url.parts) > 2 else str(url)
  # A name of this process's own: every process of a run checks at once.
  probe = url / f'.alexnet_jax-write-check-{uuid.uuid4().hex}'
  try:
    probe.write_bytes(b'')
    probe.unlink()
  except Exception as error:  # noqa: BLE001  (each kind becomes its own message)
    reason = in_one_line(error, 300)
    if isinstance(error, FileNotFoundError):  # 404 on an upload: the bucket is missing
      message = (f'the bucket {bucket} of {what} {url} does not exist. Create it (gcloud '
                 f'storage buckets create {bucket} --location=REGION, in the region of the '
                 f'accelerators), or give {flag} a path in an existing bucket.')
    elif getattr(error, 'code', None) == 401:
      message = (f'{bucket} refused the request for want of valid credentials ({reason}). '
                 f'Run `gcloud auth application-default login`, or on a Cloud VM give it a '
                 f'service account with the storage scope; then run the same command again.')
    elif 'Forbidden' in str(error) or getattr(error, 'code', None) == 403:
      message = (f'the credentials in use may not write to {url} ({reason}). Grant them a role '
                 f'that writes objects in {bucket} (roles/storage.objectUser), or give {flag} '
                 f'a bucket they can write to.')
    elif is_unreachable(error):
      message = (f'cannot reach the storage of {url} ({reason}). Check the network (and '
                 f'STORAGE_EMULATOR_HOST, if set), then run the same command again.')
    else:
      message = f'cannot write to {url} ({type(error).__name__}: {reason}).'
    raise StorageError(message) from error


def _temporary(target: epath.Path) -> epath.Path:
  """Where `target`'s new content is written before it replaces `target`: a hidden name,
  which no listing of the directory's data files (TFDS shards, checkpoints) picks up."""
  return target.with_name(f'.{target.name}.tmp')


def write_atomically(target: str | os.PathLike, content: str | bytes) -> None:
  target = path(target)
  content = content.encode() if isinstance(content, str) else content
  if is_url(target):
    target.write_bytes(content)  # one object, visible only once complete
    return
  temporary = _temporary(target)
  temporary.write_bytes(content)
  temporary.replace(target)


def write_figure(target: str | os.PathLike, figure, dpi: int = 100) -> None:
  """Saves a matplotlib Figure to `target`, whose extension picks the format, replaced
  whole."""
  target = path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  figure.savefig(buffer, dpi=dpi, format=target.suffix[1:] or 'png')
  write_atomically(target, buffer.getvalue())


@contextlib.contextmanager
def written_locally(target: str | os.PathLike) -> Iterator[str]:
  """A local file name to write `target`'s content to with a library that writes only local
  files (TensorFlow's TFRecordWriter); on success it replaces `target` whole. Locally it is
  a temporary name beside `target`; for a URL, a temporary file uploaded as one object."""
  target = path(target)
  if not is_url(target):
    temporary = _temporary(target)
    yield os.fspath(temporary)
    temporary.replace(target)
    return
  with tempfile.TemporaryDirectory(prefix='alexnet_jax-') as directory:
    local = os.path.join(directory, target.name)
    yield local
    upload(local, target)


@contextlib.contextmanager
def temp_dir_removed_after() -> Iterator[str]:
  """Makes tempfile's directory, for the block, a new one, removed after it with whatever it
  holds: around library calls that leave files in the temp dir. (A TFDS builder made for a
  data set not prepared yet makes an empty directory there, which nothing uses or removes:
  tensorflow_datasets' DatasetInfo.initialize_from_bucket, with its GCS look-up off.) The
  setting is the process's: only for blocks that no other thread makes temporary files in."""
  with tempfile.TemporaryDirectory(prefix='alexnet_jax-') as directory:
    outer, tempfile.tempdir = tempfile.tempdir, directory
    try:
      yield directory
    finally:
      tempfile.tempdir = outer


def upload(local: str, target: str | os.PathLike) -> None:
  """Copies the local file `local` to `target` (a URL or a local path), whole."""
  # One write, not a copy loop: a file object of gcsfs commits what it has when closed, also
  # when an error interrupts the loop.
  with open(local, 'rb') as source:
    path(target).write_bytes(source.read())


def read_json(source: str | os.PathLike):
  return json.loads(path(source).read_text())


def write_json(target: str | os.PathLike, value, indent: int | None = None) -> None:
  write_atomically(target, json.dumps(value, indent=indent))


def write_npz(target: str | os.PathLike, **arrays) -> None:
  """`np.savez`'s file, replaced whole."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_atomically(target, buffer.getvalue())


def read_npz(source: str | os.PathLike) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(path(source).read_bytes())) as arrays:
    return dict(arrays)
