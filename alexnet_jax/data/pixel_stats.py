"""The training split's pixel statistics: the paper's mean image and its RGB PCA for lighting.

One streaming pass over the split's `resize_size` squares (decoded exactly as training
decodes them) sums the images and the RGB outer products; the result is cached next to the
data, keyed by data set, split, size, decoding and a fingerprint of the split's files, and
recomputed (with a log line saying why) when any of them no longer matches. With several
processes each sums its own part of the split and the sums are added across processes.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from alexnet_jax import files
from alexnet_jax.data.tensorflow_cpu import tf
from alexnet_jax.data.views import squares
from alexnet_jax.errors import DataError

_FORMAT = 2  # bump when the cache's content changes meaning (2: area-averaged shrinking)


@dataclasses.dataclass(frozen=True)
class PixelStats:
  """Mean image (size, size, 3) in 0..255 and the eigen-decomposition of the RGB covariance.

  The covariance is of pixel values scaled to [0, 1], the convention of the ImageNet values
  in ALEXNET.md (fb.resnet.torch): the paper does not give a scale, and on 0..255 values the
  lighting offsets would be 255 times larger, far beyond the pixel range.
  """
  mean_image: np.ndarray
  rgb_eigenvalues: np.ndarray  # (3,), descending
  rgb_eigenvectors: np.ndarray  # (3, 3), one eigenvector per column
  num_examples: int


@dataclasses.dataclass
class PixelSums:
  """Running sums over uint8 (size, size, 3) images, in float64 so that millions add exactly
  enough (a float32 sum of 1.28M ImageNet images would lose the last digits)."""
  image_sum: np.ndarray
  rgb_outer_sum: np.ndarray  # sum over all pixels of x x^T, x in [0, 1]
  count: int = 0

  @classmethod
  def zeros(cls, size: int) -> PixelSums:
    return cls(np.zeros((size, size, 3)), np.zeros((3, 3)))

  def add(self, images: np.ndarray) -> None:
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    self.image_sum += images.sum(axis=0, dtype=np.float64)
    self.rgb_outer_sum += pixels.T @ pixels
    self.count += len(images)

  def __add__(self, other: PixelSums) -> PixelSums:
    return PixelSums(self.image_sum + other.image_sum,
                     self.rgb_outer_sum + other.rgb_outer_sum, self.count + other.count)

  def stats(self) -> PixelStats:
    if not self.count:
      raise DataError('no image of the split could be decoded: there is no mean to take.')
    mean_image = self.image_sum / self.count
    num_pixels = self.count * mean_image.shape[0] * mean_image.shape[1]
    rgb_mean = mean_image.reshape(-1, 3).mean(axis=0) / 255.0
    covariance = self.rgb_outer_sum / num_pixels - np.outer(rgb_mean, rgb_mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    # A grey data set's three channels are equal: the covariance has rank one, and the two
    # zero eigenvalues come out as rounding noise of either sign. Clipped to zero, the
    # lighting offset is along (1, 1, 1) only, a change of brightness that keeps grey grey.
    eigenvalues = np.maximum(eigenvalues, 0.0)
    order = np.argsort(eigenvalues)[::-1]
    return PixelStats(mean_image.astype(np.float32), eigenvalues[order].astype(np.float32),
                      eigenvectors[:, order].astype(np.float32), self.count)


def sum_pixels(source, split: str, start: int, stop: int, resize_size: int, fast_decode: bool,
               batch_size: int = 64) -> PixelSums:
  """Sums examples [start, stop) of `split`; undecodable images are left out, as in training."""
  dataset = squares(source, split, start, stop, resize_size, fast_decode)
  dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  sums = PixelSums.zeros(resize_size)
  progress = tqdm(dataset.as_numpy_iterator(), total=math.ceil((stop - start) / batch_size),
                  desc=f'mean image of {source.name} {split}', unit='batch')
  for batch in progress:
    sums.add(batch['image'])
  return sums


def gather_sums(sums: PixelSums) -> PixelSums:
  """Every process's sums added up, in float64 throughout. JAX's arrays default to float32,
  which would drop the digits the float64 sums keep, so each process's float64 bits travel
  as uint32 pairs and are added as float64 here."""
  bits = {name: np.ascontiguousarray(getattr(sums, name), np.float64).view(np.uint32)
          for name in ('image_sum', 'rgb_outer_sum')}
  gathered = multihost_utils.process_allgather({**bits, 'count': np.array(sums.count)})
  added = {name: np.ascontiguousarray(gathered[name]).view(np.float64).sum(0) for name in bits}
  return PixelSums(added['image_sum'], added['rgb_outer_sum'], int(gathered['count'].sum()))


def cache_key(source, split: str, resize_size: int, fast_decode: bool) -> dict:
  return {'format': _FORMAT, 'dataset': source.name, 'split': split,
          'resize_size': resize_size, 'fast_decode': fast_decode,
          'num_examples': source.num_examples(split), 'fingerprint': source.fingerprint(split)}


def cache_path(cache_dir: str, split: str, resize_size: int):
  return files.path(cache_dir) / f'pixel_stats-{split}-{resize_size}.npz'


def _load(path, key: dict) -> PixelStats | None:
  """The cached statistics if they exist and were computed for `key`; None (and why) if not."""
  if not path.exists():
    return None
  try:
    cached = files.read_npz(path)
    cached_key = json.loads(str(cached['key']))
    stats = PixelStats(cached['mean_image'], cached['rgb_eigenvalues'],
                       cached['rgb_eigenvectors'], int(cached['num_examples']))
  except (OSError, ValueError, KeyError) as error:
    logging.warning('Pixel statistics cache %s is unreadable (%s); recomputing.', path, error)
    return None
  changed = [f'{field} was {cached_key.get(field)!r}, now {value!r}'
             for field, value in key.items() if cached_key.get(field) != value]
  if changed:
    logging.warning('Pixel statistics cache %s is stale (%s); recomputing.', path,
                    '; '.join(changed))
    return None
  return stats


def _save(path, key: dict, stats: PixelStats) -> None:
  """Replaced whole, so a killed run never leaves a half-written cache."""
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_npz(path, key=json.dumps(key), **dataclasses.asdict(stats))


def load_or_compute(source, split: str, resize_size: int, *, fast_decode: bool = True,
                    cache_dir: str | None = None, process_index: int = 0,
                    process_count: int = 1) -> PixelStats:
  """The split's statistics, from the cache when it matches, else computed and cached."""

  key = cache_key(source, split, resize_size, fast_decode)
  path = cache_path(cache_dir or source.cache_dir, split, resize_size)
  stats = _load(path, key)
  if process_count > 1:
    # Every process must take the same branch, or the sum across processes waits forever.
    use_cache = multihost_utils.broadcast_one_to_all(np.array(stats is not None))
    if not use_cache:
      stats = None
    elif stats is None:
      raise FileNotFoundError(f'process 0 found the pixel statistics cache {path} but process '
                              f'{process_index} did not: put the cache on a shared filesystem '
                              f'or set --config.mean_cache_dir to one.')
  if stats is not None:
    return stats
  start, stop = source.host_part(split, process_index, process_count)
  sums = sum_pixels(source, split, start, stop, resize_size, fast_decode)
  if process_count > 1:
    sums = gather_sums(sums)
  stats = sums.stats()
  if stats.num_examples < source.num_examples(split):
    logging.warning('%d image(s) of %s %s could not be decoded and are not in the mean.',
                    source.num_examples(split) - stats.num_examples, source.name, split)
  if process_index == 0:
    _save(path, key, stats)
    logging.info('Pixel statistics of %s %s (%d images) cached in %s.', source.name, split,
                 stats.num_examples, path)
  return stats
