"""Scores a checkpoint on the eval split, with the centre crop and with the paper's 10 crops.

    alexnet-evaluate --workdir=DIR [--step=N|best] [--split=validation]
    (or python -m alexnet_jax.evaluate ...)

Prints top-1 and top-5 error for both and writes them to DIR/eval-<step>.json. `score` is
also the training loop's evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import flags, logging

from alexnet_jax import cli, distributed, files, model

VIEWS = {'centre': 'centre crop', 'ten_crop': '10 crops'}


def score(eval_step, params, source, config, mesh, *, ten_crop: bool) -> dict[str, float]:
  """Top-1 and top-5 error, loss, the number of examples scored on config.eval_split and the
  number that could not be decoded (all processes together)."""
  from alexnet_jax import input_pipeline
  hosts = distributed.hosts()
  batch_size = (config.eval_batch_size or config.batch_size) // hosts['process_count']
  batches = input_pipeline.eval_batches(
      source, config.eval_split, batch_size=batch_size,
      image_size=model.image_size(config), resize_size=config.resize_size,
      ten_crop=ten_crop, fast_decode=config.fast_decode, **hosts)
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
  from alexnet_jax import inference, sources, train_step
  trained = inference.load(workdir, step)
  config = trained.config
  if split:
    config.eval_split = split
  source = sources.open_configured(config)
  eval_step = train_step.make_eval_step(trained.network, trained.normalization, trained.mesh)
  results = {view: score(eval_step, trained.params, source, config, trained.mesh,
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


def define_flags() -> None:
  cli.define_workdir('The training run\'s workdir.')
  cli.define_step()
  flags.DEFINE_string('split', None, 'Split to score; the run\'s eval_split when unset.')


def main(argv):
  cli.no_arguments(argv)
  from alexnet_jax.workdir import Workdir
  distributed.initialize_if_requested()
  args = flags.FLAGS
  results = evaluate_checkpoint(args.workdir, args.step, args.split)
  print(report(results, args.workdir))
  if jax.process_index() == 0:
    path = Workdir(args.workdir).eval_file(results['step'])
    files.write_json(path, results, indent=2)
    logging.info('Wrote %s.', path)


def run():
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
