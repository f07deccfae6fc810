"""Two forms of local response normalisation, timed forward and forward+backward.

    python -m benchmarks.lrn [--batch=128] [--dtype=float32]

Shapes are those the paper net normalises: conv1's output (55x55x96) and conv2's (27x27x256),
each within two channel groups. The library's form sums the squares over the channel window
with `lax.reduce_window`; the alternative, defined here, multiplies the squares by a 0/1 band
matrix. The last line is machine-readable: ratios > 1 would mean the band matrix is faster.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.model.layers import local_response_norm
from benchmarks.common import parse_args, print_ratios, time_forms

SHAPES = {'lrn1': (55, 55, 96), 'lrn2': (27, 27, 256)}


def banded_matmul_lrn(x, size=5, alpha=1e-4, beta=0.75, k=2.0, *, groups=1):
  """The paper's LRN with the window sum as a matmul by band[j, i] = 1 where channel j lies
  in channel i's window and in the same group."""
  channels = x.shape[-1]
  index = np.arange(channels)
  group = index // (channels // groups)
  band = (np.abs(index[:, None] - index[None, :]) <= size // 2) & (group[:, None] == group)
  x32 = x.astype(jnp.float32)
  # HIGHEST: GPUs would otherwise run a float32 matmul in TF32, losing 3 digits of the sum.
  sums = jnp.einsum('...c,cd->...d', x32 * x32, band.astype(np.float32),
                    precision=jax.lax.Precision.HIGHEST)
  assert beta == 0.75, 'the power below is the library one for beta=0.75'
  r = jax.lax.rsqrt(k + alpha * sums)
  return (x32 * r * jnp.sqrt(r)).astype(x.dtype)


FORMS = {'reduce_window': local_response_norm, 'banded_matmul': banded_matmul_lrn}


def main() -> None:
  args = parse_args(__doc__, batch=128, repeats=5)

  totals = collections.Counter()  # seconds per (form, pass), summed over the layers
  for layer, shape in SHAPES.items():
    x = jax.random.normal(jax.random.key(0), (args.batch, *shape), jnp.float32)
    x = jax.nn.relu(x * 10).astype(args.dtype)  # post-ReLU activations, as in the network
    cotangent = jax.random.normal(jax.random.key(1), x.shape, x.dtype)
    outputs, seconds = time_forms(
        layer, {form: functools.partial(lrn, groups=2) for form, lrn in FORMS.items()}, x,
        cotangent, args.repeats)
    totals.update(seconds)
    # The two forms must agree, or the timing compares different things.
    np.testing.assert_allclose(outputs['banded_matmul'], outputs['reduce_window'],
                               rtol=1e-5 if args.dtype == 'float32' else 1e-2, atol=1e-6)

  print_ratios('banded_vs_reduce_window', totals, 'reduce_window', 'banded_matmul')


if __name__ == '__main__':
  main()
