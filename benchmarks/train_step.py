"""The full train step (forward, backward, paper SGD) and the eval step on synthetic batches.

    python -m benchmarks.train_step [--batch=128] [--dtype=float32|bfloat16] [--repeats=10]

The steps of `alexnet_jax.train_step`, as training runs them: uint8 batches already on the
devices (no input pipeline, no TensorFlow), split over every device on the `data` mesh.
Prints the first step's compile time, images/s of each step and the achieved FLOP rate
(6 x the network's multiply-adds per training image, 2 x per evaluated image), and what the
step's NaN/inf guard costs (the step timed again without it, and steps dispatched with and
without the loop's one-step-late read of each step's flag). Last line:
`train_images_per_second=... eval_images_per_second=...`.
"""

from __future__ import annotations

import statistics
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax import device_input, distributed, faults, optim, train_step
from alexnet_jax.model import AlexNet, layer_table
from benchmarks.common import parse_args, time_jitted

RESIZE = 256
NUM_CLASSES = 1000


def synthetic_batch(batch: int, image_size: int, rng: np.random.Generator) -> dict:
  offsets = rng.integers(0, RESIZE - image_size + 1, (batch, 2)).astype(np.int32)
  return {'image': rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
          'label': rng.integers(0, NUM_CLASSES, batch).astype(np.int32),
          'crop_offset': offsets, 'flipped': rng.random(batch) < 0.5,
          'lighting': rng.normal(0, 5, (batch, 3)).astype(np.float32),
          'mask': np.ones(batch, bool)}


def main():
  args = parse_args(__doc__, batch=128, repeats=10)
  mesh = distributed.data_mesh()
  dtype = jnp.dtype(args.dtype)

  def build(rngs):
    return AlexNet('paper', NUM_CLASSES, dtype=dtype, rngs=rngs)

  macs = sum(row.macs for row in layer_table(nnx.eval_shape(lambda: build(nnx.Rngs(0)))))
  image_size = 227
  optimizer = optim.paper_sgd(0.9, 5e-4)
  network, state = train_step.init(build, optimizer, 0, mesh)
  preprocess = train_step.Preprocess(
      jnp.full((RESIZE, RESIZE, 3), 120.0), jnp.ones(3), dtype)
  def make_step():
    # A small learning rate: the benchmark repeats one batch hundreds of times, and at the
    # paper's 0.01 the paper-initialised net overfits it until the loss overflows, after which
    # the guard skips every step; the cost of a step does not depend on the rate.
    return train_step.make_train_step(
        network, optimizer, optim.learning_rate_schedule('constant', 1e-5, total_steps=1),
        preprocess, 0, mesh)

  step = make_step()
  evaluate = train_step.make_eval_step(network, preprocess, mesh)
  batch = device_input.global_batch(synthetic_batch(args.batch, image_size,
                                                    np.random.default_rng(0)), mesh)

  start = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_seconds = time.perf_counter() - start
  assert np.isfinite(float(metrics['loss'])), 'the loss is not finite'

  # What the NaN/inf guard costs: the same step with it patched out (jit traces on the first
  # call, so that call runs under the patch). The state is donated, so it is threaded through.
  with mock.patch.multiple(train_step, all_finite=lambda loss, grads: jnp.isfinite(loss),
                           keep_if_finite=lambda finite, new, old: new):
    unguarded = make_step()
    state = jax.block_until_ready(unguarded(state, batch)[0])
  # Alternated, so that a slow phase of a shared machine hits both alike.
  times = {step: [], unguarded: []}
  for _ in range(args.repeats):
    for step_fn, elapsed in times.items():
      start = time.perf_counter()
      state = jax.block_until_ready(step_fn(state, batch)[0])
      elapsed.append(time.perf_counter() - start)
  train_seconds, unguarded_seconds = (statistics.median(t) for t in times.values())

  # The training loop reads each step's finiteness flag one step late (NonfiniteWatch), so
  # at most two steps are queued: `repeats` steps dispatched that way against as many
  # dispatched back to back, alternated.
  def loop(read_flags: bool) -> float:
    nonlocal state
    watch = faults.NonfiniteWatch(allowed=0, count=0)
    start = time.perf_counter()
    for index in range(args.repeats):
      state, step_metrics = step(state, batch)
      if read_flags:
        watch.after_step(index, step_metrics['finite'])
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / args.repeats

  loops = {True: [], False: []}
  for _ in range(3):
    for read_flags, per_step in loops.items():
      per_step.append(loop(read_flags))
  watched_seconds, free_seconds = (statistics.median(t) for t in loops.values())
  state, last_metrics = step(state, batch)
  final_loss = float(last_metrics['loss'])
  assert np.isfinite(final_loss), f'the loss became {final_loss}: the timings include skipped steps'
  eval_seconds = time_jitted(evaluate, state.params, batch, repeats=args.repeats)
  train_rate, eval_rate = args.batch / train_seconds, args.batch / eval_seconds
  print(f'first train step (compile + run): {compile_seconds:.1f} s')
  print(f'train step: {train_seconds * 1e3:8.1f} ms  {train_rate:9.1f} images/s  '
        f'{train_rate * 6 * macs / 1e12:7.2f} TFLOP/s')
  print(f'eval step:  {eval_seconds * 1e3:8.1f} ms  {eval_rate:9.1f} images/s  '
        f'{eval_rate * 2 * macs / 1e12:7.2f} TFLOP/s')
  print(f'train step without the NaN/inf guard: {unguarded_seconds * 1e3:8.1f} ms; the guard '
        f'costs {100 * (train_seconds / unguarded_seconds - 1):+.1f}%')
  print(f'{args.repeats} steps reading each NaN flag one step late: {watched_seconds * 1e3:.1f} '
        f'ms a step; back to back: {free_seconds * 1e3:.1f} ms '
        f'({100 * (watched_seconds / free_seconds - 1):+.1f}%)')
  print(f'train_images_per_second={train_rate:.1f} eval_images_per_second={eval_rate:.1f}')


if __name__ == '__main__':
  main()
