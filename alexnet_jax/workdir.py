"""A run's workdir: its layout, and the files that evaluate, predict, plot and a resumed run
read back. Every read and write goes through `alexnet_jax.files` (etils.epath).

    DIR/config.json            the run's config (what evaluate and predict rebuild it from)
    DIR/normalization.npz      mean image, pixel scale, class names (`pixels.Normalization`)
    DIR/metrics.jsonl          one JSON line per log and evaluation (`metric_writer`)
    DIR/tensorboard/           the same, as TensorBoard event files
    DIR/conv1_kernels.png      the first layer's kernels at the latest evaluation
    DIR/checkpoints/<step>/    Orbax checkpoints: the train state and the run record
    DIR/eval-<step>.json       `alexnet-evaluate`'s scores of a checkpoint
    DIR/learning_curves.png    `alexnet-plot`'s figure

The run record, saved with each checkpoint, is what the train state does not say: which
network the parameters belong to, and where each process's data stream stands.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging
from etils import epath

from alexnet_jax import files
from alexnet_jax.errors import MissingDataError, ModelMismatchError, WorkdirError
from alexnet_jax.pixels import Normalization

CONFIG_FILE = 'config.json'
NORMALIZATION_FILE = 'normalization.npz'
METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
CHECKPOINTS_DIR = 'checkpoints'
LEARNING_CURVES_FILE = 'learning_curves.png'
# Bumped when the train state or the run record changes shape. 2: the state counts non-finite
# steps, the record every process's skipped-image count. 3: the optimiser state is optax's.
FORMAT = 3


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """Saved with each checkpoint (JSON)."""
  model: dict  # `model.identity`: a checkpoint restores only into the same network
  positions: list[int]  # each process's next position in its training stream
  skipped_images: list[int]  # each process's undecodable training images so far
  process_count: int
  format: int = FORMAT

  @classmethod
  def start(cls, model: dict, process_count: int = 1) -> RunRecord:
    """The record of a run that has not read any data yet."""
    return cls(model, [0] * process_count, [0] * process_count, process_count)

  @classmethod
  def from_json(cls, saved: dict, step: int, directory: str) -> RunRecord:
    if saved.get('format', 1) != FORMAT:
      raise ModelMismatchError(
          f'checkpoint {step} in {directory} was written by another version of alexnet_jax '
          f'(checkpoint format {saved.get("format", 1)}; this version reads {FORMAT}). Resume '
          f'it with that version, or start a new run in another --workdir; nothing was '
          f'overwritten.')
    return cls(**{field.name: saved[field.name] for field in dataclasses.fields(cls)})

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  def check_model(self, model: dict, directory: str) -> None:
    """ModelMismatchError unless the checkpoint is of the network `model` describes."""
    for field, value in model.items():
      saved = self.model.get(field)
      if saved != value:
        raise ModelMismatchError(
            f'the checkpoints in {directory} are of a model with {field}={saved!r}, but the '
            f'config asks for {field}={value!r}. Use the checkpoint\'s value, or another '
            f'--workdir to start a new run; nothing was overwritten.')

  def stream_start(self, step: int, process_index: int, process_count: int,
                   host_batch_size: int) -> tuple[int, int]:
    """(position, skipped images) at which this process's training stream resumes: exactly
    where it stopped, or, with another number of processes than wrote the checkpoint, the
    nominal position of `step` (the stream is per process, so it cannot be exact)."""
    if self.process_count == process_count:
      return self.positions[process_index], self.skipped_images[process_index]
    logging.warning('Checkpoint %d was written by %d processes, this run has %d: the data '
                    'stream restarts at its nominal position, not the exact one.', step,
                    self.process_count, process_count)
    return step * host_batch_size, 0


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
