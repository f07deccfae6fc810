"""Learning curves (alexnet_jax.run.learning_curves) from a synthetic metrics.jsonl with known
values."""

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from alexnet_jax.errors import DataError, MissingDataError, UserError
from alexnet_jax.run import learning_curves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec('matplotlib') is None,
                                      reason='matplotlib is not installed')

# As alexnet-train logs them: a train line every 10 steps, the learning rate dropped tenfold
# after step 20, an evaluation at steps 20 and 40 on lines of their own.
TRAIN = [{'step': 10, 'train_loss': 2.0, 'train_top1_error': 0.75, 'train_top5_error': 0.375,
          'learning_rate': 0.01, 'images_per_second': 100.0},
         {'step': 20, 'train_loss': 1.5, 'train_top1_error': 0.625, 'train_top5_error': 0.25,
          'learning_rate': 0.01, 'images_per_second': 110.0},
         {'step': 30, 'train_loss': 1.0, 'train_top1_error': 0.375, 'train_top5_error': 0.125,
          'learning_rate': 0.001, 'images_per_second': 120.0},
         {'step': 40, 'train_loss': 0.75, 'train_top1_error': 0.25, 'train_top5_error': 0.0625,
          'learning_rate': 0.001, 'images_per_second': 130.0}]
EVAL = [{'step': 20, 'eval_top1_error': 0.7, 'eval_top5_error': 0.3, 'eval_loss': 1.6,
         'eval_examples': 600, 'eval_skipped': 0},
        {'step': 40, 'eval_top1_error': 0.3, 'eval_top5_error': 0.1, 'eval_loss': 0.9,
         'eval_examples': 600, 'eval_skipped': 0}]
# The same run as versions before the names were errors logged it: accuracies.
OLD_RECORDS = [
    {'step': 10, 'loss': 2.0, 'top1': 0.25, 'top5': 0.625, 'learning_rate': 0.01,
     'images_per_second': 100.0},
    {'step': 20, 'loss': 1.5, 'top1': 0.375, 'top5': 0.75, 'learning_rate': 0.01,
     'images_per_second': 110.0},
    {'step': 20, 'eval_top1': 0.3, 'eval_top5': 0.7, 'eval_loss': 1.6, 'eval_examples': 600,
     'eval_skipped': 0},
    {'step': 30, 'loss': 1.0, 'top1': 0.625, 'top5': 0.875, 'learning_rate': 0.001,
     'images_per_second': 120.0},
    {'step': 40, 'loss': 0.75, 'top1': 0.75, 'top5': 0.9375, 'learning_rate': 0.001,
     'images_per_second': 130.0},
    {'step': 40, 'eval_top1': 0.7, 'eval_top5': 0.9, 'eval_loss': 0.9, 'eval_examples': 600,
     'eval_skipped': 0}]
RECORDS = TRAIN[:2] + EVAL[:1] + TRAIN[2:] + EVAL[1:]


def write_metrics(workdir, records=RECORDS, tail=''):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in records) + tail)
  return str(workdir)


def plotted_lines(figure) -> dict[str, tuple]:
  """{label: (axes, steps, values)} of every line in the figure."""
  return {line.get_label(): (axes, list(line.get_xdata()), list(line.get_ydata()))
          for axes in figure.axes for line in axes.get_lines()}


@needs_matplotlib
def test_curves_plot_losses_errors_in_percent_and_the_learning_rate(tmp_path):
  records = learning_curves.read_metrics(write_metrics(tmp_path))
  assert records == RECORDS
  lines = plotted_lines(learning_curves.learning_curves(records))
  expected = {
      'train loss': ([10, 20, 30, 40], [2.0, 1.5, 1.0, 0.75]),
      'eval loss': ([20, 40], [1.6, 0.9]),
      'train top-1': ([10, 20, 30, 40], [75, 62.5, 37.5, 25]),
      'train top-5': ([10, 20, 30, 40], [37.5, 25, 12.5, 6.25]),
      'eval top-1': ([20, 40], [70, 30]),
      'eval top-5': ([20, 40], [30, 10]),
      'learning rate': ([10, 20, 30, 40], [0.01, 0.01, 0.001, 0.001]),
  }
  for label, (steps, values) in expected.items():
    _, got_steps, got_values = lines[label]
    assert got_steps == steps, label
    np.testing.assert_allclose(got_values, values, rtol=1e-12, err_msg=label)
  error_axes = lines['train top-1'][0]
  paper = {label: values for label, (axes, _, values) in lines.items()
           if label.startswith('paper') and axes is error_axes}
  assert sorted(paper) == ['paper top-1, ImageNet val, 10 crops: 40.7%',
                           'paper top-5, ImageNet val, 10 crops: 18.2%']
  assert [set(values) for values in paper.values()] == [{40.7}, {18.2}]
  assert lines['learning rate'][0].get_yscale() == 'log'
  assert error_axes.get_yscale() == 'linear'


def test_an_older_versions_accuracies_are_read_as_errors(tmp_path):
  records = learning_curves.read_metrics(write_metrics(tmp_path, OLD_RECORDS))
  assert [set(r) for r in records] == [set(r) for r in RECORDS]
  for got, want in zip(records, RECORDS):
    assert got == pytest.approx(want, rel=1e-12), want['step']


@needs_matplotlib
def test_a_run_without_train_top5_plots_no_such_line(tmp_path):
  old = [{k: v for k, v in r.items() if k != 'train_top5_error'} for r in RECORDS]
  records = learning_curves.read_metrics(write_metrics(tmp_path, old))
  lines = plotted_lines(learning_curves.learning_curves(records))
  assert 'train top-5' not in lines and 'train top-1' in lines and 'eval top-5' in lines


@needs_matplotlib
def test_command_writes_a_png_into_the_workdir_and_output_overrides_it(tmp_path):
  from PIL import Image
  workdir = write_metrics(tmp_path / 'run')
  result = subprocess.run([sys.executable, '-m', 'alexnet_jax.commands.plot',
                           f'--workdir={workdir}'],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  path = os.path.join(workdir, 'learning_curves.png')
  assert result.stdout.splitlines() == [path]
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.size == (800, 1000)
    pixels = np.asarray(image.convert('L'))
  assert (pixels < 128).mean() > 0.01  # drawn on, not a blank page
  other = str(tmp_path / 'plots' / 'curves.png')
  assert learning_curves.write_plots(workdir, other) == [other]
  with Image.open(other) as image:
    assert image.size == (800, 1000)


def test_command_names_a_missing_metrics_file(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'alexnet_jax.commands.plot',
                           f'--workdir={tmp_path}'],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'Error: {tmp_path}/metrics.jsonl does not exist: pass the workdir of a training run '
      '(alexnet-train --workdir), where it writes metrics.jsonl.')


def test_empty_and_malformed_files_are_named_with_the_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  with pytest.raises(MissingDataError, match='does not exist'):
    learning_curves.read_metrics(str(tmp_path))
  write_metrics(tmp_path, [])
  with pytest.raises(DataError, match=f'^{re.escape(str(path))} is empty: '):
    learning_curves.read_metrics(str(tmp_path))
  for bad in ('{"step": 30, "loss": 1.0', '{"loss": 1.0}', '[30, 1.0]', '{"step": "30"}'):
    write_metrics(tmp_path, tail=bad + '\n' + json.dumps(TRAIN[-1]) + '\n')
    with pytest.raises(DataError, match=f'^line 7 of {re.escape(str(path))} is not a JSON '):
      learning_curves.read_metrics(str(tmp_path))
  # A last line cut off (a run writing it now, or killed while it did) is left out.
  write_metrics(tmp_path, tail='{"step": 50, "lo')
  assert learning_curves.read_metrics(str(tmp_path)) == RECORDS


def test_imports_without_matplotlib_and_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, 'matplotlib', None)
  monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
  monkeypatch.delitem(sys.modules, 'alexnet_jax.run.learning_curves')
  fresh = importlib.import_module('alexnet_jax.run.learning_curves')
  with pytest.raises(UserError, match='^matplotlib is not installed: pip install matplotlib$'):
    fresh.learning_curves(RECORDS)
