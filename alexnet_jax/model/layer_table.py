"""Each layer's output shape, parameters and multiply-adds, read from the network itself.

    print(format_table(AlexNet('paper', rngs=nnx.Rngs(0))))
    alexnet-model --variant=paper        (the same table, from the command line)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax.model.network import AlexNet, count_params, spatial_steps


@dataclasses.dataclass(frozen=True)
class LayerRow:
  name: str
  output_shape: tuple[int, ...]  # per image, without the batch axis
  params: int
  macs: int  # forward multiply-adds per image
  arithmetic: str  # spatial-size arithmetic, for conv and pool layers


def layer_table(model: AlexNet) -> list[LayerRow]:
  """Each layer's output shape, parameters and multiply-adds, from the model itself.

  Shapes come from tracing the model (no computation); multiply-adds are kernel size times
  output positions, which counts a grouped kernel's reduced fan-in correctly.
  """
  graphdef, state = nnx.split(model)
  names = []  # forward order; eval_shape returns a dict with sorted keys

  def forward(state, x):
    copy = nnx.merge(graphdef, state)  # a copy, so eval() leaves the caller's model as it was
    copy.eval()  # dropout off: tracing then needs no random keys
    captured = {}
    copy(x, capture=captured)
    names.extend(captured)
    return captured

  # Works for a concrete model and for one built by nnx.eval_shape (shapes only).
  image = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(forward, state, image)
  arithmetic = {s.name: s.arithmetic for s in spatial_steps(model.arch, model.image_size)}
  modules = dict(model.named_layers())
  rows = []
  for name in names:
    output_shape = tuple(shapes[name].shape[1:])
    params = macs = 0
    if name in modules:
      params = count_params(modules[name])
      positions = int(np.prod(output_shape[:-1]))  # 1 for fc layers
      macs = positions * int(np.prod(modules[name].kernel.shape))
    rows.append(LayerRow(name, output_shape, params, macs, arithmetic.get(name, '')))
  return rows


def format_table(model: AlexNet) -> str:
  rows = layer_table(model)
  lines = [
      f'AlexNet variant={model.variant!r} image_size={model.image_size} '
      f'num_classes={model.num_classes}',
      'Spatial size out of a conv or pool layer: floor((in + 2*padding - window) / stride) + 1',
      '',
      f'{"layer":<9}{"output":>14}{"params":>14}{"mult-adds":>16}   shape arithmetic',
  ]
  for r in rows:
    shape = ' x '.join(map(str, r.output_shape))
    lines.append(f'{r.name:<9}{shape:>14}{r.params:>14,}{r.macs:>16,}   {r.arithmetic}'.rstrip())
  total_params = sum(r.params for r in rows)
  total_macs = sum(r.macs for r in rows)
  lines += [
      '',
      f'total parameters        {total_params:,}',
      f'total multiply-adds     {total_macs:,} per image '
      f'({2 * total_macs / 1e9:.3f} GFLOP forward, about {6 * total_macs / 1e9:.2f} GFLOP '
      'per training image)',
  ]
  return '\n'.join(lines)
