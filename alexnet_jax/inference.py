"""A trained network loaded back from a workdir, for `evaluate` and `predict`.

Everything comes from the workdir: DIR/config.json (the run's config), DIR/normalization.npz
(mean image, pixel scale, class names) and a checkpoint in DIR/checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np

from alexnet_jax import distributed, optim, train_step
from alexnet_jax.checkpoints import Checkpoints
from alexnet_jax.errors import MissingDataError
from alexnet_jax.train import (CONFIG_FILE, NORMALIZATION_FILE, build_model, make_preprocess,
                               model_identity)


@dataclasses.dataclass
class TrainedModel:
  config: ml_collections.ConfigDict
  step: int
  network: train_step.Network
  params: object  # nnx.State, replicated over `mesh`
  preprocess: train_step.Preprocess
  class_names: list[str]
  mesh: jax.sharding.Mesh


def load(workdir: str, step: int | str | None = None) -> TrainedModel:
  """The checkpoint at `step` of the run in `workdir`: a step number, 'best' (the lowest
  evaluation top-1 error kept), or None for the latest."""
  config_path = os.path.join(workdir, CONFIG_FILE)
  norm_path = os.path.join(workdir, NORMALIZATION_FILE)
  for path in (config_path, norm_path):
    if not os.path.exists(path):
      raise MissingDataError(f'{path} does not exist: {workdir} is not the workdir of a '
                              f'training run (python train.py --workdir=...).')
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with np.load(norm_path) as norm:
    norm = dict(norm)
  class_names = [str(name) for name in norm['class_names']]
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
    optimizer = optim.paper_sgd(config.momentum, config.weight_decay)
    network, state = train_step.init(
        lambda rngs: build_model(config, len(class_names), rngs), optimizer, config.seed, mesh,
        shapes_only=True)
    state, _ = checkpoints.restore(step, state, model_identity(config, len(class_names)))
  finally:
    checkpoints.close()
  return TrainedModel(config, step, network, state.params, make_preprocess(config, norm, mesh),
                      class_names, mesh)
