"""Time to accuracy of configs/fashion_mnist.py: the recipe's whole runs, one per seed, each
timed, against its train step alone.

    python -m benchmarks.time_to_accuracy [--seeds=0,1,2] [--validation]
                                          [--workdir=/tmp/alexnet_time_to_accuracy]
                                          [--target=0.94] [--set FIELD=VALUE ...]

Needs Fashion-MNIST (sudo apt-get install dataset-fashion-mnist; prepared on first use).
It first times the recipe's train step alone on one synthetic batch on the devices, then
trains the recipe once per seed into WORKDIR/<split>-seed<N> (`train_and_evaluate`, what
train.py runs; a run finished earlier is read back, not repeated). --validation trains on
the first 54,000 training images and scores the other 6,000, as the recipe was chosen;
without it, the whole training split and the test split, the recipe's figure. --set
overrides a config field (dotted name, Python literal), as --config.FIELD=VALUE does.

Printed per run: the accuracy (top-1, centre crop) after each epoch, the epoch that first
reached --target, the wall-clock time, the training throughput and the share of it the loop
waited for the input pipeline (`input_wait` in metrics.jsonl). The last line is
machine-readable, e.g. `accuracy_mean=0.9312 accuracy_min=0.9301 accuracy_max=0.9320
reached_target=0/3 seconds_per_run=1890 run_vs_step_alone=0.88x input_wait=0.004`: the
run's training images/s (evaluations included) over the step's alone (< 1: what the input
pipeline, the evaluations and the checkpoints cost on these cores).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import time

import jax
from absl import logging

from alexnet_jax.commands import cli
from alexnet_jax.run.workdir import Workdir
from benchmarks.common import describe_device
from benchmarks.measure import median_seconds
from benchmarks.train_step import step_setup

VALIDATION = {'train_split': 'train[:90%]', 'eval_split': 'train[90%:]'}  # 54,000 and 6,000
RECORD = 'time_to_accuracy.json'  # the run's timing, written when it completes


def recipe(seed: int, validation: bool, overrides: dict):
  from alexnet_jax.configs import fashion_mnist
  config = fashion_mnist.get_config()
  config.seed = seed
  config.update_from_flattened_dict({**(VALIDATION if validation else {}), **overrides})
  return config


def step_alone_images_per_second(config, repeats: int = 20) -> float:
  """The recipe's train step on one synthetic batch already on the devices."""
  setup = step_setup(config.batch_size, config.model.dtype, config.model.width,
                     config.image_size, 10, config.resize_size, config.model.variant)
  step, state = setup.train_step(), setup.state

  def once():
    nonlocal state
    state = jax.block_until_ready(step(state, setup.batch)[0])

  return config.batch_size / median_seconds(once, repeats, warmup=2)


def timed_run(config, workdir: str) -> dict:
  """Trains `config` into `workdir` and returns its record: seconds, then what metrics.jsonl
  says. A workdir without a record (an interrupted run) is started over, so that the time
  is one run's."""
  from alexnet_jax.training.loop import train_and_evaluate
  record_path = os.path.join(workdir, RECORD)
  if os.path.exists(record_path):
    with open(record_path) as f:
      return json.load(f)
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.perf_counter()
  train_and_evaluate(config, workdir)
  record = {'seconds': time.perf_counter() - start, **read_metrics(workdir)}
  with open(record_path, 'w') as f:
    json.dump(record, f)
  return record


def read_metrics(workdir: str) -> dict:
  with Workdir(workdir).metrics_file.open() as f:
    lines = [json.loads(line) for line in f]
  train = [m for m in lines if 'train_loss' in m]
  return {'accuracy': [1 - m['eval_top1_error'] for m in lines if 'eval_top1_error' in m],
          'images_per_second': statistics.mean(m['images_per_second'] for m in train),
          'input_wait': statistics.mean(m.get('input_wait', 0.0) for m in train)}


def parse_overrides(pairs: list[str]) -> dict:
  overrides = {}
  for pair in pairs:
    field, _, value = pair.partition('=')
    try:
      overrides[field] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[field] = value  # a string
  return overrides


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--validation', action='store_true')
  parser.add_argument('--workdir', default='/tmp/alexnet_time_to_accuracy')
  parser.add_argument('--target', type=float, default=0.94)
  parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE')
  args = parser.parse_args()
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)  # the training log, as train.py prints it
  cli.quiet_library_logs()
  seeds = [int(seed) for seed in args.seeds.split(',')]
  overrides = parse_overrides(args.set)
  split = 'validation' if args.validation else 'test'
  config = recipe(seeds[0], args.validation, overrides)
  print(f'device {describe_device()}; configs/fashion_mnist.py, trained on '
        f'{config.train_split}, scored on {config.eval_split}; overrides {overrides or "none"}')
  alone = step_alone_images_per_second(config)
  print(f'train step alone: {alone:.1f} images/s')
  records = []
  for seed in seeds:
    record = timed_run(recipe(seed, args.validation, overrides),
                       os.path.join(args.workdir, f'{split}-seed{seed}'))
    records.append(record)
    reached = next((epoch for epoch, accuracy in enumerate(record['accuracy'], 1)
                    if accuracy >= args.target), None)
    print(f'seed {seed}: accuracy ' + ' '.join(f'{a:.4f}' for a in record['accuracy']) +
          f'; target {args.target} ' + (f'at epoch {reached}' if reached else 'not reached') +
          f'; {record["seconds"]:.0f} s, {record["images_per_second"]:.1f} images/s, input '
          f'wait {100 * record["input_wait"]:.1f}%', flush=True)
  finals = [record['accuracy'][-1] for record in records]
  reached = sum(final >= args.target for final in finals)
  rate = statistics.mean(record['images_per_second'] for record in records)
  print(f'accuracy_mean={statistics.mean(finals):.4f} accuracy_min={min(finals):.4f} '
        f'accuracy_max={max(finals):.4f} reached_target={reached}/{len(finals)} '
        f'seconds_per_run={statistics.mean(r["seconds"] for r in records):.0f} '
        f'run_vs_step_alone={rate / alone:.2f}x '
        f'input_wait={statistics.mean(r["input_wait"] for r in records):.3f}')


if __name__ == '__main__':
  main()
