"""Trains and evaluates: alexnet-train [--config=default] --workdir=DIR [--config.FIELD=VALUE]
(or python train.py ..., python -m alexnet_jax.commands.train ...).

Runs `alexnet_jax.training.loop.train_and_evaluate`. Run the same command again to resume from
the latest checkpoint in DIR. With several processes (a TPU pod, Slurm, or
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set by hand) run it on every
process with the same shared DIR.
"""

from __future__ import annotations

from alexnet_jax.commands import launch

if __name__ == '__main__':  # python -m: under launch's Ctrl-C guard before the imports below
  launch.launch(__spec__.name)

from absl import flags

from alexnet_jax.commands import cli
from alexnet_jax.run import distributed
from alexnet_jax.training.loop import train_and_evaluate


def define_flags() -> None:
  cli.define_config('default', 'The run\'s configuration.')
  cli.define_workdir('Directory for checkpoints and metrics; run again to resume.')
  flags.DEFINE_list('allow_config_changes', [], 'Config fields a resumed run may change '
                    'although the run then does not continue exactly (seed, batch_size, '
                    'dataset, ...: docs/reliability.md).')


def main(argv):
  cli.no_arguments(argv)
  config = flags.FLAGS.config
  distributed.initialize_if_requested(timeout_seconds=config.peer_timeout_seconds)
  train_and_evaluate(config, flags.FLAGS.workdir,
                     allowed_changes=tuple(flags.FLAGS.allow_config_changes))


def run():
  cli.run(main, define_flags)
