"""The top-5 classes of images, by a trained network.

    alexnet-predict --workdir=DIR [--step=N|best] IMAGE [IMAGE ...]
    (or python -m alexnet_jax.training.prediction ...)

Each image is prepared as the run's evaluation prepares it (shorter side to resize_size,
centre square, mean subtraction) and scored by the average softmax of the paper's 10 crops.
A file that cannot be read as an image gets one `Error:` line; the others are still
classified, and the command ends with status 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from alexnet_jax.data import imagenet_classes, views
from alexnet_jax.data.tensorflow_cpu import tf
from alexnet_jax.errors import ImageReadError, in_one_line
from alexnet_jax.model import network


def read_views(path: str, config) -> dict[str, np.ndarray]:
  """The paper's 10 test views of the image file at `path`, as the run's evaluation cuts
  them; ImageReadError if the file cannot be read or decoded."""
  try:
    square = views.square_image(tf.io.read_file(path), config.resize_size, config.fast_decode)
  except tf.errors.OpError as error:
    reason = in_one_line(error.message or type(error).__name__)
    raise ImageReadError(f'{path} could not be read as an image ({reason}); it was not '
                         f'classified.') from None
  images, offsets, flipped = views.ten_crops(square, network.image_size(config))
  return {'image': images.numpy(), 'crop_offset': offsets.numpy(), 'flipped': flipped.numpy()}


def predict(trained, paths: list[str],
            top: int = 5) -> list[list[tuple[str, float]] | ImageReadError]:
  """For each image file, its `top` (class name, probability) pairs, most likely first, or,
  for a file that cannot be read as an image, the ImageReadError that says so (the others are
  still classified). ImageNet's classes are named in words and WordNet id: 'tabby, tabby cat
  (n02123045)'."""
  image_views, results = [], []
  for path in paths:
    try:
      image_views.append(read_views(path, trained.config))
      results.append(None)
    except ImageReadError as error:
      results.append(error)
  if not image_views:
    return results
  batch = {name: np.stack([v[name] for v in image_views]) for name in image_views[0]}
  size = network.image_size(trained.config)

  @jax.jit
  def probabilities(params, batch):
    images = trained.normalization.apply(batch, lighting=False, view_size=size)
    logits = trained.network.model(params, train=False)(images.reshape(-1, size, size, 3))
    return jax.nn.softmax(logits).reshape(len(image_views), 10, -1).mean(1)

  probs = iter(np.asarray(probabilities(trained.params, jax.tree.map(jnp.asarray, batch))))
  names = imagenet_classes.readable(trained.class_names)
  for index, result in enumerate(results):
    if result is None:
      row = next(probs)
      best = np.argsort(-row, kind='stable')[:top]
      results[index] = [(names[i], float(row[i])) for i in best]
  return results
