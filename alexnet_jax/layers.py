"""AlexNet's building blocks: local response normalisation, grouped convolution, pooling.

Everything here is plain JAX/NNX with no TensorFlow, so it runs wherever jax does.
"""

from __future__ import annotations

import functools

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
                     dimension_numbers=None, lhs_dilation=None, rhs_dilation=None,
                     precision=None, out_sharding=None):
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels without dilation, computing
  each channel group as its own convolution, with a faster kernel gradient on CPUs.

  Same numbers as `feature_group_count=G` (input channel block g meets output channel
  block g), but faster forward and backward: 6.7x on XLA:CPU, 1.5x on an H200, over the
  paper net's grouped layers (benchmarks/grouped_conv.py, README). Passed to
  `nnx.Conv(conv_general_dilated=...)`, so the module's kernel keeps nnx.Conv's
  (kh, kw, in/G, out) layout. See `_conv` for the gradient.
  """
  numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if numbers != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC):
    raise ValueError(f'split_group_conv takes NHWC inputs and HWIO kernels, got {numbers}.')
  for dilation in (lhs_dilation, rhs_dilation):
    if dilation is not None and any(d != 1 for d in dilation):
      raise ValueError(f'split_group_conv does not dilate; got dilation {dilation}.')
  if out_sharding is not None:
    raise ValueError('split_group_conv takes no out_sharding: its output follows its input.')
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  conv = functools.partial(_conv, strides=tuple(window_strides),
                           padding=tuple(tuple(p) for p in padding), precision=precision)
  if feature_group_count == 1:
    return conv(lhs, rhs)
  inputs = jnp.split(lhs, feature_group_count, axis=-1)
  kernels = jnp.split(rhs, feature_group_count, axis=-1)
  return jnp.concatenate([conv(x, w) for x, w in zip(inputs, kernels)], axis=-1)


_NHWC = ('NHWC', 'HWIO', 'NHWC')


# Kernel windows up to 3x3 (conv3-5) get the matmul gradient. A 5x5 one gains nothing
# measurable (conv2), and an 11x11 one (conv1, 1.4x faster) would add 121 matmuls to every
# compilation of the step, several seconds each time.
MAX_MATMUL_GRAD_WINDOW = 9


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, kernel, strides, padding, precision):
  """An ungrouped NHWC convolution whose kernel gradient is, on CPUs, one matmul per kernel
  position (the input window at that position, transposed, times the output gradient)
  instead of XLA:CPU's kernel-gradient convolution: about 2x faster on the paper net's 3x3
  layers (benchmarks/conv_grad.py, README). Other platforms, and larger windows, keep XLA's
  own."""
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_NHWC,
                                      precision=precision)


def _conv_forward(x, kernel, strides, padding, precision):
  return _conv(x, kernel, strides, padding, precision), (x, kernel)


def _conv_backward(strides, padding, precision, residuals, grad_out):
  x, kernel = residuals

  def xla_grads(x, kernel, grad_out):
    _, vjp = jax.vjp(lambda x, kernel: jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=_NHWC, precision=precision), x, kernel)
    return vjp(grad_out)

  def cpu_grads(x, kernel, grad_out):
    grad_x = jax.vjp(lambda x: jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=_NHWC, precision=precision), x)[1](
            grad_out)[0]
    return grad_x, weight_grad_by_matmuls(x, grad_out, kernel.shape[:2], strides, padding)

  if kernel.shape[0] * kernel.shape[1] > MAX_MATMUL_GRAD_WINDOW:
    return xla_grads(x, kernel, grad_out)
  return jax.lax.platform_dependent(x, kernel, grad_out, cpu=cpu_grads, default=xla_grads)


_conv.defvjp(_conv_forward, _conv_backward)


def weight_grad_by_matmuls(x, grad_out, window, strides, padding):
  """dL/dkernel of an NHWC convolution: for each kernel position (i, j), the input pixels it
  meets, as a (positions, in) matrix, transposed, times grad_out as (positions, out)."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out_height, out_width, out_channels = grad_out.shape[1:]
  rows = grad_out.reshape(-1, out_channels)
  grads = [jnp.dot(_strided_view(x, i, j, out_height, out_width, strides)
                   .reshape(-1, x.shape[-1]).T, rows)
           for i in range(window[0]) for j in range(window[1])]
  return jnp.stack(grads).reshape(*window, x.shape[-1], out_channels)


def _strided_view(x, i, j, out_height, out_width, strides):
  """x[..., i + strides[0] * r, j + strides[1] * c, :] for every output row r and column c:
  the pixels of NHWC `x` that window (or kernel) position (i, j) meets."""
  return x[..., i:i + strides[0] * (out_height - 1) + 1:strides[0],
           j:j + strides[1] * (out_width - 1) + 1:strides[1], :]


def max_pool(x: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
  """Max pooling of NHWC `x` with no padding; window 3 and stride 2 is the paper's
  overlapping pooling.

  Computed as the elementwise maximum of the window*window strided views of `x` rather than
  as `lax.reduce_window`: the same forward values, and XLA:CPU runs the gradient (a chain of
  selects it fuses into one loop) 5x to 8x faster than reduce_window's select_and_scatter
  (benchmarks/max_pool.py, README). Where several inputs of a window tie for the maximum,
  the gradient is shared among them (jnp.maximum's rule) instead of going to the first; its
  sum is the same.
  """
  height, width = x.shape[-3:-1]
  out_height = (height - window) // stride + 1
  out_width = (width - window) // stride + 1
  if out_height < 1 or out_width < 1:
    raise ValueError(f'max_pool: a {height}x{width} input is smaller than the {window}x{window} '
                     'window.')
  views = (_strided_view(x, i, j, out_height, out_width, (stride, stride))
           for i in range(window) for j in range(window))
  return functools.reduce(jnp.maximum, views)
