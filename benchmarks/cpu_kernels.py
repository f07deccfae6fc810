"""Every operation of the paper net on every kernel this jaxlib's XLA:CPU can run it on, then
the whole train and eval steps under every combination: what `alexnet_jax.model.cpu_kernels.CHOICE`
is chosen from.

    python -m benchmarks.cpu_kernels [--batch=128] [--repeats=3] [--image_size=227]
                                     [--width=1] [--parts=operations,steps]

operations: each convolution as the network runs it (one per channel group, as
  grouped_conv='split' does), forward, input gradient and kernel gradient; fc6-fc8 forward,
  input gradient and weight gradient; the reductions (each layer's bias gradient, the
  softmax's maximum and sum over the classes). Each is compiled once per kernel
  (`cpu_kernels.compiler_options`, the other kinds as in CHOICE), the kernels timed in turn,
  `repeats` times. A kernel that XLA does not hand the operation to (YNNPACK takes no dot with
  a transposed operand, for example) shows `-`. Then, per kind, the sum over its operations
  and the fastest kernel.
steps: the train step (forward, backward, paper SGD, as benchmarks/train_step.py times it)
  and the eval step, compiled under each combination of kernels and timed in turn; the
  project's CHOICE and XLA's default are marked.

The last line is the chosen default's, e.g. `choice=convolution:eigen,dot:ynnpack,
reduce:ynnpack train_images_per_second=25.1 eval_images_per_second=83.0
train_vs_xla_default=1.92x eval_vs_xla_default=1.61x train_vs_fastest=1.00x
eval_vs_fastest=0.97x operations_fastest=convolution:eigen,dot:ynnpack,reduce:xla`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax.model import cpu_kernels
from alexnet_jax.model.layer_table import layer_table
from alexnet_jax.model.network import AlexNet
from benchmarks.common import describe_device
from benchmarks.train_step import IMAGE_SIZE, StepSetup, step_setup

NHWC = ('NHWC', 'HWIO', 'NHWC')


def choice_with(kind: str, kernel: str) -> dict[str, str]:
  return {**cpu_kernels.CHOICE, kind: kernel}


def alternated(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
  """Median seconds of each call, the calls timed in turn `repeats` times (after one untimed
  round) so that a slow phase of the shared machine hits all of them alike."""
  times = {name: [] for name in calls}
  for round_ in range(repeats + 1):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      if round_:
        times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


@dataclasses.dataclass(frozen=True)
class Operation:
  name: str
  kind: str  # a key of cpu_kernels.KERNELS
  function: Callable
  args: tuple
  count: int = 1  # how many times the step runs it: once per channel group


def network_operations(model: AlexNet, batch: int) -> list[Operation]:
  """Every convolution, dot and reduction of the network's train step, with the shapes the
  model gives them."""
  rng = np.random.default_rng(0)
  rows = layer_table(model)
  inputs = {row.name: rows[i - 1].output_shape if i else (model.image_size,) * 2 + (3,)
            for i, row in enumerate(rows)}
  outputs = {row.name: row.output_shape for row in rows}

  def array(*shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)

  operations = []
  for index, (name, layer) in enumerate(model.named_layers()):
    kernel = layer.kernel.shape
    if isinstance(layer, nnx.Linear):
      x, w, g = array(batch, kernel[0]), array(*kernel, scale=0.01), array(batch, kernel[1])
      operations += [
          Operation(f'{name} forward', 'dot', lambda x, w: x @ w, (x, w)),
          Operation(f'{name} input gradient', 'dot', lambda g, w: g @ w.T, (g, w)),
          Operation(f'{name} weight gradient', 'dot', lambda x, g: x.T @ g, (x, g)),
          Operation(f'{name} bias gradient', 'reduce', lambda g: jnp.sum(g, 0), (g,)),
      ]
      continue
    groups = layer.feature_group_count
    strides = (layer.strides,) * 2 if isinstance(layer.strides, int) else layer.strides

    def conv(x, w, strides=strides, padding=layer.padding):
      return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)

    # One channel group's convolution, as grouped_conv='split' runs it.
    x = array(batch, *inputs[name][:2], kernel[2])
    w = array(*kernel[:3], kernel[3] // groups, scale=0.01)
    g = array(batch, *outputs[name][:2], kernel[3] // groups)
    label = f'{name}, one of {groups} groups,' if groups > 1 else name
    operations.append(Operation(f'{label} forward', 'convolution', conv, (x, w), groups))
    if index:  # the first layer's input, the images, needs no gradient
      operations.append(Operation(
          f'{label} input gradient', 'convolution',
          lambda x, w, g, conv=conv: jax.vjp(lambda x: conv(x, w), x)[1](g)[0], (x, w, g),
          groups))
    operations += [
        Operation(f'{label} kernel gradient', 'convolution',
                  lambda x, w, g, conv=conv: jax.vjp(lambda w: conv(x, w), w)[1](g)[0],
                  (x, w, g), groups),
        Operation(f'{name} bias gradient', 'reduce', lambda g: jnp.sum(g, (0, 1, 2)),
                  (array(batch, *outputs[name]),)),
    ]
  logits = array(batch, model.num_classes)
  return operations + [
      Operation('softmax maximum', 'reduce', lambda z: jnp.max(z, -1), (logits,)),
      Operation('softmax sum', 'reduce', lambda z: jnp.sum(jnp.exp(z), -1), (logits,))]


def time_operations(model: AlexNet, batch: int, repeats: int) -> dict[str, str]:
  """Prints every operation on every kernel; returns the fastest kernel of each kind, by the
  sum over the operations of that kind (each as often as the step runs it)."""
  totals = {kind: dict.fromkeys(kernels, 0.0) for kind, kernels in cpu_kernels.KERNELS.items()}
  columns = ('ynnpack', 'onednn', 'eigen/xla')
  print(f'{"operation, ms":<42}' + ''.join(f'{c:>10}' for c in columns) + '   fastest')
  for op in network_operations(model, batch):
    calls = {}
    for kernel in cpu_kernels.KERNELS[op.kind]:
      compiled = jax.jit(op.function).lower(*op.args).compile(
          compiler_options=cpu_kernels.compiler_options(choice_with(op.kind, kernel)))
      # Where XLA keeps the operation on its own kernel (YNNPACK takes no dot with a
      # transposed operand, no reduction of under 4096 elements), that kernel is no choice.
      if kernel in cpu_kernels.placement(compiled.as_text())[op.kind]:
        calls[kernel] = lambda compiled=compiled, args=op.args: compiled(*args)
    own = cpu_kernels.OWN_KERNEL[op.kind]
    seconds = alternated(calls, repeats)
    for kernel in cpu_kernels.KERNELS[op.kind]:
      totals[op.kind][kernel] += op.count * seconds.get(kernel, seconds[own])
    cells = [f'{seconds[k] * 1e3:10.1f}' if k in seconds else f'{"-":>10}'
             for k in ('ynnpack', 'onednn', own)]
    print(f'{op.name:<42}' + ''.join(cells) + f'   {min(seconds, key=seconds.get)}')
  fastest = {}
  for kind, kernel_totals in totals.items():
    fastest[kind] = min(kernel_totals, key=kernel_totals.get)
    print(f'every {kind} of the step: '
          + ', '.join(f'{k} {s * 1e3:.0f} ms' for k, s in kernel_totals.items())
          + f'; fastest {fastest[kind]}')
  return fastest


def all_choices(only: dict[str, str]) -> list[dict[str, str]]:
  """Every combination of kernels, except those where a kind is not on `only`'s kernel."""
  choices = [dict(zip(cpu_kernels.KERNELS, kernels))
             for kernels in itertools.product(*cpu_kernels.KERNELS.values())]
  return [c for c in choices if all(c[kind] == kernel for kind, kernel in only.items())]


def label(choice: dict[str, str]) -> str:
  return ','.join(f'{kind}:{kernel}' for kind, kernel in choice.items())


def time_steps(setup: StepSetup, repeats: int,
               only: dict[str, str]) -> dict[str, dict[str, float]]:
  """Seconds of the train and eval steps under every combination of kernels (`all_choices`),
  timed in turn."""
  train, evaluate = setup.train_step(), setup.eval_step()
  state, batch = setup.state, setup.batch
  calls = {}
  for choice in all_choices(only):
    options = cpu_kernels.compiler_options(choice)
    train_step = train.lower(state, batch).compile(compiler_options=options)
    eval_step = evaluate.lower(state.params, batch).compile(compiler_options=options)

    def train_call(train_step=train_step):
      nonlocal state  # donated to the step: thread it through
      state, metrics = train_step(state, batch)
      return metrics['train_loss']

    calls['train', label(choice)] = train_call
    calls['eval', label(choice)] = lambda eval_step=eval_step: eval_step(state.params, batch)
  seconds = alternated(calls, repeats)
  loss = calls['train', label(cpu_kernels.CHOICE)]()
  assert np.isfinite(float(loss)), f'the loss became {loss}: the timings include skipped steps'
  return {phase: {name: s for (p, name), s in seconds.items() if p == phase}
          for phase in ('train', 'eval')}


def report_steps(seconds: dict[str, dict[str, float]], batch: int) -> dict[str, str]:
  """Prints images/s of every combination timed, fastest train step first; returns the
  chosen default's figures and ratios (to XLA's default, to the fastest) where timed."""
  chosen, default = label(cpu_kernels.CHOICE), label(cpu_kernels.XLA_DEFAULT)
  marks = {chosen: "  <- the project's choice", default: "  <- XLA's default"}
  print(f'{"kernels, images/s":<58}{"train":>8}{"eval":>8}')
  for name in sorted(seconds['train'], key=seconds['train'].get):
    print(f'{name:<58}{batch / seconds["train"][name]:8.1f}{batch / seconds["eval"][name]:8.1f}'
          f'{marks.get(name, "")}')
  summary = {}
  if chosen not in seconds['train']:
    return summary
  for phase in ('train', 'eval'):
    summary[f'{phase}_images_per_second'] = f'{batch / seconds[phase][chosen]:.1f}'
  if default in seconds['train']:
    for phase in ('train', 'eval'):
      ratio = seconds[phase][default] / seconds[phase][chosen]
      summary[f'{phase}_vs_xla_default'] = f'{ratio:.2f}x'
  for phase in ('train', 'eval'):
    fastest = min(seconds[phase].values())
    summary[f'{phase}_vs_fastest'] = f'{fastest / seconds[phase][chosen]:.2f}x'
  return summary


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--image_size', type=int, default=IMAGE_SIZE)
  parser.add_argument('--width', type=float, default=1.0,
                      help="the model's width multiplier; < 1 only for quick checks")
  parser.add_argument('--parts', default='operations,steps')
  parser.add_argument('--only', default='',
                      help='steps under these kernels only, e.g. convolution:eigen,dot:ynnpack')
  args = parser.parse_args()
  only = dict(item.split(':') for item in args.only.split(',') if item)
  parts = set(args.parts.split(','))
  if jax.default_backend() != 'cpu':
    raise SystemExit('Error: benchmarks.cpu_kernels measures XLA:CPU; this machine runs '
                     f'{jax.default_backend()}: run it with JAX_PLATFORMS=cpu.')
  setup = step_setup(args.batch, width=args.width, image_size=args.image_size)
  model = nnx.eval_shape(lambda: setup.build(nnx.Rngs(0)))
  print(f'device {describe_device()}, jaxlib {cpu_kernels.jaxlib_version()}, '
        f'batch {args.batch}, image {model.image_size}, width {args.width}; the project\'s '
        f'choice: {cpu_kernels.describe(cpu_kernels.CHOICE)}')
  summary = {'choice': label(cpu_kernels.CHOICE)}
  fastest_operations = None
  if 'operations' in parts:
    fastest_operations = time_operations(model, args.batch, args.repeats)
  if 'steps' in parts:
    summary.update(report_steps(time_steps(setup, args.repeats, only), args.batch))
  if fastest_operations:
    summary['operations_fastest'] = label(fastest_operations)
  print(' '.join(f'{k}={v}' for k, v in summary.items()))


if __name__ == '__main__':
  main()
