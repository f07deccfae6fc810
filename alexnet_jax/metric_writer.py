"""Where a run's numbers and pictures go: DIR/metrics.jsonl, TensorBoard, PNG files.

Only process 0 writes (`enabled`). TensorBoard event files are written with TensorFlow's
core summary op and the metadata TensorBoard's scalar and image plugins read, so writing
them needs TensorFlow but not the `tensorboard` package (only viewing does). Where
TensorFlow is absent (an accelerator machine with only jax) the other outputs are written.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib

import numpy as np
from absl import logging

from alexnet_jax.files import write_atomically


def png_bytes(image: np.ndarray) -> bytes:
  """An 8-bit RGB PNG of a uint8 (H, W, 3) array, with no imaging library."""
  height, width, _ = image.shape
  rows = b''.join(b'\x00' + row.tobytes() for row in np.ascontiguousarray(image, np.uint8))

  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))

  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(rows))
          + chunk(b'IEND', b''))


def kernel_grid(kernels: np.ndarray, columns: int = 16, zoom: int = 3) -> np.ndarray:
  """conv1 kernels (kh, kw, 3, n) as one uint8 image, like the paper's Figure 3.

  Each kernel is scaled to 0..255 by its own range; kernels fill rows of `columns` in
  order, so the paper net's two 48-kernel halves (one per GPU) are its top and bottom three
  rows. Kernels are separated by one pixel of white and enlarged `zoom` times.
  """
  kh, kw, _, count = kernels.shape
  rows = math.ceil(count / columns)
  grid = np.full((rows * (kh + 1) + 1, columns * (kw + 1) + 1, 3), 255, np.uint8)
  for n in range(count):
    kernel = kernels[..., n].astype(np.float64)
    low, high = kernel.min(), kernel.max()
    scaled = (kernel - low) / (high - low) if high > low else np.zeros_like(kernel)
    row, column = divmod(n, columns)
    y, x = 1 + row * (kh + 1), 1 + column * (kw + 1)
    grid[y:y + kh, x:x + kw] = np.round(scaled * 255).astype(np.uint8)
  return grid.repeat(zoom, axis=0).repeat(zoom, axis=1)


def _drop_lines_after(path: str, step: int) -> None:
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        if line.endswith('\n') and json.loads(line)['step'] <= step:
          kept.append(line)
      except ValueError:  # a line cut off by a kill
        pass
  write_atomically(path, ''.join(kept))


class MetricWriter:
  """Appends {'step': s, **values} lines to DIR/metrics.jsonl and TensorBoard scalars.

  A run that starts at `first_step` (its checkpoint's) first drops the lines of later steps
  from metrics.jsonl, and a cut-off last line: a run killed after its last checkpoint wrote
  them, and the resumed run writes those steps again.
  """

  def __init__(self, workdir: str, enabled: bool = True, first_step: int = 0):
    self.workdir = workdir
    self.enabled = enabled
    self._summary = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, 'metrics.jsonl')
    _drop_lines_after(path, first_step)
    self._jsonl = open(path, 'a')
    try:
      from alexnet_jax.tensorflow_cpu import tf
    except ImportError:
      logging.warning('TensorFlow is not installed: no TensorBoard event files; '
                      'metrics.jsonl has every value.')
    else:
      from tensorflow.core.framework import summary_pb2
      self._tf = tf
      self._plugin = {name: summary_pb2.SummaryMetadata(
          plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=name))
          for name in ('scalars', 'images')}
      self._summary = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))

  def write_scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    values = {name: value if isinstance(value, int) else float(value)
              for name, value in values.items()}
    self._jsonl.write(json.dumps({'step': int(step), **values}) + '\n')
    self._jsonl.flush()
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        for name, value in values.items():
          self._tf.summary.write(name, self._tf.constant(value, self._tf.float32),
                                 metadata=self._plugin['scalars'])
      self._summary.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """TensorBoard image `name`, and DIR/<name>.png (the latest) as a file to look at."""
    if not self.enabled:
      return
    path = os.path.join(self.workdir, f'{name}.png')
    png = png_bytes(image)
    write_atomically(path, png)
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        # The image plugin's layout: [width, height, encoded image, ...] as strings.
        height, width = image.shape[:2]
        self._tf.summary.write(name, self._tf.constant([str(width), str(height), png]),
                               metadata=self._plugin['images'])
      self._summary.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self._summary is not None:
        self._summary.close()
