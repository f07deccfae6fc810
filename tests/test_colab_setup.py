"""notebooks/colab_setup.py's decisions, on Colab's published runtimes (tests/colab_runtimes/):
which accelerator each was set up for, what the notebook asks pip for there, that nothing the
runtime has may move down, and where it stops rather than train on the CPU. tests/test_colab.py
runs the whole notebook in those runtimes (slow)."""

import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'notebooks'))
import colab_setup  # noqa: E402  pylint: disable=wrong-import-position


RUNTIMES = ('cpu', 'gpu', 'tpu')


def runtime(kind):
  """{canonical name: version} of Colab's published runtime `kind`."""
  with open(os.path.join(ROOT, 'tests', 'colab_runtimes', f'{kind}.txt')) as f:
    return {colab_setup.canonical(name): version for name, version in
            re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)$', f.read(), re.M)}


@pytest.fixture(scope='module')
def pins():
  return colab_setup.tested_pins(ROOT)


def test_the_pins_are_requirements_txts(pins):
  with open(os.path.join(ROOT, 'requirements.txt')) as f:
    text = f.read()
  assert f'\njax=={pins["jax"]}\n' in text and pins['jax'] == pins['jaxlib']
  assert pins['tensorflow-datasets'] == '4.9.10' and 'pytest' in pins


@pytest.mark.parametrize('kind,nvidia_smi', [('cpu', None), ('gpu', '/usr/bin/nvidia-smi'),
                                             ('tpu', None)])
def test_each_runtime_is_known_by_what_it_has(kind, nvidia_smi):
  assert colab_setup.accelerator(runtime(kind), nvidia_smi) == kind
  # A GPU image's CUDA plugin tells without nvidia-smi, a bare machine's nvidia-smi without it.
  assert colab_setup.accelerator(runtime('gpu'), None) == 'gpu'
  assert colab_setup.accelerator({'numpy': '2.1.3'}, '/usr/bin/nvidia-smi') == 'gpu'


def test_each_runtime_gets_the_pinned_jax_with_its_own_plugin_and_keeps_its_tensorflow(pins):
  version = pins['jax']
  asked = {kind: colab_setup.requirements('/repo', kind, runtime(kind), pins)
           for kind in RUNTIMES}
  assert asked == {
      # Colab's TensorFlow (GPU and CPU) is kept: TFDS only; no TensorFlow on the TPU: its CPU
      # build. matplotlib is on every runtime.
      'cpu': ['/repo[tfds]', f'jax=={version}', f'jaxlib=={version}'],
      'gpu': ['/repo[tfds]', f'jax[cuda12]=={version}', f'jaxlib=={version}'],
      'tpu': ['/repo[data]', f'jax[tpu]=={version}', f'jaxlib=={version}'],
  }
  assert colab_setup.requirements('/repo', 'gpu', {'jax-cuda13-plugin': '0.7.2'}, pins) == [
      '/repo[data,plot]', f'jax[cuda13]=={version}', f'jaxlib=={version}']


def test_no_installed_package_may_move_down_but_jax_s_own():
  constraints = colab_setup.no_downgrades(runtime('gpu'))
  assert 'numpy>=2.1.3' in constraints and 'h5py>=3.16.0' in constraints
  assert 'torch>=2.11.0' in constraints  # 2.11.0+cu128: `>=` takes no local label
  named = {re.match(r'[a-z0-9-]+', line).group(0) for line in constraints}
  assert not named & {'jax', 'jaxlib', 'jax-cuda12-plugin', 'jax-cuda12-pjrt'}
  assert 'libtpu' not in {re.match(r'[a-z0-9-]+', line).group(0)
                          for line in colab_setup.no_downgrades(runtime('tpu'))}


def test_changes_list_what_moves_and_not_the_checkout_reinstalled():
  installed = {'jax': '0.7.2', 'numpy': '2.1.3', 'alexnet-jax': '0.1.0'}
  planned = {'jax': '0.10.2', 'numpy': '2.1.3', 'alexnet-jax': '0.1.0', 'ml-collections': '1.1.0'}
  assert colab_setup.changes(planned, installed) == [('jax', '0.7.2', '0.10.2'),
                                                      ('ml-collections', None, '1.1.0')]
  assert colab_setup.changes(planned, {'jax': '0.7.2'})[0] == ('alexnet-jax', None, '0.1.0')


def test_imported_modules_are_found_from_a_distribution_s_files():
  import numpy.linalg  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  modules = colab_setup.imported_modules('numpy')
  assert 'numpy' in modules and 'numpy.linalg' in modules
  assert colab_setup.imported_modules('no-such-distribution') == []


def test_training_on_the_cpu_by_mistake_stops_with_the_reason_and_the_fix(tmp_path,
                                                                           monkeypatch):
  nvidia_smi = tmp_path / 'nvidia-smi'
  nvidia_smi.write_text('#!/bin/sh\necho "No devices were found"\nexit 6\n')
  nvidia_smi.chmod(0o755)
  monkeypatch.setenv('PATH', f'{tmp_path}:{os.environ["PATH"]}')
  with pytest.raises(colab_setup.SetupError, match=(
      r"^This is a GPU runtime, but jax runs on the CPU: no GPU answers: nvidia-smi says "
      r"'No devices were found'\. Fix: Runtime > Disconnect and delete runtime")):
    colab_setup.check_backend('gpu', 'cpu', full_size=False)
  nvidia_smi.write_text('#!/bin/sh\necho "GPU 0: Tesla T4 (UUID: GPU-1)"\n')
  with pytest.raises(colab_setup.SetupError,
                     match=r'with no CUDA plugin did not start CUDA \(its error is above\)'):
    colab_setup.check_backend('gpu', 'cpu', full_size=False)
  with pytest.raises(colab_setup.SetupError, match=r'^This is a TPU runtime, but jax runs on '
                                                   r'the CPU: jax .* found no TPU'):
    colab_setup.check_backend('tpu', 'cpu', full_size=False)
  with pytest.raises(colab_setup.SetupError, match=r"^A full-size data set on the CPU .* "
                                                   r"DATASET = 'shapes'\.$"):
    colab_setup.check_backend('cpu', 'cpu', full_size=True)
  # Where jax reaches the runtime's accelerator, or a small run is on the CPU: no objection.
  for kind, backend, full_size in (('gpu', 'gpu', True), ('tpu', 'tpu', True),
                                   ('cpu', 'cpu', False)):
    assert colab_setup.check_backend(kind, backend, full_size) is None
