"""Two forms of the paper's overlapping max pooling (3x3 windows, stride 2): alone, forward
and forward+backward, and in the paper net's whole train step.

    python -m benchmarks.max_pool [--batch=128] [--dtype=float32] [--repeats=5]

Shapes are the paper net's pool1 (input 55x55x96), pool2 (27x27x256) and pool5 (13x13x256).
The network's form (`alexnet_jax.model.layers.max_pool`) is a `lax.reduce_window`, whose gradient
XLA computes with select_and_scatter; the alternative, defined here, takes the maximum of
the window's nine strided views. Alone, the views are faster on XLA:CPU; in the train step,
where XLA fuses the views into what reads the pooled map (the transposed copy that conv2's
kernel gradient takes, recomputing the maximum there), they are slower. The last line is
machine-readable: ratios > 1 mean the strided views are faster.
"""

from __future__ import annotations

import collections
import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.model import layers
from benchmarks.common import parse_args, print_ratios, time_forms
from benchmarks.train_step import alternated_seconds, step_setup

SHAPES = {'pool1': (55, 55, 96), 'pool2': (27, 27, 256), 'pool5': (13, 13, 256)}


def strided_views_pool(x: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
  """Unpadded max pooling of NHWC `x` as the elementwise maximum of its window*window strided
  views. The same values as reduce_window; where inputs of a window tie for the maximum, the
  gradient is shared among them (jnp.maximum's rule) instead of going to the first."""
  out_height = (x.shape[-3] - window) // stride + 1
  out_width = (x.shape[-2] - window) // stride + 1
  views = (x[..., i:i + stride * (out_height - 1) + 1:stride,
             j:j + stride * (out_width - 1) + 1:stride, :]
           for i in range(window) for j in range(window))
  return functools.reduce(jnp.maximum, views)


FORMS = {'strided_views': strided_views_pool, 'reduce_window': layers.max_pool}


def train_step_seconds(batch: int, dtype: str, repeats: int) -> dict[str, float]:
  """Seconds of the paper net's train step with each form, alternated."""
  setup = step_setup(batch, dtype)
  steps = {}
  for form, pool in FORMS.items():
    with mock.patch.object(layers, 'max_pool', pool):  # the model calls it while tracing
      steps[form] = setup.train_step().lower(setup.state, setup.batch).compile()
  state = setup.state
  for step in steps.values():  # one untimed call each
    state = jax.block_until_ready(step(state, setup.batch)[0])
  _, seconds = alternated_seconds([(step, setup.batch) for step in steps.values()], state,
                                  repeats)
  for form, s in zip(steps, seconds):
    print(f'paper net train step, {form:>14}: {s * 1e3:9.1f} ms ({batch / s:.1f} images/s)')
  return dict(zip(steps, seconds))


def main() -> None:
  args = parse_args(__doc__, batch=128, repeats=5)
  totals = collections.Counter()  # seconds per (form, pass), summed over the layers
  for layer, shape in SHAPES.items():
    x = jax.random.normal(jax.random.key(0), (args.batch, *shape), jnp.float32)
    x = jax.nn.relu(x).astype(args.dtype)  # post-ReLU activations, as in the network
    cotangent = jax.random.normal(jax.random.key(1), layers.max_pool(x).shape, x.dtype)
    outputs, seconds = time_forms(layer, FORMS, x, cotangent, args.repeats)
    totals.update(seconds)
    np.testing.assert_array_equal(outputs['strided_views'], outputs['reduce_window'])
  step = train_step_seconds(args.batch, args.dtype, args.repeats)
  print_ratios('strided_vs_reduce_window', totals, 'reduce_window', 'strided_views',
               train_step_strided_vs_reduce_window=step['reduce_window'] / step['strided_views'])


if __name__ == '__main__':
  main()
