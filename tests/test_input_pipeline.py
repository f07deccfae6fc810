"""The input pipeline: sources, host shards, padded evaluation, skipped images, pixel statistics
and the device half of preprocessing, each checked against numpy on a small generated folder."""

import io
import itertools
import logging
import os

import numpy as np
import pytest

RESIZE, CROP = 40, 32
CLASSES = ('ant', 'bee', 'cat')
SPLIT_SIZES = {'train': 13, 'validation': 11}  # divisible by neither 2 nor 3 hosts


def smooth_image(rng, height, width):
  """A low-frequency colour field: JPEG keeps it well, so crops can be compared closely."""
  from PIL import Image
  small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def write_image_folder(root, split_sizes, classes, sides, corrupt_class):
  """root/<split>/<class>/<n>.jpg: smooth JPEGs whose height and width are drawn from
  [sides[0], sides[1]), the classes taken in turn, plus one corrupt train JPEG in
  `corrupt_class` (which sorts last in it, so the decodable examples keep their indices
  before it)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, count in split_sizes.items():
    for n in range(count):
      height, width = rng.integers(*sides, 2)
      class_dir = root / split / classes[n % len(classes)]
      class_dir.mkdir(parents=True, exist_ok=True)
      Image.fromarray(smooth_image(rng, height, width)).save(class_dir / f'{n:02d}.jpg',
                                                             quality=95)
  (root / 'train' / corrupt_class / 'zz_corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
  return root


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """Images of varied sizes and orientations, and a corrupt one (`write_image_folder`)."""
  return write_image_folder(tmp_path_factory.mktemp('folder'), SPLIT_SIZES, CLASSES, (36, 90),
                            'cat')


@pytest.fixture(scope='module')
def source(tf, folder):
  from alexnet_jax.data import sources
  return sources.open_source(f'folder:{folder}')


def square_images(tf, source, split):
  """Every example's resize_size square, decoded one at a time: the numpy-side reference.
  None for an image that does not decode."""
  from alexnet_jax.data import views
  paths, labels = source.files(split)
  squares = []
  for path in paths:
    try:
      squares.append(views.square_image(tf.io.read_file(path), RESIZE, True).numpy())
    except tf.errors.InvalidArgumentError:
      squares.append(None)
  return squares, np.array(labels)


def with_bookkeeping(batches, dataset):
  """The batches a `ResumableBatches` yields, each with the bookkeeping field it took off
  ('index' or 'position') read back from `dataset`, a second build of the tf.data pipeline it
  wraps, which must hold exactly the same batches otherwise."""
  numbered = []
  for got, full in itertools.zip_longest(batches, dataset.as_numpy_iterator()):
    assert got is not None and full is not None, 'the two pipelines differ in length'
    (name,) = set(full) - set(got)
    assert name in ('index', 'position') and set(got) <= set(full)
    for field in got:
      np.testing.assert_array_equal(got[field], full[field], err_msg=field)
    numbered.append({**got, name: full[name]})
  return numbered


def numbered_eval_batches(source, split, **kwargs):
  """`eval_batches` and its batches with their 'index' (from `eval_dataset`)."""
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  batches = input_pipeline.eval_batches(source, split, **kwargs)
  return batches, with_bookkeeping(batches, input_pipeline.eval_dataset(source, split, **kwargs))


def numbered_train_batches(source, split, count, **kwargs):
  """`train_batches` and its first `count` batches with their 'position' (from
  `train_dataset`)."""
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  batches = input_pipeline.train_batches(source, split, **kwargs)
  dataset = input_pipeline.train_dataset(source, split, **kwargs).take(count)
  return batches, with_bookkeeping(itertools.islice(batches, count), dataset)


def test_folder_source_lists_classes_and_files_in_order(source):
  paths, labels = source.files('train')
  assert source.num_classes == 3 and source.class_names == list(CLASSES)
  assert source.num_examples('train') == SPLIT_SIZES['train'] + 1
  assert labels == sorted(labels)
  assert [os.path.basename(p) for p in paths[-2:]] == ['11.jpg', 'zz_corrupt.jpg']


@pytest.mark.parametrize('process_count', [2, 3])
def test_host_ranges_partition_every_split(source, process_count):
  from alexnet_jax.data.sources import host_range
  for split in SPLIT_SIZES:
    size = source.num_examples(split)
    ranges = [host_range(size, i, process_count) for i in range(process_count)]
    read = [list(source.read(split, start, stop).as_numpy_iterator()) for start, stop in ranges]
    images = [ex['image'] for host in read for ex in host]
    assert len(images) == size and len(set(images)) == size  # disjoint and complete
    everything = [ex['image'] for ex in source.read(split, 0, size).as_numpy_iterator()]
    assert images == everything  # in order: host i reads the i-th contiguous part
    assert max(map(len, read)) - min(map(len, read)) <= 1


def test_host_range_rejects_a_process_outside_the_count():
  pytest.importorskip('tensorflow_datasets')  # sources imports it
  from alexnet_jax.data.sources import host_range
  with pytest.raises(ValueError, match='process_index 3'):
    host_range(10, 3, 3)


@pytest.mark.parametrize('process_count', [1, 2, 3])
@pytest.mark.parametrize('ten_crop', [False, True])
def test_eval_counts_every_example_once_on_every_host(tf, source, process_count, ten_crop):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  size, batch = SPLIT_SIZES['validation'], 4
  squares, labels = square_images(tf, source, 'validation')
  per_host = [numbered_eval_batches(
      source, 'validation', batch_size=batch, image_size=CROP, resize_size=RESIZE,
      ten_crop=ten_crop, process_index=i, process_count=process_count)[1]
      for i in range(process_count)]
  expected_batches = input_pipeline.eval_batch_count(size, batch, process_count)
  assert [len(batches) for batches in per_host] == [expected_batches] * process_count
  scored = np.concatenate([b['index'][b['mask']] for host in per_host for b in host])
  np.testing.assert_array_equal(np.sort(scored), np.arange(size))
  for b in (b for host in per_host for b in host):
    assert b['image'].shape == (batch, *([10] if ten_crop else []), CROP, CROP, 3)
    assert np.all(b['index'][~b['mask']] == -1) and not b['image'][~b['mask']].any()
    for row in np.flatnonzero(b['mask']):
      index = b['index'][row]
      assert b['label'][row] == labels[index]
      centre = b['image'][row][4] if ten_crop else b['image'][row]
      margin = (RESIZE - CROP) // 2
      np.testing.assert_array_equal(centre, squares[index][margin:margin + CROP,
                                                           margin:margin + CROP])


def test_corrupt_image_is_skipped_and_counted_in_eval(tf, source, caplog):
  with caplog.at_level(logging.WARNING):
    batches, numbered = numbered_eval_batches(source, 'train', batch_size=5, image_size=CROP,
                                              resize_size=RESIZE)
    scored = np.concatenate([b['index'][b['mask']] for b in numbered])
  np.testing.assert_array_equal(scored, np.arange(SPLIT_SIZES['train']))  # all but the last
  assert batches.skipped == 1
  assert 'Skipped 1 image(s) that could not be decoded (1 so far)' in caplog.text


@pytest.mark.parametrize('ten_crop', [False, True])
def test_batches_hold_exactly_the_fields_of_the_batch_tables(tf, source, ten_crop):
  """The pipelines hold every field `alexnet_jax.model.batch` defines, with its dtype; the iterators
  the steps read take off the bookkeeping field and leave the rest as they were."""
  from alexnet_jax.model import batch as batch_lib
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  eval_kwargs = {'batch_size': 4, 'image_size': CROP, 'resize_size': RESIZE,
                 'ten_crop': ten_crop}
  pipelines = {
      'train': (batch_lib.TRAIN, input_pipeline.train_dataset(source, 'train', **train_kwargs()),
                input_pipeline.train_batches(source, 'train', **train_kwargs())),
      'eval': (batch_lib.EVAL, input_pipeline.eval_dataset(source, 'validation', **eval_kwargs),
               input_pipeline.eval_batches(source, 'validation', **eval_kwargs))}
  for name, (fields, dataset, batches) in pipelines.items():
    everything = {field: spec.dtype.as_numpy_dtype
                  for field, spec in dataset.element_spec.items()}
    assert everything == {field: f.dtype for field, f in fields.items()}, name
    full = next(dataset.as_numpy_iterator())
    assert {field: value.dtype for field, value in full.items()} == everything, name
    batch = next(batches)
    assert {field: value.dtype for field, value in batch.items()} == {
        field: f.dtype for field, f in fields.items() if not f.bookkeeping}, name
    assert batch_lib.bookkeeping_field(fields) not in batch


def train_kwargs(**overrides):
  return {'batch_size': 4, 'image_size': CROP, 'resize_size': RESIZE, 'seed': 0,
          **overrides}


def take(batches, count):
  return [next(batches) for _ in range(count)]


def test_training_views_are_crops_of_the_right_images(tf, source):
  """Each training image is the crop at its offset of its own example's square, mirrored when
  flagged, up to resampling (`random_crop_view`): found by searching the split for the
  closest crop, since the stream is shuffled."""
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  squares, labels = square_images(tf, source, 'train')
  batches = input_pipeline.train_batches(source, 'train', **train_kwargs())
  for batch in take(batches, 6):  # 24 examples: the whole split, then some, corrupt skipped
    for image, label, (y, x), flipped in zip(batch['image'], batch['label'],
                                             batch['crop_offset'], batch['flipped']):
      assert 0 <= y <= RESIZE - CROP and 0 <= x <= RESIZE - CROP
      unmirrored = (image[:, ::-1] if flipped else image).astype(int)
      distances = sorted((np.abs(sq[y:y + CROP, x:x + CROP] - unmirrored).mean(), i)
                         for i, sq in enumerate(squares) if sq is not None)
      (nearest, index), (second, _) = distances[:2]
      assert nearest < 3 and second > 4 * nearest, distances[:2]
      assert labels[index] == label
  # One pass of 14 files holds one corrupt one; 24 positions span one or two of them.
  assert batches.skipped in (1, 2)


def test_training_stream_is_reproducible_from_the_seed(tf, source):
  def run(**kw):
    return numbered_train_batches(source, 'train', 5, **train_kwargs(**kw))[1]
  first, again, other = run(), run(), run(seed=1)
  for a, b in zip(first, again):
    for field in a:
      np.testing.assert_array_equal(a[field], b[field])
  assert any(not np.array_equal(a['image'], b['image']) for a, b in zip(first, other))
  flips = np.concatenate([b['flipped'] for b in first])
  offsets = np.concatenate([b['crop_offset'] for b in first])
  assert 0 < flips.sum() < len(flips) and len(np.unique(offsets, axis=0)) > 10


def test_every_epoch_is_a_new_order(tf, source):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  decodable = SPLIT_SIZES['train']
  batches = input_pipeline.train_batches(source, 'train', **train_kwargs(batch_size=decodable))
  epochs = [next(batches)['label'] for _ in range(3)]
  for labels in epochs:
    np.testing.assert_array_equal(np.bincount(labels, minlength=3), [5, 4, 4])
  assert not all(np.array_equal(epochs[0], e) for e in epochs[1:])


@pytest.mark.parametrize('start', [5, 14, 31])
def test_stream_started_at_a_position_continues_the_stream(tf, source, start):
  """What a resumed run reads: the stream from `start` on, example for example (the same
  images, crops, flips), within an epoch, at an epoch boundary and after the corrupt image."""
  per_example = lambda count, **kw: numbered_train_batches(  # noqa: E731
      source, 'train', count, **train_kwargs(batch_size=1, **kw))
  _, full = per_example(40)
  expected = [b for b in full if b['position'][0] >= start]
  resumed, got = per_example(len(expected), start_position=start)
  for a, b in zip(expected, got):
    for field in a:
      np.testing.assert_array_equal(a[field], b[field], err_msg=field)
  assert expected[0]['position'][0] in (start, start + 1)  # start + 1 if start is corrupt
  assert resumed.next_position == got[-1]['position'][0] + 1


def test_crop_larger_than_the_square_is_refused(source):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  with pytest.raises(ValueError, match='image_size 48 is larger than resize_size 40'):
    input_pipeline.train_dataset(source, 'train', **train_kwargs(image_size=48))


def test_pixel_stats_equal_numpy_over_the_split_and_are_cached(tf, source, tmp_path, caplog):
  from alexnet_jax.data import pixel_stats
  from alexnet_jax.model.normalization import Normalization
  squares, _ = square_images(tf, source, 'train')
  images = np.stack([s for s in squares if s is not None]).astype(np.float64)
  stats = pixel_stats.load_or_compute(source, 'train', RESIZE, cache_dir=str(tmp_path))
  assert stats.num_examples == SPLIT_SIZES['train']
  np.testing.assert_allclose(stats.mean_image, images.mean(0), rtol=1e-6)
  covariance = np.cov(images.reshape(-1, 3).T / 255.0, bias=True)
  np.testing.assert_allclose(stats.rgb_eigenvectors @ np.diag(stats.rgb_eigenvalues)
                             @ stats.rgb_eigenvectors.T, covariance, rtol=1e-5, atol=1e-9)
  assert np.all(np.diff(stats.rgb_eigenvalues) <= 0)
  mean = lambda mode: Normalization.from_stats(stats, mode, False).mean_image  # noqa: E731
  np.testing.assert_allclose(mean('per_channel')[7, 3], images.mean((0, 1, 2)), rtol=1e-6)
  assert not mean('none').any()

  cache = tmp_path / f'pixel_stats-train-{RESIZE}.npz'
  cached_bytes = cache.read_bytes()
  with caplog.at_level(logging.WARNING):
    again = pixel_stats.load_or_compute(source, 'train', RESIZE, cache_dir=str(tmp_path))
  assert 'recomputing' not in caplog.text
  np.testing.assert_array_equal(again.mean_image, stats.mean_image)
  assert cache.read_bytes() == cached_bytes  # read, not rewritten


def test_gather_sums_adds_in_float64_without_rounding_to_float32():
  """One process: the gather returns its own sums, bit for bit, also digits float32 drops.
  (With one process JAX's gather hands numpy arrays back as they are, so this catches a cast
  in gather_sums itself; tests/test_multihost.py checks the sums that travel between
  processes.)"""
  from alexnet_jax.data import pixel_stats
  image_sum = np.array([1e9 + 0.5, 1 / 3, 2 ** 30 + 2 ** -10, 123456789.123,
                        0.1, 7.0]).reshape(1, 2, 3)
  rgb_outer_sum = np.array([[1e9 + 0.5, 1 / 3, 1 / 7], [1 / 3, 2e8 + 0.25, 1 / 11],
                            [1 / 7, 1 / 11, 16777217.0]])
  for values in (image_sum, rgb_outer_sum):  # values float32 cannot hold
    assert not np.array_equal(values.astype(np.float32).astype(np.float64), values)
  sums = pixel_stats.PixelSums(image_sum.copy(), rgb_outer_sum.copy(), 7)
  gathered = pixel_stats.gather_sums(sums)
  assert gathered.image_sum.dtype == gathered.rgb_outer_sum.dtype == np.float64
  np.testing.assert_array_equal(gathered.image_sum.view(np.uint64), image_sum.view(np.uint64))
  np.testing.assert_array_equal(gathered.rgb_outer_sum.view(np.uint64),
                                rgb_outer_sum.view(np.uint64))
  assert gathered.count == 7


def test_stale_pixel_stats_cache_is_detected_and_recomputed(tf, folder, tmp_path, caplog):
  import shutil
  from alexnet_jax.data import pixel_stats
  from alexnet_jax.data import sources
  root = tmp_path / 'data'
  shutil.copytree(folder, root)
  source = sources.open_source(f'folder:{root}')
  first = pixel_stats.load_or_compute(source, 'train', RESIZE)
  assert os.path.exists(root / '.alexnet_jax' / f'pixel_stats-train-{RESIZE}.npz')
  # Replace one image by a black one of the same name: only the fingerprint can tell.
  from PIL import Image
  victim = root / 'train' / 'ant' / '00.jpg'
  Image.new('RGB', (50, 50)).save(victim)
  source = sources.open_source(f'folder:{root}')
  with caplog.at_level(logging.WARNING):
    second = pixel_stats.load_or_compute(source, 'train', RESIZE)
  assert 'is stale (fingerprint was' in caplog.text
  assert second.mean_image.sum() < first.mean_image.sum()
  with caplog.at_level(logging.WARNING):
    pixel_stats.load_or_compute(source, 'train', RESIZE, fast_decode=False)
  assert 'fast_decode was True, now False' in caplog.text


def test_lighting_offsets_follow_the_pca(tf, source):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.data import pixel_stats
  stats = pixel_stats.PixelStats(np.zeros((RESIZE, RESIZE, 3), np.float32),
                                 np.array([0.2, 0.02, 0.0], np.float32),
                                 np.eye(3, dtype=np.float32)[:, [2, 0, 1]], 1)
  batches = input_pipeline.train_batches(source, 'train',
                                         **train_kwargs(batch_size=13, lighting=stats))
  offsets = np.concatenate([b['lighting'] for b in take(batches, 8)])
  # Eigenvector 1 is blue, 2 red, 3 (eigenvalue 0) green: std 255 * 0.1 * eigenvalue.
  np.testing.assert_array_equal(offsets[:, 1], 0)
  assert offsets[:, 2].std() == pytest.approx(255 * 0.1 * 0.2, rel=0.25)
  assert offsets[:, 0].std() == pytest.approx(255 * 0.1 * 0.02, rel=0.25)
  plain = input_pipeline.train_batches(source, 'train', **train_kwargs())
  assert not next(plain)['lighting'].any()


def test_subtract_mean_subtracts_the_mean_crop_as_the_paper_orders(tf, source):
  """Mean subtracted from the 256 square first, then cropped and mirrored: the device's result
  from offsets and flags must equal doing exactly that in numpy."""
  import jax.numpy as jnp
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.model import normalization
  rng = np.random.default_rng(1)
  mean_image = rng.uniform(0, 255, (RESIZE, RESIZE, 3)).astype(np.float32)
  batch = next(input_pipeline.train_batches(source, 'train', **train_kwargs(batch_size=8)))
  lighting = rng.normal(0, 5, (8, 3)).astype(np.float32)
  got = normalization.subtract_mean(jnp.asarray(batch['image']), jnp.asarray(batch['crop_offset']),
                             jnp.asarray(batch['flipped']), jnp.asarray(mean_image),
                             jnp.asarray(lighting))
  for row, ((y, x), flipped) in enumerate(zip(batch['crop_offset'], batch['flipped'])):
    image = batch['image'][row][:, ::-1] if flipped else batch['image'][row]
    want = (image.astype(np.float32) - mean_image[y:y + CROP, x:x + CROP]) + lighting[row]
    np.testing.assert_allclose(got[row], want[:, ::-1] if flipped else want, rtol=1e-6)


def test_normalization_handles_ten_crops(tf, source):
  import jax
  import jax.numpy as jnp
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.model.normalization import Normalization
  mean_image = np.arange(RESIZE * RESIZE * 3, dtype=np.float32).reshape(RESIZE, RESIZE, 3)
  batch = next(input_pipeline.eval_batches(source, 'validation', batch_size=2, image_size=CROP,
                                           resize_size=RESIZE, ten_crop=True))
  normalization = Normalization(jnp.asarray(mean_image), jnp.ones(3, jnp.float32),
                                jnp.dtype(jnp.bfloat16))
  got = np.asarray(normalization.apply(jax.tree.map(jnp.asarray, batch), lighting=False,
                                       view_size=CROP))
  assert got.shape == (2, 10, CROP, CROP, 3) and got.dtype == jnp.bfloat16
  for crop in range(10):
    y, x = batch['crop_offset'][1, crop]
    mean_crop = mean_image[y:y + CROP, x:x + CROP]
    want = batch['image'][1, crop] - (mean_crop[:, ::-1] if crop >= 5 else mean_crop)
    np.testing.assert_allclose(got[1, crop].astype(np.float32), want, rtol=2 ** -8)


def test_global_batch_keeps_rows_in_order_over_the_data_axis():
  import jax
  from alexnet_jax.run import distributed
  mesh = jax.make_mesh((jax.device_count(),), (distributed.DATA_AXIS,))
  host = {'image': np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3),
          'label': np.arange(4, dtype=np.int32)}
  batch = distributed.global_batch(host, mesh)
  assert batch['image'].sharding.spec == jax.sharding.PartitionSpec('data')
  for name in host:
    np.testing.assert_array_equal(np.asarray(batch[name]), host[name])


def test_unknown_dataset_names_the_accepted_spellings(tf):
  from alexnet_jax.data import sources
  with pytest.raises(ValueError, match='unknown data set .imagenet2013.: use "shapes", a TFDS'):
    sources.open_source('imagenet2013')


def test_missing_imagenet_tars_are_named_with_their_directory(tf, tmp_path):
  pytest.importorskip('tensorflow_datasets')
  from alexnet_jax.data import sources
  manual = tmp_path / 'tars'
  manual.mkdir()
  (manual / 'ILSVRC2012_img_val.tar').write_bytes(b'')
  with pytest.raises(FileNotFoundError) as error:
    sources.open_source('imagenet2012', data_dir=str(tmp_path), manual_dir=str(manual))
  message = str(error.value)
  assert 'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in ' + str(manual) in message
  assert '(missing: ILSVRC2012_img_train.tar)' in message and '--config.manual_dir' in message


def test_tfds_preparation_is_told_the_split_sizes_for_its_progress_bars(tf, tmp_path,
                                                                         shapes_data_dir):
  """Offline, TFDS learns a split's size only by writing it: without the sizes its progress
  bars count examples with no ETA."""
  import tensorflow_datasets as tfds
  from alexnet_jax import files
  from alexnet_jax.data import sources
  sizes = lambda builder: {name: split.num_examples for name, split in builder.info.splits.items()}  # noqa: E731
  with files.temp_dir_removed_after():  # where the unprepared builders leave a directory
    imagenet = tfds.builder('imagenet2012', data_dir=str(tmp_path))
    shapes = tfds.builder('shapes', data_dir=str(tmp_path))
  assert sizes(imagenet) == {}
  sources.announce_split_sizes(imagenet)
  assert sizes(imagenet) == {'train': 1_281_167, 'validation': 50_000}
  # The sizes announced for `shapes` are those its builder writes.
  sources.announce_split_sizes(shapes)
  prepared = sources.open_source('shapes', data_dir=shapes_data_dir)
  assert sizes(shapes) == {split: prepared.num_examples(split) for split in ('train', 'validation')}


def test_unknown_split_lists_the_splits(source):
  with pytest.raises(ValueError, match=r"no split 'test'; its splits are \['train', 'validation'\]"):
    source.num_examples('test')


def test_folder_that_does_not_exist_says_the_layout(tf, tmp_path):
  from alexnet_jax.data import sources
  with pytest.raises(FileNotFoundError, match='laid out as .*/<split>/<class>/<image>'):
    sources.open_source(f'folder:{tmp_path}/nowhere')


def test_grayscale_png_and_tiny_images_work_in_a_folder(tf, tmp_path):
  from PIL import Image
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.data import sources
  rng = np.random.default_rng(2)
  files = {'gray.jpg': Image.fromarray(smooth_image(rng, 60, 50)).convert('L'),
           'cmyk.jpg': Image.fromarray(smooth_image(rng, 50, 70)).convert('CMYK'),
           'rgba.png': Image.fromarray(smooth_image(rng, 45, 45)).convert('RGBA'),
           'tiny.png': Image.fromarray(smooth_image(rng, 9, 12))}
  (tmp_path / 'train' / 'x').mkdir(parents=True)
  for name, image in files.items():
    buffer = io.BytesIO()
    image.save(buffer, 'PNG' if name.endswith('png') else 'JPEG')
    (tmp_path / 'train' / 'x' / name).write_bytes(buffer.getvalue())
  source = sources.open_source(f'folder:{tmp_path}')
  batches = input_pipeline.eval_batches(source, 'train', batch_size=4, image_size=CROP,
                                        resize_size=RESIZE)
  batch = next(batches)
  assert batch['mask'].all() and batch['image'].shape == (4, CROP, CROP, 3)
  gray = batch['image'][sorted(files).index('gray.jpg')]
  assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
  assert batches.skipped == 0


@pytest.mark.parametrize('process_count', [2, 3])
def test_tfds_host_shards_partition_the_split(tf, shapes_data_dir, process_count):
  """The TFDS path slices `split[start:stop]`: shards of simulated hosts are disjoint and
  together exactly the split, also when TFDS shuffles its files."""
  from alexnet_jax.data import sources
  source = sources.open_source('shapes', data_dir=shapes_data_dir)
  size = source.num_examples('validation')
  everything = sorted(ex['image'] for ex in
                      source.read('validation', 0, size).as_numpy_iterator())
  shards = [[ex['image'] for ex in source.read(
      'validation', *sources.host_range(size, i, process_count), shuffle_files=True,
      seed=i).as_numpy_iterator()] for i in range(process_count)]
  assert sorted(image for shard in shards for image in shard) == everything
  assert len(set(everything)) == size


@pytest.mark.slow  # builds `shapes` again, as ArrayRecord (about 15 s)
def test_a_tfds_data_set_not_in_tfrecord_is_named_with_the_fix(tf, tmp_path):
  from alexnet_jax.data import sources
  from alexnet_jax.errors import DataError
  from alexnet_jax.data.shapes_dataset import Shapes
  Shapes(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  with pytest.raises(DataError) as raised:
    sources.open_source('shapes', data_dir=str(tmp_path))
  assert str(raised.value) == (
      'shapes/1.1.0 is stored as array_record, and tf.data reads TFDS data sets stored as '
      'tfrecord (TFDS\'s default): prepare it again with file_format="tfrecord".')


def test_tfds_training_batches_repeat_under_a_seed(tf, shapes_data_dir):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.data import sources
  source = sources.open_source('shapes', data_dir=shapes_data_dir)
  assert source.num_classes == 6 and source.cache_dir.startswith(shapes_data_dir)
  run = lambda: take(input_pipeline.train_batches(  # noqa: E731
      source, 'train', **train_kwargs(batch_size=16, shuffle_buffer=100)), 3)
  for a, b in zip(run(), run()):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_a_class_folder_without_images_is_named_in_a_warning(tf, tmp_path, caplog):
  """A class folder left empty (or holding no image files), or missing from one split: the
  network still has an output for the class, which that split never shows."""
  from alexnet_jax.data import sources
  for split, class_name in [('train', 'ant'), ('train', 'cat'), ('validation', 'ant'),
                            ('validation', 'bee')]:
    (tmp_path / split / class_name).mkdir(parents=True)
    (tmp_path / split / class_name / '0.jpg').write_bytes(b'not read here')
  (tmp_path / 'train' / 'bee').mkdir()  # empty
  (tmp_path / 'validation' / 'cat').mkdir()
  (tmp_path / 'validation' / 'cat' / 'notes.txt').write_text('no image')
  source = sources.open_source(f'folder:{tmp_path}')
  assert source.class_names == ['ant', 'bee', 'cat'] and not caplog.records
  assert source.num_examples('train') == 2  # lists the split
  train, validation = tmp_path / 'train', tmp_path / 'validation'
  assert [r.getMessage() for r in caplog.records] == [
      f"Image folder {tmp_path}, split 'train': 1 of its 3 classes have no images (.jpg .jpeg "
      f'.png .gif .bmp): {train}/bee. The network keeps an output for each that this split '
      f'never shows; add images, or remove the folder.']
  caplog.clear()
  source.files('validation')
  source.files('validation')  # listed once, warned once
  assert [r.getMessage() for r in caplog.records] == [
      f"Image folder {tmp_path}, split 'validation': 1 of its 3 classes have no images (.jpg "
      f'.jpeg .png .gif .bmp): {validation}/cat. The network keeps an output for each that '
      f'this split never shows; add images, or remove the folder.']
  caplog.clear()
  (tmp_path / 'validation' / 'cat' / 'notes.txt').unlink()
  (tmp_path / 'validation' / 'cat').rmdir()
  sources.open_source(f'folder:{tmp_path}').files('validation')
  assert [r.getMessage() for r in caplog.records] == [
      f"Image folder {tmp_path}, split 'validation': 1 of its 3 classes have no images (.jpg "
      f'.jpeg .png .gif .bmp): {validation}/cat (missing). The network keeps an output for '
      f'each that this split never shows; add images, or remove the folder.']


def test_no_stream_runs_the_autotuning_thread(tf, source):
  """Freeing a tf.data iterator waits for its autotuning thread to wake, and that thread
  sleeps up to a minute between optimisations: a stopped run sat 20 to 40 s after saying it
  had stopped (a preempted VM gets about 30 s). Every stream, training, evaluation and the
  pixel statistics' squares, is built without it."""
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  kwargs = {'batch_size': 4, 'image_size': CROP, 'resize_size': RESIZE}
  for dataset in (input_pipeline.train_dataset(source, 'train', seed=0, **kwargs),
                  input_pipeline.eval_dataset(source, 'validation', **kwargs),
                  views.squares(source, 'train', 0, 4, RESIZE)):
    assert dataset.options().autotune.enabled is False
