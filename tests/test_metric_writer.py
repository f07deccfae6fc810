"""The run's outputs: PNG encoding, the first-layer kernel grid, metrics.jsonl."""

import io
import json
import re
import time

import numpy as np
import pytest

from alexnet_jax.run.metric_writer import MetricWriter, kernel_grid, png_bytes


def test_png_decodes_to_the_same_pixels():
  Image = pytest.importorskip('PIL.Image')
  image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
  decoded = Image.open(io.BytesIO(png_bytes(image)))
  assert decoded.mode == 'RGB'
  np.testing.assert_array_equal(np.asarray(decoded), image)


def test_kernel_grid_puts_each_kernel_in_its_cell_scaled_to_its_own_range():
  rng = np.random.default_rng(1)
  kernels = rng.normal(size=(11, 11, 3, 96)).astype(np.float32)
  kernels[..., 5] *= 100  # a kernel's own range sets its scale, not the others'
  grid = kernel_grid(kernels, columns=16, zoom=1)
  assert grid.shape == (6 * 12 + 1, 16 * 12 + 1, 3)  # the paper's 6 rows of 16
  for n in (0, 5, 47, 48, 95):
    row, column = divmod(n, 16)
    cell = grid[1 + row * 12:1 + row * 12 + 11, 1 + column * 12:1 + column * 12 + 11]
    k = kernels[..., n]
    np.testing.assert_array_equal(cell, np.round((k - k.min()) / (k.max() - k.min()) * 255))
  assert (grid[0] == 255).all() and (grid[:, 12] == 255).all()  # white separators
  zoomed = kernel_grid(kernels, columns=16, zoom=3)
  np.testing.assert_array_equal(zoomed[::3, ::3], grid)


def test_metrics_jsonl_has_one_object_per_write_with_ints_kept(tmp_path):
  writer = MetricWriter(str(tmp_path))
  writer.write_scalars(10, {'loss': np.float32(1.5), 'eval_examples': 600})
  writer.write_scalars(20, {'eval_top1': 0.25})
  writer.close()
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert lines == [{'step': 10, 'loss': 1.5, 'eval_examples': 600},
                   {'step': 20, 'eval_top1': 0.25}]
  assert isinstance(lines[0]['eval_examples'], int)


def test_only_the_enabled_writer_writes(tmp_path):
  writer = MetricWriter(str(tmp_path / 'other'), enabled=False)
  writer.write_scalars(1, {'loss': 1.0})
  writer.write_image(1, 'conv1_kernels', np.zeros((2, 2, 3), np.uint8))
  writer.close()
  assert not (tmp_path / 'other').exists()


def test_a_resumed_run_drops_the_lines_after_its_checkpoint_and_a_cut_off_line(tmp_path):
  """A run killed after its checkpoint at step 20 had logged steps 30 and, half-written, 40;
  the run resumed from 20 writes those steps again, each once."""
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 10, "loss": 2.0}\n{"step": 20, "loss": 1.5}\n'
                  '{"step": 30, "loss": 1.25}\n{"step": 40, "lo')
  writer = MetricWriter(str(tmp_path), first_step=20)
  writer.write_scalars(30, {'loss': 1.0})
  writer.close()
  assert [json.loads(line) for line in path.read_text().splitlines()] == [
      {'step': 10, 'loss': 2.0}, {'step': 20, 'loss': 1.5}, {'step': 30, 'loss': 1.0}]


def test_reporter_averages_each_interval_over_its_finite_steps(tmp_path, caplog):
  """The first step after a start is timed alone (compilation); each later interval's line
  averages its steps, leaving out a NaN step, and takes the last step's learning rate."""
  import logging

  import jax.numpy as jnp

  from alexnet_jax.run.metric_writer import METRICS, ProgressReporter

  def step_metrics(loss, top1, top5, lr):
    return {'train_loss': jnp.float32(loss), 'train_top1_error': jnp.float32(top1),
            'train_top5_error': jnp.float32(top5), 'learning_rate': jnp.float32(lr)}

  writer = MetricWriter(str(tmp_path))
  reporter = ProgressReporter(writer, total_steps=5, batch_size=8, log_every=4, first_step=0)
  with caplog.at_level(logging.INFO):
    reporter.after_step(1, step_metrics(9.0, 1.0, 1.0, 0.1))
    reporter.waited(0.05)
    time.sleep(0.1)
    reporter.after_step(2, step_metrics(2.0, 0.5, 0.25, 0.1))
    reporter.after_step(3, step_metrics(float('nan'), 1.0, 1.0, 0.1))
    reporter.after_step(4, step_metrics(1.0, 0.25, 0.0, 0.01))
    reporter.after_step(5, step_metrics(0.5, 0.0, 0.0, 0.001))  # the last step
  writer.close()
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [line['step'] for line in lines] == [4, 5]
  # 0.05 s of waiting in an interval of at least 0.1 s, and not much more on any machine
  assert 0.05 < lines[0].pop('input_wait') <= 0.5
  assert lines[1]['input_wait'] == 0
  assert {k: v for k, v in lines[0].items() if k != 'images_per_second'} == {
      'step': 4, 'train_loss': 1.5, 'train_top1_error': 0.375, 'train_top5_error': 0.125,
      'learning_rate': pytest.approx(0.01)}
  assert lines[1]['train_loss'] == 0.5 and lines[1]['learning_rate'] == pytest.approx(0.001)
  assert set(lines[0]) - {'step'} <= set(METRICS)
  assert 'First step (with compilation) took' in caplog.text
  assert re.search(r'step 4/5: loss 1\.5000, train top-1 error 37\.50%, top-5 error 12\.50%, '
                   r'lr 0\.01, [\d.]+ images/s \(input wait \d+%\), 0m00s left\.', caplog.text)
