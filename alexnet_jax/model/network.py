"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) as a Flax NNX module.

    model = AlexNet(variant='paper', rngs=nnx.Rngs(0))
    logits = model(images)              # (N, 227, 227, 3) float -> (N, 1000) float32

The architecture is data (`ARCHITECTURES`); `alexnet_jax.model.layer_table` prints each
layer's shapes, parameters and multiply-adds from the module itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax.model import layers

Init = Literal['paper', 'he']
GroupedConvImpl = Literal['split', 'xla']

POOL_WINDOW, POOL_STRIDE = 3, 2  # overlapping pooling, paper section 3.4


@dataclasses.dataclass(frozen=True)
class ConvSpec:
  """One convolutional layer, with the ReLU and the optional LRN and max-pool after it."""
  features: int
  kernel: int
  stride: int
  padding: int
  groups: int = 1  # 2: each half of the output channels sees only its half of the input
  lrn_groups: int = 0  # 0: no LRN; else LRN within each of this many channel blocks
  pool: bool = False
  paper_bias: float = 0.0  # bias under init='paper' (paper section 5)


@dataclasses.dataclass(frozen=True)
class Architecture:
  convs: tuple[ConvSpec, ...]  # conv1 ... conv5
  default_image_size: int
  hidden: int = 4096  # fc6 and fc7 width
  paper_fc_bias: float = 1.0  # fc6, fc7 bias under init='paper'; fc8's is 0
  # The paper drops out the outputs of fc6 and fc7; torchvision drops out their inputs.
  dropout_before_fc: bool = False


def _paper_convs(grouped: bool) -> tuple[ConvSpec, ...]:
  g = 2 if grouped else 1
  return (
      # conv1 sees all of RGB on both GPUs; the LRN after it runs within each GPU's half.
      ConvSpec(96, 11, 4, 0, groups=1, lrn_groups=g, pool=True, paper_bias=0.0),
      ConvSpec(256, 5, 1, 2, groups=g, lrn_groups=g, pool=True, paper_bias=1.0),
      ConvSpec(384, 3, 1, 1, groups=1, paper_bias=0.0),  # the one conv that crosses the GPUs
      ConvSpec(384, 3, 1, 1, groups=g, paper_bias=1.0),
      ConvSpec(256, 3, 1, 1, groups=g, pool=True, paper_bias=1.0),
  )


ARCHITECTURES: dict[str, Architecture] = {
    # The two-GPU network of the paper, with cuda-convnet2's wiring: 60,965,224 parameters.
    'paper': Architecture(_paper_convs(grouped=True), default_image_size=227),
    # The same channels on one device with no groups: 62,378,344 parameters.
    'paper_ungrouped': Architecture(_paper_convs(grouped=False), default_image_size=227),
    # torchvision.models.alexnet, from "One weird trick" (Krizhevsky 2014): 61,100,840.
    'torchvision': Architecture(
        (
            ConvSpec(64, 11, 4, 2, pool=True),
            ConvSpec(192, 5, 1, 2, pool=True, paper_bias=1.0),
            ConvSpec(384, 3, 1, 1),
            ConvSpec(256, 3, 1, 1, paper_bias=1.0),
            ConvSpec(256, 3, 1, 1, pool=True, paper_bias=1.0),
        ),
        default_image_size=224,
        dropout_before_fc=True,
    ),
}


def output_size(size: int, window: int, stride: int, padding: int = 0) -> int:
  """Spatial size after a convolution or pooling: floor((size + 2p - window) / stride) + 1."""
  return (size + 2 * padding - window) // stride + 1


@dataclasses.dataclass(frozen=True)
class SpatialStep:
  name: str  # conv1, pool1, ...
  size: int  # output height (= width)
  arithmetic: str  # how `size` follows from the input size


def spatial_steps(arch: Architecture, image_size: int) -> list[SpatialStep]:
  """The spatial size after each conv and pool layer, with the arithmetic that gives it."""
  steps, size = [], image_size
  for i, spec in enumerate(arch.convs, 1):
    out = output_size(size, spec.kernel, spec.stride, spec.padding)
    steps.append(SpatialStep(
        f'conv{i}', out,
        f'({size} + 2*{spec.padding} - {spec.kernel}) // {spec.stride} + 1 = {out}'))
    size = out
    if spec.pool:
      out = output_size(size, POOL_WINDOW, POOL_STRIDE)
      steps.append(SpatialStep(
          f'pool{i}', out, f'({size} - {POOL_WINDOW}) // {POOL_STRIDE} + 1 = {out}'))
      size = out
  return steps


def min_image_size(variant: str) -> int:
  """The smallest input for which every layer still has at least a 1x1 output."""
  arch = _architecture(variant)
  size = 1
  while min(step.size for step in spatial_steps(arch, size)) < 1:
    size += 1
  return size


def _architecture(variant: str) -> Architecture:
  if variant not in ARCHITECTURES:
    raise ValueError(f'Unknown AlexNet variant {variant!r}; choose one of {sorted(ARCHITECTURES)}.')
  return ARCHITECTURES[variant]


def _initializers(init: str, bias: float):
  if init == 'paper':
    # N(0, 0.01) weights; biases of 1 "accelerate the early stages of learning by providing
    # the ReLUs with positive inputs" (paper section 5).
    return nnx.initializers.normal(stddev=0.01), nnx.initializers.constant(bias)
  if init == 'he':
    # The paper's init often leaves the loss stuck at ln(num_classes); He init does not.
    return nnx.initializers.he_normal(), nnx.initializers.zeros
  raise ValueError(f"Unknown init {init!r}; choose 'paper' or 'he'.")


class AlexNet(nnx.Module):
  """AlexNet on NHWC float images.

  Attributes are named as in the paper: conv1 ... conv5 (`nnx.Conv`, kernels of shape
  (kh, kw, in_channels / groups, out_channels) whatever `grouped_conv` computes them with),
  lrn1, lrn2 (paper variants), dropout6, dropout7, fc6, fc7, fc8 (`nnx.Linear`).
  `model.train()` / `model.eval()` switch dropout on and off.

  Args:
    variant: 'paper' (two-GPU grouped net), 'paper_ungrouped', or 'torchvision'.
    num_classes: width of fc8.
    image_size: input height and width; None for the variant's own (227 paper, 224
      torchvision). fc6 is sized from it; `min_image_size(variant)` is the smallest.
    dropout_rate: drop probability of the two dropout layers.
    dtype: computation dtype (e.g. jnp.bfloat16); parameters stay float32, LRN accumulates
      in float32, and logits are returned as float32.
    init: 'paper' (N(0, 0.01) weights, biases 1 in conv2/4/5 and fc6/7) or 'he'.
    grouped_conv: 'split' computes a grouped convolution as one convolution per group,
      'xla' as one `feature_group_count` convolution; same numbers, different speed.
    width: multiplies the channels of every conv layer and the width of fc6 and fc7 (each
      rounded to an even number so that the two-GPU halves stay equal); 1.0 is the paper's
      network. Narrow nets are for demos and tests on a CPU.
    rngs: initialisation keys; the 'dropout' stream (or the default one) drives dropout
      unless keys are passed to the call.
  """

  def __init__(
      self,
      variant: str = 'paper',
      num_classes: int = 1000,
      image_size: int | None = None,
      dropout_rate: float = 0.5,
      dtype=None,
      *,
      init: Init = 'paper',
      grouped_conv: GroupedConvImpl = 'split',
      width: float = 1.0,
      rngs: nnx.Rngs,
  ):
    arch = _architecture(variant)
    image_size = arch.default_image_size if image_size is None else image_size
    smallest = min_image_size(variant)
    if image_size < smallest:
      raise ValueError(
          f'image_size={image_size} is too small for AlexNet variant {variant!r}: the smallest '
          f'input that leaves every layer a 1x1 output is {smallest}.')
    if grouped_conv not in layers.GROUPED_CONVS:
      raise ValueError(f"grouped_conv must be 'split' or 'xla', got {grouped_conv!r}.")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate}.')
    if not width > 0:
      raise ValueError(f'width must be positive, got {width}.')

    def scaled(channels: int) -> int:
      return channels if width == 1.0 else max(2, 2 * round(channels * width / 2))

    self.variant = variant
    self.arch = arch
    self.image_size = image_size
    self.num_classes = num_classes
    self.dtype = dtype
    self.width = width

    in_channels = 3
    for i, spec in enumerate(arch.convs, 1):
      kernel_init, bias_init = _initializers(init, spec.paper_bias)
      setattr(self, f'conv{i}', nnx.Conv(
          in_channels, scaled(spec.features), (spec.kernel, spec.kernel), spec.stride,
          padding=((spec.padding, spec.padding),) * 2, feature_group_count=spec.groups,
          dtype=dtype, kernel_init=kernel_init, bias_init=bias_init,
          conv_general_dilated=layers.GROUPED_CONVS[grouped_conv], rngs=rngs))
      if spec.lrn_groups:
        setattr(self, f'lrn{i}', layers.LocalResponseNorm(groups=spec.lrn_groups))
      in_channels = scaled(spec.features)

    final_size = spatial_steps(arch, image_size)[-1].size
    hidden = scaled(arch.hidden)
    fc_widths = (final_size * final_size * in_channels, hidden, hidden, num_classes)
    for name, (d_in, d_out) in zip(('fc6', 'fc7', 'fc8'), zip(fc_widths, fc_widths[1:])):
      kernel_init, bias_init = _initializers(init, 0.0 if name == 'fc8' else arch.paper_fc_bias)
      setattr(self, name, nnx.Linear(d_in, d_out, dtype=dtype, kernel_init=kernel_init,
                                     bias_init=bias_init, rngs=rngs))
    self.dropout6 = nnx.Dropout(dropout_rate, rngs=rngs)
    self.dropout7 = nnx.Dropout(dropout_rate, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | jax.Array | None = None,
               capture: dict | None = None) -> jax.Array:
    """Logits (N, num_classes) in float32 for images x (N, H, W, 3).

    rngs: dropout keys for this call (a key, or nnx.Rngs); None uses the model's own stream.
      The train step passes a key derived from the step, so a resumed run draws the same
      masks as one that never stopped.
    capture: if a dict is given, each layer's output is stored in it under the layer's name
      (conv1, lrn1, pool1, ..., dropout6, ..., fc8), conv and fc outputs after their ReLU.
    """
    expected = (self.image_size, self.image_size, 3)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
      raise ValueError(f'AlexNet({self.variant!r}, image_size={self.image_size}) takes images '
                       f'of shape (N, {", ".join(map(str, expected))}), got {tuple(x.shape)}.')

    def emit(name: str, y: jax.Array) -> jax.Array:
      if capture is not None:
        capture[name] = y
      return y

    if isinstance(rngs, jax.Array):
      rngs = nnx.Rngs(dropout=rngs)  # a stream, so the two dropout layers draw different masks
    if self.dtype is not None:
      x = x.astype(self.dtype)
    for i, spec in enumerate(self.arch.convs, 1):
      x = emit(f'conv{i}', nnx.relu(getattr(self, f'conv{i}')(x)))
      if spec.lrn_groups:
        x = emit(f'lrn{i}', getattr(self, f'lrn{i}')(x))
      if spec.pool:
        x = emit(f'pool{i}', layers.max_pool(x, POOL_WINDOW, POOL_STRIDE))
    x = x.reshape((x.shape[0], -1))
    for n in (6, 7):
      fc, dropout = getattr(self, f'fc{n}'), getattr(self, f'dropout{n}')
      if self.arch.dropout_before_fc:
        x = emit(f'dropout{n}', dropout(x, rngs=rngs))
      x = emit(f'fc{n}', nnx.relu(fc(x)))
      if not self.arch.dropout_before_fc:
        x = emit(f'dropout{n}', dropout(x, rngs=rngs))
    return emit('fc8', self.fc8(x)).astype(jnp.float32)

  def named_layers(self) -> Iterator[tuple[str, nnx.Module]]:
    """(name, module) for every layer with parameters, in forward order."""
    for i in range(1, len(self.arch.convs) + 1):
      yield f'conv{i}', getattr(self, f'conv{i}')
    for name in ('fc6', 'fc7', 'fc8'):
      yield name, getattr(self, name)


def image_size(config) -> int:
  """The crop side of a training config: config.image_size, or the variant's own when 0."""
  return config.image_size or _architecture(config.model.variant).default_image_size


def from_config(config, num_classes: int, rngs: nnx.Rngs) -> AlexNet:
  """The network a training config (an ml_collections.ConfigDict, or anything with its
  fields as attributes) describes."""
  m = config.model
  return AlexNet(m.variant, num_classes, image_size(config), m.dropout_rate, jnp.dtype(m.dtype),
                 init=m.init, grouped_conv=m.grouped_conv, width=m.width, rngs=rngs)


def identity(config, num_classes: int) -> dict:
  """What a checkpoint's parameters depend on: a checkpoint restores only into the same."""
  return {'variant': config.model.variant, 'num_classes': num_classes,
          'image_size': image_size(config), 'width': config.model.width}


def count_params(module: nnx.Module) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))
