"""The top-5 classes of images, by a trained network.

    alexnet-predict --workdir=DIR [--step=N|best] IMAGE [IMAGE ...]
    (or python -m alexnet_jax.predict ...)

Each image is prepared as the run's evaluation prepares it (shorter side to resize_size,
centre square, mean subtraction) and scored by the average softmax of the paper's 10 crops.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from alexnet_jax import cli


def predict(trained, paths: list[str], top: int = 5) -> list[list[tuple[str, float]]]:
  """For each image file, its `top` (class name, probability) pairs, most likely first.
  ImageNet's classes are named in words and WordNet id: 'tabby, tabby cat (n02123045)'."""
  import jax
  import jax.numpy as jnp

  from alexnet_jax import imagenet_classes, model, preprocessing
  from alexnet_jax.tensorflow_cpu import tf
  config = trained.config
  size = model.image_size(config)
  views = []
  for path in paths:
    try:
      square = preprocessing.square_image(tf.io.read_file(path), config.resize_size,
                                          config.fast_decode)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
      raise ValueError(f'{path} could not be read as an image: {error.message}') from None
    images, offsets, flipped = preprocessing.ten_crops(square, size)
    views.append({'image': images.numpy(), 'crop_offset': offsets.numpy(),
                  'flipped': flipped.numpy()})
  batch = {name: np.stack([v[name] for v in views]) for name in views[0]}

  @jax.jit
  def probabilities(params, batch):
    images = trained.normalization.apply(batch, lighting=False)
    logits = trained.network.model(params, train=False)(images.reshape(-1, size, size, 3))
    return jax.nn.softmax(logits).reshape(len(paths), 10, -1).mean(1)

  probs = np.asarray(probabilities(trained.params, jax.tree.map(jnp.asarray, batch)))
  names = imagenet_classes.readable(trained.class_names)
  result = []
  for row in probs:
    best = np.argsort(-row, kind='stable')[:top]
    result.append([(names[i], float(row[i])) for i in best])
  return result


def define_flags() -> None:
  cli.define_workdir('The training run\'s workdir.')
  cli.define_step()
  flags.DEFINE_integer('top', 5, 'How many classes to print per image.')


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('Name one or more image files to classify.')
  from alexnet_jax import inference
  args = flags.FLAGS
  trained = inference.load(args.workdir, args.step)
  for path, classes in zip(paths, predict(trained, paths, args.top)):
    print(path)
    for name, probability in classes:
      print(f'  {probability:7.2%}  {name}')


def run():
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
