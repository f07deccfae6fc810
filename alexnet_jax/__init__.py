"""alexnet-jax: AlexNet (Krizhevsky, Sutskever, Hinton 2012) in JAX and Flax NNX.

Importing this package never imports TensorFlow: the model and the train step run where
only jax, flax and optax are installed. It does, first, put XLA:CPU's operations on the
kernels measured fastest for them (`alexnet_jax.cpu_kernels`), before JAX starts.
"""

import importlib

from alexnet_jax import cpu_kernels

# Which kernels XLA:CPU runs, in words, for the log of a run on a CPU.
CPU_KERNELS = cpu_kernels.apply()

# Public names, imported on first use so that `python -m alexnet_jax.model` runs the module
# once, not twice (runpy warns when a package has already imported the module it runs).
_EXPORTS = {
    'ARCHITECTURES': 'alexnet_jax.model',
    'AlexNet': 'alexnet_jax.model',
    'count_params': 'alexnet_jax.model',
    'min_image_size': 'alexnet_jax.model',
    'LocalResponseNorm': 'alexnet_jax.layers',
    'local_response_norm': 'alexnet_jax.layers',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
