"""AlexNet's building blocks: local response normalisation, grouped convolution, pooling.

Everything here is plain JAX/NNX with no TensorFlow, so it runs wherever jax does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NHWC = ('NHWC', 'HWIO', 'NHWC')


def local_response_norm(
    x: jax.Array,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    *,
    groups: int = 1,
    divide_alpha_by_size: bool = False,
) -> jax.Array:
  """Local response normalisation across the last (channel) axis, paper section 3.3.

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-size//2)}^{min(C-1, i+size//2)} a[j]^2) ** beta

  The window is clipped at the channel edges (edge channels sum fewer neighbours) and, by
  default, alpha is NOT divided by `size`: that is the paper's formula, whose defaults
  (size=5, alpha=1e-4, beta=0.75, k=2) are this function's.

  The same computation in other frameworks:
    - `tf.nn.local_response_normalization(x, depth_radius=size // 2, bias=k, alpha=alpha,
      beta=beta)`: identical formula.
    - `torch.nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)`: torch averages
      the squares (divides by size, zero-padding the edges), so its alpha is size times ours.
    - Caffe's LRN layer (`local_size=size, alpha=alpha * size`) and the author's cuda-convnet2
      divide alpha by the window size as well. Pass `divide_alpha_by_size=True` to use the
      alpha of those configs unchanged (e.g. Caffe's bvlc_alexnet: alpha=1e-4, k=1).

  Args:
    x: (..., C) activations, any float dtype. The sum and the power run in float32 (float64
      for float64 input) whatever the input dtype; the result is cast back to x.dtype.
    size: the window width n; odd, so the window is centred.
    groups: normalise within each of `groups` equal channel blocks, as each GPU of the
      two-GPU network did over its own half of the channels.
    divide_alpha_by_size: use alpha / size (the cuda-convnet2 and Caffe convention).

  The windowed sum of squares is a `lax.reduce_window` over channels: faster, forward and
  backward, than a matmul with a 0/1 band matrix on XLA:CPU and on an H200
  (benchmarks/lrn.py; docs/performance.md).
  """
  _check_lrn_size(size)
  channels = x.shape[-1]
  if channels % groups:
    raise ValueError(f'LRN groups={groups} does not divide the {channels} channels.')
  if divide_alpha_by_size:
    alpha = alpha / size
  # At least float32: computed in bfloat16 it errs by 8.7e-3 relative, over twice bf16 rounding.
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  squares = jnp.square(x32)
  sums = _window_sum(squares, size, groups)
  t = k + alpha * sums
  if beta == 0.75:
    # t**-0.75 as rsqrt(t) * sqrt(rsqrt(t)): two cheap ops instead of the log and exp of a
    # general power.
    r = jax.lax.rsqrt(t)
    scale = r * jnp.sqrt(r)
  else:
    scale = t ** -beta
  return (x32 * scale).astype(x.dtype)


def _check_lrn_size(size: int) -> None:
  if size < 1 or size % 2 == 0:
    raise ValueError(f'LRN size must be a positive odd number, got {size}.')


def _window_sum(squares: jax.Array, size: int, groups: int) -> jax.Array:
  grouped = squares.reshape(squares.shape[:-1] + (groups, squares.shape[-1] // groups))
  radius = size // 2
  # Zero padding: the window is clipped at each group's edges.
  window = (1,) * (grouped.ndim - 1) + (size,)
  padding = ((0, 0),) * (grouped.ndim - 1) + ((radius, radius),)
  sums = jax.lax.reduce_window(grouped, 0.0, jax.lax.add, window, (1,) * grouped.ndim, padding)
  return sums.reshape(squares.shape)


class LocalResponseNorm(nnx.Module):
  """`local_response_norm` as a module, to name it in a network; it has no parameters. Takes
  the function's arguments but `x`, with the same defaults."""

  def __init__(self, size: int = 5, **options):
    _check_lrn_size(size)  # at construction rather than at the first call
    self.size = size
    self.options = nnx.static(options)  # configuration, not state

  def __call__(self, x: jax.Array) -> jax.Array:
    return local_response_norm(x, self.size, **self.options)


def split_group_conv(lhs, rhs, window_strides, padding, *, feature_group_count=1,
                     dimension_numbers=None, lhs_dilation=None, rhs_dilation=None,
                     precision=None, out_sharding=None):
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels without dilation, computing
  each channel group as its own convolution.

  Same numbers as `feature_group_count=G` (input channel block g meets output channel
  block g), but faster forward and backward on XLA:CPU and on GPUs over the paper net's
  grouped layers (benchmarks/grouped_conv.py measures it). Passed to
  `nnx.Conv(conv_general_dilated=...)`, so the module's kernel keeps nnx.Conv's
  (kh, kw, in/G, out) layout.
  """
  numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if numbers != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC):
    raise ValueError(f'split_group_conv takes NHWC inputs and HWIO kernels, got {numbers}.')
  for dilation in (lhs_dilation, rhs_dilation):
    if dilation is not None and any(d != 1 for d in dilation):
      raise ValueError(f'split_group_conv does not dilate; got dilation {dilation}.')
  if out_sharding is not None:
    raise ValueError('split_group_conv takes no out_sharding: its output follows its input.')
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, window_strides, padding, dimension_numbers=NHWC,
                                        precision=precision)

  if feature_group_count == 1:
    return conv(lhs, rhs)
  inputs = jnp.split(lhs, feature_group_count, axis=-1)
  kernels = jnp.split(rhs, feature_group_count, axis=-1)
  return jnp.concatenate([conv(x, w) for x, w in zip(inputs, kernels)], axis=-1)


# The ways `AlexNet(grouped_conv=...)` computes a grouped convolution; the same numbers.
GROUPED_CONVS = {'split': split_group_conv, 'xla': jax.lax.conv_general_dilated}


def max_pool(x: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
  """Max pooling of NHWC `x` with no padding; window 3 and stride 2 is the paper's
  overlapping pooling. A `lax.reduce_window`, whose gradient goes to the first of the inputs
  that tie for a window's maximum: in the train step on XLA:CPU it beats the maximum of the
  window's strided views, which is faster alone (benchmarks/max_pool.py measures both).
  """
  height, width = x.shape[-3:-1]
  if height < window or width < window:
    raise ValueError(f'max_pool: a {height}x{width} input is smaller than the {window}x{window} '
                     'window.')
  dims = (1,) * (x.ndim - 3) + (window, window, 1)
  strides = (1,) * (x.ndim - 3) + (stride, stride, 1)
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, 'VALID')
