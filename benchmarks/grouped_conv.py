"""Grouped convolution as one `feature_group_count=2` convolution ('xla') or as two
ungrouped convolutions on the channel halves ('split'), timed per layer and in the whole
network's forward+backward pass.

    python -m benchmarks.grouped_conv [--batch=32] [--dtype=float32]

The last line is machine-readable: ratios > 1 mean 'split' is faster.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from alexnet_jax.model.layers import split_group_conv
from alexnet_jax.model.network import AlexNet
from benchmarks.common import parse_args, time_jitted

# The grouped layers of the paper net at 227x227: (input H=W, in channels, out channels, kernel).
LAYERS = {'conv2': (27, 96, 256, 5), 'conv4': (13, 384, 384, 3), 'conv5': (13, 384, 256, 3)}
IMPLS = {'xla': jax.lax.conv_general_dilated, 'split': split_group_conv}


def layer_times(batch: int, dtype: str, repeats: int) -> dict[str, float]:
  """Sum over the grouped layers of forward+backward seconds, per implementation."""
  totals = dict.fromkeys(IMPLS, 0.0)
  for layer, (size, c_in, c_out, k) in LAYERS.items():
    x = jax.random.normal(jax.random.key(0), (batch, size, size, c_in), dtype)
    w = jax.random.normal(jax.random.key(1), (k, k, c_in // 2, c_out), dtype) * 0.01
    outputs = {}
    for name, conv in IMPLS.items():
      def forward(x, w, conv=conv):
        return conv(x, w, (1, 1), [(k // 2, k // 2)] * 2, feature_group_count=2,
                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      # Like the network: gradients for the input and for the kernel.
      grads = jax.jit(jax.grad(lambda x, w: jnp.sum(forward(x, w).astype(jnp.float32) ** 2),
                               argnums=(0, 1)))
      outputs[name] = np.asarray(jax.jit(forward)(x, w), np.float32)
      fwd_s = time_jitted(jax.jit(forward), x, w, repeats=repeats)
      both_s = time_jitted(grads, x, w, repeats=repeats)
      totals[name] += both_s
      print(f'{layer} {name:>5}: forward {fwd_s * 1e3:8.2f} ms, forward+backward '
            f'{both_s * 1e3:8.2f} ms')
    # Same numbers up to summation order (and bfloat16 rounding).
    scale = np.max(np.abs(outputs['xla']))
    tolerance = (1e-4 if dtype == 'float32' else 3e-2) * scale
    np.testing.assert_allclose(outputs['split'], outputs['xla'], rtol=0, atol=tolerance)
  return totals


def model_times(batch: int, dtype: str, repeats: int) -> dict[str, float]:
  """Seconds of one forward+backward pass of the whole paper net, per implementation."""
  images = jax.random.normal(jax.random.key(0), (batch, 227, 227, 3), jnp.float32)
  labels = jax.random.randint(jax.random.key(1), (batch,), 0, 1000)
  totals = {}
  for name in IMPLS:
    model = AlexNet('paper', dtype=jnp.dtype(dtype), grouped_conv=name, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def grads(params, rest, images, labels):
      def loss(params, rest):  # `rest` holds the dropout keys, updated by the forward pass
        # copy=True: fresh Variables at this trace level, so dropout may advance its key.
        logits = nnx.merge(graphdef, params, rest, copy=True)(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return jax.grad(loss)(params, rest)

    totals[name] = time_jitted(grads, params, rest, images, labels, repeats=repeats)
    print(f'paper net {name:>5}: forward+backward {totals[name] * 1e3:8.1f} ms '
          f'({batch / totals[name]:.1f} images/s)')
  return totals


def main() -> None:
  args = parse_args(__doc__, batch=32, repeats=3)
  layers = layer_times(args.batch, args.dtype, args.repeats)
  model = model_times(args.batch, args.dtype, args.repeats)
  print(f'grouped_layers_split_vs_xla={layers["xla"] / layers["split"]:.2f}x '
        f'model_split_vs_xla={model["xla"] / model["split"]:.2f}x')


if __name__ == '__main__':
  main()
