"""TensorFlow for tf.data only, imported once here with every GPU hidden from it.

TensorFlow reserves most of a GPU's memory on its first GPU op, which would starve the JAX
train step. Every input-pipeline module takes `tf` from here, never from `tensorflow`
directly, and the model and the train step never import this module.
"""

import os

from absl import logging

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402  (the log level must be set first)

try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:
  # TensorFlow was initialised before this module (by the user's own code): its devices can
  # no longer change, so say so rather than let it share the accelerator unnoticed.
  if tf.config.get_visible_devices('GPU'):
    logging.warning('TensorFlow was initialised with GPUs visible before alexnet_jax hid '
                    'them; it may take GPU memory from JAX. Import alexnet_jax first, or '
                    'call tf.config.set_visible_devices([], "GPU") yourself.')

__all__ = ['tf']
