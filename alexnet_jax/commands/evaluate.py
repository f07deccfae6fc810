"""Scores a checkpoint on the eval split, with the centre crop and with the paper's 10 crops.

    alexnet-evaluate --workdir=DIR [--step=N|best] [--split=validation]
    (or python -m alexnet_jax.commands.evaluate ...)

Prints top-1 and top-5 error for both and writes them, with each class's top-1 error, to
DIR/eval-<step>.json; for up to 100 classes also the confusion counts, drawn (centre crop) in
DIR/confusion-<step>.png.
"""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

import jax
from absl import flags, logging

from alexnet_jax.commands import cli
from alexnet_jax.run import distributed
from alexnet_jax.training.evaluation import evaluate_checkpoint, report, write_results


def define_flags() -> None:
  cli.define_workdir('The training run\'s workdir.')
  cli.define_step()
  flags.DEFINE_string('split', None, 'Split to score; the run\'s eval_split when unset.')


def main(argv):
  cli.no_arguments(argv)
  distributed.initialize_if_requested()
  args = flags.FLAGS
  results = evaluate_checkpoint(args.workdir, args.step, args.split)
  print(report(results, args.workdir))
  if jax.process_index() == 0:
    for path in write_results(results, args.workdir):
      logging.info('Wrote %s.', path)


def run():
  cli.run(main, define_flags)
