"""Shared fixtures."""

import os

import pytest


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
  from alexnet_jax import sources
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  sources.open_source('shapes', data_dir=data_dir)
  return data_dir
