"""Command line: python train.py --config=configs/default.py --workdir=DIR [--config.FIELD=VALUE ...]

Trains and evaluates (alexnet_jax.train.train_and_evaluate). Run the same command again to
resume from the latest checkpoint in DIR. With several processes (a TPU pod, Slurm, or
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set by hand) run it on every
process with the same shared DIR.
"""

from absl import app, flags
from ml_collections import config_flags

from alexnet_jax import distributed
from alexnet_jax.errors import exit_on_user_error

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/default.py', 'Configuration file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.',
                               required=True)


@exit_on_user_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  distributed.initialize_if_requested(timeout_seconds=config.peer_timeout_seconds)
  from alexnet_jax.checkpoints import quiet_library_logs
  from alexnet_jax.train import train_and_evaluate
  quiet_library_logs()
  train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
