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
