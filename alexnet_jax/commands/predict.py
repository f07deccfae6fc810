"""The top-5 classes of images, by a trained network.

    alexnet-predict --workdir=DIR [--step=N|best] IMAGE [IMAGE ...]
    (or python -m alexnet_jax.commands.predict ...)

Each image is prepared as the run's evaluation prepares it and scored by the average softmax
of the paper's 10 crops (`alexnet_jax.training.prediction`). A file that cannot be read as an
image gets one `Error:` line; the others are still classified, and the command ends with
status 1.
"""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

import sys

from absl import app, flags

from alexnet_jax.commands import cli
from alexnet_jax.errors import ImageReadError
from alexnet_jax.training import inference
from alexnet_jax.training.prediction import predict


def define_flags() -> None:
  cli.define_workdir('The training run\'s workdir.')
  cli.define_step()
  flags.DEFINE_integer('top', 5, 'How many classes to print per image.')


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('Name one or more image files to classify.')
  args = flags.FLAGS
  trained = inference.load(args.workdir, args.step)
  unreadable = 0
  for path, classes in zip(paths, predict(trained, paths, args.top)):
    if isinstance(classes, ImageReadError):
      print(f'Error: {classes}', file=sys.stderr, flush=True)
      unreadable += 1
      continue
    print(path, flush=True)
    for name, probability in classes:
      print(f'  {probability:7.2%}  {name}', flush=True)
  if unreadable:
    sys.exit(1)


def run():
  cli.run(main, define_flags)
