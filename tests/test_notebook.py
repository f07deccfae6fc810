"""notebooks/alexnet_colab.ipynb, run headless as Colab would run it offline, on Fashion-MNIST
(small IDX files the test writes where Debian's package would put them, as MANUAL_DIR) with a
1/8-width network: every cell runs, and each shows what it is there for."""

import base64
import importlib.util
import json
import os
import re
import struct

import pytest

# The notebook's input pipeline needs TensorFlow, which accelerator machines may lack. Where it
# is installed (CI), nbclient must be too (requirements-test.txt): a missing one fails here.
if importlib.util.find_spec('tensorflow') is None:
  pytest.skip('TensorFlow is not installed', allow_module_level=True)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'alexnet_colab.ipynb')
from tests.test_fashion_mnist import CLASS_NAMES, SIZES, write_fashion_files  # noqa: E402

STEPS = 12


def cell_with(notebook, text):
  (cell,) = [c for c in notebook.cells if c.cell_type == 'code' and text in c.source]
  return cell


def stream(cell, name='stdout'):
  return ''.join(o.get('text', '') for o in cell.outputs
                 if o.output_type == 'stream' and o.name == name)


def png_sizes(cell):
  """(width, height) of each PNG the cell displayed, from the PNG header."""
  sizes = []
  for output in cell.outputs:
    if 'image/png' in output.get('data', {}):
      png = base64.b64decode(output['data']['image/png'])
      assert png[:8] == b'\x89PNG\r\n\x1a\n'
      sizes.append(struct.unpack('>II', png[16:24]))
  return sizes


def test_committed_notebook_is_clean():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert notebook.nbformat == 4 and notebook.metadata.kernelspec.name == 'python3'
  for cell in notebook.cells:
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None, cell.source[:80]
  tagged = [c for c in notebook.cells if 'parameters' in c.metadata.get('tags', [])]
  assert len(tagged) == 1 and "DATASET = 'auto'" in tagged[0].source


@pytest.fixture(scope='module')
def executed(tf, tmp_path_factory):
  """The notebook after a run of 12 steps of 16 images at 67x67, from the repository root:
  the checkout is found there and nothing is installed. The kernel inherits this process's
  environment, JAX_COMPILATION_CACHE_DIR (tests/conftest.py) included, but for $XLA_FLAGS:
  the notebook must set XLA:CPU's kernels itself."""
  root = tmp_path_factory.mktemp('notebook')
  workdir = root / 'run'
  write_fashion_files(root / 'fashion-mnist')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  (parameters,) = [c for c in notebook.cells if 'parameters' in c.metadata.get('tags', [])]
  # Appended, as papermill injects parameters: a new parameter keeps its default.
  # 'fashion_mnist', not 'auto': the test must not touch the network.
  parameters.source += '\n'.join([
      '\n# the test\'s',
      "DATASET = 'fashion_mnist'",
      f'DATA_DIR = {str(root / "tfds")!r}',
      f'MANUAL_DIR = {str(root / "fashion-mnist")!r}',
      f'WORKDIR = {str(workdir)!r}',
      f'NUM_STEPS = {STEPS}',
      'WIDTH = 0.125',
      'IMAGE_SIZE = 67',
      'RESIZE_SIZE = 76',
      'BATCH_SIZE = 16',
      # The rest of tests/test_train.py's tiny_config, whose compiled programs (some of
      # them) the session's compilation cache shares.
      "OVERRIDES = {'eval_batch_size': 200, 'shuffle_buffer': 200, 'cache': False, "
      "'log_every_steps': 4, 'lr_schedule': 'steps', 'eval_every_steps': 10_000, "
      # 30 training images make an epoch of 1 step: evaluate and save at the end only.
      f"'checkpoint_every_steps': {STEPS}}}",
  ])
  # A cell that raises fails the test here (CellExecutionError, with its traceback).
  env = {**{k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}, 'JAX_PLATFORMS': 'cpu',
         'TF_CPP_MIN_LOG_LEVEL': '2'}
  NotebookClient(notebook, timeout=300, kernel_name='python3',
                 resources={'metadata': {'path': ROOT}}).execute(env=env)
  return notebook, workdir


def test_install_cell_uses_the_checkout_and_installs_nothing(executed):
  notebook, _ = executed
  out = stream(cell_with(notebook, "REPO = ''"))
  assert 'nothing to install' in out and ROOT in out, out


def test_training_follows_the_parameters(executed):
  notebook, workdir = executed
  with open(workdir / 'metrics.jsonl') as f:
    metrics = [json.loads(line) for line in f]
  assert [m['step'] for m in metrics if 'train_loss' in m] == [4, 8, 12]
  evaluations = [m for m in metrics if 'eval_top1_error' in m]
  assert [m['step'] for m in evaluations] == [STEPS]
  assert evaluations[0]['eval_examples'] == SIZES['test']
  with open(workdir / 'config.json') as f:
    config = json.load(f)
  assert config['model']['width'] == 0.125 and config['batch_size'] == 16
  assert config['image_size'] == 67 and config['eval_batch_size'] == 200
  cell = cell_with(notebook, 'loop.train_and_evaluate(')
  # The cell's last expression is the run's final evaluation.
  assert 'eval_top1_error' in cell.outputs[-1]['data']['text/plain']
  # The training log, and the kernel compiled into the session's cache (tests/conftest.py).
  log = stream(cell, 'stderr')
  assert f'step {STEPS}/{STEPS}: eval top-1 error' in log
  assert f'Compiled steps are cached in {os.environ["JAX_COMPILATION_CACHE_DIR"]}.' in log
  assert ('XLA:CPU kernels: convolution on eigen, dot on ynnpack, reduce on xla '
          '($XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot).') in log


def test_learning_curves_and_filters_are_drawn(executed):
  notebook, _ = executed
  assert len(png_sizes(cell_with(notebook, 'learning_curves.learning_curves('))) == 1
  filters = cell_with(notebook, 'first_layer_kernels(')
  # 1/8 width: 12 kernels of 11x11 in one row of 16 cells, 1-pixel borders, zoomed 3x.
  assert png_sizes(filters) == [(3 * (16 * 12 + 1), 3 * 13)]
  assert f'checkpoint {STEPS}: 12 conv1 kernels of 11x11x3' in stream(filters)


def test_predictions_name_fashion_mnist_classes(executed):
  notebook, _ = executed
  cell = cell_with(notebook, 'prediction.predict(')
  lines = stream(cell).splitlines()
  assert len(lines) == 6 and len(png_sizes(cell)) == 1
  true_labels = []
  for line in lines:
    match = re.fullmatch(r'test_\d+\.png: true (.+); predicted (.*)', line)
    assert match, line
    true_labels.append(match.group(1))
    predicted = [re.fullmatch(r'(.+) (\d+\.\d)%', p) for p in match.group(2).split(', ')]
    assert len(predicted) == 3 and {p.group(1) for p in predicted} <= set(CLASS_NAMES), line
  assert len(set(true_labels)) == 6 and set(true_labels) <= set(CLASS_NAMES)  # 6 classes


def test_evaluation_prints_centre_and_ten_crop_errors(executed):
  notebook, workdir = executed
  out = stream(cell_with(notebook, 'evaluate_checkpoint('))
  rows = dict(re.findall(r'(centre crop|10 crops) +top-1 error +([\d.]+)%', out))
  assert set(rows) == {'centre crop', '10 crops'}, out
  assert out.count(f'({SIZES["test"]} examples)') == 2, out
  with open(workdir / 'metrics.jsonl') as f:
    final = [json.loads(line) for line in f if 'eval_top1_error' in line][-1]
  # The centre crop scores the checkpoint as the training's own evaluation did.
  assert rows['centre crop'] == f'{100 * final["eval_top1_error"]:.2f}'


def test_evaluation_writes_and_shows_the_confusion_picture(executed):
  notebook, workdir = executed
  cell = cell_with(notebook, 'evaluate_checkpoint(')
  assert f'wrote {workdir}/confusion-{STEPS}.png' in stream(cell)
  assert len(png_sizes(cell)) == 1
  with open(workdir / f'eval-{STEPS}.json') as f:
    per_class = json.load(f)['centre']['per_class']
  assert [c['class'] for c in per_class] == CLASS_NAMES
  assert sum(c['examples'] for c in per_class) == SIZES['test']
