"""AlexNet's building blocks: local response normalisation, grouped convolution, pooling.

Everything here is plain JAX/NNX with no TensorFlow, so it runs wherever jax does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


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
  (benchmarks/lrn.py; numbers in the README).
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
  """`local_response_norm` as a module, to name it in a network; it has no parameters."""

  def __init__(
      self,
      size: int = 5,
      alpha: float = 1e-4,
      beta: float = 0.75,
      k: float = 2.0,
      *,
      groups: int = 1,
      divide_alpha_by_size: bool = False,
  ):
    _check_lrn_size(size)  # at construction rather than at the first call
    self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
    self.groups = groups
    self.divide_alpha_by_size = divide_alpha_by_size

  def __call__(self, x: jax.Array) -> jax.Array:
    return local_response_norm(
        x, self.size, self.alpha, self.beta, self.k, groups=self.groups,
        divide_alpha_by_size=self.divide_alpha_by_size)


def split_group_conv(lhs, rhs, window_strides, padding, *, feature_group_count=1,
                     dimension_numbers=None, **kwargs):
  """`lax.conv_general_dilated` computing each channel group as its own convolution.

  Same numbers as `feature_group_count=G` (input channel block g meets output channel
  block g), but faster forward and backward: 6.7x on XLA:CPU, 1.5x on an H200, over the
  paper net's grouped layers (benchmarks/grouped_conv.py, README). Passed to
  `nnx.Conv(conv_general_dilated=...)`, so the module's kernel keeps nnx.Conv's
  (kh, kw, in/G, out) layout.
  """
  if feature_group_count == 1:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                        dimension_numbers=dimension_numbers, **kwargs)
  numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  inputs = jnp.split(lhs, feature_group_count, axis=numbers.lhs_spec[1])
  kernels = jnp.split(rhs, feature_group_count, axis=numbers.rhs_spec[0])
  outputs = [
      jax.lax.conv_general_dilated(x, w, window_strides, padding,
                                   dimension_numbers=numbers, **kwargs)
      for x, w in zip(inputs, kernels)
  ]
  return jnp.concatenate(outputs, axis=numbers.out_spec[1])


def max_pool(x: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
  """Max pooling with no padding; window 3 and stride 2 is the paper's overlapping pooling."""
  return nnx.max_pool(x, (window, window), (stride, stride), padding='VALID')
