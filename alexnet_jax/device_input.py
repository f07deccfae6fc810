"""The device's half of the input: global arrays from host batches, then float pixels.

No TensorFlow here: this module runs inside the jitted step. The host ships uint8 crops with
their crop offsets, mirror flags and lighting offsets (`alexnet_jax.input_pipeline`); the
device converts to float, subtracts the mean image cropped and mirrored the same way, and adds
the lighting: exactly the paper's order, subtract the mean of the 256x256 image, then crop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def global_batch(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """One array per field, split over the mesh's `data` axis, from every process's own rows.

  Each process passes its part of the global batch (its host batch); the result is the
  concatenation over processes in process order, without any copy between hosts.
  """
  sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in host_batch.items()}


def normalize(images: jax.Array, crop_offsets: jax.Array, flipped: jax.Array,
              mean_image: jax.Array, lighting: jax.Array | None = None,
              dtype=jnp.float32) -> jax.Array:
  """float(images) - the mean image's matching crops (+ lighting), as `dtype`.

  images: uint8 (..., H, W, 3) crops; crop_offsets: (..., 2) [y, x] of each crop in the
  (S, S, 3) `mean_image`; flipped: (...,) whether the crop was mirrored; lighting: optional
  (..., 3) RGB offsets. Leading dimensions are any (batch, or batch and 10 crops).
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
  return pixels.reshape(*lead, height, width, channels).astype(dtype)
