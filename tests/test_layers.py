"""Local response normalisation and grouped convolution against independent references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from alexnet_jax.model.layers import (LocalResponseNorm, local_response_norm, max_pool,
                                      split_group_conv)


def lrn_loop(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
  """The paper's formula, section 3.3, one channel at a time in float64."""
  x = np.asarray(x, np.float64)
  channels = x.shape[-1]
  out = np.empty_like(x)
  for i in range(channels):
    lo, hi = max(0, i - size // 2), min(channels - 1, i + size // 2)
    total = np.sum(x[..., lo:hi + 1] ** 2, axis=-1)
    out[..., i] = x[..., i] / (k + alpha * total) ** beta
  return out


def torch_lrn_formula(x, size, alpha, beta, k):
  """torch.nn.LocalResponseNorm as its documentation defines it: the squares averaged over
  a zero-padded window of `size` channels."""
  x = np.asarray(x, np.float64)
  padded = np.pad(x ** 2, [(0, 0)] * (x.ndim - 1) + [(size // 2, (size - 1) // 2)])
  window_sum = sum(padded[..., j:j + x.shape[-1]] for j in range(size))
  return x / (k + alpha / size * window_sum) ** beta


def activations(shape, seed=0, scale=30.0):
  """Post-ReLU-like inputs large enough that the alpha * sum term matters against k."""
  x = np.random.default_rng(seed).standard_normal(shape) * scale
  return np.maximum(x, 0.0).astype(np.float32) + np.float32(0.1)


@pytest.mark.parametrize('channels', [1, 3, 7, 96])
def test_lrn_matches_paper_formula_loop(channels):
  x = activations((2, 4, 3, channels), scale=100.0)
  # The alpha term is a sizeable part of the denominator, so a wrong window would show.
  assert np.max(1e-4 * np.sum(x.astype(np.float64) ** 2, -1)) > 1.0
  got = local_response_norm(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(got), lrn_loop(x), rtol=1e-6, atol=0)


@pytest.mark.parametrize('beta', [0.75, 0.5])
def test_lrn_matches_tensorflow(tf, beta):
  x = activations((2, 6, 5, 40), seed=1)
  want = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=beta)
  got = local_response_norm(jnp.asarray(x), size=5, alpha=1e-4, beta=beta, k=2.0)
  np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-6, atol=0)


def test_lrn_torch_and_caffe_conventions_divide_alpha_by_size():
  x = activations((3, 2, 2, 16), seed=2)
  paper = local_response_norm(jnp.asarray(x), alpha=1e-4)
  # torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) is the paper's net.
  np.testing.assert_allclose(np.asarray(paper), torch_lrn_formula(x, 5, 5e-4, 0.75, 2.0),
                             rtol=1e-6)
  # The same Caffe-style alpha, passed with the convention flag, is the paper's net too.
  caffe_style = local_response_norm(jnp.asarray(x), alpha=5e-4, divide_alpha_by_size=True)
  np.testing.assert_allclose(np.asarray(caffe_style), np.asarray(paper), rtol=1e-6)
  # bvlc_alexnet's settings (k=1, alpha=1e-4 divided by 5) give visibly different outputs.
  bvlc = local_response_norm(jnp.asarray(x), alpha=1e-4, k=1.0, divide_alpha_by_size=True)
  np.testing.assert_allclose(np.asarray(bvlc), lrn_loop(x, alpha=2e-5, k=1.0), rtol=1e-6)
  assert np.max(np.abs(np.asarray(bvlc) / np.asarray(paper) - 1)) > 0.5


def test_lrn_groups_normalise_each_block_alone():
  x = activations((2, 3, 3, 96), seed=3)
  got = local_response_norm(jnp.asarray(x), groups=2)
  want = np.concatenate([lrn_loop(x[..., :48]), lrn_loop(x[..., 48:])], axis=-1)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=0)
  # Channels 47 and 48 sit at a group edge: ungrouped they would see each other.
  assert not np.allclose(np.asarray(got), lrn_loop(x), rtol=1e-6)


def test_lrn_gradient():
  with jax.enable_x64(True):
    x = jnp.asarray(activations((2, 3, 2, 12), seed=4), jnp.float64)
    check_grads(lambda x: local_response_norm(x, groups=2), (x,), order=2,
                modes=['fwd', 'rev'])


def test_lrn_bfloat16_input_is_normalised_in_float32():
  x = jnp.asarray(activations((4, 5, 5, 96), seed=5), jnp.bfloat16)
  got = local_response_norm(x, groups=2)
  assert got.dtype == jnp.bfloat16
  # The only error left is the final rounding to bfloat16 (8 bits of mantissa).
  want = np.concatenate([lrn_loop(np.asarray(x[..., :48], np.float32)),
                         lrn_loop(np.asarray(x[..., 48:], np.float32))], axis=-1)
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2.0 ** -8, atol=0)


def test_lrn_module_and_bad_arguments():
  x = jnp.asarray(activations((1, 2, 2, 8)))
  module = LocalResponseNorm(size=3, alpha=2e-4, beta=0.5, k=1.5)
  np.testing.assert_allclose(np.asarray(module(x)),
                             lrn_loop(x, size=3, alpha=2e-4, beta=0.5, k=1.5), rtol=1e-6)
  assert not jax.tree.leaves(nnx.state(module))  # no parameters
  with pytest.raises(ValueError, match='odd'):
    LocalResponseNorm(size=4)
  with pytest.raises(ValueError, match='groups=3 does not divide the 8 channels'):
    local_response_norm(x, groups=3)


@pytest.mark.parametrize('stride,padding', [(1, 2), (2, 0)])
def test_split_group_conv_equals_two_convolutions_on_channel_halves(stride, padding):
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 8)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((5, 5, 4, 6)), jnp.float32)  # groups=2: in 8/2, out 6
  kwargs = dict(window_strides=(stride, stride), padding=[(padding, padding)] * 2,
                dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                precision=jax.lax.Precision.HIGHEST)
  halves = np.concatenate([
      jax.lax.conv_general_dilated(x[..., :4], w[..., :3], **kwargs),
      jax.lax.conv_general_dilated(x[..., 4:], w[..., 3:], **kwargs),
  ], axis=-1)
  split = split_group_conv(x, w, feature_group_count=2, **kwargs)
  grouped = jax.lax.conv_general_dilated(x, w, feature_group_count=2, **kwargs)
  np.testing.assert_allclose(np.asarray(split), halves, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(grouped), halves, rtol=1e-5, atol=1e-5)
  # Groups do not see each other: the first half ignores the second half of the input.
  x_changed = x.at[..., 4:].add(1.0)
  np.testing.assert_array_equal(
      np.asarray(split_group_conv(x_changed, w, feature_group_count=2, **kwargs))[..., :3],
      np.asarray(split)[..., :3])


def max_pool_loop(x, window, stride, cotangent=None):
  """Max pooling one output position at a time in numpy; with a cotangent, its gradient too:
  each output's cotangent goes to the first input (row by row) holding its window's maximum."""
  n, h, w, c = x.shape
  oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
  out, grad = np.empty((n, oh, ow, c), x.dtype), np.zeros_like(x)
  for i in range(oh):
    for j in range(ow):
      patch = x[:, i * stride:i * stride + window, j * stride:j * stride + window]
      out[:, i, j] = patch.max((1, 2))
      if cotangent is not None:
        first = patch.reshape(n, window * window, c).argmax(1)  # argmax takes the first
        for b, ch in np.ndindex(n, c):
          di, dj = divmod(first[b, ch], window)
          grad[b, i * stride + di, j * stride + dj, ch] += cotangent[b, i, j, ch]
  return out if cotangent is None else (out, grad)


@pytest.mark.parametrize('size,window,stride', [(13, 3, 2), (14, 3, 2), (9, 2, 2), (7, 3, 1)])
def test_max_pool_and_its_gradient_match_a_loop(size, window, stride):
  x = np.random.default_rng(size).standard_normal((2, size, size + 2, 5)).astype(np.float32)
  out_shape = max_pool_loop(x, window, stride).shape
  cotangent = np.random.default_rng(1).standard_normal(out_shape).astype(np.float32)
  want, want_grad = max_pool_loop(x, window, stride, cotangent)
  np.testing.assert_array_equal(max_pool(jnp.asarray(x), window, stride), want)
  grad = jax.grad(lambda x: jnp.vdot(max_pool(x, window, stride), cotangent))(jnp.asarray(x))
  np.testing.assert_allclose(grad, want_grad, rtol=1e-6)


def test_max_pool_gives_a_tied_maximum_gradient_to_the_first():
  # Post-ReLU maps are full of ties: 8 tied maxima (0) in one 3x3 window, and the centre.
  x = np.zeros((1, 3, 3, 1), np.float32)
  x[0, 1, 1, 0] = -1.0
  grad = jax.grad(lambda x: max_pool(x, 3, 2).sum())(jnp.asarray(x))
  want = np.zeros_like(x)
  want[0, 0, 0, 0] = 1.0
  np.testing.assert_array_equal(grad, want)
  np.testing.assert_array_equal(grad, max_pool_loop(x, 3, 2, np.ones((1, 1, 1, 1)))[1])


def test_max_pool_too_small_input():
  with pytest.raises(ValueError, match='smaller than the 3x3 window'):
    max_pool(jnp.zeros((1, 2, 5, 1)))


@pytest.mark.parametrize('kernel,stride,padding,groups', [
    (3, 1, 1, 1), (3, 1, 1, 2), (3, 2, 0, 2), (2, 1, 0, 1),  # the CPU's matmul kernel gradient
    (5, 1, 2, 2),  # XLA's own gradient (a window above 3x3)
])
def test_split_group_conv_gradients_equal_xla_grouped_conv(kernel, stride, padding, groups):
  rng = np.random.default_rng(kernel + stride + groups)
  x = jnp.asarray(rng.standard_normal((2, 9, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, 4 // groups, 6)), jnp.float32)
  pads = ((padding, padding),) * 2
  dimensions = ('NHWC', 'HWIO', 'NHWC')

  def loss(conv, x, w):
    y = conv(x, w, (stride, stride), pads, feature_group_count=groups,
             dimension_numbers=dimensions)
    return jnp.sum(jnp.sin(y))  # a cotangent that varies over the output

  ours = jax.grad(functools.partial(loss, split_group_conv), (0, 1))(x, w)
  xla = jax.grad(functools.partial(loss, jax.lax.conv_general_dilated), (0, 1))(x, w)
  for got, want in zip(ours, xla):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
