"""The full train step (forward, backward, paper SGD) and the eval step on synthetic batches,
against the same network in PyTorch, in one invocation.

    python -m benchmarks.train_step [--batch=128] [--dtype=float32|bfloat16] [--repeats=5]
                                    [--baseline=auto|pytorch|none] [--guard] [--device_crop]
                                    [--width=1]

The project's steps are those of `alexnet_jax.training.train_step`, as training runs them: uint8
batches already on the devices (no input pipeline, no TensorFlow), split over every device
on the `data` mesh. It prints:

- the best matmul rate measured here (JAX at float32, and bfloat16 on an accelerator;
  PyTorch's float32 too where it runs): the peak that the model FLOP utilisation (MFU)
  divides by. FLOPs are 6 x the network's multiply-adds per training image (4.35 GFLOP)
  and 2 x per evaluated image (1.45 GFLOP).
- the train step's compile time (tracing, lowering and compiling) with an empty persistent
  compilation cache, then again loaded from that cache, as a repeated run's new process
  does;
- images/s of the train and eval steps, and the process's peak resident memory;
- with PyTorch installed (requirements-bench.txt) and on a CPU: the same network rebuilt in
  PyTorch with the same weights (`benchmarks/pytorch_alexnet.py`), in a process of its own:
  its eager train step, eager eval and `torch.compile` eval;
- with --guard: what the step's NaN/inf guard costs (the step timed again without it,
  alternated, and steps dispatched with and without the loop's one-step-late flag read).
- with --device_crop: what cutting the crops on the device costs, as training from a
  conversion does: the step on the 256x256 squares with their crop offsets and flags,
  against the step on the host's 227x227 crops, alternated (`device_crop_cost=` on the last
  line).

The last line is machine-readable, e.g.
`train_vs_pytorch=1.62x eval_vs_torch_compile=1.05x train_mfu=0.41 eval_mfu=0.50
train_images_per_second=35.1 eval_images_per_second=120.4` (the ratios only where PyTorch ran).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax.model import cpu_kernels
from alexnet_jax.model.layer_table import layer_table
from alexnet_jax.model.network import AlexNet
from alexnet_jax.model.normalization import Normalization, crop_views
from alexnet_jax.run import compilation_cache, distributed
from alexnet_jax.training import faults, optim, train_step
from benchmarks.common import describe_device, time_jitted
from benchmarks.measure import median_seconds, peak_rss_bytes

RESIZE = 256
IMAGE_SIZE = 227
NUM_CLASSES = 1000
MEAN_PIXEL = 120.0


def synthetic_batch(batch: int, image_size: int, rng: np.random.Generator,
                    num_classes: int = NUM_CLASSES, resize: int = RESIZE) -> dict:
  offsets = rng.integers(0, resize - image_size + 1, (batch, 2)).astype(np.int32)
  return {'image': rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
          'label': rng.integers(0, num_classes, batch).astype(np.int32),
          'crop_offset': offsets, 'flipped': rng.random(batch) < 0.5,
          'lighting': rng.normal(0, 5, (batch, 3)).astype(np.float32),
          'mask': np.ones(batch, bool)}


def matmul_flops(dtype, size: int, repeats: int = 5) -> float:
  """FLOP/s of one (size x size) @ (size x size) jitted matmul in `dtype`."""
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  return 2 * size ** 3 / time_jitted(jax.jit(jnp.dot), a, a, repeats=repeats)


def jax_matmul_peak(platform: str) -> dict[str, float]:
  """The best matmul rate per dtype: float32 on a CPU, float32 and bfloat16 elsewhere."""
  sizes = (1024, 2048) if platform == 'cpu' else (4096, 8192)
  dtypes = ('float32',) if platform == 'cpu' else ('float32', 'bfloat16')
  return {f'jax {dtype}': max(matmul_flops(dtype, n) for n in sizes) for dtype in dtypes}


def layer_arrays(params) -> dict[str, dict[str, np.ndarray]]:
  """{layer: {'kernel': ..., 'bias': ...}} host arrays of an AlexNet parameter state: what
  `benchmarks.pytorch_alexnet.TorchAlexNet.from_arrays` takes."""
  return {layer: {name: np.asarray(params[layer][name].get_value())
                  for name in ('kernel', 'bias')}
          for layer in params}  # conv1 ... fc8: the layers with parameters


def pytorch_baseline(batch: dict, params, repeats: int) -> dict | None:
  """benchmarks.pytorch_alexnet run in a child process on this batch and these weights."""
  with tempfile.TemporaryDirectory() as tmp:
    inputs = os.path.join(tmp, 'inputs.npz')
    np.savez(inputs, images=batch['image'], labels=batch['label'],
             mean_crop=np.full((IMAGE_SIZE, IMAGE_SIZE, 3), MEAN_PIXEL, np.float32),
             **{f'{layer}/{name}': array for layer, arrays in params.items()
                for name, array in arrays.items()})
    # The child's temp dir is this one, removed with it: torch.compile keeps its caches in the
    # temp dir (inductor's, which TORCHINDUCTOR_CACHE_DIR moves only in part), and warm ones
    # would time the next run's compile short.
    env = dict(os.environ, TMPDIR=tmp)
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks.pytorch_alexnet', f'--inputs={inputs}',
         f'--repeats={repeats}'], env=env, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f'the PyTorch baseline failed:\n{done.stderr[-3000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def torch_available() -> bool:
  return importlib.util.find_spec('torch') is not None


@dataclasses.dataclass
class StepSetup:
  """The paper net's first train state and one synthetic batch, on every device of the `data`
  mesh, and its train and eval steps as training makes them."""
  build: Callable[[nnx.Rngs], AlexNet]
  network: train_step.Network
  state: train_step.TrainState
  normalization: Normalization
  mesh: jax.sharding.Mesh
  host_batch: dict
  batch: dict  # host_batch as global arrays

  def train_step(self):
    """A fresh jitted train step (traced on its first call or lower()). A small learning
    rate: the benchmarks repeat one batch many times, and at the paper's 0.01 the
    paper-initialised net overfits it until the loss overflows, after which the guard skips
    every step; the cost of a step does not depend on the rate."""
    return train_step.make_train_step(
        self.network, OPTIMIZER, optim.learning_rate_schedule('constant', 1e-5, total_steps=1),
        self.normalization, 0, self.mesh)

  def eval_step(self):
    return train_step.make_eval_step(self.network, self.normalization, self.mesh)


OPTIMIZER = optim.paper_sgd(0.9, 5e-4)


def step_setup(batch: int, dtype: str = 'float32', width: float = 1.0,
               image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES,
               resize: int = RESIZE, variant: str = 'paper') -> StepSetup:
  dtype = jnp.dtype(dtype)

  def build(rngs):
    return AlexNet(variant, num_classes, image_size, dtype=dtype, width=width, rngs=rngs)

  mesh = distributed.data_mesh()
  network, state = train_step.init(build, OPTIMIZER, 0, mesh)
  host_batch = synthetic_batch(batch, image_size, np.random.default_rng(0), num_classes, resize)
  normalization = Normalization(jnp.full((resize, resize, 3), MEAN_PIXEL), jnp.ones(3), dtype)
  return StepSetup(build, network, state, normalization, mesh, host_batch,
                   distributed.global_batch(host_batch, mesh))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--baseline', default='auto', choices=['auto', 'pytorch', 'none'],
                      help='auto: PyTorch if it is installed and the device is a CPU')
  parser.add_argument('--guard', action='store_true', help='also time the NaN/inf guard')
  parser.add_argument('--device_crop', action='store_true',
                      help='also time the step on whole squares that it crops itself')
  parser.add_argument('--width', type=float, default=1.0,
                      help="the model's width multiplier; < 1 only for quick checks")
  args = parser.parse_args()
  platform = jax.devices()[0].platform
  print(f'device {describe_device()}, batch {args.batch}, {args.dtype}, width {args.width}')
  if platform == 'cpu':
    print(f'XLA:CPU kernels: {cpu_kernels.APPLIED}')
  run_pytorch = args.baseline == 'pytorch' or (
      args.baseline == 'auto' and platform == 'cpu' and torch_available())
  if args.baseline == 'pytorch' and not torch_available():
    sys.exit('Error: --baseline=pytorch needs torch: pip install -r requirements-bench.txt')

  # A cache of its own, empty so that the first compile is a cold one, removed at the end.
  with tempfile.TemporaryDirectory(prefix='alexnet_jax_benchmark_cache_') as cache_dir:
    compilation_cache.enable(cache_dir)
    measure_and_print(args, platform, run_pytorch)


def measure_and_print(args: argparse.Namespace, platform: str, run_pytorch: bool) -> None:
  """Times the compiles and the steps (and PyTorch's, with `run_pytorch`) and prints them,
  the summary line last."""
  setup = step_setup(args.batch, args.dtype, args.width)
  macs = sum(row.macs for row in layer_table(nnx.eval_shape(lambda: setup.build(nnx.Rngs(0)))))
  peaks = jax_matmul_peak(platform)
  state, host_batch, batch, mesh = setup.state, setup.host_batch, setup.batch, setup.mesh
  initial_params = layer_arrays(state.params) if run_pytorch else None
  make_step = setup.train_step

  compile_seconds = {}
  for phase in ('cold', 'cached'):
    jax.clear_caches()  # forget compiled programs in memory; the disk cache keeps them
    start = time.perf_counter()
    step = make_step().lower(state, batch).compile()
    compile_seconds[phase] = time.perf_counter() - start
  state, metrics = step(state, batch)
  assert np.isfinite(float(metrics['train_loss'])), 'the loss is not finite'

  def train_once():
    nonlocal state
    state = jax.block_until_ready(step(state, batch)[0])

  train_seconds = median_seconds(train_once, args.repeats)
  evaluate = setup.eval_step()
  eval_seconds = time_jitted(evaluate, state.params, batch, repeats=args.repeats)
  peak_rss = peak_rss_bytes()
  state, last_metrics = step(state, batch)
  final_loss = float(last_metrics['train_loss'])
  assert np.isfinite(final_loss), f'the loss became {final_loss}: the timings include skipped steps'
  if args.guard:
    state = guard_costs(make_step, step, state, batch, args.repeats)
  crop_cost = None
  if args.device_crop:
    state, crop_cost = device_crop_cost(make_step, state, host_batch, mesh, args.repeats)

  baseline = pytorch_baseline(host_batch, initial_params, args.repeats) if run_pytorch else None
  if baseline:
    peaks[f'torch float32 ({baseline["torch_version"]})'] = baseline['matmul_flops']
  peak = max(peaks.values())
  train_rate, eval_rate = args.batch / train_seconds, args.batch / eval_seconds
  train_flops, eval_flops = train_rate * 6 * macs, eval_rate * 2 * macs

  print(f'matmul peak: {", ".join(f"{k} {v / 1e9:,.0f}" for k, v in peaks.items())} GFLOP/s')
  print(f'train step compile: {compile_seconds["cold"]:.1f} s with an empty cache, '
        f'{compile_seconds["cached"]:.1f} s loaded from the persistent compilation cache')
  print(f'alexnet_jax train step: {train_seconds * 1e3:8.1f} ms {train_rate:9.1f} images/s '
        f'{train_flops / 1e9:9.1f} GFLOP/s (MFU {train_flops / peak:.2f})')
  print(f'alexnet_jax eval step:  {eval_seconds * 1e3:8.1f} ms {eval_rate:9.1f} images/s '
        f'{eval_flops / 1e9:9.1f} GFLOP/s (MFU {eval_flops / peak:.2f})')
  print(f'alexnet_jax peak resident memory: {peak_rss / 2**30:.2f} GiB')
  summary = {}
  if baseline:
    print(f'PyTorch {baseline["torch_version"]} ({baseline["threads"]} threads), eager train '
          f'step: {baseline["train_images_per_second"]:.1f} images/s; eager eval: '
          f'{baseline["eval_images_per_second"]:.1f} images/s; torch.compile eval: '
          f'{baseline["compiled_eval_images_per_second"]:.1f} images/s (compiled in '
          f'{baseline["compile_seconds"]:.0f} s); peak resident memory '
          f'{baseline["peak_rss_bytes"] / 2**30:.2f} GiB')
    summary['train_vs_pytorch'] = f'{train_rate / baseline["train_images_per_second"]:.2f}x'
    summary['eval_vs_pytorch'] = f'{eval_rate / baseline["eval_images_per_second"]:.2f}x'
    summary['eval_vs_torch_compile'] = (
        f'{eval_rate / baseline["compiled_eval_images_per_second"]:.2f}x')
  summary.update(train_mfu=f'{train_flops / peak:.2f}', eval_mfu=f'{eval_flops / peak:.2f}',
                 train_images_per_second=f'{train_rate:.1f}',
                 eval_images_per_second=f'{eval_rate:.1f}',
                 compile_seconds=f'{compile_seconds["cold"]:.1f}',
                 cached_compile_seconds=f'{compile_seconds["cached"]:.1f}',
                 peak_rss_gib=f'{peak_rss / 2**30:.2f}')
  if crop_cost is not None:
    summary['device_crop_cost'] = f'{100 * crop_cost:+.1f}%'
  print(' '.join(f'{k}={v}' for k, v in summary.items()))


def alternated_seconds(runs, state, repeats: int):
  """Median seconds of each (step, batch) of `runs`, timed in turn `repeats` times so that a
  slow phase of a shared machine hits all alike; returns the state, threaded through the
  donating steps, and the medians."""
  times = [[] for _ in runs]
  for _ in range(repeats):
    for (step, batch), elapsed in zip(runs, times):
      start = time.perf_counter()
      state = jax.block_until_ready(step(state, batch)[0])
      elapsed.append(time.perf_counter() - start)
  return state, [statistics.median(t) for t in times]


def device_crop_cost(make_step, state, host_batch: dict, mesh, repeats: int):
  """Prints what the step costs more on whole squares, which it crops and mirrors itself, than
  on the host's crops of them; returns the state and that cost as a fraction."""
  squares = np.random.default_rng(1).integers(
      0, 256, (len(host_batch['label']), RESIZE, RESIZE, 3), dtype=np.uint8)
  square_batch = {**host_batch, 'image': squares}
  crop_batch = {**host_batch, 'image': np.asarray(crop_views(
      squares, host_batch['crop_offset'], host_batch['flipped'], IMAGE_SIZE))}
  batches = [distributed.global_batch(b, mesh) for b in (square_batch, crop_batch)]
  step = make_step()  # compiled once for each shape on its first call below
  for batch in batches:
    state = jax.block_until_ready(step(state, batch)[0])
  state, (on_squares, on_crops) = alternated_seconds(
      [(step, batch) for batch in batches], state, repeats)
  cost = on_squares / on_crops - 1
  print(f'train step on {RESIZE}x{RESIZE} squares cropped on the device: '
        f'{on_squares * 1e3:8.1f} ms, on {IMAGE_SIZE}x{IMAGE_SIZE} host crops: '
        f'{on_crops * 1e3:8.1f} ms: the device crop costs {100 * cost:+.1f}% '
        f'({squares[0].nbytes / 1e3:.0f} kB an image to the device instead of '
        f'{crop_batch["image"][0].nbytes / 1e3:.0f})')
  return state, cost


def guard_costs(make_step, step, state, batch, repeats: int):
  """Prints what the NaN/inf guard costs; returns the state, threaded through the donating
  steps."""
  # The same step with the guard patched out (jit traces on the first call, so that call
  # runs under the patch).
  with mock.patch.multiple(train_step, all_finite=lambda loss, grads: jnp.isfinite(loss),
                           keep_if_finite=lambda finite, new, old: new):
    unguarded = make_step()
    state = jax.block_until_ready(unguarded(state, batch)[0])
  state, (guarded_seconds, unguarded_seconds) = alternated_seconds(
      [(step, batch), (unguarded, batch)], state, repeats)

  # The training loop reads each step's finiteness flag one step late (NonfiniteWatch), so
  # at most two steps are queued: `repeats` steps dispatched that way against as many
  # dispatched back to back, alternated.
  def loop(read_flags: bool) -> float:
    nonlocal state
    watch = faults.NonfiniteWatch(allowed=0, count=0)
    start = time.perf_counter()
    for index in range(repeats):
      state, step_metrics = step(state, batch)
      if read_flags:
        watch.after_step(index, step_metrics['finite'])
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / repeats

  loops = {True: [], False: []}
  for _ in range(3):
    for read_flags, per_step in loops.items():
      per_step.append(loop(read_flags))
  watched_seconds, free_seconds = (statistics.median(t) for t in loops.values())
  print(f'train step without the NaN/inf guard: {unguarded_seconds * 1e3:8.1f} ms, with it '
        f'{guarded_seconds * 1e3:8.1f} ms: the guard costs '
        f'{100 * (guarded_seconds / unguarded_seconds - 1):+.1f}%')
  print(f'{repeats} steps reading each NaN flag one step late: {watched_seconds * 1e3:.1f} '
        f'ms a step; back to back: {free_seconds * 1e3:.1f} ms '
        f'({100 * (watched_seconds / free_seconds - 1):+.1f}%)')
  return state


if __name__ == '__main__':
  main()
