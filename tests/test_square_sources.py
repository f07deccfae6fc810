"""Sources of squares: the conversions, as JPEG and as uint8 pixels. The device cuts the
training crops that the host would have cut, pixel for pixel; the pixel format stores the
squares exactly, says its size and refuses a disk too small; host shards, padded evaluation,
skipped images and resuming hold for each format."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from tests.test_input_pipeline import (numbered_eval_batches, numbered_train_batches, take,
                                       write_image_folder)

tfds = pytest.importorskip('tensorflow_datasets')

SIZE, CROP = 76, 67  # the smallest the paper's network takes is 67
CLASSES = ('ant', 'bee', 'cat')
SPLIT_SIZES = {'train': 13, 'validation': 7}  # decodable images; divisible by neither 2 nor 3
FORMATS = ('jpeg', 'pixels')


@pytest.fixture(scope='module')
def folder_source(tf, tmp_path_factory):
  """JPEGs of 60 to 140 pixels, landscape and portrait, and a corrupt one, which the
  conversions drop."""
  from alexnet_jax.data import sources
  root = write_image_folder(tmp_path_factory.mktemp('squares_folder'), SPLIT_SIZES, CLASSES,
                            (60, 141), 'ant')
  return sources.open_source(f'folder:{root}')


@pytest.fixture(scope='module')
def converted(folder_source, tmp_path_factory):
  """{image format: the conversion's directory}, in shards of 4 source examples."""
  from alexnet_jax.data import conversion
  return {image_format: conversion.convert(
      folder_source, str(tmp_path_factory.mktemp(image_format)),
      splits=list(SPLIT_SIZES), size=SIZE, examples_per_shard=4, image_format=image_format)
      for image_format in FORMATS}


def reference_squares(folder_source, split):
  """The decodable source images' squares, as `views.squares` cuts them."""
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  dataset = views.squares(folder_source, split, 0,
                                   folder_source.num_examples(split), SIZE)
  return [(example['image'], example['label']) for example in dataset.as_numpy_iterator()]


def stored_squares(tf, path, split):
  """[(uint8 square, label)] of a conversion's split, in stored order."""
  from alexnet_jax.data import ops
  from alexnet_jax.data import sources
  source = sources.open_source(path)
  return [(ops.decode_image(tf.constant(ex['image'])).numpy(), ex['label'])
          for ex in source.read(split, 0, source.num_examples(split)).as_numpy_iterator()]


def train_settings(**overrides):
  return {'batch_size': 5, 'image_size': CROP, 'resize_size': SIZE, 'seed': 3,
          'shuffle_buffer': 8, **overrides}


def lighting_stats():
  from alexnet_jax.data import pixel_stats
  rng = np.random.default_rng(5)
  eigenvectors = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
  return pixel_stats.PixelStats(rng.uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32),
                                np.array([0.2, 0.02, 0.005], np.float32), eigenvectors, 1)


def test_pixel_conversion_stores_the_exact_squares_in_the_bytes_it_announced(
    tf, folder_source, converted):
  from alexnet_jax.data import conversion
  from alexnet_jax.data import sources
  for split in SPLIT_SIZES:
    want = reference_squares(folder_source, split)
    got = stored_squares(tf, converted['pixels'], split)
    assert len(got) == len(want) == SPLIT_SIZES[split]
    for (image, label), (square, square_label) in zip(got, want):
      assert image.dtype == np.uint8 and label == square_label
      np.testing.assert_array_equal(image, square)
  source = sources.open_source(converted['pixels'])
  assert source.image_shape == (SIZE, SIZE, 3)
  assert sources.open_source(converted['jpeg']).image_shape == (SIZE, SIZE, 3)
  assert folder_source.image_shape is None
  shards = [name for name in os.listdir(converted['pixels']) if '.tfrecord-' in name]
  written = sum(os.path.getsize(os.path.join(converted['pixels'], name)) for name in shards)
  features = source.builder.info.features
  # Every label here takes one byte, as the largest does: the announced size is exact.
  assert written == conversion.pixel_bytes(features, sum(SPLIT_SIZES.values()))
  assert conversion.read_record(converted['pixels'])['image_format'] == 'pixels'


def test_pixel_size_of_imagenet_at_256_is_the_documented_262_gb():
  from alexnet_jax.data import conversion
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(256, 256, 3), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.BYTES),
      'label': tfds.features.ClassLabel(num_classes=1000)})
  needed = conversion.pixel_bytes(features, 1_281_167 + 50_000)
  assert conversion.in_bytes(needed) == '261.8 GB'


def test_pixel_conversion_refuses_a_disk_too_small_before_writing(folder_source, tmp_path,
                                                                  monkeypatch, caplog):
  from alexnet_jax.data import conversion
  from alexnet_jax.errors import DataError
  features = conversion._features(folder_source, SIZE, 'pixels')
  needed = conversion.pixel_bytes(features, 14 + 7)  # the corrupt image counts until read
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(shutil, 'disk_usage', lambda path: usage._replace(free=needed - 1))
  output_dir = tmp_path / 'new' / 'pixels'
  with caplog.at_level(logging.INFO), pytest.raises(DataError) as raised:
    conversion.convert(folder_source, str(output_dir), splits=list(SPLIT_SIZES), size=SIZE,
                           image_format='pixels')
  what = f'21 images as {SIZE}x{SIZE}x3 uint8 pixels: {conversion.in_bytes(needed)}'
  assert str(raised.value) == (
      f'not enough space for the pixel conversion: it writes {what}, and {tmp_path} has '
      f'{conversion.in_bytes(needed - 1)} free. Free space there, convert into a larger '
      f'disk, or use --image_format=jpeg (about a quarter of the size).')
  assert f'Writing {what} into {output_dir}' in caplog.text
  assert not (tmp_path / 'new').exists()
  monkeypatch.setattr(shutil, 'disk_usage', lambda path: usage._replace(free=needed))
  conversion.convert(folder_source, str(output_dir), splits=list(SPLIT_SIZES), size=SIZE,
                         image_format='pixels')
  assert (output_dir / 'dataset_info.json').exists()


def test_a_jpeg_conversion_recorded_before_the_pixel_format_resumes(folder_source, converted,
                                                                    tmp_path):
  """Conversions written before `image_format` existed are JPEG ones, and resume as such."""
  from alexnet_jax.data import conversion
  output_dir = tmp_path / 'old'
  shutil.copytree(converted['jpeg'], output_dir)
  record_path = output_dir / conversion.RECORD_FILE
  record = json.loads(record_path.read_text())
  del record['image_format']
  record_path.write_text(json.dumps(record))
  assert conversion.read_record(output_dir)['image_format'] == 'jpeg'
  before = {name: os.stat(output_dir / name).st_mtime_ns for name in os.listdir(output_dir)
            if '.tfrecord-' in name}
  conversion.convert(folder_source, str(output_dir), splits=['train'], size=SIZE,
                         examples_per_shard=4)
  assert {name: os.stat(output_dir / name).st_mtime_ns for name in before} == before
  with pytest.raises(ValueError, match="image_format 'jpeg' \\(this run: 'pixels'\\)"):
    conversion.convert(folder_source, str(output_dir), splits=['train'], size=SIZE,
                           examples_per_shard=4, image_format='pixels')


@pytest.mark.parametrize('image_format', FORMATS)
def test_device_crop_is_the_host_crop_pixel_for_pixel(tf, converted, image_format):
  """From the same seed, the squares that training ships and the device's crop of them give
  the network exactly the input that the host's crops give, lighting included."""
  import jax.numpy as jnp

  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.model.normalization import Normalization, crop_views
  from alexnet_jax.data import sources
  source = sources.open_source(converted[image_format])
  assert input_pipeline.crops_on_device(source, SIZE)
  assert not input_pipeline.crops_on_device(source, SIZE + 1)
  settings = train_settings(lighting=lighting_stats())
  on_device = take(input_pipeline.train_batches(source, 'train', **settings), 6)
  on_host = take(input_pipeline.train_batches(source, 'train', crop_on_device=False,
                                              **settings), 6)
  rng = np.random.default_rng(2)
  normalization = Normalization(
      jnp.asarray(rng.uniform(0, 255, (SIZE, SIZE, 3)), jnp.float32),
      jnp.asarray([1 / 50, 1 / 60, 1 / 70], jnp.float32))
  for square_batch, crop_batch in zip(on_device, on_host):
    assert square_batch['image'].shape == (5, SIZE, SIZE, 3)
    assert crop_batch['image'].shape == (5, CROP, CROP, 3)
    for field in ('label', 'crop_offset', 'flipped', 'lighting'):
      np.testing.assert_array_equal(square_batch[field], crop_batch[field], err_msg=field)
    np.testing.assert_array_equal(
        crop_views(square_batch['image'], square_batch['crop_offset'],
                          square_batch['flipped'], CROP), crop_batch['image'])
    np.testing.assert_array_equal(
        normalization.apply(square_batch, lighting=True, view_size=CROP),
        normalization.apply(crop_batch, lighting=True, view_size=CROP))
  flips = np.concatenate([b['flipped'] for b in on_device])
  offsets = np.concatenate([b['crop_offset'] for b in on_device])
  assert 0 < flips.sum() < len(flips) and len(np.unique(offsets, axis=0)) > 20


@pytest.mark.slow  # 16 s; the network input's equality is the fast test above
def test_a_train_step_on_squares_is_the_step_on_host_crops(tf, converted):
  import jax

  from alexnet_jax.run import distributed
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.training import optim
  from alexnet_jax.data import sources
  from alexnet_jax.training import train_step
  from alexnet_jax.model.network import AlexNet
  from alexnet_jax.model.normalization import Normalization
  source = sources.open_source(converted['pixels'])
  settings = train_settings(batch_size=8, lighting=lighting_stats())
  squares = next(input_pipeline.train_batches(source, 'train', **settings))
  crops = next(input_pipeline.train_batches(source, 'train', crop_on_device=False, **settings))
  mesh = distributed.data_mesh()
  optimizer = optim.paper_sgd(0.9, 5e-4)
  build_model = lambda rngs: AlexNet(  # noqa: E731
      'paper', len(CLASSES), CROP, 0.5, width=0.125, init='he', rngs=rngs)
  network, _ = train_step.init(build_model, optimizer, 0, mesh)
  normalization = Normalization.from_stats(lighting_stats(), 'per_pixel', True)
  step = train_step.make_train_step(
      network, optimizer, optim.learning_rate_schedule('constant', 0.05, total_steps=4),
      normalization.on_device(distributed.replicated(mesh), np.float32), 0, mesh)
  results = []
  for batch in (squares, crops):
    _, state = train_step.init(build_model, optimizer, 0, mesh)  # the same initial state
    state, metrics = step(state, distributed.global_batch(batch, mesh))
    results.append(jax.device_get((state.params, metrics['train_loss'])))
  jax.tree.map(np.testing.assert_array_equal, *results)


@pytest.mark.parametrize('image_format', FORMATS)
def test_a_resumed_stream_continues_with_the_same_squares_and_draws(tf, converted,
                                                                    image_format):
  from alexnet_jax.data import sources
  source = sources.open_source(converted[image_format])
  per_example = lambda count, **kw: numbered_train_batches(  # noqa: E731
      source, 'train', count, **train_settings(batch_size=1, **kw))
  _, full = per_example(30)
  for start in (6, 13, 20):  # within the first epoch, at its end, within the second
    expected = full[start:]
    resumed, got = per_example(len(expected), start_position=start)
    for a, b in zip(expected, got, strict=True):
      for field in a:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    assert resumed.next_position == 30 and resumed.skipped == 0


@pytest.mark.parametrize('image_format', FORMATS)
@pytest.mark.parametrize('process_count', [2, 3])
def test_hosts_train_on_their_own_part_and_evaluate_every_example_once(
    tf, converted, image_format, process_count):
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.data import sources
  source = sources.open_source(converted[image_format])
  stored = {split: stored_squares(tf, converted[image_format], split) for split in SPLIT_SIZES}
  for host in range(process_count):
    start, stop = sources.host_range(SPLIT_SIZES['train'], host, process_count)
    # One epoch of this host's stream holds its part of the split, each square once.
    epoch = take(input_pipeline.train_batches(
        source, 'train', **train_settings(batch_size=stop - start), process_index=host,
        process_count=process_count), 1)[0]
    got = sorted(image.tobytes() for image in epoch['image'])
    assert got == sorted(image.tobytes() for image, _ in stored['train'][start:stop])

  size, margin = SPLIT_SIZES['validation'], (SIZE - CROP) // 2
  per_host = [numbered_eval_batches(
      source, 'validation', batch_size=2, image_size=CROP, resize_size=SIZE, process_index=i,
      process_count=process_count)[1] for i in range(process_count)]
  count = input_pipeline.eval_batch_count(size, 2, process_count)
  assert [len(batches) for batches in per_host] == [count] * process_count
  scored = np.concatenate([b['index'][b['mask']] for host in per_host for b in host])
  np.testing.assert_array_equal(np.sort(scored), np.arange(size))
  for batch in (b for host in per_host for b in host):
    assert not batch['image'][~batch['mask']].any()
    for image, label, index in zip(batch['image'][batch['mask']], batch['label'][batch['mask']],
                                   batch['index'][batch['mask']]):
      square, stored_label = stored['validation'][index]
      assert label == stored_label
      np.testing.assert_array_equal(image, square[margin:margin + CROP, margin:margin + CROP])


def test_an_undecodable_square_is_skipped_and_counted(tf, converted, tmp_path, caplog):
  """A JPEG conversion whose second image no longer decodes: training from squares skips and
  counts it once an epoch, and resumes past it; evaluation counts it once."""
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import views
  from alexnet_jax.data import sources
  output_dir = tmp_path / 'damaged'
  shutil.copytree(converted['jpeg'], output_dir)
  (shard,) = [name for name in os.listdir(output_dir) if 'train.tfrecord-00000' in name]
  records = list(tf.data.TFRecordDataset(str(output_dir / shard)).as_numpy_iterator())
  source = sources.open_source(str(output_dir))
  features = source.builder.info.features
  example = features.deserialize_example_np(records[1], decoders={
      'image': tfds.decode.SkipDecoding()})
  records[1] = features.serialize_example({'image': b'\xff\xd8\xff\xe0 damaged',
                                           'label': example['label']})
  with tf.io.TFRecordWriter(str(output_dir / shard)) as writer:
    for record in records:
      writer.write(record)

  with caplog.at_level(logging.WARNING):
    batches, numbered = numbered_train_batches(
        source, 'train', 6, **train_settings(batch_size=4, shuffle_buffer=1))
  positions = np.concatenate([b['position'] for b in numbered])
  assert all(b['image'].shape == (4, SIZE, SIZE, 3) for b in numbered)
  # Read in a fixed shuffled file order, without shuffling inside the buffer of 1: the
  # damaged record sits at one place in each epoch of 13.
  missing = sorted(set(range(positions[-1] + 1)) - set(positions))
  assert len(missing) == 2 and missing[1] - missing[0] == SPLIT_SIZES['train']
  assert batches.skipped == 2 and batches.next_position == positions[-1] + 1
  assert 'Skipped 1 image(s) that could not be decoded (2 so far)' in caplog.text
  _, resumed = numbered_train_batches(
      source, 'train', 2, **train_settings(batch_size=4, shuffle_buffer=1,
                                           start_position=missing[0]))
  np.testing.assert_array_equal(np.concatenate([b['position'] for b in resumed]),
                                positions[positions > missing[0]][:8])

  evaluation = input_pipeline.eval_batches(source, 'train', batch_size=5, image_size=CROP,
                                           resize_size=SIZE)
  assert sum(int(b['mask'].sum()) for b in evaluation) == SPLIT_SIZES['train'] - 1
  assert evaluation.skipped == 1
