"""JAX's persistent compilation cache: compiled steps kept on disk across runs.

The paper net's train step takes seconds to compile on an accelerator and more on a CPU;
with the cache, a resumed or repeated run (same program, same JAX, same devices) loads it
instead. One user-wide directory rather than one per workdir, so that a new run of a config
already compiled elsewhere starts at once too.
"""

from __future__ import annotations

import os

import jax

ENVIRONMENT_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'


def default_directory() -> str:
  cache_home = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(cache_home, 'alexnet_jax', 'xla')


def enable(directory: str = '') -> str:
  """Caches compiled programs in `directory` ('' : $JAX_COMPILATION_CACHE_DIR if set, else
  `default_directory()`) and returns it. Call before the first compilation: JAX sets its
  cache up once, at the first compile."""
  directory = directory or os.environ.get(ENVIRONMENT_VARIABLE) or default_directory()
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', os.path.expanduser(directory))
  return directory


def disable() -> None:
  jax.config.update('jax_enable_compilation_cache', False)
