"""`fashion_mnist` offline: TFDS's own builder (its features, class names and version), fed the
four IDX files of Debian's `dataset-fashion-mnist` package instead of a download.

TFDS's builder cannot read them itself, for two reasons: it downloads through its download
manager, which checks each file against the checksums TFDS registered for the originals, and
Debian's files are recompressed (same images, other bytes); and it reads a fixed 60,000 and
10,000 examples, so a test's small IDX files would not fit. This builder overrides only
where the examples come from: the files in the manual directory (`MANUAL_DIR` unless
--config.manual_dir says otherwise), counts taken from each file's header. What it prepares
is laid out as TFDS's own `fashion_mnist` 3.0.1 (28x28x1 PNGs, 10 classes; `train` 60,000,
`test` 10,000), so either reads the other's.
"""

from __future__ import annotations

import gzip
import math
import os
import struct

import numpy as np
from tensorflow_datasets.image_classification import mnist

from alexnet_jax.errors import DataError

MANUAL_DIR = '/usr/share/datasets/fashion-mnist'  # where Debian's package puts them
INSTALL = 'sudo apt-get install dataset-fashion-mnist'
# Split -> (images, labels), the names the package and the original release use.
FILES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
         'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}
IMAGE_SIDE = 28
_UNSIGNED_BYTE = 0x08  # the IDX type code of uint8 data


def read_idx(path: str) -> np.ndarray:
  """An IDX file of unsigned bytes, gzipped or not, as a uint8 array of the shape its header
  gives (IDX: two zero bytes, the type code, the number of dimensions, then each dimension
  as a big-endian uint32, then the data)."""
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    if raw[:2] == b'\x1f\x8b':
      raw = gzip.decompress(raw)
  except (OSError, EOFError) as error:
    raise DataError(f'{path} is a damaged gzip file ({error}); reinstall it ({INSTALL}).')
  if len(raw) < 4 or raw[:2] != b'\0\0' or raw[2] != _UNSIGNED_BYTE:
    raise DataError(f'{path} is not an IDX file of unsigned bytes (it starts {raw[:4]!r}).')
  ndim = raw[3]
  header = 4 + 4 * ndim
  shape = struct.unpack(f'>{ndim}I', raw[4:header])
  if len(raw) - header != math.prod(shape):
    raise DataError(f'{path} holds {len(raw) - header} bytes of data where its header, '
                    f'{shape}, says {math.prod(shape)}: it is truncated or damaged; reinstall '
                    f'it ({INSTALL}).')
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def missing_files(directory: str) -> list[str]:
  return [name for pair in FILES.values() for name in pair
          if not os.path.exists(os.path.join(directory, name))]


class FashionMnistFiles(mnist.FashionMNIST, skip_registration=True):
  """TFDS's `fashion_mnist`, read from the IDX files in the manual directory."""

  name = 'fashion_mnist'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'{INSTALL}, or put the four IDX files ({MANUAL_DIR}) there.'

  def _split_generators(self, dl_manager):
    directory = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(os.path.join(directory, images),
                                           os.path.join(directory, labels))
            for split, (images, labels) in FILES.items()}

  def _generate_examples(self, images_path: str, labels_path: str):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
      raise DataError(f'{images_path} holds images of shape {images.shape[1:]}, not '
                      f'{IMAGE_SIDE}x{IMAGE_SIDE}.')
    if labels.shape != images.shape[:1]:
      raise DataError(f'{labels_path} holds {labels.size} labels for the {len(images)} images '
                      f'of {images_path}.')
    num_classes = self.info.features['label'].num_classes
    if labels.size and labels.max() >= num_classes:
      raise DataError(f'{labels_path} holds label {labels.max()}; Fashion-MNIST has '
                      f'{num_classes} classes, 0 to {num_classes - 1}.')
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {'image': image[..., None], 'label': int(label)}
