"""Evaluation: the top-1 and top-5 error of parameters on a split (`evaluate_split`, which the
training loop runs too), and of a checkpoint with the centre crop and the paper's 10 crops
(`evaluate_checkpoint`, what `alexnet-evaluate` prints and writes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alexnet_jax.data import input_pipeline, sources
from alexnet_jax.model import network
from alexnet_jax.run import distributed
from alexnet_jax.training import inference, train_step

VIEWS = {'centre': 'centre crop', 'ten_crop': '10 crops'}


def evaluate_split(eval_step, params, source, config, mesh, *,
                   ten_crop: bool) -> dict[str, float]:
  """Top-1 and top-5 error, loss, the number of examples scored on config.eval_split and the
  number that could not be decoded (all processes together)."""
  batches = input_pipeline.eval_batches(
      source, config.eval_split,
      batch_size=distributed.host_batch_size(config.eval_batch_size or config.batch_size),
      image_size=network.image_size(config), resize_size=config.resize_size,
      ten_crop=ten_crop, fast_decode=config.fast_decode, **distributed.hosts())
  totals = None
  for batch in batches:
    sums = eval_step(params, distributed.global_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = {name: value.item() for name, value in jax.device_get(totals).items()}
  count = max(totals['count'], 1)
  return {'eval_top1_error': totals['top1_misses'] / count,
          'eval_top5_error': totals['top5_misses'] / count,
          'eval_loss': totals['loss_sum'] / count, 'eval_examples': totals['count'],
          'eval_skipped': source.num_examples(config.eval_split) - totals['count']}


def evaluate_checkpoint(workdir: str, step: int | str | None = None,
                        split: str | None = None) -> dict:
  """{'centre': metrics, 'ten_crop': metrics, 'step': step} of checkpoint `step` (a number,
  'best', or None for the latest)."""
  trained = inference.load(workdir, step)
  config = trained.config
  if split:
    config.eval_split = split
  source = sources.open_configured(config)
  eval_step = train_step.make_eval_step(trained.network, trained.normalization, trained.mesh)
  results = {view: evaluate_split(eval_step, trained.params, source, config, trained.mesh,
                                  ten_crop=view == 'ten_crop') for view in VIEWS}
  results['step'] = trained.step
  return results


def report(results: dict, workdir: str) -> str:
  """`evaluate_checkpoint`'s results as lines of top-1 and top-5 error."""
  lines = [f'checkpoint {results["step"]} of {workdir}:']
  for view, label in VIEWS.items():
    r = results[view]
    lines.append(f'  {label:<11}  top-1 error {100 * r["eval_top1_error"]:6.2f}%  '
                 f'top-5 error {100 * r["eval_top5_error"]:6.2f}%  '
                 f'({r["eval_examples"]} examples)')
  return '\n'.join(lines)
