"""alexnet-jax: AlexNet (Krizhevsky, Sutskever, Hinton 2012) in JAX and Flax NNX.

The package is in layers, each importing only those below it (docs/design.md):

    commands/   one module per command: its flags, `main` and `run`
    training/   the steps, the optimiser, the loop, evaluation, faults
    run/        what a run keeps: workdir, checkpoints, metrics, processes
    data/       sources, ops, views, the tf.data pipeline: the only layer with TensorFlow
    model/      the network, its layers and input, XLA:CPU's kernels
    errors.py, files.py   errors a user can act on; the path layer (local and gs://)

Importing the package never imports TensorFlow or flax. It does, first, put XLA:CPU's
operations on the kernels measured fastest for them (`alexnet_jax.model.cpu_kernels`), before
JAX starts.
"""

import importlib

from alexnet_jax.model import cpu_kernels

cpu_kernels.apply()

# Public names, imported on first use: importing the package stays light for what needs no
# network (the path layer, the configs).
_EXPORTS = {
    'ARCHITECTURES': 'alexnet_jax.model.network',
    'AlexNet': 'alexnet_jax.model.network',
    'count_params': 'alexnet_jax.model.network',
    'min_image_size': 'alexnet_jax.model.network',
    'LocalResponseNorm': 'alexnet_jax.model.layers',
    'local_response_norm': 'alexnet_jax.model.layers',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
