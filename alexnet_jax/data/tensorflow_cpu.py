"""TensorFlow, imported once here with every GPU hidden from it: for tf.data, and for the
TensorBoard event files that `run.metric_writer` writes where TensorFlow is installed.

TensorFlow reserves most of a GPU's memory on its first GPU op, which would starve the JAX
train step. Every module takes `tf` from here, never from `tensorflow` directly, and the
model and the train step never import this module (tests/test_layout.py).
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


def dataset_options() -> tf.data.Options:
  """The options of every tf.data pipeline here."""
  options = tf.data.Options()
  options.deterministic = True  # parallel map keeps order: same seed, same batches
  # No autotuning thread: it sleeps between optimisations for up to a minute, and freeing
  # the iterator waits for it to wake (the sleep ignores cancellation). A stopped run sat
  # 20 to 40 s after saying it had stopped, and each evaluation's stream paid the same when
  # freed. Without it, AUTOTUNE parallelism is the number of cores and prefetch buffers grow
  # on demand, and throughput is unchanged (docs/performance.md).
  options.autotune.enabled = False
  return options


def summary_metadata(plugin_name: str):
  """The metadata that makes TensorBoard's `plugin_name` plugin ('scalars', 'images') show a
  summary written with tf.summary.write: what `run.metric_writer`'s event files carry."""
  from tensorflow.core.framework import summary_pb2
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


__all__ = ['dataset_options', 'summary_metadata', 'tf']
