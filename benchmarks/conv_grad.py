"""The kernel gradient of the paper net's 3x3 convolutions two ways: XLA's own (a
kernel-gradient convolution), which the network uses, and one matmul per kernel position
(`weight_grad_by_matmuls`, defined here), the alternative.

    python -m benchmarks.conv_grad [--batch=64] [--dtype=float32]

Shapes are conv3, and one group (half the channels) of conv4 and conv5, at 13x13. The last
line is machine-readable: a ratio > 1 would mean the matmuls are faster.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import parse_args, time_jitted

# (input H=W, in channels, out channels) per group; all 3x3, stride 1, padding 1.
LAYERS = {'conv3': (13, 256, 384), 'conv4 (one group)': (13, 192, 192),
          'conv5 (one group)': (13, 192, 128)}
STRIDES, PADDING = (1, 1), ((1, 1), (1, 1))


def xla_kernel_grad(x, grad_out, kernel):
  conv = lambda kernel: jax.lax.conv_general_dilated(  # noqa: E731
      x, kernel, STRIDES, PADDING, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jax.vjp(conv, kernel)[1](grad_out)[0]


def weight_grad_by_matmuls(x, grad_out, window, strides, padding):
  """dL/dkernel of an NHWC convolution: for each kernel position (i, j), the input pixels it
  meets, as a (positions, in) matrix, transposed, times grad_out as (positions, out)."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out_height, out_width, out_channels = grad_out.shape[1:]
  rows = grad_out.reshape(-1, out_channels)
  grads = [jnp.dot(x[:, i:i + strides[0] * (out_height - 1) + 1:strides[0],
                     j:j + strides[1] * (out_width - 1) + 1:strides[1]]
                   .reshape(-1, x.shape[-1]).T, rows)
           for i in range(window[0]) for j in range(window[1])]
  return jnp.stack(grads).reshape(*window, x.shape[-1], out_channels)


def matmul_kernel_grad(x, grad_out, kernel):
  return weight_grad_by_matmuls(x, grad_out, kernel.shape[:2], STRIDES, PADDING)


def main() -> None:
  args = parse_args(__doc__, batch=64, repeats=5)
  totals = {'xla': 0.0, 'matmuls': 0.0}
  for layer, (size, c_in, c_out) in LAYERS.items():
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.nn.relu(jax.random.normal(keys[0], (args.batch, size, size, c_in), args.dtype))
    kernel = jax.random.normal(keys[1], (3, 3, c_in, c_out), args.dtype) * 0.01
    grad_out = jax.random.normal(keys[2], (args.batch, size, size, c_out), args.dtype)
    results = {}
    for form, fn in (('xla', xla_kernel_grad), ('matmuls', matmul_kernel_grad)):
      jitted = jax.jit(fn)
      results[form] = np.asarray(jitted(x, grad_out, kernel), np.float32)
      seconds = time_jitted(jitted, x, grad_out, kernel, repeats=args.repeats)
      totals[form] += seconds
      print(f'{layer:>17} kernel gradient, {form:>7}: {seconds * 1e3:9.2f} ms')
    scale = np.abs(results['xla']).max()
    np.testing.assert_allclose(results['matmuls'], results['xla'], rtol=0,
                               atol=(1e-5 if args.dtype == 'float32' else 2e-2) * scale)
  print(f'matmul_vs_xla_kernel_grad={totals["xla"] / totals["matmuls"]:.2f}x')


if __name__ == '__main__':
  main()
