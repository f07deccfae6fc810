"""The shipped configs, one file each: `default` (the embedded `shapes` set on a CPU),
`imagenet` (the paper's recipe), `imagenet_pod`, `imagenette`, `torchvision`.

In a checkout they are the files of configs/; `pip install` ships the same files as
`alexnet_jax.configs` (alexnet_jax/configs links to configs/), so that a command run anywhere
can name them: `--config=imagenet` is this folder's imagenet.py, and so is
`--config=configs/imagenet.py` where no such file is in the working directory.
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
  return sorted(name[:-3] for name in os.listdir(DIRECTORY)
                if name.endswith('.py') and not name.startswith('_'))


def path(name: str) -> str:
  """The file of the shipped config `name`."""
  return os.path.join(DIRECTORY, f'{name}.py')


def resolve(value: str) -> str:
  """A --config value as ml_collections reads it (a file, optionally `:argument`): an existing
  file stays; else a shipped config's name, or a path whose file name is one
  (configs/imagenet.py outside a checkout), becomes that config's file."""
  file, colon, argument = value.partition(':')
  if os.path.exists(file):
    return value
  name = os.path.basename(file)
  name = name[:-3] if name.endswith('.py') else name
  if name in names():
    return path(name) + colon + argument
  return value
