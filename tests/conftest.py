"""Shared fixtures, and one XLA compilation cache for the whole session."""

import os
import shutil
import subprocess
import tempfile

import pytest


def pytest_configure(config):
  """Many tests compile the same programs (the narrow net's init, train and eval steps), in
  this process and in the subprocesses they start: JAX's persistent compilation cache,
  shared through the environment, compiles each once per session. Set before jax is
  imported; a cache dir the caller set is kept."""
  # What alexnet_jax.files sets for an emulator, here before anything imports gcsfs, which
  # reads it once: the tests' in-process gs:// calls go to tests/gcs_emulator.py's.
  os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    config.compilation_cache = tempfile.mkdtemp(prefix='alexnet_jax_xla_cache_')
    os.environ['JAX_COMPILATION_CACHE_DIR'] = config.compilation_cache
  # Before any test starts JAX: XLA:CPU's kernels as every run of the project has them
  # (alexnet_jax.model.cpu_kernels); the commands the tests start apply them themselves.
  import alexnet_jax  # noqa: F401


def pytest_unconfigure(config):
  cache = getattr(config, 'compilation_cache', None)
  if cache:
    shutil.rmtree(cache, ignore_errors=True)
    del os.environ['JAX_COMPILATION_CACHE_DIR']


@pytest.fixture(scope='session')
def tf():
  """TensorFlow as a reference implementation, kept off any GPU so that JAX keeps it all.

  Skips where TensorFlow is not installed (accelerator machines that carry jax alone).
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  tensorflow = pytest.importorskip('tensorflow')
  tensorflow.config.set_visible_devices([], 'GPU')
  return tensorflow


@pytest.fixture(scope='session')
def shapes_data_dir(tf, tmp_path_factory):
  """A TFDS data_dir holding the embedded `shapes` data set, built once per session through
  the same `open_source` call the pipeline makes (about 10 s)."""
  pytest.importorskip('tensorflow_datasets')
  from alexnet_jax.data import sources
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  sources.open_source('shapes', data_dir=data_dir)
  return data_dir


@pytest.fixture(scope='session')
def gcs(tmp_path_factory):
  """A GCS emulator on localhost for the session (tests/gcs_emulator.py), with this process
  and the commands the tests start pointed at it (STORAGE_EMULATOR_HOST)."""
  pytest.importorskip('gcsfs')
  from alexnet_jax import files
  from tests.gcs_emulator import BUCKET, Emulator
  emulator = Emulator(tmp_path_factory.mktemp('gcs')).start()
  saved = dict(os.environ)
  os.environ.update(emulator.env)
  files.configure_object_stores()
  # This process's client is made (credentials looked up) now, not in a test's first poll.
  assert files.path(f'gs://{BUCKET}').is_dir()
  yield emulator
  emulator.stop()
  os.environ.clear()
  os.environ.update(saved)


@pytest.fixture(scope='session')
def python313():
  """Python 3.13, the Python of Colab's runtimes, as these machines and CI's have it:
  $PYTHON313, else pyenv's 3.13.0."""
  path = os.environ.get('PYTHON313')
  if not path:
    root = subprocess.run(['pyenv', 'root'], capture_output=True, text=True, check=False)
    path = os.path.join(root.stdout.strip(), 'versions', '3.13.0', 'bin', 'python3')
  if not os.path.exists(path):
    pytest.skip(f'Python 3.13 is not at {path} (set $PYTHON313)')
  return path
