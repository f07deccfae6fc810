"""Python 3.13, the Python of Colab's runtimes, is tested beside the pinned 3.11:
requirements.txt installs on it as it is, and the model, its layers, the steps, the input
pipeline and its preprocessing, and training (a run, its exact resume, evaluate and predict)
pass their own tests there. tests/test_colab.py runs the notebook on 3.13 with Colab's
versions. Slow (about 4 minutes, the install from pip's cache included)."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ['tests/test_model.py', 'tests/test_layers.py', 'tests/test_train_step.py',
         'tests/test_input_pipeline.py', 'tests/test_preprocessing.py', 'tests/test_train.py']


@pytest.mark.slow
def test_the_pinned_set_passes_the_core_tests_on_python_3_13(python313, tmp_path):
  venv = tmp_path / 'venv'
  for command in ([python313, '-m', 'venv', str(venv)],
                  [venv / 'bin' / 'python', '-m', 'pip', 'install', '-q', '-r',
                   'requirements.txt']):  # pytest is among its pins
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
  # Its own compilation cache (tests/conftest.py) and XLA:CPU's kernels, as a user's run has.
  env = {k: v for k, v in os.environ.items()
         if k not in ('JAX_COMPILATION_CACHE_DIR', 'XLA_FLAGS', 'PYTEST_ADDOPTS')}
  version = subprocess.run(
      [venv / 'bin' / 'python', '-c', 'import sys; print(sys.version.split()[0])'],
      capture_output=True, text=True, check=True).stdout.strip()
  assert version.startswith('3.13.'), version
  result = subprocess.run([venv / 'bin' / 'python', '-m', 'pytest', '-q', '-p',
                           'no:cacheprovider', *FILES], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=1200)
  summary = result.stdout.strip().splitlines()[-1]
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
  # Every test ran: a skip would hide a missing package on 3.13.
  assert re.fullmatch(r'\d+ passed, \d+ deselected(, \d+ warnings?)? in .*', summary), summary
  print(f'Python {version}: {summary}')
