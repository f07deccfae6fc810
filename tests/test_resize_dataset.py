"""The one-time conversion to centre squares: exact content, resuming, and the command line, on
a small generated image folder."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

SIZE, CROP = 32, 28
EXAMPLES_PER_SHARD = 4
CLASSES = ('ant', 'bee', 'cat')
SPLIT_SIZES = {'train': 14, 'validation': 3}  # decodable images
# Train: 15 examples with the corrupt one, so shards of 4, 4, 4 and 3.
TRAIN_SHARDS = 4
# Mean absolute difference, in levels, between a stored square (JPEG quality 95, chroma
# subsampled, of 32x32 pixels in strong colours) and `square_image` of the original. Measured
# over these images: 0.8 (the grayscale one) to 2.4; two different images differ by 40 or more.
JPEG_BOUND = 3.5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smooth_image(rng, height, width):
  """A low-frequency colour field: JPEG keeps it well, so squares can be compared closely."""
  from PIL import Image
  small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """root/<split>/<class>/<file>: JPEGs from 40 to 90 pixels, landscape and portrait, one of
  them grayscale, an RGBA PNG, and a corrupt JPEG that sorts last in the first class, so that
  the examples after it move up by one in the converted split."""
  from PIL import Image
  root = tmp_path_factory.mktemp('folder')
  rng = np.random.default_rng(0)
  for split, count in SPLIT_SIZES.items():
    for n in range(count):
      short, long = sorted(rng.integers(40, 91, 2))
      height, width = (short, long) if n % 2 else (long, short)
      class_dir = root / split / CLASSES[n % len(CLASSES)]
      class_dir.mkdir(parents=True, exist_ok=True)
      image = Image.fromarray(smooth_image(rng, height, width))
      if split == 'train' and n == 4:
        image.convert('L').save(class_dir / f'{n:02d}.jpg', quality=95)
      elif split == 'train' and n == 5:
        image.convert('RGBA').save(class_dir / f'{n:02d}.png')
      else:
        image.save(class_dir / f'{n:02d}.jpg', quality=95)
  (root / 'train' / 'ant' / 'zz_corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
  return root


@pytest.fixture(scope='module')
def source(tf, folder):
  from alexnet_jax.data import sources
  return sources.open_source(f'folder:{folder}')


@pytest.fixture(scope='module')
def converted(tmp_path_factory, source):
  """A complete conversion of both splits: the reference the other tests compare with."""
  from alexnet_jax.data import conversion
  return conversion.convert(
      source, str(tmp_path_factory.mktemp('converted')), splits=['train', 'validation'],
      size=SIZE, examples_per_shard=EXAMPLES_PER_SHARD)


def stored_examples(path, split):
  """[(JPEG bytes, label)] of a converted split, in stored order."""
  from alexnet_jax.data import sources
  dataset = sources.open_source(path)
  examples = dataset.read(split, 0, dataset.num_examples(split)).as_numpy_iterator()
  return [(ex['image'], int(ex['label'])) for ex in examples]


def shard_stats(path):
  """{file name: (mtime_ns, inode)} of the shard files in a converted directory."""
  stats = {name: os.stat(os.path.join(path, name)) for name in os.listdir(path)
           if '.tfrecord-' in name and not name.startswith('.')}
  return {name: (stat.st_mtime_ns, stat.st_ino) for name, stat in stats.items()}


def test_converted_splits_hold_the_decodable_squares_in_source_order(tf, source, converted):
  from alexnet_jax.data import views
  from alexnet_jax.data import conversion
  for split, size in SPLIT_SIZES.items():
    paths, labels = source.files(split)
    expected = []  # (square, label) of each decodable source example, in source order
    for path, label in zip(paths, labels):
      if not path.endswith('zz_corrupt.jpg'):
        expected.append((views.square_image(tf.io.read_file(path), SIZE, True).numpy(),
                         label))
    stored = stored_examples(converted, split)
    assert len(stored) == len(expected) == size
    assert [label for _, label in stored] == [label for _, label in expected]
    for (jpeg, _), (square, _) in zip(stored, expected):
      image = tf.io.decode_jpeg(jpeg).numpy()
      assert image.shape == (SIZE, SIZE, 3)
      assert np.abs(image.astype(np.float64) - square).mean() < JPEG_BOUND
  record = conversion.read_record(converted)
  assert record['splits']['train']['shard_lengths'] == [4, 3, 4, 3]  # ant has 5 + the corrupt
  assert record['splits']['train']['skipped'] == [0, 1, 0, 0]
  assert record['splits']['validation']['skipped'] == [0]


def test_converted_directory_feeds_the_input_pipeline(tf, converted):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import sources
  dataset = sources.open_source(converted)
  assert dataset.num_classes == len(CLASSES)
  assert dataset.builder.info.features['label'].names == list(CLASSES)
  stored = [(tf.io.decode_jpeg(jpeg).numpy(), label)
            for jpeg, label in stored_examples(converted, 'train')]
  settings = {'batch_size': 8, 'image_size': CROP, 'resize_size': SIZE}
  batches = input_pipeline.eval_batches(dataset, 'train', **settings)
  numbered = input_pipeline.eval_dataset(dataset, 'train', **settings).as_numpy_iterator()
  examples = [(image, label, index) for batch, with_index in zip(batches, numbered, strict=True)
              for image, label, index, mask in zip(batch['image'], batch['label'],
                                                   with_index['index'], batch['mask']) if mask]
  assert batches.skipped == 0
  assert [index for _, _, index in examples] == list(range(SPLIT_SIZES['train']))
  margin = (SIZE - CROP) // 2
  for (image, label, _), (square, stored_label) in zip(examples, stored):
    assert label == stored_label
    np.testing.assert_array_equal(image, square[margin:margin + CROP, margin:margin + CROP])

  train = input_pipeline.train_batches(dataset, 'train', batch_size=8, image_size=CROP,
                                       resize_size=SIZE, seed=0)
  batch = next(train)
  assert train.skipped == 0
  # Whole squares: the device cuts the crops (tests/test_square_sources.py).
  for image, label in zip(batch['image'], batch['label']):
    assert any(np.array_equal(image, square) and label == stored_label
               for square, stored_label in stored)


class KilledAfterOneImage:
  """Stands in for a shard's dataset: yields one image, then is interrupted like a killed run."""

  def __init__(self, dataset):
    self.dataset = dataset

  def as_numpy_iterator(self):
    iterator = self.dataset.as_numpy_iterator()
    yield next(iterator)
    raise KeyboardInterrupt


def convert_killed_in_shard(source, output_dir, shard, monkeypatch):
  """Runs the conversion of both splits and kills it while it writes train shard `shard`."""
  from alexnet_jax.data import conversion
  from alexnet_jax.data import sources
  encoded_squares = conversion._encoded_squares

  def killed(source, split, start, stop, *args):
    dataset = encoded_squares(source, split, start, stop, *args)
    if split == 'train' and start == shard * EXAMPLES_PER_SHARD:
      return KilledAfterOneImage(dataset)
    return dataset

  monkeypatch.setattr(conversion, '_encoded_squares', killed)
  with pytest.raises(KeyboardInterrupt):
    conversion.convert(source, output_dir, splits=['train', 'validation'], size=SIZE,
                           examples_per_shard=EXAMPLES_PER_SHARD)
  monkeypatch.undo()
  assert not os.path.exists(os.path.join(output_dir, 'dataset_info.json'))
  with pytest.raises(FileNotFoundError, match='not a prepared TFDS data set.*rerun that command'):
    sources.open_source(output_dir)


def test_an_interrupted_conversion_resumes_with_the_missing_shards(source, converted, tmp_path,
                                                                   monkeypatch):
  from alexnet_jax.data import conversion
  output_dir = str(tmp_path / 'resumed')
  convert_killed_in_shard(source, output_dir, 2, monkeypatch)
  completed = shard_stats(output_dir)
  names = [f'resized{SIZE}_{os.path.basename(source.root)}-train.tfrecord-'
           f'{k:05d}-of-{TRAIN_SHARDS:05d}' for k in range(TRAIN_SHARDS)]
  assert sorted(completed) == names[:2]
  assert os.path.exists(os.path.join(output_dir, f'.{names[2]}.tmp'))  # the partial shard

  conversion.convert(source, output_dir, splits=['train', 'validation'], size=SIZE,
                         examples_per_shard=EXAMPLES_PER_SHARD)
  resumed = shard_stats(output_dir)
  assert {name: resumed[name] for name in completed} == completed
  assert len(resumed) == TRAIN_SHARDS + 1
  assert not [name for name in os.listdir(output_dir) if name.endswith('.tmp')]
  for split in SPLIT_SIZES:
    assert stored_examples(output_dir, split) == stored_examples(converted, split)
  assert conversion.read_record(output_dir) == conversion.read_record(converted)


def test_a_lost_shard_is_rewritten_and_only_it(source, converted, tmp_path, monkeypatch):
  from alexnet_jax.data import conversion
  output_dir = str(tmp_path / 'copy')
  shutil.copytree(converted, output_dir)
  before = shard_stats(output_dir)
  lost = sorted(before)[1]
  os.remove(os.path.join(output_dir, lost))
  # Killed while rewriting it: the metadata of the complete directory must be gone by then.
  convert_killed_in_shard(source, output_dir, 1, monkeypatch)
  conversion.convert(source, output_dir, splits=['train'], size=SIZE,
                         examples_per_shard=EXAMPLES_PER_SHARD)
  after = shard_stats(output_dir)
  assert sorted(after) == sorted(before)
  assert {name: after[name] for name in after if name != lost} == {
      name: before[name] for name in before if name != lost}
  # `--splits=train` alone still completes and describes the validation split converted before.
  for split in SPLIT_SIZES:
    assert stored_examples(output_dir, split) == stored_examples(converted, split)


def test_converting_with_another_size_into_a_converted_directory_fails(source, converted,
                                                                        tmp_path):
  from alexnet_jax.data import conversion
  output_dir = str(tmp_path / 'copy')
  shutil.copytree(converted, output_dir)
  with pytest.raises(ValueError, match=rf'converted with size {SIZE} \(this run: 48\)'):
    conversion.convert(source, output_dir, splits=['train'], size=48,
                           examples_per_shard=EXAMPLES_PER_SHARD)
  assert sorted(os.listdir(output_dir)) == sorted(os.listdir(converted))


def test_an_unknown_split_fails_before_writing(source, tmp_path):
  from alexnet_jax.data import conversion
  with pytest.raises(ValueError, match=r"has no split 'test'"):
    conversion.convert(source, str(tmp_path / 'out'), splits=['train', 'test'], size=SIZE)
  assert not os.path.exists(tmp_path / 'out')


def test_command_line_converts_and_prints_the_config_override(folder, tmp_path):
  output_dir = tmp_path / 'cli'
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(
      [sys.executable, '-m', 'alexnet_jax.commands.resize_dataset', f'--dataset=folder:{folder}',
       f'--output_dir={output_dir}', f'--size={SIZE}',
       f'--examples_per_shard={EXAMPLES_PER_SHARD}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == [
      'train: 14 images, 1 skipped as undecodable',
      'validation: 3 images, 0 skipped as undecodable',
      f'To train on it: --config.dataset={output_dir}']
