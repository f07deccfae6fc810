"""The paper's image preprocessing (sections 2 and 4.1) as small TensorFlow ops for tf.data.

Each op works on one example, eagerly or inside `Dataset.map`, and returns uint8 pixels plus
the numbers the device needs to finish the job: where a crop was taken (to crop the mean image
the same way), whether it was mirrored, and the PCA lighting offset. Float conversion, mean
subtraction and lighting happen on the device (`alexnet_jax.device_input`), where they cost
nothing next to the network, so the host ships uint8: four times fewer bytes than float32.

Randomness is stateless: every random op takes a seed tensor of shape [2], derived from the
config seed and the example's position in the stream (`example_seed`), so the same seed gives
the same augmentation on every run, every machine and every order of parallel map.
"""

from __future__ import annotations

from alexnet_jax.tensorflow_cpu import tf

# libjpeg decodes at 1/1, 1/2, 1/4 or 1/8 of full size by skipping DCT coefficients: the
# cheapest downscale there is, and most of a large JPEG's decoding time saved.
_JPEG_RATIOS = (1, 2, 4, 8)


def decode_image(image_bytes: tf.Tensor, min_shorter_side: int = 0) -> tf.Tensor:
  """JPEG, PNG, GIF or BMP bytes to uint8 RGB of shape (H, W, 3).

  Grayscale gains three equal channels, alpha is dropped, and libjpeg converts CMYK JPEGs.
  With `min_shorter_side` > 0, a JPEG whose shorter side is 2, 4 or 8 times that size or more
  is decoded at 1/2, 1/4 or 1/8 scale (the largest that keeps the shorter side at least
  `min_shorter_side`); resizing to that size afterwards then works on far fewer pixels.
  Undecodable bytes raise `InvalidArgumentError`, which the pipeline counts and skips.
  """

  def decode_jpeg():
    if not min_shorter_side:
      return tf.image.decode_jpeg(image_bytes, channels=3)
    height_width = tf.image.extract_jpeg_shape(image_bytes)[:2]
    shorter = tf.reduce_min(height_width)
    # Index of the largest ratio r with shorter >= r * min_shorter_side; libjpeg rounds the
    # scaled size up, so the scaled shorter side is then at least min_shorter_side.
    fits = [shorter >= ratio * min_shorter_side for ratio in _JPEG_RATIOS[1:]]
    index = tf.add_n([tf.cast(f, tf.int32) for f in fits])
    branches = [lambda r=ratio: tf.image.decode_jpeg(image_bytes, channels=3, ratio=r)
                for ratio in _JPEG_RATIOS]
    return tf.switch_case(index, branches)

  def decode_other():
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)

  image = tf.cond(tf.io.is_jpeg(image_bytes), decode_jpeg, decode_other)
  image.set_shape([None, None, 3])
  return image


def resized_shape(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
  """[height, width] scaled so the shorter side is `size`, the longer one rounded half up."""
  height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
  shorter = tf.minimum(height, width)
  scaled = lambda side: (2 * side * size + shorter) // (2 * shorter)  # noqa: E731
  return tf.cast(tf.stack([scaled(height), scaled(width)]), tf.int32)


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Rescales uint8 (H, W, 3) so its shorter side is `size` (the paper's first step).

  Bilinear, antialiased when shrinking (a triangle filter as wide as the scale, as PIL does),
  so that a 500x375 photo does not alias; rounded back to uint8.
  """
  shape = tf.shape(image)
  new_shape = resized_shape(shape[0], shape[1], size)

  def resize():
    resized = tf.image.resize(image, new_shape, method='bilinear', antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

  # Images already at size (a data set converted to 256x256) skip the filter entirely.
  return tf.cond(tf.reduce_all(new_shape == shape[:2]), lambda: image, resize)


def crop(image: tf.Tensor, offset: tf.Tensor, size: int) -> tf.Tensor:
  """The `size` x `size` window of (H, W, C) whose top-left corner is offset = [y, x]."""
  return tf.slice(image, tf.concat([offset, [0]], 0), [size, size, -1])


def central_offset(image: tf.Tensor, size: int) -> tf.Tensor:
  """[y, x] of the centred `size` square, rounded towards the top left."""
  shape = tf.shape(image)
  return tf.stack([(shape[0] - size) // 2, (shape[1] - size) // 2])


def random_offset(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """[y, x] uniform over every position of a `size` square inside the image."""
  shape = tf.shape(image)
  positions = tf.stack([shape[0] - size + 1, shape[1] - size + 1])
  uniform = tf.random.stateless_uniform([2], seed)
  return tf.minimum(tf.cast(uniform * tf.cast(positions, tf.float32), tf.int32), positions - 1)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Mirrors (H, W, C) left-right with probability 1/2; returns it and whether it did."""
  flipped = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flipped, lambda: tf.reverse(image, [1]), lambda: image), flipped


def ten_crops(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The paper's test views: four corners and the centre, then the same five mirrored.

  Returns crops (10, size, size, C), their offsets (10, 2) and mirror flags (10,).
  """
  shape = tf.shape(image)
  bottom, right = shape[0] - size, shape[1] - size
  offsets = tf.stack([
      tf.stack([0, 0]), tf.stack([0, right]), tf.stack([bottom, 0]), tf.stack([bottom, right]),
      central_offset(image, size)])
  crops = tf.stack([crop(image, offsets[i], size) for i in range(5)])
  crops = tf.concat([crops, tf.reverse(crops, [2])], 0)
  flipped = tf.constant([False] * 5 + [True] * 5)
  return crops, tf.concat([offsets, offsets], 0), flipped


def pca_lighting(seed: tf.Tensor, eigenvalues: tf.Tensor, eigenvectors: tf.Tensor,
                 alpha_std: float) -> tf.Tensor:
  """The paper's RGB offset eigenvectors @ (alpha * eigenvalues), alpha ~ N(0, alpha_std).

  One draw per image, added to every pixel. `eigenvectors` holds one eigenvector per column.
  """
  alpha = tf.random.stateless_normal([3], seed, stddev=alpha_std)
  return tf.linalg.matvec(tf.cast(eigenvectors, tf.float32),
                          alpha * tf.cast(eigenvalues, tf.float32))


def example_seed(seed: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
  """The seed of the example at `position` in a stream whose own seed is `seed` ([2])."""
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(position, tf.int64))


def square_image(image_bytes: tf.Tensor, resize_size: int, fast_decode: bool) -> tf.Tensor:
  """Decode, shorter side to `resize_size`, centre `resize_size` square: the paper's stored
  256x256 image, from which every training and test view is cut."""
  image = decode_image(image_bytes, resize_size if fast_decode else 0)
  image = resize_shorter_side(image, resize_size)
  return crop(image, central_offset(image, resize_size), resize_size)
