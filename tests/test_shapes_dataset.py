"""The embedded `shapes` data set: built as a real TFDS data set, deterministic, and learnable."""

import collections

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

from alexnet_jax.data import shapes_dataset as sd

# Mean absolute difference, in levels, between a stored (JPEG, quality 95, chroma subsampled)
# image and the pixels `draw_example` gave it: mostly the pixel noise (std 3, mean absolute 2.4),
# which JPEG smooths, plus colour bleeding at the shape's edges. Measured over the validation
# split: median 3.3, largest 6.3. Two different images differ by tens of levels.
JPEG_MEDIAN_BOUND = 4.0
JPEG_WORST_BOUND = 8.0


@pytest.fixture(scope='module')
def builder(shapes_data_dir):
  builder = tfds.builder('shapes', data_dir=shapes_data_dir)
  assert builder.is_prepared()
  return builder


def read_split(builder, split, decode=True):
  """[(image, label)] in stored order; images as JPEG bytes when decode is False."""
  decoders = None if decode else {'image': tfds.decode.SkipDecoding()}
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
  return [(ex['image'], int(ex['label'])) for ex in tfds.as_numpy(ds)]


@pytest.fixture(scope='module')
def stored(builder):
  return {split: read_split(builder, split) for split in sd.SPLITS}


def test_builder_metadata(builder):
  assert builder.name == 'shapes'
  assert str(builder.version) == '1.1.0'
  info = builder.info
  assert info.features['label'].names == list(sd.CLASS_NAMES)
  assert info.features['image'].shape == (None, None, 3)
  assert info.features['image'].encoding_format == 'jpeg'
  assert info.supervised_keys == ('image', 'label')
  assert set(info.splits) == {'train', 'validation'}
  assert info.splits['train'].num_examples == sd.TRAIN_EXAMPLES
  assert info.splits['validation'].num_examples == sd.VALIDATION_EXAMPLES


def test_split_sizes_and_balanced_labels(stored):
  for split, size in sd.SPLIT_SIZES.items():
    labels = [label for _, label in stored[split]]
    assert len(labels) == size
    # label = index % NUM_CLASSES: class c has exactly len(range(c, size, NUM_CLASSES)) examples.
    expected = [len(range(c, size, sd.NUM_CLASSES)) for c in range(sd.NUM_CLASSES)]
    assert np.bincount(labels, minlength=sd.NUM_CLASSES).tolist() == expected


def test_image_sizes(stored):
  for split in sd.SPLITS:
    shapes = [image.shape for image, _ in stored[split]]
    assert all(image.dtype == np.uint8 for image, _ in stored[split])
    assert all(len(s) == 3 and s[2] == 3 for s in shapes)
    heights = np.array([s[0] for s in shapes])
    widths = np.array([s[1] for s in shapes])
    assert heights.min() >= sd.MIN_SIDE and widths.min() >= sd.MIN_SIDE
    assert heights.max() <= sd.MAX_SIDE and widths.max() <= sd.MAX_SIDE
    # Sides are drawn independently and uniformly: sizes vary, and so do aspect ratios.
    assert len(set(shapes)) > len(shapes) // 2
    assert np.mean(heights > widths) > 0.3 and np.mean(widths > heights) > 0.3
    assert heights.min() < sd.MIN_SIDE + 10 and heights.max() > sd.MAX_SIDE - 10


def test_reading_twice_gives_identical_bytes(builder):
  first = read_split(builder, 'validation', decode=False)
  second = read_split(builder, 'validation', decode=False)
  assert len(first) == sd.VALIDATION_EXAMPLES
  assert all(isinstance(image, bytes) and image[:2] == b'\xff\xd8' for image, _ in first)  # JPEG.
  assert first == second


def test_draw_example_is_deterministic_and_splits_differ():
  for split_index, index in [(0, 0), (0, 7), (1, 0), (1, 123)]:
    image, label = sd.draw_example(split_index, index)
    again, label_again = sd.draw_example(split_index, index)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert label == label_again == index % sd.NUM_CLASSES
    np.testing.assert_array_equal(image, again)
  train0, _ = sd.draw_example(0, 0)
  validation0, _ = sd.draw_example(1, 0)
  assert train0.shape != validation0.shape or not np.array_equal(train0, validation0)
  train1, _ = sd.draw_example(0, 1)
  assert train0.shape != train1.shape or not np.array_equal(train0, train1)


def test_stored_validation_split_is_draw_example(stored):
  """Each stored image is draw_example's, up to JPEG error, and each index is stored once."""
  candidates = collections.defaultdict(list)  # (shape, label) -> [(index, pixels)]
  for index in range(sd.VALIDATION_EXAMPLES):
    image, label = sd.draw_example(sd.SPLITS['validation'], index)
    candidates[image.shape, label].append((index, image.astype(np.float64)))
  matched, errors_of_best = set(), []
  for image, label in stored['validation']:
    errors = {index: np.mean(np.abs(image - drawn))
              for index, drawn in candidates[image.shape, label]}
    assert errors, f'no drawn example of shape {image.shape} and label {label}'
    index = min(errors, key=errors.get)
    errors_of_best.append(errors[index])
    matched.add(index)
  assert np.median(errors_of_best) < JPEG_MEDIAN_BOUND
  assert max(errors_of_best) < JPEG_WORST_BOUND
  assert matched == set(range(sd.VALIDATION_EXAMPLES))


@pytest.mark.parametrize('label', range(sd.NUM_CLASSES))
def test_shape_mask_area(label):
  """Each class's mask covers its analytic area (relative to the circumscribed circle's)."""
  radius = 200.0
  w = sd.CROSS_HALF_WIDTH
  relative_area = {
      'circle': 1.0,
      'ring': 1.0 - sd.RING_INNER**2,
      'square': 2 / np.pi,
      'triangle': 3 * np.sqrt(3) / (4 * np.pi),
      'cross': (8 * w * np.sqrt(1 - w**2) - 4 * w**2) / np.pi,
      'star': 5 * sd.STAR_INNER * np.sin(np.pi / 5) / np.pi,  # Ten triangles, tip to notch.
  }[sd.CLASS_NAMES[label]]
  for theta in (0.0, 0.4, 2.0):
    mask = sd.shape_mask(label, 420, 420, 209.5, 209.5, radius, theta)
    assert mask.sum() / (np.pi * radius**2) == pytest.approx(relative_area, rel=0.01)
    ys, xs = np.nonzero(mask)
    assert np.hypot(ys - 209.5, xs - 209.5).max() <= radius  # Inside the circumscribed circle.


RADIAL_BINS = np.linspace(0.0, 1.0, 6)


def foreground_mask(image):
  """The shape's pixels: what differs by more than half the contrast from the plane fitted, per
  channel, to the image's border pixels (the background, a flat colour or a linear gradient)."""
  image = image.astype(np.float64)
  height, width, _ = image.shape
  y, x = np.mgrid[:height, :width]
  border = np.zeros((height, width), bool)
  border[[0, -1], :] = border[:, [0, -1]] = True
  design = np.stack([np.ones(border.sum()), y[border], x[border]], axis=1)
  coef, *_ = np.linalg.lstsq(design, image[border], rcond=None)
  background = coef[0] + y[..., None] * coef[1] + x[..., None] * coef[2]
  return np.linalg.norm(image - background, axis=-1) > sd.MIN_CONTRAST / 2


def test_shapes_lie_in_the_centre_square_preprocessing_keeps():
  """Shorter side to 256 and the centred square: the rest of a wide image is cut away, so the
  shape (and with it the label) must be inside that square."""
  for index in range(300):
    image, _ = sd.draw_example(0, index)
    height, width, _ = image.shape
    shorter = min(height, width)
    top, left = (height - shorter) // 2, (width - shorter) // 2
    mask = foreground_mask(image)
    inside = mask[top:top + shorter, left:left + shorter].sum()
    assert mask.sum() > 100 and inside == mask.sum(), index  # smallest of these: 150 pixels


def radial_profile(image):
  """Rotation-invariant shape features: how much of each annulus around the shape's centroid
  (radii relative to its farthest pixel) the shape covers, and its pixel count relative to
  that farthest pixel's circle."""
  mask = foreground_mask(image)
  y, x = np.mgrid[:mask.shape[0], :mask.shape[1]]
  cy, cx = y[mask].mean(), x[mask].mean()
  r = np.hypot(y - cy, x - cx)
  r = r / r[mask].max()
  covered = np.histogram(r[mask], RADIAL_BINS)[0]
  available = np.maximum(np.histogram(r, RADIAL_BINS)[0], 1)
  return np.append(covered / available, mask.sum() / np.sum(r <= 1.0))


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y):
  centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in range(sd.NUM_CLASSES)])
  distances = np.linalg.norm(test_x[:, None, :] - centroids[None], axis=-1)
  return np.mean(distances.argmin(axis=1) == test_y)


def test_classes_are_shapes_not_noise(stored):
  """A nearest-centroid classifier on a radial profile of the foreground mask recognises the
  shapes in held-out images; with the labels shuffled, the same code is at chance."""
  # Half the training split is plenty for six centroids of six numbers, and keeps the test fast.
  examples = {'train': stored['train'][:sd.TRAIN_EXAMPLES // 2],
              'validation': stored['validation']}
  features, labels = {}, {}
  for split, split_examples in examples.items():
    features[split] = np.stack([radial_profile(image) for image, _ in split_examples])
    labels[split] = np.array([label for _, label in split_examples])
  chance = 1 / sd.NUM_CLASSES
  accuracy = nearest_centroid_accuracy(features['train'], labels['train'],
                                       features['validation'], labels['validation'])
  assert accuracy > 0.9, accuracy

  rng = np.random.default_rng(0)
  shuffled = {split: rng.permutation(labels[split]) for split in sd.SPLITS}
  control = nearest_centroid_accuracy(features['train'], shuffled['train'],
                                      features['validation'], shuffled['validation'])
  assert control < 2 * chance, control
