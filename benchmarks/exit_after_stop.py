"""Seconds from a stopped training run's `Stopped by ...` line to the process's exit: what a
preempted VM, which gets about 30 s between its notice and the kill, has left.

    python -m benchmarks.exit_after_stop [--steps=400,700,1000,1200] [--signal=SIGTERM]
                                         [--width=0.125] [--data_dir=DIR]

For each --steps value, trains the default config (at --width, for 20,000 steps, a checkpoint
every 100) in a new temporary workdir with `train.py`, sends the signal to the command's
process group when the step is logged, and prints the seconds from its `Stopped by` line to
its exit. The last line is machine-readable: exit_after_stop_max=2.1s
of_preemption_grace=0.07x (the longest wait, as a fraction of 30 s). docs/reliability.md has
the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

PREEMPTION_GRACE_SECONDS = 30  # between a Compute Engine preemption notice and the kill
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seconds_to_exit(step: int, sent: signal.Signals, width: float, data_dir: str | None,
                    log_every: int) -> float:
  with tempfile.TemporaryDirectory(prefix='alexnet_jax_exit_') as workdir:
    command = [sys.executable, 'train.py', '--config=configs/default.py',
               f'--workdir={workdir}', f'--config.model.width={width}',
               '--config.num_train_steps=20000', '--config.checkpoint_every_steps=100',
               f'--config.log_every_steps={log_every}']
    if data_dir:
      command.append(f'--config.data_dir={data_dir}')
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    stopped_at = None
    for line in process.stdout:
      if re.search(rf'step {step}/', line):
        os.killpg(process.pid, sent)
      if 'Stopped by' in line:
        stopped_at = time.monotonic()
    process.wait()
    if process.returncode != 0 or stopped_at is None:
      raise SystemExit(f'the run at step {step} did not stop cleanly (status '
                       f'{process.returncode})')
    return time.monotonic() - stopped_at


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', default='400,700,1000,1200',
                      help='steps at which to send the signal, one run each')
  parser.add_argument('--signal', default='SIGTERM', choices=['SIGTERM', 'SIGINT'])
  parser.add_argument('--width', type=float, default=0.125)
  parser.add_argument('--data_dir', help='TFDS data_dir holding `shapes` (built if missing)')
  args = parser.parse_args()
  steps = [int(step) for step in args.steps.split(',')]
  log_every = math.gcd(20, *steps)  # every step in --steps is logged
  waits = []
  for step in steps:
    waits.append(seconds_to_exit(step, signal.Signals[args.signal], args.width, args.data_dir,
                                 log_every))
    print(f'{args.signal} at step {step}: exited {waits[-1]:.1f} s after saying it stopped',
          flush=True)
  print(f'exit_after_stop_max={max(waits):.1f}s '
        f'of_preemption_grace={max(waits) / PREEMPTION_GRACE_SECONDS:.2f}x')


if __name__ == '__main__':
  main()
