"""A Google Cloud Storage emulator on localhost (gcp-storage-emulator, from PyPI), which the
tests start and stop: `STORAGE_EMULATOR_HOST` pointed at it sends every gs:// path of the
project there (alexnet_jax.files.configure_object_stores).

The emulator lacks what GCS gives and TensorStore relies on to update Orbax's OCDBT
manifests: the object's generation on downloads (header x-goog-generation) and the generation
preconditions (ifGenerationMatch / ifGenerationNotMatch). Without them TensorStore fails with
"Malformed StorageGeneration" as soon as it re-reads a manifest, and the workdir lease
(alexnet_jax/run/workdir_lock.py) could be taken by two processes. Run as a module
(`python -m tests.gcs_emulator start ...`), this file starts the emulator with its download,
upload and delete handlers completed so.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BUCKET = 'alexnet-test'
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
  """A free port below Linux's ephemeral range (32768 up): while the emulator is stopped,
  the clients that keep retrying it could otherwise be given its port as their own end of a
  connection, and the restarted emulator could not bind it."""
  for port in random.Random().sample(range(20000, 32768), 200):
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', port))
      except OSError:
        continue
      return port
  raise RuntimeError('no free port between 20000 and 32767')


class Emulator:
  """One emulator process at a fixed port, storing objects under `storage` (on disk, so that
  what was written survives a `stop` and the next `start`)."""

  def __init__(self, storage: Path):
    self.storage, self.port = storage, free_port()
    self.url = f'http://127.0.0.1:{self.port}'
    self.env = {'STORAGE_EMULATOR_HOST': self.url}
    self._process = None

  def start(self) -> Emulator:
    log = self.storage.with_name(f'{self.storage.name}-emulator.log')
    with open(log, 'ab') as output:
      self._process = subprocess.Popen(
          [sys.executable, '-m', 'tests.gcs_emulator', 'start', '--host=127.0.0.1',
           f'--port={self.port}', f'--default-bucket={BUCKET}', '--quiet'],
          cwd=ROOT, env={**os.environ, 'STORAGE_BASE': str(self.storage)},
          stdout=output, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while True:
      try:
        urllib.request.urlopen(f'{self.url}/storage/v1/b/{BUCKET}', timeout=2).close()
        return self
      except OSError:
        if time.time() > deadline or self._process.poll() is not None:
          raise RuntimeError(f'the storage emulator did not start on port {self.port}: '
                             f'{log.read_text()[-2000:]}')
        time.sleep(0.2)

  @property
  def running(self) -> bool:
    return self._process is not None

  def stop(self) -> None:
    if self._process is not None:
      self._process.terminate()
      self._process.wait(timeout=30)
      self._process = None


def serve(argv: list[str]) -> None:
  """gcp-storage-emulator's command line, with downloads that carry the generation, and
  downloads, uploads and deletes that honour its preconditions, as GCS's do."""
  from http import HTTPStatus

  from gcp_storage_emulator.exceptions import NotFound
  from gcp_storage_emulator.handlers import objects
  plain_download = objects.download

  def download(request, response, storage, *args, **kwargs):
    try:
      generation = storage.get_file_obj(request.params['bucket_name'],
                                        request.params['object_id'])['generation']
    except NotFound:
      return plain_download(request, response, storage, *args, **kwargs)
    response['x-goog-generation'] = generation
    if request.query.get('ifGenerationNotMatch', [None])[0] == generation:
      response.status = HTTPStatus.NOT_MODIFIED
    elif request.query.get('ifGenerationMatch', [generation])[0] != generation:
      response.status = HTTPStatus.PRECONDITION_FAILED
    else:
      plain_download(request, response, storage, *args, **kwargs)

  def generation_differs(request, storage, object_id) -> bool:
    """Whether a write's ifGenerationMatch (0: the object must not exist) fails."""
    expected = request.query.get('ifGenerationMatch', [None])[0]
    if expected is None or object_id is None:
      return False
    try:
      current = storage.get_file_obj(request.params['bucket_name'], object_id)['generation']
    except NotFound:
      current = '0'
    return expected != current

  plain_insert, plain_delete = objects.insert, objects.delete

  def insert(request, response, storage, *args, **kwargs):
    if generation_differs(request, storage, request.query.get('name', [None])[0]):
      response.status = HTTPStatus.PRECONDITION_FAILED
    else:
      plain_insert(request, response, storage, *args, **kwargs)

  def delete(request, response, storage, *args, **kwargs):
    if generation_differs(request, storage, request.params['object_id']):
      response.status = HTTPStatus.PRECONDITION_FAILED
    else:
      plain_delete(request, response, storage, *args, **kwargs)

  # Before the server's route table is built from them. The server answers one request at a
  # time, so a precondition checked here still holds when the handler writes.
  objects.download, objects.insert, objects.delete = download, insert, delete
  from gcp_storage_emulator.__main__ import main
  main(argv)


if __name__ == '__main__':
  serve(sys.argv[1:])
