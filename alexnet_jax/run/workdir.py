"""A run's workdir: its layout, and the files that evaluate, predict, plot and a resumed run
read back. Every read and write goes through `alexnet_jax.files` (etils.epath).

    DIR/config.json            the run's config (what evaluate and predict rebuild it from)
    DIR/normalization.npz      mean image, pixel scale, class names (`Normalization`)
    DIR/lock.json              the training run that holds the workdir, while it trains
                               (`alexnet_jax.run.workdir_lock`)
    DIR/metrics.jsonl          one JSON line per log and evaluation (`metric_writer`)
    DIR/tensorboard/           the same, as TensorBoard event files
    DIR/conv1_kernels.png      the first layer's kernels at the latest evaluation
    DIR/checkpoints/<step>/    Orbax checkpoints: the train state and the run record
                               (`alexnet_jax.run.checkpoints`)
    DIR/eval-<step>.json       `alexnet-evaluate`'s scores of a checkpoint
    DIR/learning_curves.png    `alexnet-plot`'s figure
"""

from __future__ import annotations

import os

import numpy as np
from etils import epath

from alexnet_jax import files
from alexnet_jax.errors import MissingDataError, WorkdirError
from alexnet_jax.model.normalization import Normalization

CONFIG_FILE = 'config.json'
NORMALIZATION_FILE = 'normalization.npz'
METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
CHECKPOINTS_DIR = 'checkpoints'
LEARNING_CURVES_FILE = 'learning_curves.png'
class Workdir:
  """The files of one run, under `location` (a local path or a URL that etils.epath opens)."""

  def __init__(self, location: str | os.PathLike):
    self.path: epath.Path = files.path(location)
    self.config_file = self.path / CONFIG_FILE
    self.normalization_file = self.path / NORMALIZATION_FILE
    self.metrics_file = self.path / METRICS_FILE
    self.tensorboard_dir = self.path / TENSORBOARD_DIR
    self.checkpoints_dir = self.path / CHECKPOINTS_DIR
    self.learning_curves_file = self.path / LEARNING_CURVES_FILE

  def __str__(self) -> str:
    return os.fspath(self.path)

  def image_file(self, name: str) -> epath.Path:
    return self.path / f'{name}.png'

  def eval_file(self, step: int) -> epath.Path:
    return self.path / f'eval-{step}.json'

  def confusion_file(self, step: int) -> epath.Path:
    return self.path / f'confusion-{step}.png'

  def check_usable(self) -> None:
    """WorkdirError unless the workdir is a directory, or can be made one, that this process
    can write to; StorageError for a URL in a missing bucket, or that cannot be reached or
    written. Creates nothing (leaves nothing on an object store)."""
    if files.is_url(self.path):
      files.check_writable_url(self.path, 'the workdir', '--workdir')
      return
    existing = self.path
    while not existing.exists() and existing.parent != existing:
      existing = existing.parent
    if not existing.is_dir():
      where = 'is a file' if existing == self.path else f'is inside {existing}, which is a file'
      raise WorkdirError(f'the workdir {self} {where}, not a directory. Give --workdir a new or '
                         f'existing directory; the file was left as it is.')
    if not os.access(existing, os.W_OK | os.X_OK):
      raise WorkdirError(f'cannot write to {existing} (no permission, or read-only), so the '
                         f'workdir {self} cannot be '
                         f'{"used" if existing == self.path else "made"}. Give --workdir a '
                         f'directory you can write to.')

  def checkpoint_steps(self) -> list[int]:
    """The steps whose checkpoint is complete. Orbax marks one complete by renaming its
    temporary directory to the step number, or, on an object store (no rename), by writing
    commit_success.txt into the step's directory once everything else is written."""
    from orbax.checkpoint import path as orbax_path  # here: plot never loads Orbax
    if not self.checkpoints_dir.is_dir():
      return []
    return sorted(int(path.name) for path in self.checkpoints_dir.iterdir()
                  if path.name.isdigit() and orbax_path.step.is_path_finalized(path))

  def write_run_files(self, config, normalization: Normalization,
                      class_names: list[str]) -> None:
    """config.json and normalization.npz: what evaluate and predict read besides a
    checkpoint. Written last by a new run or conversion, so that one stopped midway is never
    taken for a complete one."""
    self.path.mkdir(parents=True, exist_ok=True)
    files.write_atomically(self.config_file, config.to_json_best_effort(indent=2))
    files.write_npz(self.normalization_file, mean_image=np.asarray(normalization.mean_image),
                    pixel_scale=np.asarray(normalization.pixel_scale),
                    class_names=np.array(class_names))

  def saved_config(self) -> dict | None:
    """The config (as JSON) the run last started or resumed with; None before its first."""
    return files.read_json(self.config_file) if self.config_file.exists() else None

  def read_run_files(self) -> tuple[object, Normalization, list[str]]:
    """The run's config (an ml_collections.ConfigDict), its normalization and its class
    names."""
    import ml_collections  # here: the rest of this module runs where only jax is installed
    for path in (self.config_file, self.normalization_file):
      if not path.exists():
        raise MissingDataError(f'{path} does not exist: {self} is not the workdir of a '
                               f'training run (alexnet-train --workdir=...).')
    config = ml_collections.ConfigDict(files.read_json(self.config_file))
    arrays = files.read_npz(self.normalization_file)
    normalization = Normalization(arrays['mean_image'], arrays['pixel_scale'])
    return config, normalization, [str(name) for name in arrays['class_names']]

  def holds_a_run(self) -> list[str]:
    """The names of the run files already in the workdir."""
    return [path.name for path in (self.config_file, self.normalization_file,
                                   self.checkpoints_dir) if path.exists()]
