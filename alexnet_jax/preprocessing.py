"""The paper's image preprocessing (sections 2 and 4.1) as small TensorFlow ops for tf.data.

Each op works on one example, eagerly or inside `Dataset.map`, and returns uint8 pixels plus
the numbers the device needs to finish the job: where a crop was taken (to crop the mean image
the same way), whether it was mirrored, and the PCA lighting offset. Float conversion, mean
subtraction and lighting happen on the device (`alexnet_jax.pixels`), where they cost
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
    index = _jpeg_ratio_index(tf.image.extract_jpeg_shape(image_bytes)[:2], min_shorter_side)
    branches = [lambda r=ratio: tf.image.decode_jpeg(image_bytes, channels=3, ratio=r)
                for ratio in _JPEG_RATIOS]
    return tf.switch_case(index, branches)

  def decode_other():
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)

  image = tf.cond(tf.io.is_jpeg(image_bytes), decode_jpeg, decode_other)
  image.set_shape([None, None, 3])
  return image


def _jpeg_ratio_index(height_width: tf.Tensor, min_shorter_side: int) -> tf.Tensor:
  """Index in _JPEG_RATIOS of the largest ratio r with shorter side >= r * min_shorter_side.
  libjpeg rounds the scaled size up, so the scaled shorter side is then at least
  min_shorter_side."""
  shorter = tf.reduce_min(height_width)
  fits = [shorter >= ratio * min_shorter_side for ratio in _JPEG_RATIOS[1:]]
  return tf.add_n([tf.cast(f, tf.int32) for f in fits])


def resized_shape(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
  """[height, width] scaled so the shorter side is `size`, the longer one rounded half up."""
  height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
  shorter = tf.minimum(height, width)
  scaled = lambda side: (2 * side * size + shorter) // (2 * shorter)  # noqa: E731
  return tf.cast(tf.stack([scaled(height), scaled(width)]), tf.int32)


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Rescales uint8 (H, W, 3) so its shorter side is `size` (the paper's first step), by area
  averaging when shrinking and bilinear interpolation when enlarging (`_resize`)."""
  shape = tf.shape(image)
  return _resize(image, resized_shape(shape[0], shape[1], size))


def _resize(image: tf.Tensor, new_shape: tf.Tensor) -> tf.Tensor:
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


def random_offset(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """[y, x] uniform over every position of a `size` square inside the image."""
  return _random_offset_in(tf.shape(image)[:2], size, seed)


def random_square_offset(square_size: int, size: int, seed: tf.Tensor) -> tf.Tensor:
  """`random_offset` in a `square_size` square, without the square."""
  return _random_offset_in(tf.constant([square_size, square_size]), size, seed)


def _random_offset_in(height_width: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  positions = height_width - size + 1
  uniform = tf.random.stateless_uniform([2], seed)
  return tf.minimum(tf.cast(uniform * tf.cast(positions, tf.float32), tf.int32), positions - 1)


def random_flip_draw(seed: tf.Tensor) -> tf.Tensor:
  """Whether to mirror: true with probability 1/2."""
  return tf.random.stateless_uniform([], seed) < 0.5


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Mirrors (H, W, C) left-right with probability 1/2; returns it and whether it did."""
  flipped = random_flip_draw(seed)
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


def random_crop_view(image_bytes: tf.Tensor, resize_size: int, image_size: int,
                     seed: tf.Tensor, fast_decode: bool) -> tuple[tf.Tensor, tf.Tensor]:
  """The paper's training view, decoding and resizing only the pixels it shows.

  Returns the uint8 (image_size, image_size, 3) crop at a random offset of the image's
  `resize_size` square (`square_image`), and that offset [y, x]: the same offset, from the
  same seed, as `random_offset(square, image_size, seed)`. Instead of resizing the whole
  image and cutting the crop out, the crop's window is mapped back to the source, decoded
  alone (`decode_and_crop_jpeg` skips the rows below it and the colour conversion beside it)
  and resized straight to image_size: on a 500x375 photo, well under the pixels that the
  whole square would take. It is the square's crop up to the window's placement to the nearest
  source pixel (a third of a view pixel at 500x375) and the filter at the window's edges. A
  source whose shorter side is at most resize_size (a 256x256 conversion, a small image) is
  decoded whole, resized if smaller, and cropped: exactly the square's crop.
  """
  offset = random_square_offset(resize_size, image_size, seed)

  def window(height_width):
    """[top, left] and [height, width] of the crop's window in a source of that shape: the
    crop's place in the resized image (`resized_shape`, centre square), scaled back."""
    resized = resized_shape(height_width[0], height_width[1], resize_size)
    scale = tf.cast(height_width, tf.float32) / tf.cast(resized, tf.float32)
    start = tf.cast(tf.round(tf.cast((resized - resize_size) // 2 + offset, tf.float32) * scale),
                    tf.int32)
    extent = tf.maximum(tf.cast(tf.round(image_size * scale), tf.int32), 1)
    start = tf.clip_by_value(start, 0, height_width - extent)
    return start, tf.minimum(extent, height_width)

  def view_of(image):
    """The view from a decoded source: its window, resized, or for a source smaller than the
    square (enlarged, where a window placed to the nearest source pixel would be up to a view
    pixel off), the square's crop itself."""

    def window_view():
      start, extent = window(tf.shape(image)[:2])
      return tf.slice(image, tf.concat([start, [0]], 0), tf.concat([extent, [3]], 0))

    def square_crop():
      square = resize_shorter_side(image, resize_size)
      return tf.slice(square, tf.concat([central_offset(square, resize_size) + offset, [0]], 0),
                      [image_size, image_size, 3])

    return tf.cond(tf.reduce_min(tf.shape(image)[:2]) >= resize_size, window_view, square_crop)

  def jpeg_view():
    height_width = tf.image.extract_jpeg_shape(image_bytes)[:2]
    index = _jpeg_ratio_index(height_width, resize_size) if fast_decode else tf.constant(0)
    divisor = tf.gather(tf.constant(_JPEG_RATIOS, tf.int32), index)
    scaled = (height_width + divisor - 1) // divisor  # libjpeg rounds up

    def window_view():
      start, extent = window(scaled)
      crop_window = tf.concat([start, extent], 0)
      return tf.switch_case(index, [
          lambda r=ratio: tf.image.decode_and_crop_jpeg(image_bytes, crop_window, channels=3,
                                                        ratio=r)
          for ratio in _JPEG_RATIOS])

    # A source whose shorter side is the square's (a 256x256 conversion) needs no resize:
    # decoding it whole, then slicing, is as fast as decoding the window, and exact.
    return tf.cond(tf.reduce_min(scaled) > resize_size, window_view,
                   lambda: view_of(tf.image.decode_jpeg(image_bytes, channels=3)))

  if image_bytes.dtype == tf.uint8:  # pixels already
    view = view_of(image_bytes)
  else:
    view = tf.cond(tf.io.is_jpeg(image_bytes), jpeg_view, lambda: view_of(
        tf.io.decode_image(image_bytes, channels=3, expand_animations=False)))
  view.set_shape([None, None, 3])
  return _resize(view, tf.constant([image_size, image_size])), offset
