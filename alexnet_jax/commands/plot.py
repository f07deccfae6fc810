"""Learning curves of a training run as one PNG (alexnet_jax.run.learning_curves).

    alexnet-plot --workdir=DIR [--output=DIR/learning_curves.png]
    (or python -m alexnet_jax.commands.plot ...)
"""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

from absl import flags

from alexnet_jax.commands import cli
from alexnet_jax.run.learning_curves import write_plots
from alexnet_jax.run.workdir import LEARNING_CURVES_FILE


def define_flags() -> None:
  cli.define_workdir('The training run\'s workdir.')
  flags.DEFINE_string('output', None, f'The image to write (its extension picks the format); '
                      f'DIR/{LEARNING_CURVES_FILE} when unset.')


def main(argv):
  cli.no_arguments(argv)
  for path in write_plots(flags.FLAGS.workdir, flags.FLAGS.output):
    print(path)


def run():
  cli.run(main, define_flags)
