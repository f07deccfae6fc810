"""torchvision's pretrained AlexNet as a workdir (alexnet_jax.training.torchvision_weights).

    alexnet-convert-torchvision alexnet-owt-7be5be79.pth --workdir=DIR \\
        [--config=torchvision] [--config.data_dir=...]
    (or python -m alexnet_jax.commands.convert_torchvision ...)

then `alexnet-evaluate --workdir=DIR` and `alexnet-predict --workdir=DIR IMAGE`.
"""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

from absl import app, flags

from alexnet_jax.commands import cli
from alexnet_jax.training.torchvision_weights import convert


def define_flags() -> None:
  cli.define_workdir('Directory to write the converted run into.')
  # --config.data_dir=... says where evaluate will find imagenet2012.
  cli.define_config('torchvision', 'The configuration a run of the weights would have.')


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('Name one .pth file: torchvision\'s AlexNet state dict.')
  args = flags.FLAGS
  step = convert(argv[1], args.workdir, args.config)
  print(f'Wrote torchvision\'s AlexNet as checkpoint {step} of {args.workdir}. Score it with\n'
        f'  alexnet-evaluate --workdir={args.workdir}\n'
        f'(torchvision publishes 43.48% top-1 / 20.93% top-5 error, centre crop).')


def run():
  cli.run(main, define_flags)
