"""Scores a checkpoint on the eval split, with the centre crop and with the paper's 10 crops.

    python -m alexnet_jax.evaluate --workdir=DIR [--step=N|best] [--split=validation]

Prints top-1 and top-5 error for both and writes them to DIR/eval-<step>.json.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

from alexnet_jax import distributed
from alexnet_jax.errors import exit_on_user_error

FLAGS = flags.FLAGS


def evaluate_checkpoint(workdir: str, step: int | str | None = None,
                        split: str | None = None) -> dict[str, dict[str, float]]:
  """{'centre': metrics, 'ten_crop': metrics, 'step': step} of checkpoint `step` (a number,
  'best', or None for the latest)."""
  from alexnet_jax import inference, train, train_step
  trained = inference.load(workdir, step)
  config = trained.config
  if split:
    config.eval_split = split
  source = train.open_data(config)
  eval_step = train_step.make_eval_step(trained.network, trained.preprocess, trained.mesh)
  results = {view: train.evaluate(eval_step, trained.params, source, config, trained.mesh,
                                  ten_crop=view == 'ten_crop')
             for view in ('centre', 'ten_crop')}
  results['step'] = trained.step
  return results


def report(results: dict, workdir: str) -> str:
  """`evaluate_checkpoint`'s results as lines of top-1 and top-5 error."""
  lines = [f'checkpoint {results["step"]} of {workdir}:']
  for view, label in (('centre', 'centre crop'), ('ten_crop', '10 crops   ')):
    r = results[view]
    lines.append(f'  {label}  top-1 error {100 * (1 - r["eval_top1"]):6.2f}%  '
                 f'top-5 error {100 * (1 - r["eval_top5"]):6.2f}%  '
                 f'({r["eval_examples"]} examples)')
  return '\n'.join(lines)


@exit_on_user_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  distributed.initialize_if_requested()
  from alexnet_jax.checkpoints import quiet_library_logs
  quiet_library_logs()
  results = evaluate_checkpoint(FLAGS.workdir, FLAGS.step, FLAGS.split)
  step = results['step']
  print(report(results, FLAGS.workdir))
  import jax
  if jax.process_index() == 0:
    path = os.path.join(FLAGS.workdir, f'eval-{step}.json')
    with open(path, 'w') as f:
      json.dump(results, f, indent=2)
    logging.info('Wrote %s.', path)


if __name__ == '__main__':
  # Defined here, not on import, so that evaluate and predict can both be imported.
  flags.DEFINE_string('workdir', None, 'The training run\'s workdir.', required=True)
  flags.DEFINE_string('step', None, 'Checkpoint step, or "best"; the latest when unset.')
  flags.DEFINE_string('split', None, 'Split to score; the run\'s eval_split when unset.')
  app.run(main)
