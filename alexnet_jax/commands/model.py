"""The layer table of a variant: alexnet-model [--variant=paper] [--image_size=N]
[--num_classes=N] (or python -m alexnet_jax.commands.model ...)."""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

from absl import flags
from flax import nnx

from alexnet_jax.commands import cli
from alexnet_jax.model.layer_table import format_table
from alexnet_jax.model.network import ARCHITECTURES, AlexNet


def define_flags() -> None:
  flags.DEFINE_enum('variant', 'paper', sorted(ARCHITECTURES), 'The network.')
  flags.DEFINE_integer('image_size', None, 'Input side; the variant\'s own when unset.')
  flags.DEFINE_integer('num_classes', 1000, 'Width of fc8.')


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  args = flags.FLAGS
  # Built abstractly: the table needs the parameters' shapes only.
  model = nnx.eval_shape(lambda: AlexNet(args.variant, args.num_classes, args.image_size,
                                         rngs=nnx.Rngs(0)))
  print(format_table(model))


def run():
  """The layer table: alexnet-model [--variant=paper] [--image_size=N] [--num_classes=N]."""
  cli.run(main, define_flags)
