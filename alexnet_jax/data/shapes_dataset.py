"""`shapes`: the embedded image-classification data set the default config trains on; no download.
Generated on first use by `tfds.builder('shapes', data_dir=...).download_and_prepare()`.

Every example is one filled shape (circle, ring, square, triangle, cross or star) of random size,
position, rotation and colour on a random, possibly gently graded background with mild pixel noise,
in an image whose height and width are drawn independently from [MIN_SIDE, MAX_SIDE]. Example i of
a split is drawn from its own generator, `np.random.default_rng([SEED, split_index, i])`, so the
data set is the same on every machine and on every generation, and `draw_example` reproduces any
single example without building the data set.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = ('circle', 'ring', 'square', 'triangle', 'cross', 'star')
NUM_CLASSES = len(CLASS_NAMES)

SEED = 20120914  # Any fixed number; changing it changes every image.
# Split name -> the split index fed to the generator. The same names as imagenet2012.
SPLITS = {'train': 0, 'validation': 1}
TRAIN_EXAMPLES = 3000
VALIDATION_EXAMPLES = 600
SPLIT_SIZES = {'train': TRAIN_EXAMPLES, 'validation': VALIDATION_EXAMPLES}

MIN_SIDE, MAX_SIDE = 64, 160  # Height and width, each drawn independently, inclusive.
# The shape's circumscribed diameter, as a fraction of the image's shorter side.
MIN_SIZE, MAX_SIZE = 0.35, 0.80
# Pixels kept clear between the shape's circumscribed circle and the border of the image's
# centred shorter-side square.
MARGIN = 2
# Least Euclidean RGB distance between the shape's colour and any background colour.
MIN_CONTRAST = 100.0
MAX_GRADIENT = 40  # Largest per-channel change of the background colour across the image.
NOISE_STD = 3.0  # Gaussian pixel noise, in levels of 255.

RING_INNER = 0.55  # Inner radius of a ring, relative to its outer radius.
CROSS_HALF_WIDTH = 0.3  # Half the width of a cross's arms, relative to its circumscribed radius.
STAR_INNER = 0.382  # Inner radius of the five-pointed star (a pentagram's), relative to outer.


def _star_mask(r: np.ndarray, angle: np.ndarray, radius: float) -> np.ndarray:
  """Inside a five-pointed star with outer radius `radius` and a point on the angle-0 ray."""
  sector = 2 * np.pi / 5
  a = np.mod(angle, sector)
  a = np.minimum(a, sector - a)  # Fold by symmetry into [0, pi/5]: between a tip and a notch.
  qx, qy = r * np.cos(a), r * np.sin(a)
  # Edge from the tip (radius, 0) to the notch at angle pi/5; inside is the origin's side of it.
  tx, ty = radius, 0.0
  nx, ny = STAR_INNER * radius * np.cos(sector / 2), STAR_INNER * radius * np.sin(sector / 2)
  ex, ey = nx - tx, ny - ty
  side = ex * (qy - ty) - ey * (qx - tx)
  origin_side = ex * (0.0 - ty) - ey * (0.0 - tx)
  return side * origin_side >= 0


def shape_mask(label: int, height: int, width: int, cy: float, cx: float, radius: float,
               theta: float) -> np.ndarray:
  """Boolean HxW mask of shape `label` centred at (cy, cx), circumscribed radius `radius`,
  rotated by `theta` radians."""
  y, x = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                     indexing='ij')
  dy, dx = y - cy, x - cx
  # Coordinates in the shape's own (rotated) frame.
  u = np.cos(theta) * dx + np.sin(theta) * dy
  v = -np.sin(theta) * dx + np.cos(theta) * dy
  r = np.hypot(u, v)
  name = CLASS_NAMES[label]
  if name == 'circle':
    return r <= radius
  if name == 'ring':
    return (r <= radius) & (r >= RING_INNER * radius)
  if name == 'square':
    half = radius / np.sqrt(2)
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  if name == 'triangle':
    # Equilateral, vertices at angles 0, 120, 240 degrees; its inradius is half the circumradius.
    inside = np.ones_like(r, dtype=bool)
    for k in range(3):
      normal = np.pi + 2 * np.pi * k / 3  # Each edge faces away from the opposite vertex.
      inside &= u * np.cos(normal) + v * np.sin(normal) <= radius / 2
    return inside
  if name == 'cross':
    w = CROSS_HALF_WIDTH * radius
    arm = np.sqrt(radius**2 - w**2)  # Arm ends' corners lie on the circumscribed circle.
    return (((np.abs(u) <= w) & (np.abs(v) <= arm)) | ((np.abs(v) <= w) & (np.abs(u) <= arm)))
  if name == 'star':
    return _star_mask(r, np.arctan2(v, u), radius)
  raise ValueError(f'unknown label {label}')


def _distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
  ab = b - a
  t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
  return float(np.linalg.norm(p - (a + t * ab)))


def draw_example(split_index: int, index: int) -> tuple[np.ndarray, int]:
  """Example `index` of split `split_index`: (uint8 HxWx3 image, label). Pure and deterministic.

  Labels cycle through the classes (label = index % NUM_CLASSES), so every split is balanced.
  """
  rng = np.random.default_rng([SEED, split_index, index])
  label = index % NUM_CLASSES
  height, width = (int(s) for s in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))

  # Background: colour c0 at one side, grading linearly to c1 (c1 == c0 half of the time).
  c0 = rng.uniform(0, 255, size=3)
  graded = rng.random() < 0.5
  c1 = np.clip(c0 + rng.uniform(-MAX_GRADIENT, MAX_GRADIENT, size=3), 0, 255) if graded else c0
  direction = rng.uniform(0, 2 * np.pi)
  y, x = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  t = np.cos(direction) * x + np.sin(direction) * y
  t = (t - t.min()) / max(t.max() - t.min(), 1e-12)
  image = c0 + (c1 - c0) * t[..., None]

  # Foreground: a colour at least MIN_CONTRAST from every background colour.
  while True:
    fg = rng.uniform(0, 255, size=3)
    if _distance_to_segment(fg, c0, c1) >= MIN_CONTRAST:
      break

  shorter = min(height, width)
  radius = rng.uniform(MIN_SIZE, MAX_SIZE) * shorter / 2
  # Inside the centred shorter-side square: the paper's preprocessing keeps only that square,
  # and a shape near the end of a wide image would otherwise be cropped away with its label.
  lo = radius + MARGIN
  top, left = (height - shorter) / 2, (width - shorter) / 2
  cy = rng.uniform(top + lo, top + shorter - 1 - lo)
  cx = rng.uniform(left + lo, left + shorter - 1 - lo)
  # Circles and rings have no orientation; drawing theta anyway keeps every class's stream alike.
  theta = rng.uniform(0, 2 * np.pi)
  mask = shape_mask(label, height, width, cy, cx, radius, theta)
  image[mask] = fg

  image = image + rng.normal(0.0, NOISE_STD, size=image.shape)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Generated shapes (circle, ring, square, triangle, cross, star) on random backgrounds."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'Shapes lie inside the centred square that preprocessing keeps.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'One filled shape per image (' + ', '.join(CLASS_NAMES) + ') of random size, '
            'position, rotation and colour on a random background with mild noise; image sides '
            f'drawn from [{MIN_SIDE}, {MAX_SIDE}]. Generated locally, deterministically.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    # TFDS encodes the JPEGs with TensorFlow: hide the GPUs from it first (imported here, not at
    # the top, so that importing this module to register the builder does not import TensorFlow).
    from alexnet_jax.data import tensorflow_cpu  # noqa: F401
    return {name: self._generate_examples(name) for name in SPLITS}

  def _generate_examples(self, split: str):
    for index in range(SPLIT_SIZES[split]):
      image, label = draw_example(SPLITS[split], index)
      yield index, {'image': image, 'label': label}
