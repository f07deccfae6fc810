"""Each example's views, built from `alexnet_jax.data.ops`: the paper's stored square, the
training crop (decoding and resizing only the pixels it shows) and the ten test crops; and a
source's squares in order, which the pixel statistics and the conversion read.
"""

from __future__ import annotations

from alexnet_jax.data import ops
from alexnet_jax.data.sources import Source
from alexnet_jax.data.tensorflow_cpu import dataset_options, tf, without_autograph


def square_image(image_bytes: tf.Tensor, resize_size: int, fast_decode: bool) -> tf.Tensor:
  """Decode, shorter side to `resize_size`, centre `resize_size` square: the paper's stored
  256x256 image, from which every training and test view is cut."""
  image = ops.decode_image(image_bytes, resize_size if fast_decode else 0)
  image = ops.resize_shorter_side(image, resize_size)
  return ops.crop(image, ops.central_offset(image, resize_size), resize_size)


def squares(source: Source, split: str, start: int, stop: int, size: int,
            fast_decode: bool = True) -> tf.data.Dataset:
  """Examples [start, stop) of `split` as {'image': its `size` square, 'label'}, in order,
  without the images that fail to decode."""
  @without_autograph
  def square(example):
    return {'image': square_image(example['image'], size, fast_decode),
            'label': example['label']}

  dataset = source.read(split, start, stop).map(square, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.ignore_errors().with_options(dataset_options())


def random_crop_view(image_bytes: tf.Tensor, resize_size: int, image_size: int,
                     seed: tf.Tensor, fast_decode: bool) -> tuple[tf.Tensor, tf.Tensor]:
  """The paper's training view, decoding and resizing only the pixels it shows.

  Returns the uint8 (image_size, image_size, 3) crop at a random offset of the image's
  `resize_size` square (`square_image`), and that offset [y, x]: the same offset, from the
  same seed, as `ops.random_square_offset(resize_size, image_size, seed)`. Instead of resizing
  the whole image and cutting the crop out, the crop's window is mapped back to the source,
  decoded alone (`decode_and_crop_jpeg` skips the rows below it and the colour conversion
  beside it) and resized straight to image_size: on a 500x375 photo, well under the pixels
  that the whole square would take. It is the square's crop up to the window's placement to
  the nearest source pixel (a third of a view pixel at 500x375) and the filter at the
  window's edges. A source whose shorter side is at most resize_size (a 256x256 conversion, a
  small image) is decoded whole, resized if smaller, and cropped: exactly the square's crop.
  """
  offset = ops.random_square_offset(resize_size, image_size, seed)
  if image_bytes.dtype == tf.uint8:  # pixels already
    view = _view_of_decoded(image_bytes, resize_size, image_size, offset)
  else:
    view = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: _jpeg_view(image_bytes, resize_size, image_size, offset, fast_decode),
        lambda: _view_of_decoded(
            tf.io.decode_image(image_bytes, channels=3, expand_animations=False),
            resize_size, image_size, offset))
  view.set_shape([None, None, 3])
  return ops.resize_to(view, tf.constant([image_size, image_size])), offset


def _crop_window(height_width: tf.Tensor, resize_size: int, image_size: int,
                 offset: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[top, left] and [height, width] of the crop's window in a source of that shape: the
  crop's place in the resized image (`ops.resized_shape`, centre square), scaled back."""
  resized = ops.resized_shape(height_width[0], height_width[1], resize_size)
  scale = tf.cast(height_width, tf.float32) / tf.cast(resized, tf.float32)
  start = tf.cast(tf.round(tf.cast((resized - resize_size) // 2 + offset, tf.float32) * scale),
                  tf.int32)
  extent = tf.maximum(tf.cast(tf.round(image_size * scale), tf.int32), 1)
  start = tf.clip_by_value(start, 0, height_width - extent)
  return start, tf.minimum(extent, height_width)


def _view_of_decoded(image: tf.Tensor, resize_size: int, image_size: int,
                     offset: tf.Tensor) -> tf.Tensor:
  """The view from a decoded source: its window, to be resized, or for a source smaller than
  the square (enlarged, where a window placed to the nearest source pixel would be up to a
  view pixel off), the square's crop itself."""

  def window_view():
    start, extent = _crop_window(tf.shape(image)[:2], resize_size, image_size, offset)
    return tf.slice(image, tf.concat([start, [0]], 0), tf.concat([extent, [3]], 0))

  def square_crop():
    square = ops.resize_shorter_side(image, resize_size)
    return tf.slice(square, tf.concat([ops.central_offset(square, resize_size) + offset, [0]], 0),
                    [image_size, image_size, 3])

  return tf.cond(tf.reduce_min(tf.shape(image)[:2]) >= resize_size, window_view, square_crop)


def _jpeg_view(image_bytes: tf.Tensor, resize_size: int, image_size: int, offset: tf.Tensor,
               fast_decode: bool) -> tf.Tensor:
  """The view of a JPEG: only its window decoded, at the smallest scale libjpeg offers that
  keeps the shorter side at least `resize_size` (`fast_decode`)."""
  height_width = tf.image.extract_jpeg_shape(image_bytes)[:2]
  index = ops.jpeg_ratio_index(height_width, resize_size) if fast_decode else tf.constant(0)
  divisor = tf.gather(tf.constant(ops.JPEG_RATIOS, tf.int32), index)
  scaled = (height_width + divisor - 1) // divisor  # libjpeg rounds up

  def window_view():
    start, extent = _crop_window(scaled, resize_size, image_size, offset)
    crop_window = tf.concat([start, extent], 0)
    return tf.switch_case(index, [
        lambda r=ratio: tf.image.decode_and_crop_jpeg(image_bytes, crop_window, channels=3,
                                                      ratio=r)
        for ratio in ops.JPEG_RATIOS])

  # A source whose shorter side is the square's (a 256x256 conversion) needs no resize:
  # decoding it whole, then slicing, is as fast as decoding the window, and exact.
  return tf.cond(tf.reduce_min(scaled) > resize_size, window_view,
                 lambda: _view_of_decoded(tf.image.decode_jpeg(image_bytes, channels=3),
                                          resize_size, image_size, offset))


def ten_crops(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The paper's test views: four corners and the centre, then the same five mirrored.

  Returns crops (10, size, size, C), their offsets (10, 2) and mirror flags (10,).
  """
  shape = tf.shape(image)
  bottom, right = shape[0] - size, shape[1] - size
  offsets = tf.stack([
      tf.stack([0, 0]), tf.stack([0, right]), tf.stack([bottom, 0]), tf.stack([bottom, right]),
      ops.central_offset(image, size)])
  crops = tf.stack([ops.crop(image, offsets[i], size) for i in range(5)])
  crops = tf.concat([crops, tf.reverse(crops, [2])], 0)
  flipped = tf.constant([False] * 5 + [True] * 5)
  return crops, tf.concat([offsets, offsets], 0), flipped


