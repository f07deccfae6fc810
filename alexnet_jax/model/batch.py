"""What a batch of the input pipeline holds: its fields, their dtypes and per-example shapes.

The host decodes and crops (or, from a source of squares, only decodes); the device finishes
the pixels (`alexnet_jax.model.normalization`), so a batch carries, besides the uint8 images
and labels, where each crop was taken and whether it was mirrored. Bookkeeping fields number
the examples so that the host can count the images that could not be decoded (the gaps) and
know where to resume; the resumable iterator (`data.input_pipeline.ResumableBatches`) takes
them off, and the device never sees them.

The tf.data pipelines build their examples from these tables (`data.input_pipeline`), and the
steps read the fields by these names (`training.train_step`, `normalization`). No TensorFlow
here.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

Batch = dict[str, np.ndarray | jax.Array]


@dataclasses.dataclass(frozen=True)
class Field:
  dtype: np.dtype
  shape: str  # per example
  meaning: str
  bookkeeping: bool = False  # host-side only: taken off before the batch reaches the device


# The views and what the device needs to finish their pixels. V (10 views) only in ten-crop
# evaluation batches.
_VIEWS = {
    'image': Field(np.dtype(np.uint8), '([V,] H, W, 3)',
                   'the crop, mirrored if flipped; in training from a source of squares, the '
                   'whole square instead, which the device crops and mirrors'),
    'label': Field(np.dtype(np.int32), '()', 'the class'),
    'crop_offset': Field(np.dtype(np.int32), '([V,] 2)', '[y, x] of the crop in the square'),
    'flipped': Field(np.dtype(np.bool_), '([V])', 'whether the crop was mirrored'),
}
TRAIN = {
    **_VIEWS,
    'lighting': Field(np.dtype(np.float32), '(3,)', 'PCA lighting offset on 0..255 (0 if off)'),
    'position': Field(np.dtype(np.int64), '()', 'the example\'s place in this host\'s stream',
                      bookkeeping=True),
}
EVAL = {
    **_VIEWS,
    'mask': Field(np.dtype(np.bool_), '()', 'False for the padding that fills the last batch'),
    'index': Field(np.dtype(np.int64), '()', 'the example\'s index in the split, -1 for padding',
                   bookkeeping=True),
}


def bookkeeping_field(fields: dict[str, Field]) -> str:
  (name,) = [name for name, field in fields.items() if field.bookkeeping]
  return name


def split_off_bookkeeping(batch: Batch, fields: dict[str, Field]) -> tuple[Batch, np.ndarray]:
  """The batch without its bookkeeping field, and that field's numbers."""
  name = bookkeeping_field(fields)
  return {key: value for key, value in batch.items() if key != name}, batch[name]
