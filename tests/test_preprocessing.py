"""The preprocessing ops against numpy references, each run eagerly and inside tf.data."""

import io
from fractions import Fraction

import numpy as np
import pytest

# AlexNet's ImageNet RGB eigen system as fb.resnet.torch publishes it (pixels 0-255), one
# eigenvector per column: realistic magnitudes, and a V that is not symmetric, so that using
# rows for columns shows.
EIGENVALUES = np.array([0.2175, 0.0188, 0.0045]) * 255
EIGENVECTORS = np.array([[-0.5675, 0.7192, 0.4009],
                         [-0.5808, -0.0045, -0.8140],
                         [-0.5836, -0.6948, 0.4203]])


@pytest.fixture(scope='module')
def pp(tf):
  """The module under test, imported only once TensorFlow is known to be there."""
  del tf
  import types

  from alexnet_jax.data import ops, views
  # The ops and the views built from them, under one name: the tests below cover both.
  return types.SimpleNamespace(**{name: getattr(module, name) for module in (ops, views)
                                  for name in dir(module) if not name.startswith('__')})


def both_ways(tf, fn, *args):
  """fn(*args) eagerly and as a tf.data map, asserted equal; returns the result as numpy.

  The tf.data copy of each input loses its static shape, as a decoded image's has none, so
  that graph-mode code cannot lean on shapes the real pipeline never knows.
  """
  args = tuple(tf.convert_to_tensor(a) for a in args)
  eager = tf.nest.map_structure(lambda t: t.numpy(), fn(*args))

  def unknown_shapes(*tensors):
    return fn(*[tf.compat.v1.placeholder_with_default(t, [None] * t.shape.rank)
                for t in tensors])

  (graph,) = list(tf.data.Dataset.from_tensors(args).map(unknown_shapes).as_numpy_iterator())
  tf.nest.map_structure(np.testing.assert_array_equal, eager, graph)
  return eager


def raises_both_ways(tf, fn, *args):
  """fn(*args) raises InvalidArgumentError eagerly and inside tf.data alike."""
  args = tuple(tf.convert_to_tensor(a) for a in args)
  with pytest.raises(tf.errors.InvalidArgumentError):
    fn(*args)
  with pytest.raises(tf.errors.InvalidArgumentError):
    list(tf.data.Dataset.from_tensors(args).map(fn))


def over_seeds(tf, pp, fn, count, eager_count=40):
  """fn(seed) for the first `count` examples of a stream, as the pipeline draws them: mapped
  over Dataset.range with `example_seed`. The first `eager_count` are checked against eager
  calls (eager is too slow for thousands)."""
  base = tf.constant([7, 11], tf.int64)
  dataset = tf.data.Dataset.range(count).map(lambda i: fn(pp.example_seed(base, i)))
  graph = next(dataset.batch(count).as_numpy_iterator())
  for i in range(eager_count):
    eager = fn(pp.example_seed(base, tf.constant(i, tf.int64)))
    tf.nest.map_structure(lambda e, g, i=i: np.testing.assert_array_equal(e, g[i]), eager, graph)
  return graph


def noise(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth(height, width, seed=0):
  """A gradient plus low-frequency waves: lossy codecs and resampling barely touch it, so
  their error bounds stay small and meaningful."""
  rng = np.random.default_rng(seed)
  longer = max(height, width)
  y, x = np.arange(height)[:, None] / longer, np.arange(width)[None, :] / longer
  channels = []
  for _ in range(3):
    fx, fy, phase = rng.uniform(2, 6, 3)
    wave = np.sin(fx * 2.1 * x + phase) * np.cos(fy * 2.1 * y)
    channels.append(128 + 60 * wave + 50 * (x - y))
  return np.clip(np.round(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def encode(array, image_format, mode=None, **options):
  image_module = pytest.importorskip('PIL.Image')
  image = image_module.fromarray(array)
  if mode:
    image = image.convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, image_format, **options)
  return buffer.getvalue()


def triangle_weights(size_in, size_out):
  """(size_out, size_in) weights of the antialiased bilinear filter along one axis.

  Pixel centres sit at i + 0.5; output pixel o samples the input at (o + 0.5) / scale. The
  triangle's support widens by 1 / scale when shrinking, so every input pixel contributes;
  weights are normalised per output pixel, which also handles the borders.
  """
  scale = size_out / size_in
  width = max(1.0, 1.0 / scale)
  centres = (np.arange(size_out) + 0.5) / scale
  distance = np.abs(np.arange(size_in)[None, :] + 0.5 - centres[:, None]) / width
  weights = np.maximum(0.0, 1.0 - distance)
  return weights / weights.sum(1, keepdims=True)


def area_weights(size_in, size_out):
  """(size_out, size_in) weights of area averaging along one axis: output pixel o covers the
  input interval [o, o + 1) * size_in / size_out, and each input pixel counts by its overlap."""
  step = size_in / size_out
  starts = np.arange(size_out)[:, None] * step
  pixels = np.arange(size_in)[None, :]
  overlap = np.minimum(starts + step, pixels + 1) - np.maximum(starts, pixels)
  return np.maximum(overlap, 0.0) / step


def to_uint8(pixels):
  return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def resize_reference(image, height, width):
  """Separable float64 resize, unrounded: area averaging when shrinking, bilinear (the
  triangle filter, at scale 1) when enlarging."""
  weights = area_weights if height <= image.shape[0] else triangle_weights
  rows = np.einsum('oh,hwc->owc', weights(image.shape[0], height), image.astype(float),
                   optimize=True)
  return np.einsum('pw,owc->opc', weights(image.shape[1], width), rows, optimize=True)


def plain_bilinear_reference(image, height, width):
  """Textbook bilinear with half-pixel centres and clamped borders via np.interp, unrounded:
  what the antialiased filter must reduce to when enlarging."""
  def along(axis_len, out_len):
    return (np.arange(out_len) + 0.5) * axis_len / out_len - 0.5

  image = image.astype(float)
  ys, xs = along(image.shape[0], height), along(image.shape[1], width)
  rows = np.apply_along_axis(lambda col: np.interp(ys, np.arange(image.shape[0]), col), 0, image)
  return np.apply_along_axis(lambda row: np.interp(xs, np.arange(image.shape[1]), row), 1, rows)


# resized_shape


@pytest.mark.parametrize('height, width, size, want', [
    (500, 375, 256, (341, 256)),
    (375, 500, 256, (256, 341)),
    (300, 300, 256, (256, 256)),
    (256, 256, 256, (256, 256)),
    (40, 60, 256, (256, 384)),  # small images are enlarged
    (60, 40, 256, (384, 256)),
    (512, 513, 256, (256, 257)),  # 256.5: half up, where half-to-even would give 256
    (513, 512, 256, (257, 256)),
    (2, 5, 3, (3, 8)),  # 7.5 -> 8
    (2, 3, 3, (3, 5)),  # 4.5 -> 5, half-to-even would give 4
    (3, 4, 256, (256, 341)),  # 341.33 -> 341
    (1023, 1501, 256, (256, 376)),  # 375.6 -> 376
])
def test_resized_shape_scales_shorter_side_and_rounds_half_up(tf, pp, height, width, size, want):
  got = both_ways(tf, lambda h, w: pp.resized_shape(h, w, size), height, width)
  assert tuple(got) == want


def test_resized_shape_matches_exact_rational_rounding(tf, pp):
  # Sides up to 10^5 make 2 * side * size exceed float32's 2^24 exact integers, so a float
  # implementation would be caught here.
  rng = np.random.default_rng(0)
  heights, widths = rng.integers(1, 100_000, (2, 2000))
  for size in (224, 256):
    got = both_ways(tf, lambda h, w: pp.resized_shape(h, w, size), heights, widths)

    def scaled(side, shorter):
      return int(Fraction(int(side) * size, int(shorter)) + Fraction(1, 2))

    want = [[scaled(s, min(h, w)) for s, h, w in zip(sides, heights, widths)]
            for sides in (heights, widths)]
    np.testing.assert_array_equal(got, want)


# resize_shorter_side


def test_reference_enlarging_is_plain_bilinear():
  # The reference's claim about itself, so that the op's tests below rest on it.
  image = noise((9, 13, 3))
  np.testing.assert_allclose(resize_reference(image, 31, 40),
                             plain_bilinear_reference(image, 31, 40), rtol=0, atol=1e-9)


@pytest.mark.parametrize('height, width', [
    (375, 500), (500, 375), (257, 1000), (1000, 257), (300, 300), (40, 60), (100, 100)])
@pytest.mark.parametrize('content', ['noise', 'smooth'])
def test_resize_shorter_side_matches_area_average_or_bilinear(tf, pp, height, width, content):
  image = noise((height, width, 3)) if content == 'noise' else smooth(height, width)
  got = both_ways(tf, lambda x: pp.resize_shorter_side(x, 256), image)
  want_shape = tuple(both_ways(tf, lambda h, w: pp.resized_shape(h, w, 256), height, width))
  assert got.shape == want_shape + (3,)
  # float32 against float64 flips a rounding now and then, never more: measured max 1,
  # mean at most 0.002 (noise, 1000x257).
  difference = np.abs(got.astype(int) - to_uint8(resize_reference(image, *want_shape)))
  assert difference.max() <= 1
  assert difference.mean() < 0.005


def test_resize_shorter_side_antialiases_when_shrinking(tf, pp):
  image = noise((500, 375, 3))
  got = both_ways(tf, lambda x: pp.resize_shorter_side(x, 256), image).astype(int)
  # Plain bilinear would drop a third of the noise pixels and keep the rest at full contrast;
  # the widened filter averages them, so it is far from plain bilinear and smoother.
  aliased = to_uint8(plain_bilinear_reference(image, 341, 256)).astype(int)
  assert np.abs(got - aliased).mean() > 10  # measured 17.7
  assert got.std() < 0.8 * aliased.std()  # measured 33.7 against 49.2


def test_resize_shorter_side_enlarging_is_plain_bilinear(tf, pp):
  image = noise((40, 60, 3))
  got = both_ways(tf, lambda x: pp.resize_shorter_side(x, 256), image)
  difference = np.abs(got.astype(int) - to_uint8(plain_bilinear_reference(image, 256, 384)))
  assert difference.max() <= 1
  assert difference.mean() < 0.001


@pytest.mark.parametrize('shape', [(256, 341), (341, 256), (256, 256), (256, 1000)])
def test_resize_shorter_side_returns_image_at_size_unchanged(tf, pp, shape):
  image = noise(shape + (3,))
  got = both_ways(tf, lambda x: pp.resize_shorter_side(x, 256), image)
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, image)


@pytest.mark.parametrize('height, width, size, want', [
    (500, 375, 224, (299, 224)),
    (33, 47, 32, (32, 46)),
    (1000, 1000, 227, (227, 227)),
    (7, 3, 227, (530, 227)),
])
def test_resize_shorter_side_shape_and_constant_images(tf, pp, height, width, size, want):
  # A flat image stays flat at every scale only if the weights are normalised.
  image = np.full((height, width, 3), 201, np.uint8)
  got = both_ways(tf, lambda x: pp.resize_shorter_side(x, size), image)
  assert got.shape == want + (3,)
  assert np.all(got == 201)


# crop and offsets


@pytest.mark.parametrize('offset', [(0, 0), (5, 8), (2, 3), (5, 0)])
@pytest.mark.parametrize('channels', [3, 1])
def test_crop_equals_numpy_slice(tf, pp, offset, channels):
  image = noise((9, 12, channels))
  got = both_ways(tf, lambda x, o: pp.crop(x, o, 4), image, np.int32(offset))
  y, x = offset
  np.testing.assert_array_equal(got, image[y:y + 4, x:x + 4])


def test_crop_outside_the_image_raises(tf, pp):
  # One past the last valid offset: tf.slice must refuse rather than return a short crop.
  raises_both_ways(tf, lambda x, o: pp.crop(x, o, 4), noise((9, 12, 3)), np.int32([6, 0]))


@pytest.mark.parametrize('height, width, size, want', [
    (256, 256, 224, (16, 16)),
    (257, 258, 224, (16, 17)),  # margins 33 and 34: the odd one rounds towards the top
    (7, 8, 4, (1, 2)),
    (5, 5, 5, (0, 0)),
    (256, 341, 256, (0, 42)),  # margin 85
    (342, 256, 256, (43, 0)),
])
def test_central_offset_rounds_towards_top_left(tf, pp, height, width, size, want):
  image = noise((height, width, 3))
  got = both_ways(tf, lambda x: pp.central_offset(x, size), image)
  assert tuple(got) == want
  # The crop there leaves margins that differ by at most one, the larger at the bottom right.
  (y, x), h_margin, w_margin = got, height - size, width - size
  assert h_margin - 2 * y in (0, 1) and w_margin - 2 * x in (0, 1)


def test_random_offset_stays_in_range_and_is_deterministic(tf, pp):
  offsets = over_seeds(tf, pp, lambda seed: pp.random_square_offset(256, 224, seed), 2000)
  assert offsets.min() == 0 and offsets[:, 0].max() == 32 and offsets[:, 1].max() == 32
  # Eager and tf.data agree on a seed (checked in both_ways); neighbouring seeds differ.
  seed = np.array([3, 4], np.int32)
  first = both_ways(tf, lambda s: pp.random_square_offset(256, 224, s), seed)
  other = both_ways(tf, lambda s: pp.random_square_offset(256, 224, s), seed + [0, 1])
  assert not np.array_equal(first, other)


def test_random_offset_of_a_full_size_crop_is_zero(tf, pp):
  offsets = over_seeds(tf, pp, lambda seed: pp.random_square_offset(6, 6, seed), 200)
  assert np.all(offsets == 0)


def test_random_offset_is_uniform_over_every_position(tf, pp):
  # 4 x 4 positions, 4000 draws: 250 each.
  count = 4000
  offsets = over_seeds(tf, pp, lambda seed: pp.random_square_offset(7, 4, seed), count)
  cells = np.zeros((4, 4))
  np.add.at(cells, (offsets[:, 0], offsets[:, 1]), 1)
  assert np.all(cells > 0)
  expected = count / cells.size
  chi_square = np.sum((cells - expected) ** 2 / expected)
  # 15 degrees of freedom: P(chi^2 > 40) is 4.5e-4 for a uniform sampler (fixed seeds make
  # it reproducible). Rounding instead of flooring halves the end positions' share.
  assert chi_square < 40


def test_random_flip_flag_says_whether_image_was_mirrored(tf, pp):
  image = noise((5, 6, 3))
  outcomes = set()
  # Eager and tf.data agreeing on each seed is the determinism check.
  for seed in range(6):
    got, flipped = both_ways(tf, pp.random_flip, image, np.int32([seed, 1]))
    np.testing.assert_array_equal(got, image[:, ::-1] if flipped else image)
    outcomes.add(bool(flipped))
  assert outcomes == {False, True}


def test_random_flip_mirrors_half_the_time(tf, pp):
  image = noise((5, 6, 3))
  count = 4000
  images, flags = over_seeds(tf, pp, lambda seed: pp.random_flip(tf.constant(image), seed), count)
  np.testing.assert_array_equal(images[flags], np.broadcast_to(image[:, ::-1], images[flags].shape))
  np.testing.assert_array_equal(images[~flags], np.broadcast_to(image, images[~flags].shape))
  # Standard deviation of the fraction: 0.008, so +-0.04 is five of them (measured 0.4995).
  assert abs(flags.mean() - 0.5) < 0.04


# ten_crops


@pytest.mark.parametrize('height, width, size', [(9, 11, 4), (13, 10, 6), (4, 4, 4)])
def test_ten_crops_are_corners_and_centre_then_mirrors(tf, pp, height, width, size):
  image = noise((height, width, 3))
  crops, offsets, flipped = both_ways(tf, lambda x: pp.ten_crops(x, size), image)
  bottom, right = height - size, width - size
  corners_and_centre = [(0, 0), (0, right), (bottom, 0), (bottom, right),
                        (bottom // 2, right // 2)]
  assert crops.shape == (10, size, size, 3)
  np.testing.assert_array_equal(offsets, corners_and_centre * 2)
  np.testing.assert_array_equal(flipped, [False] * 5 + [True] * 5)
  for i, (y, x) in enumerate(corners_and_centre):
    window = image[y:y + size, x:x + size]
    np.testing.assert_array_equal(crops[i], window)
    np.testing.assert_array_equal(crops[i + 5], window[:, ::-1])


def test_ten_crops_of_the_stored_256_image(tf, pp):
  crops, offsets, _ = both_ways(tf, lambda x: pp.ten_crops(x, 224), noise((256, 256, 3)))
  assert crops.shape == (10, 224, 224, 3)
  np.testing.assert_array_equal(offsets[:5], [[0, 0], [0, 32], [32, 0], [32, 32], [16, 16]])


# pca_lighting


def test_pca_lighting_is_eigenvectors_times_scaled_alpha(tf, pp):
  def lighting(seed):
    return pp.pca_lighting(seed, EIGENVALUES, EIGENVECTORS, 0.1)

  for seed in ([0, 0], [1, 2], [123, 456]):
    seed = np.int32(seed)
    got = both_ways(tf, lighting, seed)
    # The definition: the same stateless draw, then V @ (alpha * lambda) in float64.
    alpha = tf.random.stateless_normal([3], seed, stddev=0.1).numpy().astype(np.float64)
    np.testing.assert_allclose(got, EIGENVECTORS @ (alpha * EIGENVALUES), rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32 and np.abs(got).max() > 0.1


def test_pca_lighting_covariance_follows_eigen_system(tf, pp):
  std, count = 0.1, 8000
  offsets = over_seeds(
      tf, pp, lambda seed: pp.pca_lighting(seed, EIGENVALUES, EIGENVECTORS, std), count)
  covariance = np.cov(offsets.T)
  want = EIGENVECTORS @ np.diag((std * EIGENVALUES) ** 2) @ EIGENVECTORS.T
  # A sample variance's relative error is sqrt(2 / 8000) = 1.6%; 8% is five of those
  # (measured 1.8%). The first eigenvalue dominates every RGB entry; using V's rows for its
  # columns measured 212%.
  scale = np.sqrt(np.outer(np.diag(want), np.diag(want)))
  assert np.abs(covariance - want).max() / scale.max() < 0.08
  # In the eigenbasis, so that the two small eigenvalues are checked too: variances within
  # 8% (measured at most 1.8%), correlations under 0.05 (sd 0.011, measured at most 0.009).
  alphas = np.linalg.solve(EIGENVECTORS, offsets.T.astype(np.float64))
  alpha_covariance = np.cov(alphas)
  np.testing.assert_allclose(np.diag(alpha_covariance), (std * EIGENVALUES) ** 2, rtol=0.08)
  correlation = np.corrcoef(alphas)
  assert np.abs(correlation - np.eye(3)).max() < 0.05


# example_seed


def test_example_seed_is_a_function_of_seed_and_position(tf, pp):
  base = np.int64([7, 11])
  first = both_ways(tf, pp.example_seed, base, np.int64(5))
  again = both_ways(tf, pp.example_seed, base, np.int64(5))
  np.testing.assert_array_equal(first, again)
  assert first.shape == (2,)
  # Positions arrive as int64 from Dataset.range but may be int32 elsewhere: same seed.
  np.testing.assert_array_equal(both_ways(tf, pp.example_seed, base, np.int32(5)), first)
  assert not np.array_equal(both_ways(tf, pp.example_seed, base + [0, 1], np.int64(5)), first)


def test_example_seeds_differ_across_positions(tf, pp):
  seeds = over_seeds(tf, pp, lambda seed: seed, 1000)
  assert len({tuple(s) for s in seeds}) == 1000


# decode_image


@pytest.mark.parametrize('image_format', ['PNG', 'BMP'])
def test_decode_lossless_rgb_round_trip(tf, pp, image_format):
  image = noise((17, 23, 3))
  got = both_ways(tf, pp.decode_image, encode(image, image_format))
  np.testing.assert_array_equal(got, image)


def test_decode_png_grayscale_gains_three_equal_channels(tf, pp):
  gray = noise((17, 23))
  got = both_ways(tf, pp.decode_image, encode(gray, 'PNG'))
  np.testing.assert_array_equal(got, np.repeat(gray[..., None], 3, -1))


def test_decode_png_drops_alpha(tf, pp):
  rgba = noise((17, 23, 4))
  got = both_ways(tf, pp.decode_image, encode(rgba, 'PNG'))
  np.testing.assert_array_equal(got, rgba[..., :3])


def test_decode_gif_palette_round_trip(tf, pp):
  # 16 colours fit a GIF palette exactly.
  rng = np.random.default_rng(0)
  palette = noise((16, 3), seed=1)
  image = palette[rng.integers(0, 16, (13, 17))]
  got = both_ways(tf, pp.decode_image, encode(image, 'GIF'))
  np.testing.assert_array_equal(got, image)


def test_decode_large_png_ignores_min_shorter_side(tf, pp):
  image = noise((520, 600, 3))
  got = both_ways(tf, lambda b: pp.decode_image(b, 256), encode(image, 'PNG'))
  np.testing.assert_array_equal(got, image)


def test_decode_jpeg_grayscale_to_three_channels(tf, pp):
  gray = smooth(300, 400)[..., 1]
  got = both_ways(tf, pp.decode_image, encode(gray, 'JPEG', quality=90)).astype(int)
  assert got.shape == (300, 400, 3)
  assert np.all(got == got[..., :1])
  # Measured: max 2, mean 0.49.
  difference = np.abs(got[..., 0] - gray)
  assert difference.max() <= 3 and difference.mean() < 0.75


def test_decode_jpeg_cmyk_to_rgb(tf, pp):
  image_module = pytest.importorskip('PIL.Image')
  image = smooth(300, 400)
  data = encode(image, 'JPEG', 'CMYK', quality=90)
  assert image_module.open(io.BytesIO(data)).mode == 'CMYK'  # a real 4-channel JPEG
  got = both_ways(tf, pp.decode_image, data).astype(int)
  assert got.shape == (300, 400, 3)
  # Measured: max 2, mean 0.48. Missing the inversion of Adobe CMYK would be off by ~100.
  difference = np.abs(got - image)
  assert difference.max() <= 3 and difference.mean() < 0.75


@pytest.mark.parametrize('min_shorter_side', [0, 256])
def test_decode_undecodable_bytes_raise(tf, pp, min_shorter_side):
  png = encode(noise((40, 50, 3)), 'PNG')
  jpeg = encode(smooth(300, 400), 'JPEG')
  for data in (b'', png[:len(png) // 2], jpeg[:len(jpeg) // 2], jpeg[:100], b'not an image'):
    raises_both_ways(tf, lambda b: pp.decode_image(b, min_shorter_side), data)


@pytest.mark.parametrize('height, width, min_shorter_side, ratio, want', [
    (511, 700, 256, 1, (511, 700)),  # just below 2 * 256: full decode
    (512, 700, 256, 2, (256, 350)),
    (700, 512, 256, 2, (350, 256)),
    (900, 1200, 256, 2, (450, 600)),
    (1023, 1501, 256, 2, (512, 751)),  # libjpeg rounds the scaled size up
    (1024, 1500, 256, 4, (256, 375)),
    (1800, 2400, 256, 4, (450, 600)),
    (2047, 2050, 256, 4, (512, 513)),
    (2048, 2100, 256, 8, (256, 263)),
    (4200, 4100, 256, 8, (525, 513)),  # 1/8 is libjpeg's smallest scale
    (447, 500, 224, 1, (447, 500)),
    (448, 500, 224, 2, (224, 250)),
    (2048, 2100, 0, 1, (2048, 2100)),  # no minimum: always full size
])
def test_decode_jpeg_at_the_largest_dct_scale_that_fits(tf, pp, height, width, min_shorter_side,
                                                       ratio, want):
  image = np.full((height, width, 3), 128, np.uint8)
  image[::7, ::5] = 30  # detail, so that a wrong ratio could not decode to the same pixels
  data = encode(image, 'JPEG', quality=90)
  got = both_ways(tf, lambda b: pp.decode_image(b, min_shorter_side), data)
  assert got.shape == want + (3,)
  np.testing.assert_array_equal(got, tf.image.decode_jpeg(data, channels=3, ratio=ratio))


@pytest.mark.parametrize('height, width, bound', [
    (900, 1200, 0.75),  # ratio 2, measured mean 0.47, max 2
    (1800, 2400, 1.25),  # ratio 4, measured mean 0.88, max 4
    # Ratio 8. 2736 / 8 is whole: at 2731 the 1/8 decode's 342 columns scale to 342, the full
    # decode's to 341.375 -> 341, and the shapes would differ.
    (2048, 2736, 1.25),  # measured mean 0.92, max 4
])
def test_decode_fast_path_then_resize_is_close_to_full_decode(tf, pp, height, width, bound):
  data = encode(smooth(height, width), 'JPEG', quality=90)

  def to_256(min_shorter_side):
    return lambda b: pp.resize_shorter_side(pp.decode_image(b, min_shorter_side), 256)

  fast = both_ways(tf, to_256(256), data).astype(int)
  full = to_256(0)(tf.constant(data)).numpy().astype(int)
  assert fast.shape == full.shape
  difference = np.abs(fast - full)
  assert difference.mean() < bound and difference.max() <= 6


# square_image


@pytest.mark.parametrize('height, width', [(300, 400), (400, 300), (20, 30), (256, 256)])
@pytest.mark.parametrize('fast_decode', [False, True])
def test_square_image_is_resize_then_central_crop(tf, pp, height, width, fast_decode):
  image = noise((height, width, 3))
  data = encode(image, 'PNG')
  got = both_ways(tf, lambda b: pp.square_image(b, 256, fast_decode), data)
  assert got.shape == (256, 256, 3)
  resized = pp.resize_shorter_side(tf.constant(image), 256).numpy()
  y, x = (resized.shape[0] - 256) // 2, (resized.shape[1] - 256) // 2
  np.testing.assert_array_equal(got, resized[y:y + 256, x:x + 256])


@pytest.mark.parametrize('fast_decode, ratio', [(False, 1), (True, 4)])
def test_square_image_of_a_large_jpeg(tf, pp, fast_decode, ratio):
  data = encode(smooth(900, 1200), 'JPEG', quality=90)
  got = both_ways(tf, lambda b: pp.square_image(b, 224, fast_decode), data)
  assert got.shape == (224, 224, 3)
  decoded = tf.image.decode_jpeg(data, channels=3, ratio=ratio)
  # 900 >= 4 * 224: decoded at 225 x 300, then 224 x 299 (full: 224 x 298.67 -> 299).
  resized = pp.resize_shorter_side(decoded, 224).numpy()
  x = (resized.shape[1] - 224) // 2
  np.testing.assert_array_equal(got, resized[:, x:x + 224])


# random_crop_view


def crop_view_and_square_crop(tf, pp, image_bytes, seed, resize=256, size=227, fast=True):
  """random_crop_view's view and offset, and the reference: the square's crop there."""
  view, offset = both_ways(
      tf, lambda b, s: pp.random_crop_view(b, resize, size, s, fast), image_bytes, seed)
  square = both_ways(tf, lambda b: pp.square_image(b, resize, fast), image_bytes)
  want_offset = both_ways(tf, lambda s: pp.random_square_offset(resize, size, s), seed)
  np.testing.assert_array_equal(offset, want_offset)  # the same draw from the same seed
  y, x = offset
  return view, square[y:y + size, x:x + size], square, offset


@pytest.mark.parametrize('image_format', ['JPEG', 'PNG'])
def test_random_crop_view_of_a_converted_square_is_its_exact_crop(tf, pp, image_format):
  image_bytes = encode(noise((256, 256, 3)), image_format, quality=95)
  for seed in ([0, 1], [5, 9]):
    view, want, _, _ = crop_view_and_square_crop(tf, pp, image_bytes, np.array(seed, np.int64))
    np.testing.assert_array_equal(view, want)


@pytest.mark.parametrize('height, width, image_format, fast', [
    (375, 500, 'JPEG', True), (500, 375, 'PNG', True),
    (1100, 700, 'JPEG', True),  # decoded at half size
])
def test_random_crop_view_is_the_square_crop_up_to_resampling(tf, pp, height, width,
                                                              image_format, fast):
  """Decoding and resizing only the crop's window gives the crop of the resized square, up to
  the window's placement to the nearest source pixel and the filter at its edges."""
  image_bytes = encode(smooth(height, width), image_format, quality=95)
  for seed in range(2):
    view, want, square, (y, x) = crop_view_and_square_crop(
        tf, pp, image_bytes, np.array([seed, 3], np.int64), fast=fast)
    assert view.shape == (227, 227, 3) and view.dtype == np.uint8
    difference = np.abs(view.astype(int) - want.astype(int)).mean()
    # The crop one pixel over, as a yardstick: the view must be closer than that.
    x_over = x + 1 if x + 1 + 227 <= square.shape[1] else x - 1
    shifted = np.abs(square[y:y + 227, x_over:x_over + 227].astype(int) - want).mean()
    assert difference < 0.7 * shifted, (difference, shifted)


@pytest.mark.parametrize('image_format', ['JPEG', 'PNG'])
def test_random_crop_view_of_a_small_image_is_the_enlarged_square_crop(tf, pp, image_format):
  image_bytes = encode(smooth(150, 200), image_format, quality=95)
  view, want, _, _ = crop_view_and_square_crop(tf, pp, image_bytes, np.array([4, 3], np.int64))
  np.testing.assert_array_equal(view, want)
