"""Processes and the device mesh: `jax.distributed` when the environment asks for it, the
one-axis `data` mesh over every device of every process, and global arrays on it."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'

# Set by launchers of several processes: JAX itself (JAX_COORDINATOR_ADDRESS, with our
# JAX_NUM_PROCESSES / JAX_PROCESS_ID for hand-started processes), Cloud TPU pods, Slurm,
# Open MPI. jax.distributed.initialize() reads the rest of the setup from them.
_MULTI_PROCESS_SIGNS = {
    'JAX_COORDINATOR_ADDRESS': lambda value: bool(value),
    'TPU_WORKER_HOSTNAMES': lambda value: ',' in value,
    'SLURM_NTASKS': lambda value: value.isdigit() and int(value) > 1,
    'OMPI_COMM_WORLD_SIZE': lambda value: value.isdigit() and int(value) > 1,
}


def multi_process_requested(environ=os.environ) -> bool:
  return any(sign(environ[name]) for name, sign in _MULTI_PROCESS_SIGNS.items()
             if name in environ)


def initialize_if_requested(environ=os.environ, timeout_seconds: int | None = None) -> bool:
  """Calls jax.distributed.initialize() when a multi-process launcher set the environment;
  returns whether it did. Must run before anything touches a JAX device.

  `timeout_seconds` (JAX's defaults when None) bounds every wait on another process: the
  start-up rendezvous, the heartbeats (a process that misses them for this long counts as
  dead, and the others then stop with JAX's "another task died" error instead of waiting in a
  collective forever) and the exit barrier.
  """
  if not multi_process_requested(environ):
    return False
  # CPU processes need a collectives implementation to talk to each other; accelerators
  # ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  count, index = environ.get('JAX_NUM_PROCESSES'), environ.get('JAX_PROCESS_ID')
  timeouts = {} if timeout_seconds is None else {
      'initialization_timeout': timeout_seconds, 'heartbeat_timeout_seconds': timeout_seconds,
      'shutdown_timeout_seconds': timeout_seconds}
  jax.distributed.initialize(num_processes=int(count) if count else None,
                             process_id=int(index) if index else None, **timeouts)
  return True


def data_mesh() -> Mesh:
  """Every device of every process on the `data` axis, in JAX's global device order.

  The axis is Auto: XLA places the step's collectives (the gradient all-reduce) itself.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def hosts() -> dict[str, int]:
  """This process's index and the number of processes, as the pipelines take them."""
  return {'process_index': jax.process_index(), 'process_count': jax.process_count()}


def host_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch (every process takes the same share)."""
  return global_batch_size // jax.process_count()


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def global_batch(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """One array per field, split over the mesh's `data` axis, from every process's own rows.

  Each process passes its part of the global batch (its host batch); the result is the
  concatenation over processes in process order, without any copy between hosts.
  """
  sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in host_batch.items()}
