"""`fashion_mnist` offline (alexnet_jax/data/fashion_mnist.py), from small IDX files the tests
write in the layout of Debian's dataset-fashion-mnist package; split slices, which carve a
validation split from the training one; grey images through the statistics and the
pipeline."""

import gzip
import re
import struct

import numpy as np
import pytest

from alexnet_jax.errors import DataError

SIZES = {'train': 30, 'test': 12}
CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot']


def idx_bytes(array: np.ndarray) -> bytes:
  """`array` (uint8) as an IDX file: zero, zero, type 8, rank, big-endian dims, data."""
  return bytes([0, 0, 8, array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape) + \
      array.tobytes()


def write_fashion_files(directory, seed=0):
  """The four gzipped IDX files, with SIZES examples; returns {split: (images, labels)}."""
  rng = np.random.default_rng(seed)
  directory.mkdir(parents=True, exist_ok=True)
  written = {}
  for split, prefix in (('train', 'train'), ('test', 't10k')):
    images = rng.integers(0, 256, (SIZES[split], 28, 28), dtype=np.uint8)
    labels = (np.arange(SIZES[split]) % 10).astype(np.uint8)
    (directory / f'{prefix}-images-idx3-ubyte.gz').write_bytes(gzip.compress(idx_bytes(images)))
    (directory / f'{prefix}-labels-idx1-ubyte.gz').write_bytes(gzip.compress(idx_bytes(labels)))
    written[split] = images, labels
  return written


@pytest.fixture(scope='module')
def fashion(tf, tmp_path_factory):
  """(source, the IDX files' contents, data_dir, manual_dir): prepared once."""
  from alexnet_jax.data import sources
  manual_dir = tmp_path_factory.mktemp('fashion_files')
  written = write_fashion_files(manual_dir)
  data_dir = tmp_path_factory.mktemp('fashion_tfds')
  source = sources.open_source('fashion_mnist', str(data_dir), str(manual_dir))
  return source, written, data_dir, manual_dir


def read_all(source, split):
  examples = list(source.read(split, 0, source.num_examples(split)).as_numpy_iterator())
  return examples


def test_read_idx_takes_the_shape_from_the_header_gzipped_or_not(tmp_path):
  from alexnet_jax.data.fashion_mnist import read_idx
  array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
  (tmp_path / 'plain').write_bytes(idx_bytes(array))
  (tmp_path / 'packed.gz').write_bytes(gzip.compress(idx_bytes(array)))
  for name in ('plain', 'packed.gz'):
    np.testing.assert_array_equal(read_idx(str(tmp_path / name)), array)
  (tmp_path / 'short').write_bytes(idx_bytes(array)[:-1])
  with pytest.raises(DataError, match=re.escape('holds 29 bytes of data where its header, '
                                                '(2, 3, 5), says 30')):
    read_idx(str(tmp_path / 'short'))
  (tmp_path / 'floats').write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack('>I', 1) + b'\0' * 4)
  with pytest.raises(DataError, match='is not an IDX file of unsigned bytes'):
    read_idx(str(tmp_path / 'floats'))


def test_fashion_mnist_is_prepared_from_the_files_as_tfds_lays_it_out(fashion):
  source, written, data_dir, _ = fashion
  assert source.name == 'fashion_mnist/3.0.1'
  assert source.class_names == CLASS_NAMES
  assert (data_dir / 'fashion_mnist' / '3.0.1' / 'dataset_info.json').is_file()
  import tensorflow_datasets as tfds
  for split, (images, labels) in written.items():
    assert source.num_examples(split) == SIZES[split]  # from the headers, not 60,000
    # TFDS's own reader (as_dataset) finds the same examples; TFDS shuffled their order.
    stored = tfds.builder_from_directory(str(data_dir / 'fashion_mnist' / '3.0.1'))
    read = list(stored.as_dataset(split=split).as_numpy_iterator())
    assert sorted((int(e['label']), e['image'].tobytes()) for e in read) == sorted(
        (int(label), image[..., None].tobytes()) for image, label in zip(images, labels))


def test_grey_images_decode_to_three_equal_channels(fashion):
  from alexnet_jax.data.views import squares
  source, written, _, _ = fashion
  originals = {image.tobytes(): label for image, label in zip(*written['test'])}
  decoded = list(squares(source, 'test', 0, SIZES['test'], 28, True).as_numpy_iterator())
  assert len(decoded) == SIZES['test']
  for example in decoded:
    image = example['image']
    assert image.shape == (28, 28, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert originals[image[..., 0].tobytes()] == example['label']


def test_grey_statistics_give_brightness_lighting_and_a_finite_scale(fashion, tmp_path):
  """Equal channels make the RGB covariance rank one: one eigenvalue, the channels'
  variance times 3, along (1, 1, 1); the other two exactly zero, so that the lighting offset
  is grey, and the per-channel scale is one over the channels' common deviation."""
  from alexnet_jax.data import pixel_stats
  from alexnet_jax.model.normalization import Normalization
  source, written, _, _ = fashion
  stats = pixel_stats.load_or_compute(source, 'train', 28, cache_dir=str(tmp_path))
  grey = written['train'][0].astype(np.float64) / 255
  np.testing.assert_allclose(stats.mean_image[..., 0], 255 * grey.mean(0), rtol=1e-5)
  variance = grey.var()
  np.testing.assert_allclose(stats.rgb_eigenvalues[0], 3 * variance, rtol=1e-4)
  assert stats.rgb_eigenvalues[1] == stats.rgb_eigenvalues[2] == 0
  np.testing.assert_allclose(np.abs(stats.rgb_eigenvectors[:, 0]), 1 / np.sqrt(3), rtol=1e-5)
  offset = (stats.rgb_eigenvectors * (np.array([0.3, -2.0, 5.0]) * stats.rgb_eigenvalues)).sum(1)
  np.testing.assert_allclose(offset, offset[0], rtol=1e-5)
  scale = Normalization.from_stats(stats, 'per_pixel', normalize_std=True).pixel_scale
  np.testing.assert_allclose(scale, 1 / (255 * np.sqrt(variance)), rtol=1e-4)


def test_a_channel_that_never_varies_gets_a_finite_scale():
  from alexnet_jax.data.pixel_stats import PixelSums
  from alexnet_jax.model.normalization import Normalization
  sums = PixelSums.zeros(2)
  images = np.zeros((4, 2, 2, 3), np.uint8)
  images[..., 0] = np.arange(4)[:, None, None] * 60  # red varies; green and blue are 0
  sums.add(images)
  scale = Normalization.from_stats(sums.stats(), 'per_pixel', normalize_std=True).pixel_scale
  assert np.isfinite(scale).all() and scale[1] == scale[2] == 1
  np.testing.assert_allclose(scale[0], 1 / np.std(np.arange(4) * 60.0), rtol=1e-5)


def test_a_slice_of_a_split_reads_its_part_and_the_parts_make_the_split(fashion):
  source, _, _, _ = fashion
  whole = read_all(source, 'train')
  assert source.num_examples('train[:24]') == 24
  assert source.num_examples('train[80%:]') == 6
  parts = read_all(source, 'train[:24]') + read_all(source, 'train[80%:]')
  assert [e['image'] for e in parts] == [e['image'] for e in whole]
  assert [e['image'] for e in source.read('train[24:]', 2, 4).as_numpy_iterator()] == \
      [e['image'] for e in whole[26:28]]
  assert source.fingerprint('train[:24]') != source.fingerprint('train[24:]')
  with pytest.raises(DataError, match=r"fashion_mnist/3.0.1 has no split 'trian'"):
    source.num_examples('trian[:10]')
  with pytest.raises(DataError, match=r"joins several slices"):
    source.num_examples('train[:10]+test')
  with pytest.raises(DataError, match=r"is not a split of fashion_mnist/3.0.1 nor a TFDS slice"):
    source.num_examples('train[:ten]')


def test_missing_files_are_named_with_the_package_that_installs_them(tf, tmp_path):
  from alexnet_jax.data import sources
  from alexnet_jax.errors import MissingDataError
  (tmp_path / 'files').mkdir()
  with pytest.raises(MissingDataError) as raised:
    sources.open_source('fashion_mnist', str(tmp_path / 'tfds'), str(tmp_path / 'files'))
  message = str(raised.value)
  assert message.startswith(
      f'fashion_mnist is not prepared yet and preparing it needs its four IDX files in '
      f'{tmp_path / "files"} (missing: train-images-idx3-ubyte.gz, ')
  assert '`sudo apt-get install dataset-fashion-mnist`' in message
  assert '\n' not in message


def test_without_manual_dir_the_debian_directory_is_searched(tf, tmp_path, monkeypatch):
  from alexnet_jax.data import fashion_mnist, sources
  from alexnet_jax.errors import MissingDataError
  monkeypatch.setattr(fashion_mnist, 'MANUAL_DIR', str(tmp_path / 'debian'))
  with pytest.raises(MissingDataError, match=re.escape(f'four IDX files in {tmp_path}/debian ')):
    sources.open_source('fashion_mnist', str(tmp_path / 'tfds'))
  write_fashion_files(tmp_path / 'debian')
  assert sources.open_source('fashion_mnist', str(tmp_path / 'tfds')).num_examples('test') == 12
