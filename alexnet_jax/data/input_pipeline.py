"""tf.data pipelines: this host's part of a split, preprocessed as the paper does, in batches.

    train: read -> [cache] -> per epoch: shuffle from (seed, process, epoch) -> [skip to
           the resume position] -> number -> decode, 256 square, random crop, flip,
           lighting draw -> drop undecodable -> batch -> prefetch
           (from a source of 256 squares: decode, draw the crop, flip and lighting, and
           leave the crop and the flip to the device)
    eval:  read -> number -> decode, 256 square, centre crop or 10 crops -> drop undecodable
           -> pad to whole batches with masked examples -> batch -> prefetch

Batches hold the fields `alexnet_jax.model.batch` defines: uint8 images and what the device
needs to finish the pixels (`alexnet_jax.model.normalization`). Every example is numbered
('position' in the training stream, 'index' in the eval split) so that `ResumableBatches` can
count the images that could not be decoded from the gaps and say where to resume; it takes the
numbers off the batches.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator

import numpy as np
from absl import logging

from alexnet_jax.data import ops, views
from alexnet_jax.data.pixel_stats import PixelStats
from alexnet_jax.data.sources import Source
from alexnet_jax.data.tensorflow_cpu import dataset_options, tf, without_autograph
from alexnet_jax.model import normalization
from alexnet_jax.model import batch as batch_lib


def _typed(example: dict, fields: dict[str, batch_lib.Field]) -> dict:
  """The example as `fields` define it: exactly their names, cast to their dtypes."""
  return {name: tf.cast(example[name], field.dtype) for name, field in fields.items()}


def _check_crop_fits(image_size: int, resize_size: int) -> None:
  if image_size > resize_size:
    raise ValueError(f'image_size {image_size} is larger than resize_size {resize_size}: '
                     f'the crop must fit in the resized square.')


def crops_on_device(source: Source, resize_size: int) -> bool:
  """Whether training ships whole squares for the device to crop and mirror: where every
  image of the source is declared to be the `resize_size` square (a conversion). The host
  then only decodes; the device's crop is the host's, pixel for pixel."""
  return source.image_shape == (resize_size, resize_size, 3)


def train_dataset(source: Source, split: str, *, batch_size: int, image_size: int,
                  resize_size: int, seed: int, shuffle_buffer: int = 10_000,
                  fast_decode: bool = True, cache: bool = False,
                  lighting: PixelStats | None = None, lighting_std: float = 0.1,
                  process_index: int = 0, process_count: int = 1,
                  start_position: int = 0, crop_on_device: bool | None = None
                  ) -> tf.data.Dataset:
  """Endless training batches of `batch_size` (this host's share of the global batch).

  The stream is a function of `seed` and this process alone (`host_stream`). Each example's
  crop, mirror and lighting come from its position in the stream (`train_view`).
  `start_position` starts the stream there, as if that many examples had been consumed: a
  resumed run skips at most one epoch's encoded records and none of the decoding.
  `cache` keeps the encoded images of this host's part of the split in memory after the
  first epoch. `lighting` (the split's PixelStats) with `lighting_std` > 0 turns on the
  paper's PCA lighting noise. `crop_on_device` (default: `crops_on_device(source, ...)`)
  ships the decoded squares uncropped and unmirrored, with the same crop offsets and flags;
  only for sources of `resize_size` squares.
  """
  _check_crop_fits(image_size, resize_size)
  if crop_on_device is None:
    crop_on_device = crops_on_device(source, resize_size)
  elif crop_on_device and not crops_on_device(source, resize_size):
    raise ValueError(f'crop_on_device needs a source of {resize_size}x{resize_size} images; '
                     f'{source.name} declares {source.image_shape}.')
  if crop_on_device:
    logging.info('%s holds %dx%d squares: the host decodes them, the device cuts the crops.',
                 source.name, resize_size, resize_size)
  examples = host_stream(source, split, seed, shuffle_buffer=shuffle_buffer,
                         cache=cache, process_index=process_index,
                         process_count=process_count, start_position=start_position)
  view = train_view(stream_seed(seed, process_index), resize_size=resize_size,
                    image_size=image_size,
                    fast_decode=fast_decode, crop_on_device=crop_on_device,
                    lighting=lighting if lighting_std > 0 else None, lighting_std=lighting_std)
  return _batched(examples.map(view, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(),
                  batch_size, drop_remainder=True)


def stream_seed(seed: int, process_index: int) -> tf.Tensor:
  """The seed of a host's training stream, [seed, process]: each example's is drawn from it
  and the example's position (`ops.example_seed`), each epoch's shuffle from a split of it."""
  return tf.constant([seed, process_index], tf.int64)


def host_stream(source: Source, split: str, seed: int, *, shuffle_buffer: int,
                cache: bool, process_index: int, process_count: int,
                start_position: int) -> tf.data.Dataset:
  """(position, encoded example) of this host's endless stream, from `start_position`.

  Epoch e is this host's part of the split, read in a fixed seeded file order, then shuffled
  with a seed made from `stream_seed(seed, process_index)` and e.
  """
  start, stop = source.host_part(split, process_index, process_count)
  if stop == start:
    raise ValueError(f'process {process_index} of {process_count} has no {split} examples: '
                     f'the split has {stop} for {process_count} processes.')
  examples = source.read(split, start, stop, shuffle_files=True, seed=seed)
  if cache:
    examples = examples.cache()
  epoch_stream = tf.random.experimental.stateless_split(stream_seed(seed, process_index), 2)[1]

  @without_autograph
  def epoch(number):
    # One int64 from the epoch's seed pair (TF's fold_in keeps `number` as the pair's second
    # half, so the pair itself is not a scalar seed).
    shuffle_seed = tf.random.stateless_uniform(
        [], ops.example_seed(epoch_stream, number), minval=None, maxval=None, dtype=tf.int64)
    return examples.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)

  first_epoch, offset = divmod(start_position, stop - start)
  dataset = tf.data.Dataset.counter(first_epoch).flat_map(epoch).skip(offset)
  return dataset.enumerate(start=start_position)


def train_view(host_seed: tf.Tensor, *, resize_size: int, image_size: int,
               fast_decode: bool, crop_on_device: bool, lighting: PixelStats | None,
               lighting_std: float):
  """The function from (position, encoded example) to the typed training example: its crop
  (or with `crop_on_device`, its whole square), mirror and lighting offset, drawn from seeds
  of `host_seed` (`stream_seed`) and the position."""
  if lighting is not None:
    eigenvalues = tf.constant(lighting.rgb_eigenvalues)
    eigenvectors = tf.constant(lighting.rgb_eigenvectors)

  @without_autograph
  def view(position, example):
    crop_seed, flip_seed, lighting_seed = tf.unstack(tf.random.experimental.stateless_split(
        ops.example_seed(host_seed, position), 3))
    if crop_on_device:
      image = tf.ensure_shape(ops.decode_image(example['image']),
                              [resize_size, resize_size, 3])
      offset = ops.random_square_offset(resize_size, image_size, crop_seed)
      flipped = ops.random_flip_draw(flip_seed)
    else:
      image, offset = views.random_crop_view(example['image'], resize_size, image_size,
                                             crop_seed, fast_decode)
      image, flipped = ops.random_flip(image, flip_seed)
    if lighting is not None:
      rgb_offset = normalization.lighting_in_pixels(ops.pca_lighting(
          lighting_seed, eigenvalues, eigenvectors, lighting_std))
    else:
      rgb_offset = tf.zeros([3])
    return _typed({'image': image, 'label': example['label'], 'crop_offset': offset,
                   'flipped': flipped, 'lighting': rgb_offset, 'position': position},
                  batch_lib.TRAIN)

  return view


def _batched(dataset: tf.data.Dataset, batch_size: int,
             drop_remainder: bool = False) -> tf.data.Dataset:
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(dataset_options())


def eval_batch_count(num_examples: int, batch_size: int, process_count: int) -> int:
  """Batches every process yields: enough for the largest host's part, so all take the same
  number of steps (a collective step waits for every process)."""
  largest = math.ceil(num_examples / process_count)
  return math.ceil(largest / batch_size)


def eval_dataset(source: Source, split: str, *, batch_size: int, image_size: int,
                 resize_size: int, ten_crop: bool = False, fast_decode: bool = True,
                 process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
  """This host's part of `split`, each example once, then masked padding to whole batches.

  Centre crops (batch, H, W, 3), or with `ten_crop` the paper's ten views
  (batch, 10, H, W, 3). 'mask' is False for padding; 'index' is the example's index in the
  split (-1 for padding). Every process yields `eval_batch_count(...)` batches.
  """
  _check_crop_fits(image_size, resize_size)
  start, stop = source.host_part(split, process_index, process_count)
  num_batches = eval_batch_count(source.num_examples(split), batch_size, process_count)

  @without_autograph
  def preprocess(position, example):
    image = views.square_image(example['image'], resize_size, fast_decode)
    if ten_crop:
      image, offset, flipped = views.ten_crops(image, image_size)
    else:
      offset = ops.central_offset(image, image_size)
      image, flipped = ops.crop(image, offset, image_size), tf.constant(False)
    return _typed({'image': image, 'label': example['label'], 'crop_offset': offset,
                   'flipped': flipped, 'mask': True, 'index': position + start},
                  batch_lib.EVAL)

  dataset = source.read(split, start, stop).enumerate()
  dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
  padding = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype),
                                  dataset.element_spec)
  padding['index'] = tf.constant(-1, tf.int64)
  dataset = dataset.concatenate(tf.data.Dataset.from_tensors(padding).repeat())
  return _batched(dataset.take(num_batches * batch_size), batch_size)


class ResumableBatches:
  """Numpy batches of a pipeline, without their bookkeeping field, that know where the stream
  stands: the images that could not be decoded so far and the position to resume from.

  Examples carry consecutive numbers in the fields' bookkeeping field (from `first`; -1 marks
  padding), so every gap is an image that failed to decode. With `stop`, numbers missing at
  the end count too once the stream is exhausted. Each new skip is logged with the running
  total, which starts at `skipped` (a resumed run's count). With `epoch_size`, numbers are
  positions in a stream of epochs of that many examples, and the end of each epoch is logged
  with its skips and the step (from `first_step`, one per batch) at which it ended.
  """

  def __init__(self, dataset: tf.data.Dataset, fields: dict[str, batch_lib.Field],
               first: int = 0, stop: int | None = None, skipped: int = 0,
               epoch_size: int | None = None, first_step: int = 0, split_by_hosts: bool = False):
    self._batches = dataset.as_numpy_iterator()
    self._fields = fields
    self._next, self._stop = first, stop
    self.skipped = skipped
    self._epoch_size = epoch_size
    self._epoch_skips: collections.Counter[int] = collections.Counter()
    self._current_epoch = first // epoch_size if epoch_size else 0
    self._step = first_step
    self._whose = ' (this process\'s part)' if split_by_hosts else ''

  @property
  def next_position(self) -> int:
    """The number after the last example delivered (or skipped): where to resume."""
    return self._next

  def __iter__(self) -> Iterator[batch_lib.Batch]:
    return self

  def close(self) -> None:
    """Stops the pipeline's threads now. (Left to garbage collection at the end of a
    multi-process run, the training stream's teardown held the process for seconds.)"""
    self._batches = None

  def __next__(self) -> batch_lib.Batch:
    try:
      batch = next(self._batches)
    except StopIteration:
      if self._stop is not None:
        self._record(np.arange(self._next, self._stop))
        self._next = self._stop
      raise
    batch, numbers = batch_lib.split_off_bookkeeping(batch, self._fields)
    numbers = numbers[numbers >= 0]
    if numbers.size:
      # The stream is ordered: the numbers missing up to the last one were dropped.
      self._record(np.setdiff1d(np.arange(self._next, numbers[-1] + 1), numbers))
      self._next = int(numbers[-1]) + 1
    self._log_ended_epochs()
    self._step += 1
    return batch

  def _log_ended_epochs(self) -> None:
    """An epoch ends when an example of a later one is delivered, so every skip in it has
    been seen. (A resumed run counts the part of its first epoch it read.)"""
    if not self._epoch_size:
      return
    current = self._next // self._epoch_size
    for epoch in range(self._current_epoch, current):
      logging.info('Epoch %d of the training data%s ended at step %d: %d image(s) in it could '
                   'not be decoded and were skipped.', epoch + 1, self._whose, self._step,
                   self._epoch_skips.pop(epoch, 0))
    self._current_epoch = current

  def _record(self, missing: np.ndarray) -> None:
    if missing.size:
      self.skipped += missing.size
      if self._epoch_size:
        self._epoch_skips.update((missing // self._epoch_size).tolist())
      logging.warning('Skipped %d image(s) that could not be decoded (%d so far).',
                      missing.size, self.skipped)


def eval_batches(source: Source, split: str, *, process_index: int = 0,
                 process_count: int = 1, **kwargs) -> ResumableBatches:
  """`eval_dataset` as numpy batches whose `skipped` counts this host's undecodable images."""
  start, stop = source.host_part(split, process_index, process_count)
  dataset = eval_dataset(source, split, process_index=process_index,
                         process_count=process_count, **kwargs)
  return ResumableBatches(dataset, batch_lib.EVAL, first=start, stop=stop)


def train_batches(source: Source, split: str, *, start_position: int = 0, skipped: int = 0,
                  first_step: int = 0, process_index: int = 0, process_count: int = 1,
                  **kwargs) -> ResumableBatches:
  """`train_dataset` as numpy batches whose `skipped` counts undecodable images seen so far
  (from `skipped`, the count before `start_position`), whose `next_position` is where a
  resumed stream starts, and which log each epoch's skips (batch `first_step` + i is step
  i of the run)."""
  start, stop = source.host_part(split, process_index, process_count)
  dataset = train_dataset(source, split, start_position=start_position,
                          process_index=process_index, process_count=process_count, **kwargs)
  return ResumableBatches(dataset, batch_lib.TRAIN, first=start_position, skipped=skipped,
                          epoch_size=stop - start, first_step=first_step,
                          split_by_hosts=process_count > 1)
