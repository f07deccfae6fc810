"""Command line: python train.py --config=configs/default.py --workdir=DIR [--config.FIELD=VALUE ...]

The same as `alexnet-train` (alexnet_jax.commands.train, through commands.launch): trains and
evaluates. Run the same command again to resume from the latest checkpoint in DIR. With
several processes (a TPU pod, Slurm, or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID set by hand) run it on every process with the same shared DIR.
"""

from alexnet_jax.commands.launch import launch

if __name__ == '__main__':
  launch('alexnet_jax.commands.train')
