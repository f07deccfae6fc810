"""Command line: python train.py --config=configs/default.py --workdir=DIR [--config.FIELD=VALUE ...]

Trains and evaluates (alexnet_jax.train.train_and_evaluate). Run the same command again to
resume from the latest checkpoint in DIR. With several processes (a TPU pod, Slurm, or
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set by hand) run it on every
process with the same shared DIR.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from alexnet_jax import distributed

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/default.py', 'Configuration file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.',
                               required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  distributed.initialize_if_requested()
  from alexnet_jax.checkpoints import ModelMismatchError, quiet_library_logs
  from alexnet_jax.config_checks import ConfigError
  from alexnet_jax.train import train_and_evaluate
  quiet_library_logs()
  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, ModelMismatchError) as error:
    sys.exit(f'Error: {error}')  # a mistake in the command, not a bug: no traceback


if __name__ == '__main__':
  app.run(main)
