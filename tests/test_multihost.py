"""Several real JAX processes (gloo collectives on the CPU) reading one data set: each reads its
own part, eval batches become global arrays that count each example once, the pixel
statistics summed across processes equal a single process's, and float64 pixel sums are added
across processes without losing a bit."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.multihost_worker import pixel_sums
from tests.test_input_pipeline import RESIZE, SPLIT_SIZES, folder  # noqa: F401  (fixture)

WORKER = os.path.join(os.path.dirname(__file__), 'multihost_worker.py')


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(count, folder, cache_dir, tmp_path):
  port = free_port()
  outs = [tmp_path / f'process{i}.json' for i in range(count)]
  env = {**os.environ, 'PYTHONPATH': os.path.dirname(os.path.dirname(WORKER)),
         'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2'}
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), str(count), str(port),
                             str(folder), str(cache_dir), str(outs[i])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(count)]
  logs = [p.communicate(timeout=240)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return [json.loads(out.read_text()) for out in outs]


def test_processes_share_global_batches_and_score_each_example_once(tf, folder, tmp_path):
  from alexnet_jax.data import pixel_stats
  from alexnet_jax.data import sources
  # Three processes: the uneven case (11 examples, 3 per host batch). Two are tested simulated
  # in test_input_pipeline.py; real processes cost about 30 s each run on 2 cores.
  count = 3
  results = run_processes(count, folder, tmp_path / 'cache', tmp_path)
  size = SPLIT_SIZES['validation']
  first = results[0]
  assert first['devices'] == count
  assert all(r['eval_steps'] == first['eval_steps'] for r in results)  # one global view
  steps = first['eval_steps']
  assert all(step['shape'] == [3 * count] for step in steps)
  scored = [index for step in steps for index in step['scored']]
  assert sorted(scored) == list(range(size))
  assert sum(step['count'] for step in steps) == size
  assert sum(step['index_sum'] for step in steps) == size * (size - 1) // 2
  assert first['train_shape'] == [4 * count, 32, 32, 3]

  single = pixel_stats.load_or_compute(sources.open_source(f'folder:{folder}'), 'train', RESIZE,
                                       cache_dir=str(tmp_path / 'single'))
  assert first['num_examples'] == single.num_examples == SPLIT_SIZES['train']
  for r in results:
    np.testing.assert_allclose(np.array(r['mean_image']), single.mean_image, rtol=1e-6)
  assert sorted(os.listdir(tmp_path / 'cache')) == [f'pixel_stats-train-{RESIZE}.npz']

  # gather_sums: every process gets the float64 sum of all processes' sums, bit for bit
  # (JAX, without x64, would carry float64 arrays as float32).
  own = [pixel_sums(i) for i in range(count)]
  for name in ('image_sum', 'rgb_outer_sum'):
    parts = np.stack([getattr(sums, name) for sums in own])
    expected = parts.sum(0)
    assert not np.array_equal(parts.astype(np.float32).astype(np.float64).sum(0), expected)
    for r in results:
      got = np.array(r['gathered_sums'][name], np.float64)
      np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64), err_msg=name)
  assert all(r['gathered_sums']['count'] == sum(sums.count for sums in own) for r in results)
