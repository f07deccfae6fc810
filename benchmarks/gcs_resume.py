"""Seconds a resume spends reading the paper network's train state (61M parameters and their
momentum, 488 MB) from a gs:// workdir, against a local disk, in one run.

    python -m benchmarks.gcs_resume [--repeats=3]

Saves one checkpoint of the paper net's train state with `alexnet_jax.run.checkpoints` into a
local workdir and into gs:// on a GCS emulator this script starts on localhost
(tests/gcs_emulator.py; needs requirements-test.txt), then times listing the complete
checkpoints and restoring the state from each, `--repeats` times. The last line is
machine-readable: gcs_restore_seconds=.. local_restore_seconds=.. gcs_vs_local=..x. The
emulator is a single Python process writing to this machine's disk, so the figure bounds
what the client side (TensorStore, gcsfs, Orbax) costs; real GCS serves the arrays from many
servers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
  from tests.gcs_emulator import BUCKET, Emulator
  with tempfile.TemporaryDirectory(prefix='alexnet_jax_gcs_resume_') as scratch:
    emulator = Emulator(Path(scratch) / 'storage').start()
    os.environ.update(emulator.env)
    try:
      times = measure({'local': os.path.join(scratch, 'run'), 'gcs': f'gs://{BUCKET}/run'},
                      args.repeats)
    finally:
      emulator.stop()
  for name, seconds in times.items():
    print(f'{name}: restore {min(seconds):.2f} s (best of {args.repeats}; all: '
          f'{", ".join(f"{s:.2f}" for s in seconds)})')
  gcs, local = min(times['gcs']), min(times['local'])
  print(f'gcs_restore_seconds={gcs:.2f} local_restore_seconds={local:.2f} '
        f'gcs_vs_local={gcs / local:.1f}x')


def measure(workdirs: dict[str, str], repeats: int) -> dict[str, list[float]]:
  import jax
  import numpy as np

  from alexnet_jax.run import distributed
  from alexnet_jax import files
  from alexnet_jax.model import network
  from alexnet_jax.training import optim
  from alexnet_jax.training import train_step
  from alexnet_jax.run.checkpoints import Checkpoints
  from alexnet_jax.run.checkpoints import RunRecord
  from alexnet_jax.run.workdir import Workdir
  from configs import imagenet
  files.configure_object_stores()  # STORAGE_EMULATOR_HOST was set after files' import
  config = imagenet.get_config()
  mesh = distributed.data_mesh()
  _, state = train_step.init(lambda rngs: network.from_config(config, 1000, rngs),
                             optim.from_config(config), config.seed, mesh)
  identity = network.identity(config, 1000)
  size = sum(a.nbytes for a in jax.tree.leaves(state))
  print(f'train state: {size / 1e6:.0f} MB')
  times = {}
  for name, location in workdirs.items():
    workdir = Workdir(location)
    saver = Checkpoints(workdir, keep=1, keep_best=0)
    saver.save(1, state, RunRecord.start(identity))
    saver.wait()
    saver.close()
    times[name] = []
    for _ in range(repeats):
      start = time.perf_counter()
      checkpoints = Checkpoints(workdir, keep=1, keep_best=0)
      restored, _ = checkpoints.restore(checkpoints.latest_step(), state, identity)
      jax.block_until_ready(restored)
      times[name].append(time.perf_counter() - start)
      checkpoints.close()
    np.testing.assert_array_equal(jax.tree.leaves(restored)[0], jax.tree.leaves(state)[0])
  return times


if __name__ == '__main__':
  main()
