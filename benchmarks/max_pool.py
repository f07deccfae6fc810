"""Two forms of the paper's overlapping max pooling (3x3 windows, stride 2), timed forward and
forward+backward.

    python -m benchmarks.max_pool [--batch=128] [--dtype=float32]

Shapes are the paper net's pool1 (input 55x55x96), pool2 (27x27x256) and pool5 (13x13x256).
The CPU form (`alexnet_jax.cpu_kernels.max_pool`, which `layers.max_pool` runs on CPUs)
takes the maximum of the nine strided views; the alternative is `nnx.max_pool`, a
`lax.reduce_window` whose gradient XLA computes with select_and_scatter, as `layers.max_pool`
does elsewhere. The last line is machine-readable: ratios > 1 mean the strided views are
faster.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax.cpu_kernels import max_pool
from benchmarks.common import parse_args, print_ratios, time_forms

SHAPES = {'pool1': (55, 55, 96), 'pool2': (27, 27, 256), 'pool5': (13, 13, 256)}


def reduce_window_pool(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, (3, 3), (2, 2), padding='VALID')


FORMS = {'strided_views': lambda x: max_pool(x, 3, 2), 'reduce_window': reduce_window_pool}


def main() -> None:
  args = parse_args(__doc__, batch=128, repeats=5)
  totals = collections.Counter()  # seconds per (form, pass), summed over the layers
  for layer, shape in SHAPES.items():
    x = jax.random.normal(jax.random.key(0), (args.batch, *shape), jnp.float32)
    x = jax.nn.relu(x).astype(args.dtype)  # post-ReLU activations, as in the network
    cotangent = jax.random.normal(jax.random.key(1), reduce_window_pool(x).shape, x.dtype)
    outputs, seconds = time_forms(layer, FORMS, x, cotangent, args.repeats)
    totals.update(seconds)
    np.testing.assert_array_equal(outputs['strided_views'], outputs['reduce_window'])

  print_ratios('strided_vs_reduce_window', totals, 'reduce_window', 'strided_views')


if __name__ == '__main__':
  main()
