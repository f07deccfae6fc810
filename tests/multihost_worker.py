"""One of several real JAX processes on this machine, for tests/test_multihost.py.

    python tests/multihost_worker.py PROCESS_ID PROCESS_COUNT PORT FOLDER CACHE_DIR OUT.json

Reads its own part of a folder data set's splits, computes the pixel statistics with the
other processes, adds float64 pixel sums across processes, turns every eval batch into one
global array over all processes' devices and writes what it saw, as every process sees it, to
OUT.json.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

RESIZE, CROP, EVAL_BATCH, TRAIN_BATCH = 40, 32, 3, 4


def main(process_id, process_count, port, folder, cache_dir, out):
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}',
                             num_processes=process_count, process_id=process_id)
  from alexnet_jax.run import distributed
  from alexnet_jax.data import input_pipeline
  from alexnet_jax.data import pixel_stats
  from alexnet_jax.data import sources

  source = sources.open_source(f'folder:{folder}')
  hosts = distributed.hosts()
  stats = pixel_stats.load_or_compute(source, 'train', RESIZE, cache_dir=cache_dir, **hosts)
  own = pixel_sums(process_id)
  gathered = pixel_stats.gather_sums(own)
  mesh = jax.make_mesh((jax.device_count(),), (distributed.DATA_AXIS,))

  @jax.jit
  def scored(batch):  # what an eval step sums: examples counted and their indices
    return batch['mask'].sum(), jnp.where(batch['mask'], batch['index'], 0).sum()

  eval_steps = []
  # eval_batches takes the 'index' bookkeeping off its batches: it comes from the dataset.
  eval_kwargs = {'batch_size': EVAL_BATCH, 'image_size': CROP, 'resize_size': RESIZE, **hosts}
  batches = input_pipeline.eval_batches(source, 'validation', **eval_kwargs)
  numbered = input_pipeline.eval_dataset(source, 'validation', **eval_kwargs)
  for batch, full in zip(batches, numbered.as_numpy_iterator(), strict=True):
    assert 'index' not in batch and np.array_equal(batch['mask'], full['mask'])
    host = {'mask': batch['mask'], 'index': full['index'].astype(np.int32)}
    global_batch = distributed.global_batch(host, mesh)
    count, index_sum = scored(global_batch)
    everyone = multihost_utils.process_allgather(global_batch['index'], tiled=True)
    mask = multihost_utils.process_allgather(global_batch['mask'], tiled=True)
    eval_steps.append({'count': int(count), 'index_sum': int(index_sum),
                       'shape': list(global_batch['index'].shape),
                       'scored': everyone[mask].tolist()})
  train = next(input_pipeline.train_batches(source, 'train', batch_size=TRAIN_BATCH,
                                            image_size=CROP, resize_size=RESIZE, seed=0,
                                            **hosts))
  train_images = distributed.global_batch({'image': train['image']}, mesh)['image']
  with open(out, 'w') as f:
    # Python's JSON writes floats with repr, which reads back to the same float64.
    json.dump({'eval_steps': eval_steps, 'train_shape': list(train_images.shape),
               'mean_image': stats.mean_image.tolist(), 'num_examples': stats.num_examples,
               'devices': jax.device_count(),
               'gathered_sums': {'image_sum': gathered.image_sum.tolist(),
                                 'rgb_outer_sum': gathered.rgb_outer_sum.tolist(),
                                 'count': gathered.count}}, f)
  jax.distributed.shutdown()


def pixel_sums(process_id):
  """Process `process_id`'s made-up float64 sums, with digits a float32 would drop."""
  from alexnet_jax.data import pixel_stats
  base = np.array([1e9 + 0.5, 1 / 3, 2 ** 30 + 2 ** -10, 123456789.123, 0.1, 7.0])
  image_sum = (base * (process_id + 1) + process_id / 7).reshape(1, 2, 3)
  rgb_outer_sum = np.outer(base[:3], base[3:]) + process_id / 3
  return pixel_stats.PixelSums(image_sum, rgb_outer_sum, 10 + process_id)


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
