"""The paper's image preprocessing (sections 2 and 4.1) as small TensorFlow ops for tf.data:
decoding, resizing, cropping, mirroring, the lighting draw and the per-example seeds, from
which `alexnet_jax.data.views` builds each example's views.

Each op works on one example, eagerly or inside `Dataset.map`, and returns uint8 pixels plus
the numbers the device needs to finish the job: where a crop was taken (to crop the mean image
the same way), whether it was mirrored, and the PCA lighting offset. Float conversion, mean
subtraction and lighting happen on the device (`alexnet_jax.model.normalization`), where they cost
nothing next to the network, so the host ships uint8: four times fewer bytes than float32.

Randomness is stateless: every random op takes a seed tensor of shape [2], derived from the
config seed and the example's position in the stream (`example_seed`), so the same seed gives
the same augmentation on every run, every machine and every order of parallel map.
"""

from __future__ import annotations

from alexnet_jax.data.tensorflow_cpu import tf

# libjpeg decodes at 1/1, 1/2, 1/4 or 1/8 of full size by skipping DCT coefficients: the
# cheapest downscale there is, and most of a large JPEG's decoding time saved.
JPEG_RATIOS = (1, 2, 4, 8)


def decode_image(image_bytes: tf.Tensor, min_shorter_side: int = 0) -> tf.Tensor:
  """JPEG, PNG, GIF or BMP bytes to uint8 RGB of shape (H, W, 3); uint8 pixels (a pixel
  conversion's, which the source has already read as such) as they are.

  Grayscale gains three equal channels, alpha is dropped, and libjpeg converts CMYK JPEGs.
  With `min_shorter_side` > 0, a JPEG whose shorter side is 2, 4 or 8 times that size or more
  is decoded at 1/2, 1/4 or 1/8 scale (the largest that keeps the shorter side at least
  `min_shorter_side`); resizing to that size afterwards then works on far fewer pixels.
  Undecodable bytes raise `InvalidArgumentError`, which the pipeline counts and skips.
  """
  if image_bytes.dtype == tf.uint8:
    return image_bytes

  def decode_jpeg():
    if not min_shorter_side:
      return tf.image.decode_jpeg(image_bytes, channels=3)
    index = jpeg_ratio_index(tf.image.extract_jpeg_shape(image_bytes)[:2], min_shorter_side)
    branches = [lambda r=ratio: tf.image.decode_jpeg(image_bytes, channels=3, ratio=r)
                for ratio in JPEG_RATIOS]
    return tf.switch_case(index, branches)

  def decode_other():
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)

  image = tf.cond(tf.io.is_jpeg(image_bytes), decode_jpeg, decode_other)
  image.set_shape([None, None, 3])
  return image


def jpeg_ratio_index(height_width: tf.Tensor, min_shorter_side: int) -> tf.Tensor:
  """Index in JPEG_RATIOS of the largest ratio r with shorter side >= r * min_shorter_side.
  libjpeg rounds the scaled size up, so the scaled shorter side is then at least
  min_shorter_side."""
  shorter = tf.reduce_min(height_width)
  fits = [shorter >= ratio * min_shorter_side for ratio in JPEG_RATIOS[1:]]
  return tf.add_n([tf.cast(f, tf.int32) for f in fits])


def resized_shape(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
  """[height, width] scaled so the shorter side is `size`, the longer one rounded half up."""
  height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
  shorter = tf.minimum(height, width)
  scaled = lambda side: (2 * side * size + shorter) // (2 * shorter)  # noqa: E731
  return tf.cast(tf.stack([scaled(height), scaled(width)]), tf.int32)


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Rescales uint8 (H, W, 3) so its shorter side is `size` (the paper's first step), by area
  averaging when shrinking and bilinear interpolation when enlarging (`resize_to`)."""
  shape = tf.shape(image)
  return resize_to(image, resized_shape(shape[0], shape[1], size))


def resize_to(image: tf.Tensor, new_shape: tf.Tensor) -> tf.Tensor:
  """uint8 (H, W, 3) to `new_shape` [h, w], rounded: area averaging when shrinking, bilinear
  when enlarging.

  Each output pixel of a shrink is the mean of the source area it covers: antialiased (a
  500x375 photo does not alias), and cheaper in TensorFlow than the antialiased bilinear
  (triangle) filter, which dominated a training view's time (benchmarks/input_pipeline.py
  measures the pipeline; docs/performance.md). Shrinking and enlarging never mix: both sides scale
  by the same factor.
  """

  def resize():
    shrinking = tf.reduce_all(new_shape <= tf.shape(image)[:2])
    resized = tf.cond(shrinking,
                      lambda: tf.image.resize(image, new_shape, method='area'),
                      lambda: tf.image.resize(image, new_shape, method='bilinear'))
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

  # Images already at size (a data set converted to 256x256) skip the filter entirely.
  return tf.cond(tf.reduce_all(new_shape == tf.shape(image)[:2]), lambda: image, resize)


def crop(image: tf.Tensor, offset: tf.Tensor, size: int) -> tf.Tensor:
  """The `size` x `size` window of (H, W, C) whose top-left corner is offset = [y, x]."""
  return tf.slice(image, tf.concat([offset, [0]], 0), [size, size, -1])


def central_offset(image: tf.Tensor, size: int) -> tf.Tensor:
  """[y, x] of the centred `size` square, rounded towards the top left."""
  shape = tf.shape(image)
  return tf.stack([(shape[0] - size) // 2, (shape[1] - size) // 2])


def random_square_offset(square_size: int, size: int, seed: tf.Tensor) -> tf.Tensor:
  """[y, x] uniform over every position of a `size` square inside a `square_size` square."""
  positions = tf.constant([square_size, square_size]) - size + 1
  uniform = tf.random.stateless_uniform([2], seed)
  return tf.minimum(tf.cast(uniform * tf.cast(positions, tf.float32), tf.int32), positions - 1)


def random_flip_draw(seed: tf.Tensor) -> tf.Tensor:
  """Whether to mirror: true with probability 1/2."""
  return tf.random.stateless_uniform([], seed) < 0.5


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Mirrors (H, W, C) left-right with probability 1/2; returns it and whether it did."""
  flipped = random_flip_draw(seed)
  return tf.cond(flipped, lambda: tf.reverse(image, [1]), lambda: image), flipped


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
