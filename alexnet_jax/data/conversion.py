"""Converts a data set once to its `size` x `size` centre squares, as the paper stored ImageNet.

Every epoch decodes every training image again. ImageNet's are JPEGs of about 500x375, and
decoding and shrinking them is most of the input pipeline's work; converted, each is the
256x256 square `views.square_image` would cut from it anyway (shorter side to 256,
centre crop), so later epochs decode a third of the pixels and skip the resize altogether,
and the device cuts the training crops (`input_pipeline.crops_on_device`).

    alexnet-resize-dataset --dataset=imagenet2012 --manual_dir=/data/tars \\
        --output_dir=/data/imagenet2012_256
        (or python -m alexnet_jax.commands.resize_dataset ...)

then train with `--config.dataset=/data/imagenet2012_256` (the command prints the line). Any
`--dataset` that `alexnet_jax.data.sources.open_source` accepts works. `--image_format` says how
the squares are stored:

    jpeg     JPEG at `--quality` (95): 46 kB a square in benchmarks/input_pipeline.py, so
             about 61 GB for ImageNet at 256; each epoch decodes them
    pixels   uint8 pixels: exact, and read with no decoding at all, but size x size x 3 bytes
             an image (262 GB for ImageNet at 256). The command says the size it will write
             and refuses to start where the disk has less free space.

The output is a TFDS data set directory:

    NAME-SPLIT.tfrecord-0000K-of-0000N   shard K: the images of source examples
                                         [K * examples_per_shard, (K + 1) * examples_per_shard)
                                         that decode, in source order
    conversion.json                      the source, settings and each shard's length and skips
    dataset_info.json, features.json,    TFDS metadata, written once every shard is complete
    label.labels.txt

It is resumable: a shard is written under a temporary name and renamed when complete, so
rerunning the same command after an interruption writes only the missing shards. The TFDS
metadata comes last, so an unfinished directory never opens as a data set.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from absl import logging

from alexnet_jax import files
from alexnet_jax.data.sources import FolderSource, Source
from alexnet_jax.data.tensorflow_cpu import tf, without_autograph
from alexnet_jax.data.views import squares
from alexnet_jax.errors import DataError

RECORD_FILE = 'conversion.json'
_FORMAT = 2  # bump when the record or the shards change meaning (2: area-averaged shrinking)
IMAGE_FORMATS = ('jpeg', 'pixels')
# TFRecord's framing of each record: its length and two CRCs.
_RECORD_FRAMING_BYTES = 16


def read_record(dataset_dir: str) -> dict | None:
  """The conversion record of `dataset_dir`, None where it has none.

  Holds the settings (source, size, image_format, quality, fast_decode, examples_per_shard)
  and per split the source's fingerprint and, per shard, its number of examples and of
  undecodable images skipped (None until the shard is complete).
  """
  path = files.path(dataset_dir) / RECORD_FILE
  if not path.exists():
    return None
  # Records from before the pixel format have no image_format: theirs are JPEG.
  return {'image_format': 'jpeg', **files.read_json(path)}


def _write_record(dataset_dir: str, record: dict) -> None:
  """Replaces the record atomically: a kill never leaves it half written."""
  files.write_json(files.path(dataset_dir) / RECORD_FILE, record)


def _open_record(output_dir, settings: dict) -> dict:
  """The earlier run's record where its settings are these, a new one for an empty directory."""
  record = read_record(output_dir)
  if record is None:
    if output_dir.is_dir() and any(output_dir.iterdir()):
      raise DataError(f'{output_dir} is not empty and holds no {RECORD_FILE}: convert into a '
                       f'new or empty directory.')
    return {**settings, 'splits': {}}
  differences = [f'{key} {record.get(key)!r} (this run: {value!r})'
                 for key, value in settings.items() if record.get(key) != value]
  if differences:
    raise DataError(f'{output_dir} was converted with {"; ".join(differences)}. Rerun with '
                     f'the same settings to resume, or convert into a new directory.')
  return record


def _add_splits(source: Source, record: dict, splits: Sequence[str], output_dir: str) -> None:
  """Enters the splits not yet in `record`; fails on a recorded one the source has changed."""
  for split in splits:
    num_examples = source.num_examples(split)  # the source's own error for an unknown split
    if not num_examples:
      raise DataError(f'split {split!r} of {source.name} has no examples to convert.')
    fingerprint = source.fingerprint(split)
    entry = record['splits'].get(split)
    if entry is None:
      num_shards = math.ceil(num_examples / record['examples_per_shard'])
      record['splits'][split] = {'fingerprint': fingerprint, 'num_examples': num_examples,
                                 'shard_lengths': [None] * num_shards,
                                 'skipped': [None] * num_shards}
    elif entry['fingerprint'] != fingerprint:
      raise DataError(f'split {split!r} of {source.name} has changed since {output_dir} was '
                       f'converted from it (its fingerprint differs); convert into a new '
                       f'directory.')


def _dataset_name(source: Source, size: int, image_format: str) -> str:
  """A TFDS data set name (a letter, then word characters) saying what was converted."""
  # A folder's own name; a TFDS data set's name without its config and version.
  base = (os.path.basename(source.root) if isinstance(source, FolderSource)
          else source.name.split('/')[0])
  prefix = 'resized' if image_format == 'jpeg' else image_format
  return re.sub(r'\W+', '_', f'{prefix}{size}_{base}')


def _features(source: Source, size: int, image_format: str) -> tfds.features.FeaturesDict:
  shape = (size, size, 3)
  image = (tfds.features.Image(shape=shape, encoding_format='jpeg') if image_format == 'jpeg'
           else tfds.features.Tensor(shape=shape, dtype=np.uint8,
                                     encoding=tfds.features.Encoding.BYTES))
  return tfds.features.FeaturesDict(
      {'image': image, 'label': tfds.features.ClassLabel(names=source.class_names)})


def _encoded_squares(source: Source, split: str, start: int, stop: int, size: int,
                     quality: int, fast_decode: bool, image_format: str) -> tf.data.Dataset:
  """(the centre square as JPEG bytes or uint8 pixels, label) of examples [start, stop), in
  order; examples that fail to decode are dropped."""

  @without_autograph
  def encode(example):
    image = example['image']
    if image_format == 'jpeg':
      image = tf.io.encode_jpeg(image, quality=quality)
    return image, example['label']

  dataset = squares(source, split, start, stop, size, fast_decode)
  return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def pixel_bytes(features: tfds.features.FeaturesDict, num_examples: int) -> int:
  """The bytes that `num_examples` pixel squares take in TFRecord shards: at most this (the
  largest label's), whatever the labels."""
  image = features['image']
  largest = features.serialize_example({'image': np.zeros(image.shape, np.uint8),
                                        'label': features['label'].num_classes - 1})
  return num_examples * (len(largest) + _RECORD_FRAMING_BYTES)


def in_bytes(count: int) -> str:
  """A byte count as people read it: 364.8 kB, 261.8 GB (powers of 1000, as disks are sold)."""
  for unit in ('B', 'kB', 'MB', 'GB'):
    if count < 1000:
      return f'{count:.1f} {unit}' if unit != 'B' else f'{count} B'
    count /= 1000
  return f'{count:.1f} TB'


def _check_space(output_dir, features, num_examples: int) -> None:
  """Logs what a pixel conversion of `num_examples` more images writes; before anything is
  written, refuses where the disk has less free space than that (a bucket has no limit)."""
  needed = pixel_bytes(features, num_examples)
  what = (f'{num_examples} images as {"x".join(map(str, features["image"].shape))} uint8 '
          f'pixels: {in_bytes(needed)}')
  if files.is_url(output_dir):
    logging.info('Writing %s into %s.', what, output_dir)
    return
  disk = next(path for path in (output_dir, *output_dir.parents) if path.exists())
  free = shutil.disk_usage(disk).free
  logging.info('Writing %s into %s (%s free).', what, output_dir, in_bytes(free))
  if free < needed:
    raise DataError(
        f'not enough space for the pixel conversion: it writes {what}, and {disk} has '
        f'{in_bytes(free)} free. Free space there, convert into a larger disk, or use '
        f'--image_format=jpeg (about a quarter of the size).')


def _shard_template(output_dir, name: str, split: str) -> tfds.core.ShardedFileTemplate:
  return tfds.core.ShardedFileTemplate(data_dir=output_dir, dataset_name=name, split=split,
                                       filetype_suffix='tfrecord')


def summary(record: dict) -> str:
  """One line per split: images stored and undecodable images skipped."""
  return '\n'.join(
      f'{split}: {sum(entry["shard_lengths"])} images, {sum(entry["skipped"])} skipped as '
      f'undecodable' for split, entry in record['splits'].items())


def convert(source: Source, output_dir: str, *, splits: Sequence[str], size: int = 256,
            quality: int = 95, examples_per_shard: int = 1024, fast_decode: bool = True,
            image_format: str = 'jpeg') -> str:
  """Writes `splits` of `source` as `size` x `size` squares (`image_format`: JPEG at
  `quality`, or uint8 pixels) to the TFDS directory `output_dir` and returns its absolute
  path, which `open_source` opens.

  Resumes an earlier conversion into `output_dir`, whose splits it completes too; fails where
  that one had other settings or the source has changed since.
  """
  if image_format not in IMAGE_FORMATS:
    raise DataError(f'unknown image format {image_format!r}: use one of {IMAGE_FORMATS}.')
  output_dir = files.path(output_dir)
  if files.is_url(output_dir):  # before anything is written: a missing bucket is one line
    files.check_writable_url(output_dir, 'the output directory', '--output_dir')
  settings = {'format': _FORMAT, 'source': source.name, 'size': size,
              'image_format': image_format,
              'quality': quality if image_format == 'jpeg' else None,
              'fast_decode': fast_decode, 'examples_per_shard': examples_per_shard}
  record = _open_record(output_dir, settings)
  # The metadata must list every split with shards in the directory: an earlier run's too.
  splits = list(dict.fromkeys([*record['splits'], *splits]))
  _add_splits(source, record, splits, output_dir)
  name = _dataset_name(source, size, image_format)
  features = _features(source, size, image_format)
  missing = _missing_shards(record, output_dir, name, splits)
  total = sum(stop - start for _, _, _, (start, stop) in missing)
  if image_format == 'pixels' and total:
    _check_space(output_dir, features, total)
  output_dir.mkdir(parents=True, exist_ok=True)
  _write_record(output_dir, record)
  info_path = output_dir / 'dataset_info.json'
  if missing and info_path.exists():
    info_path.unlink()  # it would declare the directory complete while shards are missing
  with tqdm.tqdm(total=total, unit='img', desc=f'Converting to {size}x{size}') as progress:
    for split, shard, path, (start, stop) in missing:
      encoded = _encoded_squares(source, split, start, stop, size, quality, fast_decode,
                                 image_format)
      length = _write_shard(path, encoded, features, progress)
      progress.update(stop - start - length)
      entry = record['splits'][split]
      entry['shard_lengths'][shard], entry['skipped'][shard] = length, stop - start - length
      _write_record(output_dir, record)
      if length < stop - start:
        logging.warning('%s shard %d: skipped %d image(s) that could not be decoded.', split,
                        shard, stop - start - length)
  _write_metadata(source, record, output_dir, name, features, splits)
  logging.info('Converted %s into %s:\n%s', source.name, output_dir, summary(record))
  return str(output_dir)


def _missing_shards(record: dict, output_dir, name: str, splits: Sequence[str]) -> list:
  """(split, shard index, shard path, (start, stop) of its source examples) of every shard
  not yet written."""
  missing = []
  for split in splits:
    entry = record['splits'][split]
    shard_lengths, per_shard = entry['shard_lengths'], record['examples_per_shard']
    template = _shard_template(output_dir, name, split)
    for shard, length in enumerate(shard_lengths):
      path = template.sharded_filepath(shard_index=shard, num_shards=len(shard_lengths))
      if length is None or not path.exists():
        examples = (shard * per_shard, min((shard + 1) * per_shard, entry['num_examples']))
        missing.append((split, shard, path, examples))
  return missing


def _write_shard(path, encoded: tf.data.Dataset, features: tfds.features.FeaturesDict,
                 progress: tqdm.tqdm) -> int:
  """Writes the (image, label) pairs of `encoded` as the shard at `path`; returns how many."""
  length = 0
  # TensorFlow writes the shard to a local file (its file system cannot be pointed at an
  # emulator, so gs:// goes through files' client), which then replaces `path`.
  with files.written_locally(path) as local_path, tf.io.TFRecordWriter(local_path) as writer:
    for image, label in encoded.as_numpy_iterator():
      # The Image feature stores bytes as given: each image is JPEG-encoded once only.
      writer.write(features.serialize_example({'image': image, 'label': label}))
      length += 1
      progress.update()
  return length


def _write_metadata(source: Source, record: dict, output_dir, name: str,
                    features: tfds.features.FeaturesDict, splits: Sequence[str]) -> None:
  """TFDS's metadata of the complete directory, which makes it open as a data set."""
  split_infos = []
  for split in splits:
    template = _shard_template(output_dir, name, split)
    shard_lengths = record['splits'][split]['shard_lengths']
    num_bytes = sum(template.sharded_filepath(shard_index=shard, num_shards=len(shard_lengths))
                    .stat().length for shard in range(len(shard_lengths)))
    split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=shard_lengths,
                                           num_bytes=num_bytes))
  stored = (f'JPEG quality {record["quality"]}' if record['image_format'] == 'jpeg'
            else 'uint8 pixels')
  # No check_data: it reads the first split's first example, and the shards were serialised
  # by these very features.
  tfds.folder_dataset.write_metadata(
      data_dir=output_dir, features=features, split_infos=split_infos, check_data=False,
      description=f'{source.name} as {record["size"]}x{record["size"]} centre squares, '
                  f'{stored}, written by alexnet_jax.data.conversion.',
      supervised_keys=('image', 'label'))
