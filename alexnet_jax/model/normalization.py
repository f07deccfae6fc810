"""All pixel arithmetic between uint8 pixels and the network's input, in one place.

    network input = ((float(crop) - mean image's matching crop) + lighting) * pixel_scale,
                    cast to the model's dtype

The host ships uint8 crops with where each was taken and whether it was mirrored
(`alexnet_jax.model.batch`), so that the device subtracts the mean image cropped and mirrored the
same way: exactly the paper's order, subtract the mean of the 256x256 image, then crop. From a
source of squares (a conversion), the host ships the whole square instead, with the crop's
place and mirror flag that it drew, and the device cuts the crop (`crop_views`): the same
pixels, without the host's crop. Pixels
stay on the 0..255 scale until `pixel_scale`; the lighting noise is drawn on the 0..1 scale of
the pixel statistics (`pixel_stats.PixelStats`) and shipped on the 0..255 scale
(`lighting_in_pixels`). No TensorFlow here: `apply` runs inside the jitted steps, and
`lighting_in_pixels` takes TensorFlow tensors too.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

MEAN_MODES = ('per_pixel', 'per_channel', 'none')
PIXEL_RANGE = 255.0  # uint8 pixels; the statistics and torchvision's constants are on 0..1
# torchvision's transforms.Normalize(mean, std) of its ImageNet weights, on the 0..1 scale.
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Normalization:
  """The transform from uint8 crops to the network's input. What DIR/normalization.npz holds
  (with the class names), so that evaluate and predict prepare images as training did."""
  mean_image: np.ndarray | jax.Array  # (S, S, 3) float32 on 0..255: the resize_size square
  pixel_scale: np.ndarray | jax.Array  # (3,) float32, multiplies the mean-subtracted pixels
  dtype: np.dtype = np.dtype(np.float32)  # of the network's input (the config's model.dtype)

  @classmethod
  def from_stats(cls, stats, mean: str, normalize_std: bool) -> Normalization:
    """From the training split's `pixel_stats.PixelStats`: the mean image per pixel
    (the paper), per channel, or none; with `normalize_std`, a scale of one over each
    channel's standard deviation over the split, else 1."""
    if mean == 'per_pixel':
      mean_image = stats.mean_image
    elif mean == 'per_channel':
      channel_mean = stats.mean_image.mean(axis=(0, 1), dtype=np.float64)
      mean_image = np.broadcast_to(channel_mean, stats.mean_image.shape).astype(np.float32)
    elif mean == 'none':
      mean_image = np.zeros_like(stats.mean_image)
    else:
      raise ValueError(f'mean mode {mean!r} is not one of {MEAN_MODES}')
    scale = np.ones(3, np.float32)
    if normalize_std:
      covariance = (stats.rgb_eigenvectors * stats.rgb_eigenvalues) @ stats.rgb_eigenvectors.T
      std = PIXEL_RANGE * np.sqrt(np.maximum(np.diag(covariance), 0.0))
      # A channel that never varies is all zero once its mean is taken: any scale will do.
      scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0).astype(np.float32)
    return cls(np.asarray(mean_image, np.float32), scale)

  @classmethod
  def torchvision(cls, resize_size: int) -> Normalization:
    """torchvision's (pixels / 255 - mean) / std as (pixels - mean image) * pixel scale."""
    mean = PIXEL_RANGE * np.array(TORCHVISION_MEAN, np.float32)
    return cls(np.broadcast_to(mean, (resize_size, resize_size, 3)).copy(),
               (1.0 / (PIXEL_RANGE * np.array(TORCHVISION_STD))).astype(np.float32))

  def on_device(self, sharding: jax.sharding.Sharding, dtype) -> Normalization:
    """This transform with its arrays on the devices, giving inputs of `dtype`."""
    put = lambda a: jax.device_put(jnp.asarray(a, jnp.float32), sharding)  # noqa: E731
    return Normalization(put(self.mean_image), put(self.pixel_scale), jnp.dtype(dtype))

  def apply(self, batch, *, lighting: bool, view_size: int) -> jax.Array:
    """The network's `view_size` input for a batch's 'image' (uint8 (..., H, W, 3): a batch,
    or a batch of 10 crops), with its 'crop_offset', 'flipped' and, if `lighting`, 'lighting'
    fields. Images larger than `view_size` are the squares the crops are still to be cut
    from."""
    images = batch['image']
    if images.shape[-2] != view_size:
      images = crop_views(images, batch['crop_offset'], batch['flipped'], view_size)
    pixels = subtract_mean(images, batch['crop_offset'], batch['flipped'], self.mean_image,
                           batch['lighting'] if lighting else None)
    return (pixels * self.pixel_scale).astype(self.dtype)


def lighting_in_pixels(offset):
  """A PCA lighting offset drawn on the statistics' 0..1 scale, on the pixels' 0..255."""
  return offset * PIXEL_RANGE


def crop_views(squares: jax.Array, crop_offsets: jax.Array, flipped: jax.Array,
               size: int) -> jax.Array:
  """The `size` crops of uint8 (B, S, S, 3) squares at their (B, 2) [y, x] offsets, mirrored
  where `flipped`: what the host cuts from a square itself (`data.ops.crop`,
  `data.ops.random_flip`), pixel for pixel."""
  crops = jax.vmap(lambda square, offset: jax.lax.dynamic_slice(
      square, (offset[0], offset[1], 0), (size, size, squares.shape[-1])))(squares, crop_offsets)
  return jnp.where(flipped[:, None, None, None], crops[:, :, ::-1], crops)


def subtract_mean(images: jax.Array, crop_offsets: jax.Array, flipped: jax.Array,
                  mean_image: jax.Array, lighting: jax.Array | None = None) -> jax.Array:
  """float32(images) - the mean image's matching crops (+ lighting).

  images: uint8 (..., H, W, 3) crops; crop_offsets: (..., 2) [y, x] of each crop in the
  (S, S, 3) `mean_image`; flipped: (...,) whether the crop was mirrored; lighting: optional
  (..., 3) RGB offsets on the 0..255 scale. Leading dimensions are any (batch, or batch and 10
  crops).
  """
  *lead, height, width, channels = images.shape
  offsets = crop_offsets.reshape(-1, 2)
  mean_crops = jax.vmap(lambda offset: jax.lax.dynamic_slice(
      mean_image, (offset[0], offset[1], 0), (height, width, channels)))(offsets)
  mirror = flipped.reshape(-1, 1, 1, 1)
  mean_crops = jnp.where(mirror, mean_crops[:, :, ::-1], mean_crops)
  pixels = images.reshape(-1, height, width, channels).astype(jnp.float32) - mean_crops
  if lighting is not None:
    pixels = pixels + lighting.reshape(-1, 1, 1, channels)
  return pixels.reshape(*lead, height, width, channels)
