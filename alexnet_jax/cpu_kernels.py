"""Faster XLA:CPU forms of two of the network's operations, with the same numbers.

`alexnet_jax.layers` runs these on CPUs only, through `on_cpu`; other backends, and CPUs
while the switch is off, run the plain XLA forms. The switch exists so that benchmarks and
tests can compare the two forms on one machine:

    with cpu_kernels.disabled():
      ...  # functions traced here use the plain forms on CPUs too

The switch is read when a function is traced: a function jitted before it changed keeps the
forms it was traced with.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

# False: `on_cpu` runs the plain form on every backend.
ENABLED = True

NHWC = ('NHWC', 'HWIO', 'NHWC')

# Kernel windows up to 3x3 (conv3-5) get the matmul gradient. A 5x5 one gains nothing
# measurable (conv2), and an 11x11 one (conv1, faster too) would add 121 matmuls to every
# compilation of the step, several seconds each time.
MAX_MATMUL_GRAD_WINDOW = 9


@contextlib.contextmanager
def disabled() -> Iterator[None]:
  """Within it, functions traced use the plain XLA forms on CPUs too."""
  global ENABLED
  before, ENABLED = ENABLED, False
  try:
    yield
  finally:
    ENABLED = before


def on_cpu(cpu: Callable, default: Callable, *args):
  """`cpu(*args)` on CPUs while ENABLED, else `default(*args)`; the two must agree."""
  if not ENABLED:
    return default(*args)
  return jax.lax.platform_dependent(*args, cpu=cpu, default=default)


def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """Unpadded max pooling of NHWC `x` as the elementwise maximum of its window*window strided
  views.

  The same forward values as `lax.reduce_window`, and XLA:CPU runs the gradient (a chain of
  selects it fuses into one loop) several times faster than reduce_window's
  select_and_scatter in float32 (benchmarks/max_pool.py measures it). Where several inputs of
  a window tie for the maximum, the gradient is shared among them (jnp.maximum's rule)
  instead of going to the first; its sum is the same.
  """
  height, width = x.shape[-3:-1]
  out_height = (height - window) // stride + 1
  out_width = (width - window) // stride + 1
  views = (_strided_view(x, i, j, out_height, out_width, (stride, stride))
           for i in range(window) for j in range(window))
  return functools.reduce(jnp.maximum, views)


def conv(x: jax.Array, kernel: jax.Array, strides, padding, precision=None) -> jax.Array:
  """An ungrouped, undilated NHWC/HWIO convolution whose kernel gradient is one matmul per
  kernel position (`weight_grad_by_matmuls`) for windows up to MAX_MATMUL_GRAD_WINDOW
  positions, instead of XLA:CPU's kernel-gradient convolution (benchmarks/conv_grad.py
  measures it). The forward pass and the input gradient are XLA's own."""
  if kernel.shape[0] * kernel.shape[1] > MAX_MATMUL_GRAD_WINDOW:
    return _xla_conv(x, kernel, strides, padding, precision)
  return _conv_with_matmul_grad(x, kernel, tuple(strides),
                                tuple(tuple(p) for p in padding), precision)


def _xla_conv(x, kernel, strides, padding, precision):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC,
                                      precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_with_matmul_grad(x, kernel, strides, padding, precision):
  return _xla_conv(x, kernel, strides, padding, precision)


def _conv_forward(x, kernel, strides, padding, precision):
  return _xla_conv(x, kernel, strides, padding, precision), (x, kernel)


def _conv_backward(strides, padding, precision, residuals, grad_out):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _xla_conv(x, kernel, strides, padding, precision), x)
  grad_x, = input_vjp(grad_out)
  return grad_x, weight_grad_by_matmuls(x, grad_out, kernel.shape[:2], strides, padding)


_conv_with_matmul_grad.defvjp(_conv_forward, _conv_backward)


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
