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


def without_autograph(function):
  """`function`, which tf.data traces into a graph, traced as written rather than through
  autograph: every function the pipelines hand tf.data.

  Autograph writes each function it converts to a module in the temp dir and removes it only
  at a normal interpreter exit, so every killed run (SIGKILL, os._exit after a lost peer) left
  one file per function there: thousands in a day of tests. The pipelines need none of it:
  they branch on tensors with tf.cond and tf.switch_case, and their Python `if`s and loops
  test Python values, which autograph leaves to Python as well, so the graphs are the same.
  Functions they call are not converted either.
  """
  return tf.autograph.experimental.do_not_convert(function)


def summary_metadata(plugin_name: str):
  """The metadata that makes TensorBoard's `plugin_name` plugin ('scalars', 'images') show a
  summary written with tf.summary.write: what `run.metric_writer`'s event files carry."""
  from tensorflow.core.framework import summary_pb2
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


__all__ = ['dataset_options', 'summary_metadata', 'tf', 'without_autograph']
