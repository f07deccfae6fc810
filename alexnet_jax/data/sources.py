"""Where examples come from: TFDS data sets by name or directory, and plain image folders.

Every source hands out the encoded image bytes and integer label of a contiguous range of a
split's examples, in a fixed order, so that hosts can take disjoint ranges and the pipeline can
decode (and count undecodable images) itself; a data set stored as uint8 pixels (a pixel
conversion) hands out the pixels. Spellings of `dataset`:

    shapes                      the embedded generated data set (built on first use)
    fashion_mnist               TFDS's, prepared offline from Debian's files (data/fashion_mnist.py)
    imagenet2012, imagenette/320px, ...   any TFDS image-classification data set
    /path/to/name/1.0.0         a prepared TFDS directory (such as `alexnet_jax.data.conversion`
                                writes)
    folder:/path/to/root        root/<split>/<class>/<image>, JPEG/PNG/GIF/BMP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from alexnet_jax import files
from alexnet_jax.data import fashion_mnist
from alexnet_jax.data.tensorflow_cpu import tf, without_autograph
from alexnet_jax.errors import ConfigError, DataError, MissingDataError, in_one_line

FOLDER_PREFIX = 'folder:'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
# The tars TFDS's ImageNet builders read from manual_dir; they cannot be downloaded for the
# user (image-net.org requires an account), so a missing one is named before TFDS starts.
MANUAL_FILES = {
    'imagenet2012': ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'),
    'imagenet2012_subset': ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'),
}
# Offline, TFDS learns a split's size only by writing it, so preparing ImageNet (hours) shows a
# count without an ETA; told the sizes first, its progress bars show one. They are the bars'
# totals only: TFDS records the counts it actually writes.
KNOWN_SPLIT_SIZES = {'imagenet2012': {'train': 1_281_167, 'validation': 50_000}}
# Shards read at once and records taken from each in turn: TFDS's own defaults.
_INTERLEAVED_FILES, _INTERLEAVED_BLOCK = 16, 16


def host_range(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, stop) of the examples process `process_index` of `process_count` reads.

  Contiguous, disjoint and together exactly the split; sizes differ by at most one.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} is not in [0, {process_count})')
  return (num_examples * process_index // process_count,
          num_examples * (process_index + 1) // process_count)


class Source:
  """A data set's splits as (image bytes, label) in a fixed order."""

  name: str
  num_classes: int
  class_names: list[str]  # in label order
  cache_dir: str  # where files derived from the data (pixel statistics) are kept
  # (H, W, 3) where the data set declares that every image has it (a conversion), else None.
  image_shape: tuple[int, int, int] | None = None

  def num_examples(self, split: str) -> int:
    raise NotImplementedError

  def fingerprint(self, split: str) -> str:
    """Changes whenever the split's content may have changed; keys the derived caches."""
    raise NotImplementedError

  def read(self, split: str, start: int, stop: int, *, shuffle_files: bool = False,
           seed: int = 0) -> tf.data.Dataset:
    """Examples [start, stop) of `split` as {'image': bytes (or uint8 pixels), 'label': int64}.

    With `shuffle_files`, the files (TFDS shards or images) are read in one fixed order drawn
    from `seed`, the same on every iteration; the set of examples is the same. The training
    stream reshuffles each epoch itself, from seeds it can recompute on resume.
    """
    raise NotImplementedError

  def host_part(self, split: str, process_index: int, process_count: int) -> tuple[int, int]:
    """[start, stop) of the examples of `split` that process `process_index` reads
    (`host_range`)."""
    return host_range(self.num_examples(split), process_index, process_count)

  def check_split(self, split: str, splits) -> None:
    if split not in splits:
      raise DataError(f'{self.name} has no split {split!r}; its splits are {sorted(splits)}.')


class TfdsSource(Source):
  """A TFDS data set with `image` and `label` features, prepared on first use."""

  def __init__(self, builder: tfds.core.DatasetBuilder):
    self.builder = builder
    self.name = builder.info.full_name
    features = builder.info.features
    if 'image' not in features or 'label' not in features:
      raise DataError(f'{self.name} is not an image classification data set: it needs '
                       f'features "image" and "label", and has {sorted(features)}.')
    file_format = builder.info.file_format
    if file_format != tfds.core.file_adapters.FileFormat.TFRECORD:
      raise DataError(f'{self.name} is stored as {file_format.value}, and tf.data reads TFDS '
                       f'data sets stored as tfrecord (TFDS\'s default): prepare it again with '
                       f'file_format="tfrecord".')
    self.num_classes = features['label'].num_classes
    # TFDS names the classes of a ClassLabel without names by their numbers.
    self.class_names = list(features['label'].names)
    self.cache_dir = os.fspath(builder.data_dir)
    shape = tuple(features['image'].shape)
    if len(shape) == 3 and None not in shape and shape[-1] == 3:
      self.image_shape = shape
    # Encoded images are decoded by the pipeline, which counts those that fail; pixels
    # (a tfds.features.Tensor) are read by TFDS.
    self._decoders = ({'image': tfds.decode.SkipDecoding()}
                      if isinstance(features['image'], tfds.features.Image) else None)

  def _slice(self, split: str) -> tuple[str, int, int]:
    """`split` as (split name, first example, end): a name ('train'), or a TFDS slice of one
    ('train[:54000]', 'train[90%:]'), which carves a validation split from a training one."""
    name = split.partition('[')[0]
    self.check_split(name, self.builder.info.splits)
    try:
      instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(
          self.builder.info.splits)
    except (ValueError, AssertionError) as error:
      raise DataError(f'{split!r} is not a split of {self.name} nor a TFDS slice of one such '
                      f'as "{name}[:90%]" or "{name}[54000:]" ({in_one_line(error)}).') from None
    if len(instructions) != 1:
      raise DataError(f'{split!r} joins several slices; give one slice of one split, such as '
                      f'"{name}[:90%]".')
    size = self.builder.info.splits[name].num_examples
    instruction = instructions[0]
    return name, instruction.from_ or 0, size if instruction.to is None else instruction.to

  def num_examples(self, split: str) -> int:
    _, first, end = self._slice(split)
    return end - first

  def fingerprint(self, split: str) -> str:
    name, first, end = self._slice(split)
    info = self.builder.info.splits[name]
    whole = [self.name, info.num_examples, info.num_bytes, info.shard_lengths]
    return json.dumps(whole if split == name else [*whole, first, end])

  def records(self, split: str, start: int, stop: int, *, shuffle_files: bool = False,
              seed: int = 0) -> tf.data.Dataset:
    """The serialized examples that `read` parses, in its order."""
    name, first, _ = self._slice(split)
    # The shards are read here, from TFDS's own instructions (which shards, which records of
    # each) and parsed by TFDS's own features: as_dataset read a pixel conversion at about
    # three quarters of this rate (docs/performance.md).
    instructions = self.builder.info.splits[
        f'{name}[{first + start}:{first + stop}]'].file_instructions
    if shuffle_files:
      instructions = [instructions[i] for i in
                      np.random.default_rng(seed).permutation(len(instructions))]
    files = tf.data.Dataset.from_tensor_slices((
        [os.fspath(i.filename) for i in instructions],
        tf.constant([i.skip for i in instructions], tf.int64),
        tf.constant([i.take for i in instructions], tf.int64)))

    @without_autograph
    def shard_records(path, skip, take):
      return tf.data.TFRecordDataset(path).skip(skip).take(take)

    return files.interleave(
        shard_records, cycle_length=_INTERLEAVED_FILES, block_length=_INTERLEAVED_BLOCK,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def read(self, split, start, stop, *, shuffle_files=False, seed=0):
    features = self.builder.info.features

    @without_autograph
    def parse(record):
      example = features.deserialize_example(record, decoders=self._decoders)
      return {'image': example['image'], 'label': example['label']}

    return self.records(split, start, stop, shuffle_files=shuffle_files, seed=seed).map(
        parse, num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass
class FolderSource(Source):
  """Images in root/<split>/<class>/; classes are the sorted class folder names of all splits."""

  root: str

  def __post_init__(self):
    if not os.path.isdir(self.root):
      raise MissingDataError(f'image folder {self.root} does not exist; a folder data set is '
                              f'laid out as {self.root}/<split>/<class>/<image>.')
    self.name = FOLDER_PREFIX + self.root
    self.cache_dir = os.path.join(self.root, '.alexnet_jax')
    self.splits = sorted(d for d in os.listdir(self.root)
                         if not d.startswith('.') and os.path.isdir(os.path.join(self.root, d)))
    classes = {c for split in self.splits for c in self._class_dirs(split)}
    if not classes:
      raise DataError(f'image folder {self.root} has no <split>/<class>/ folders.')
    self.class_names = sorted(classes)
    self.num_classes = len(self.class_names)
    self._files = {}

  def _class_dirs(self, split):
    split_dir = os.path.join(self.root, split)
    return [c for c in os.listdir(split_dir)
            if not c.startswith('.') and os.path.isdir(os.path.join(split_dir, c))]

  def files(self, split: str) -> tuple[list[str], list[int]]:
    """The split's image paths, sorted by class then file name, and their labels."""
    self.check_split(split, self.splits)
    if split not in self._files:
      paths, labels, empty = [], [], []
      for label, name in enumerate(self.class_names):
        class_dir = os.path.join(self.root, split, name)
        names = sorted(f for f in os.listdir(class_dir) if f.lower().endswith(
            IMAGE_EXTENSIONS)) if os.path.isdir(class_dir) else []
        paths += [os.path.join(class_dir, f) for f in names]
        labels += [label] * len(names)
        if not names:
          empty.append(class_dir)
      if empty:
        # Classes are those of all splits, so such a class keeps an output that this split
        # never shows: usually a folder left empty or misnamed by mistake.
        logging.warning(
            'Image folder %s, split %r: %d of its %d classes have no images (%s): %s. The '
            'network keeps an output for each that this split never shows; add images, or '
            'remove the folder.', self.root, split, len(empty), self.num_classes,
            ' '.join(IMAGE_EXTENSIONS), ', '.join(
                path if os.path.isdir(path) else f'{path} (missing)' for path in empty))
      self._files[split] = paths, labels
    return self._files[split]

  def num_examples(self, split):
    return len(self.files(split)[0])

  def fingerprint(self, split):
    digest = hashlib.sha256()
    for path in self.files(split)[0]:
      stat = os.stat(path)
      digest.update(f'{os.path.relpath(path, self.root)}:{stat.st_size}:{stat.st_mtime_ns}\n'
                    .encode())
    return digest.hexdigest()

  def read(self, split, start, stop, *, shuffle_files=False, seed=0):
    paths, labels = self.files(split)
    dataset = tf.data.Dataset.from_tensor_slices(
        (paths[start:stop], tf.constant(labels[start:stop], tf.int64)))
    if shuffle_files:
      dataset = dataset.shuffle(stop - start, seed=seed, reshuffle_each_iteration=False)

    @without_autograph
    def read_file(path, label):
      return {'image': tf.io.read_file(path), 'label': label}

    return dataset.map(read_file, num_parallel_calls=tf.data.AUTOTUNE)


def _prepare(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
  """Builds the TFDS data set once (ImageNet from its tars, fashion_mnist from its IDX files,
  `shapes` from nothing)."""
  manual_dir = manual_dir or (fashion_mnist.MANUAL_DIR if builder.name == 'fashion_mnist' else
                              os.path.join(builder.data_dir_root, 'downloads', 'manual'))
  config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  if builder.name == 'fashion_mnist':
    missing = fashion_mnist.missing_files(manual_dir)
    if missing:
      raise MissingDataError(
          f'fashion_mnist is not prepared yet and preparing it needs its four IDX files in '
          f'{manual_dir} (missing: {", ".join(missing)}). Install them with '
          f'`{fashion_mnist.INSTALL}` (Debian, Ubuntu), or set --config.manual_dir to a '
          f'directory that holds them, and run again: the first run then writes the TFDS '
          f'files to {builder.data_dir}.')
  missing = [f for f in MANUAL_FILES.get(builder.name, ())
             if not os.path.exists(os.path.join(manual_dir, f))]
  if missing:
    raise MissingDataError(
        f'{builder.name} is not prepared yet and preparing it needs '
        f'{" and ".join(MANUAL_FILES[builder.name])} in {manual_dir} (missing: '
        f'{", ".join(missing)}). Download them from https://image-net.org/download-images, '
        f'put them in that directory or set --config.manual_dir to where they are, and run '
        f'again: the first run then writes the TFDS files to {builder.data_dir}.')
  announce_split_sizes(builder)
  builder.download_and_prepare(download_config=config)


def announce_split_sizes(builder: tfds.core.DatasetBuilder) -> None:
  """Gives an unprepared builder its splits' known sizes, for TFDS's progress bars."""
  sizes = KNOWN_SPLIT_SIZES.get(builder.name)
  if builder.name == 'shapes':
    from alexnet_jax.data.shapes_dataset import SPLIT_SIZES as sizes
  if sizes and not builder.info.splits:
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=[size], num_bytes=0,
                            filename_template=None) for name, size in sizes.items()]))


def open_source(dataset: str, data_dir: str | None = None,
                manual_dir: str | None = None) -> Source:
  """The source named by `dataset` (see the module docstring), prepared if it is TFDS."""
  if dataset.startswith(FOLDER_PREFIX):
    return FolderSource(os.path.abspath(os.path.expanduser(dataset[len(FOLDER_PREFIX):])))
  # A prepared directory may be a gs:// URL, which TFDS then reads through TensorFlow's
  # file system.
  if (files.path(dataset) / 'dataset_info.json').is_file():
    return TfdsSource(tfds.builder_from_directory(dataset))
  if files.path(dataset).is_dir():
    raise MissingDataError(
        f'{dataset} is a directory but not a prepared TFDS data set (it has no '
        f'dataset_info.json). If it is an unfinished `python -m alexnet_jax.data.conversion` '
        f'conversion, rerun that command to finish it; for a folder of images use '
        f'"folder:{dataset}".')
  if dataset == 'shapes':
    import alexnet_jax.data.shapes_dataset  # noqa: F401  (registers the builder with TFDS)
  try:
    with files.temp_dir_removed_after():
      if dataset == 'fashion_mnist':  # TFDS's builder, fed local files
        builder = fashion_mnist.FashionMnistFiles(data_dir=data_dir or None)
      else:
        builder = tfds.builder(dataset, data_dir=data_dir or None)
  except ValueError as error:  # DatasetNotFoundError, or a name TFDS cannot parse
    raise DataError(
        f'unknown data set {dataset!r}: use "shapes", a TFDS name such as "imagenet2012" or '
        f'"imagenette/320px", a prepared TFDS directory, or "folder:/path/to/root". '
        f'({in_one_line(error)})') from None
  if not builder.is_prepared():
    _prepare(builder, manual_dir)
  return TfdsSource(builder)


def open_configured(config) -> Source:
  """The source a training config names, checked against the config: its splits and number
  of classes. Reads the data set's description only, no examples."""
  try:
    source = open_source(config.dataset, config.data_dir or None, config.manual_dir or None)
  except DataError as error:
    raise ConfigError(f'config.dataset={config.dataset!r}: {error}') from None
  for field in ('train_split', 'eval_split'):
    try:
      source.num_examples(config[field])
    except DataError as error:
      raise ConfigError(f'config.{field}={config[field]!r}: {error}') from None
  if config.num_classes and config.num_classes != source.num_classes:
    raise ConfigError(
        f'config.num_classes={config.num_classes} but {source.name} has '
        f'{source.num_classes} classes: set it to {source.num_classes}, or 0 to follow the data.')
  return source
