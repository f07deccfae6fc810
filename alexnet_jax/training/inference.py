"""A trained network loaded back from a workdir, for `evaluate` and `predict`.

Everything comes from the workdir (`alexnet_jax.run.workdir`): the run's config, its
normalization and class names, and a checkpoint.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from alexnet_jax.errors import MissingDataError
from alexnet_jax.model import network as network_lib
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run import distributed
from alexnet_jax.run.checkpoints import Checkpoints
from alexnet_jax.run.workdir import Workdir
from alexnet_jax.training import optim, train_step


@dataclasses.dataclass
class TrainedModel:
  config: ml_collections.ConfigDict
  step: int
  network: train_step.Network
  params: object  # nnx.State, replicated over `mesh`
  normalization: Normalization  # on the devices
  class_names: list[str]
  mesh: jax.sharding.Mesh


def load(location: str, step: int | str | None = None) -> TrainedModel:
  """The checkpoint at `step` of the run in `location`: a step number, 'best' (the lowest
  evaluation top-1 error kept), or None for the latest."""
  workdir = Workdir(location)
  config, normalization, class_names = workdir.read_run_files()
  checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints,
                            keep_best=config.keep_best_checkpoints)
  try:
    if step is None:
      step = checkpoints.latest_step()
    elif step == 'best':
      step = checkpoints.best_step()
    elif str(step).isdigit():
      step = int(step)
    if step is None or step not in checkpoints.all_steps():
      raise MissingDataError(f'no checkpoint {"" if step is None else step} in '
                             f'{checkpoints.directory}; it has {checkpoints.all_steps()} '
                             f'(a step number, or \'best\').')
    mesh = distributed.data_mesh()
    network, state = train_step.init(
        lambda rngs: network_lib.from_config(config, len(class_names), rngs),
        optim.from_config(config), config.seed, mesh,
        shapes_only=True)
    state, _ = checkpoints.restore(step, state, network_lib.identity(config, len(class_names)))
  finally:
    checkpoints.close()
  return TrainedModel(config, step, network, state.params,
                      normalization.on_device(distributed.replicated(mesh), config.model.dtype),
                      class_names, mesh)
