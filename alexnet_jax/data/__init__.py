"""The data side, the only layer that imports TensorFlow: sources, the per-example ops and
views, the tf.data pipelines, the pixel statistics and the 256x256 conversion."""
