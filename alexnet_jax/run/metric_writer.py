"""Where a run's numbers and pictures go: DIR/metrics.jsonl, TensorBoard, PNG files; and the
progress reporter that averages, logs and writes the training metrics.

Metrics are named as errors everywhere (fractions in metrics.jsonl and TensorBoard, percent in
the log), as the paper reports them: `METRICS` lists them. Only process 0 writes (`enabled`).
TensorBoard event files are written with TensorFlow's core summary op and the metadata
TensorBoard's scalar and image plugins read, so writing them needs TensorFlow but not the
`tensorboard` package (only viewing does). Where TensorFlow is absent (an accelerator machine
with only jax) the other outputs are written.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import uuid

import jax
import numpy as np
from absl import logging

from alexnet_jax import files
from alexnet_jax.errors import in_one_line
from alexnet_jax.run.workdir import Workdir

METRICS = {
    'train_loss': 'cross-entropy loss of the training batches, averaged over a log interval',
    'train_top1_error': 'top-1 error of the training batches (fraction)',
    'train_top5_error': 'top-5 error of the training batches (fraction)',
    'learning_rate': 'at the interval\'s last step',
    'images_per_second': 'training throughput over the interval, evaluations included',
    'input_wait': 'share of the interval\'s wall-clock time the loop waited for a batch',
    'eval_loss': 'cross-entropy of the averaged softmax on the eval split',
    'eval_top1_error': 'top-1 error on the eval split (fraction)',
    'eval_top5_error': 'top-5 error on the eval split (fraction)',
    'eval_examples': 'eval examples scored',
    'eval_skipped': 'eval examples that could not be decoded',
}
# metrics.jsonl of versions that logged accuracies: name -> (name now, whether it was an
# accuracy, which the error is one minus).
_OLD_NAMES = {'loss': ('train_loss', False), 'top1': ('train_top1_error', True),
              'top5': ('train_top5_error', True), 'eval_top1': ('eval_top1_error', True),
              'eval_top5': ('eval_top5_error', True)}


def with_current_names(record: dict) -> dict:
  """A metrics.jsonl record with today's names: an older version's accuracies as errors."""
  renamed = {}
  for name, value in record.items():
    new_name, accuracy = _OLD_NAMES.get(name, (name, False))
    renamed[new_name] = 1.0 - value if accuracy else value
  return renamed


def png_bytes(image: np.ndarray) -> bytes:
  """An 8-bit RGB PNG of a uint8 (H, W, 3) array."""
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(image, np.uint8), 'RGB').save(buffer, 'PNG')
  return buffer.getvalue()


def kernel_grid(kernels: np.ndarray, columns: int = 16, zoom: int = 3) -> np.ndarray:
  """conv1 kernels (kh, kw, 3, n) as one uint8 image, like the paper's Figure 3.

  Each kernel is scaled to 0..255 by its own range; kernels fill rows of `columns` in
  order, so the paper net's two 48-kernel halves (one per GPU) are its top and bottom three
  rows. Kernels are separated by one pixel of white and enlarged `zoom` times.
  """
  kh, kw, _, count = kernels.shape
  rows = math.ceil(count / columns)
  grid = np.full((rows * (kh + 1) + 1, columns * (kw + 1) + 1, 3), 255, np.uint8)
  for n in range(count):
    kernel = kernels[..., n].astype(np.float64)
    low, high = kernel.min(), kernel.max()
    scaled = (kernel - low) / (high - low) if high > low else np.zeros_like(kernel)
    row, column = divmod(n, columns)
    y, x = 1 + row * (kh + 1), 1 + column * (kw + 1)
    grid[y:y + kh, x:x + kw] = np.round(scaled * 255).astype(np.uint8)
  return grid.repeat(zoom, axis=0).repeat(zoom, axis=1)


def _lines_up_to(path, step: int) -> list[str]:
  """metrics.jsonl's lines of steps up to `step`, without a line cut off by a kill."""
  if not path.exists():
    return []
  kept = []
  for line in path.read_text().splitlines(keepends=True):
    try:
      if line.endswith('\n') and json.loads(line)['step'] <= step:
        kept.append(line)
    except ValueError:  # a line cut off by a kill
      pass
  return kept


class MetricWriter:
  """Appends {'step': s, **values} lines to DIR/metrics.jsonl and TensorBoard scalars.

  A run that starts at `first_step` (its checkpoint's) first drops the lines of later steps
  from metrics.jsonl, and a cut-off last line: a run killed after its last checkpoint wrote
  them, and the resumed run writes those steps again.

  On an object store (no append), metrics.jsonl is uploaded whole after each write, and the
  TensorBoard event file, which TensorFlow writes only to local file systems here, is written
  in memory (TensorFlow's ram:// file system: a few MB for a 90-epoch ImageNet run) and
  uploaded whole after each evaluation, at most `EVENTS_UPLOAD_SECONDS` after a log, and at
  the end. Not to a temporary directory: a killed run would leave it behind.
  """

  EVENTS_UPLOAD_SECONDS = 60

  def __init__(self, workdir: Workdir | str, enabled: bool = True, first_step: int = 0):
    self.workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    self.enabled = enabled
    self._summary = None
    if not enabled:
      return
    self._remote = files.is_url(self.workdir.path)
    self.workdir.path.mkdir(parents=True, exist_ok=True)
    lines = _lines_up_to(self.workdir.metrics_file, first_step)
    files.write_atomically(self.workdir.metrics_file, ''.join(lines))
    # The lines so far: an object store has no append, so each write uploads them all.
    self._lines = lines if self._remote else None
    self._jsonl = None if self._remote else self.workdir.metrics_file.open('a')
    try:
      from alexnet_jax.data.tensorflow_cpu import summary_metadata, tf
    except ImportError:
      logging.warning('TensorFlow is not installed: no TensorBoard event files; '
                      'metrics.jsonl has every value.')
    else:
      self._tf = tf
      self._plugin = {name: summary_metadata(name) for name in ('scalars', 'images')}
      self._events_dir = (f'ram://alexnet_jax-tensorboard-{uuid.uuid4().hex}' if self._remote
                          else os.fspath(self.workdir.tensorboard_dir))
      self._uploaded = time.time()
      self._summary = tf.summary.create_file_writer(self._events_dir)

  def write_scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    values = {name: value if isinstance(value, int) else float(value)
              for name, value in values.items()}
    line = json.dumps({'step': int(step), **values}) + '\n'
    if self._remote:
      self._lines.append(line)
      files.write_atomically(self.workdir.metrics_file, ''.join(self._lines))
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        for name, value in values.items():
          self._tf.summary.write(name, self._tf.constant(value, self._tf.float32),
                                 metadata=self._plugin['scalars'])
      self._summary.flush()
      if time.time() - self._uploaded >= self.EVENTS_UPLOAD_SECONDS:
        self._upload_events()

  def _upload_events(self) -> None:
    if self._remote:
      gfile = self._tf.io.gfile
      for name in gfile.listdir(self._events_dir):
        with gfile.GFile(f'{self._events_dir}/{name}', 'rb') as events:
          files.write_atomically(self.workdir.tensorboard_dir / name, events.read())
    self._uploaded = time.time()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """TensorBoard image `name`, and DIR/<name>.png (the latest) as a file to look at."""
    if not self.enabled:
      return
    png = png_bytes(image)
    files.write_atomically(self.workdir.image_file(name), png)
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        # The image plugin's layout: [width, height, encoded image, ...] as strings.
        height, width = image.shape[:2]
        self._tf.summary.write(name, self._tf.constant([str(width), str(height), png]),
                               metadata=self._plugin['images'])
      self._summary.flush()
      self._upload_events()

  def close(self) -> None:
    if not self.enabled:
      return
    if self._jsonl is not None:
      self._jsonl.close()
    if self._summary is not None:
      self._summary.close()
      if self._remote:
        try:
          self._upload_events()
        except Exception as error:  # noqa: BLE001  (on the way out of a run storage stopped)
          logging.warning('The TensorBoard events since the last upload were not copied to '
                          '%s: %s', self.workdir.tensorboard_dir, in_one_line(error))
        self._tf.io.gfile.rmtree(self._events_dir)


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}h{seconds // 60 % 60:02d}m' if seconds >= 3600 else \
      f'{seconds // 60}m{seconds % 60:02d}s'


class ProgressReporter:
  """Collects each step's metrics (still on the device, so that the host never waits for
  the step), and every `log_every` steps averages them over the finite steps, writes them
  with the throughput and logs them with the time left. The first step after a (re)start is
  timed alone: it includes compilation. Throughput and the time left are wall-clock,
  evaluations included (the input pipeline keeps filling its buffer during one). The input
  wait is the share of that time the loop spent waiting for the next batch (`waited`): a
  step dispatched, the loop asks for the next batch at once, so a pipeline that keeps up
  hands it out of its buffer and one that does not holds the loop (and the step after)."""

  def __init__(self, writer: MetricWriter, *, total_steps: int, batch_size: int,
               log_every: int, first_step: int):
    self._writer, self._total, self._batch_size = writer, total_steps, batch_size
    self._log_every, self._first_step = log_every, first_step
    self._pending: list[dict] = []
    self._start = time.time()
    self._input_seconds = 0.0

  def waited(self, seconds: float) -> None:
    """Counts `seconds` the loop spent waiting for the input pipeline."""
    self._input_seconds += seconds

  def after_step(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self._pending.append(metrics)
    if step == self._first_step + 1:
      jax.block_until_ready(metrics)
      logging.info('First step (with compilation) took %.1f s.', time.time() - self._start)
      self._pending, self._start, self._input_seconds = [], time.time(), 0.0
    if self._pending and (step % self._log_every == 0 or step == self._total):
      self._report(step)

  def _report(self, step: int) -> None:
    fetched = jax.device_get(self._pending)
    elapsed = time.time() - self._start
    finite = [m for m in fetched if np.isfinite(m['train_loss'])] or fetched
    logged = {name: float(np.mean([m[name] for m in finite]))
              for name in ('train_loss', 'train_top1_error', 'train_top5_error')}
    logged['learning_rate'] = float(fetched[-1]['learning_rate'])
    logged['images_per_second'] = len(fetched) * self._batch_size / max(elapsed, 1e-9)
    logged['input_wait'] = min(self._input_seconds / max(elapsed, 1e-9), 1.0)
    left = (self._total - step) * elapsed / len(fetched)
    self._writer.write_scalars(step, logged)
    logging.info('step %d/%d: loss %.4f, train top-1 error %.2f%%, top-5 error %.2f%%, '
                 'lr %.5g, %.1f images/s (input wait %.0f%%), %s left.', step, self._total,
                 logged['train_loss'], 100 * logged['train_top1_error'],
                 100 * logged['train_top5_error'], logged['learning_rate'],
                 logged['images_per_second'], 100 * logged['input_wait'], _duration(left))
    self._pending, self._start, self._input_seconds = [], time.time(), 0.0

  def report_evaluation(self, step: int, result: dict[str, float], view: str,
                 kernels: np.ndarray) -> None:
    """Writes and logs an evaluation's result, and the first layer's `kernels`."""
    self._writer.write_scalars(step, result)
    self._writer.write_image(step, 'conv1_kernels', kernel_grid(kernels))
    logging.info('step %d/%d: eval top-1 error %.2f%%, top-5 error %.2f%% on %d examples '
                 '(%s); %d could not be decoded.', step, self._total,
                 100 * result['eval_top1_error'], 100 * result['eval_top5_error'],
                 result['eval_examples'], view, result['eval_skipped'])
