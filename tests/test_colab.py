"""The notebook on Colab's three runtimes as Google publishes them (tests/colab_runtimes/),
rebuilt here on Python 3.13 and run as a Colab user runs it: REPO set to a git URL, "Run all".

Each runtime is a fresh virtual environment holding, at Colab's versions, the packages the
notebook touches, those of Colab's that cap them (datasets and gcsfs cap fsspec, gradio caps
pillow), numba (numpy<2.3) and h5py; the GPU runtime adds jax's CUDA plugin wheels and stands
in for Colab's pip CUDA libraries with their metadata only, and nvidia-smi answers as on a
machine whose GPU is gone. The kernel imports numpy as it starts, as Colab's does. Then:

- CPU: the install changes nothing the kernel imported, downgrades nothing and breaks nothing
  pip check sees; the notebook trains to the end on the pinned jax;
- GPU: a kernel that has imported jax is restarted by the install, and the second "Run all"
  installs nothing and stops before training with the reason (no GPU answers) and the fix,
  with jax's CUDA plugin at jax's version;
- TPU: TensorFlow's CPU build comes in without downgrading h5py, libtpu is the one jax's
  `tpu` extra names, and the notebook stops before training: no TPU answers.

Slow (about 7 minutes; the packages come from pip's cache after the first run).
"""

import glob
import json
import os
import re
import subprocess

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'alexnet_colab.ipynb')
from packaging.version import Version  # noqa: E402

from tests.test_colab_setup import colab_setup, runtime  # noqa: E402
from tests.test_packaging import commit_working_tree  # noqa: E402

pytestmark = pytest.mark.slow

# What the notebook imports or its install changes, and Colab's packages that cap those.
TOUCHED = ['jax', 'jaxlib', 'numpy', 'scipy', 'ml-dtypes', 'flax', 'optax', 'orbax-checkpoint',
           'tensorstore', 'tensorflow-datasets', 'tensorflow-metadata', 'protobuf',
           'matplotlib', 'pillow', 'fsspec', 'etils', 'absl-py', 'tqdm', 'numba', 'h5py',
           'datasets']
RUNTIME_PACKAGES = {'cpu': TOUCHED + ['tensorflow', 'gcsfs', 'gradio'],
                    'gpu': TOUCHED + ['tensorflow', 'gcsfs', 'gradio'],
                    'tpu': TOUCHED + ['libtpu', 'chex']}
# The kernel's own packages come from requirements-test.txt's pins, not Colab's (its IPython
# 7.34 is patched for Python 3.13): these are left out of the constraints.
KERNEL_STACK = re.compile(r'^(ipykernel|ipython|ipython-genutils|jupyter.*|notebook|traitlets|'
                          r'tornado|pyzmq|comm|debugpy|nest-asyncio|prompt-toolkit|jedi|parso|'
                          r'pexpect|matplotlib-inline|pip|setuptools|wheel)$')
STEPS = 6


def pinned(name):
  with open(os.path.join(ROOT, 'requirements-test.txt')) as f:
    (version,) = re.findall(rf'^{name}==(\S+)$', f.read(), re.M)
  return f'{name}=={version}'


def run(command, **kwargs):
  result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
  assert result.returncode == 0, f'{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
  return result.stdout


def installed(venv):
  listing = run([f'{venv}/bin/python', '-m', 'pip', 'list', '--format=json'])
  return {colab_setup.canonical(p['name']): p['version'] for p in json.loads(listing)}


def pip_check(venv):
  result = subprocess.run([f'{venv}/bin/python', '-m', 'pip', 'check'], capture_output=True,
                          text=True, check=False)
  return set(result.stdout.splitlines()) - {'No broken requirements found.'}


def build_runtime(kind, venv, python):
  versions = runtime(kind)
  run([python, '-m', 'venv', venv])
  pip = [f'{venv}/bin/python', '-m', 'pip', 'install', '-q']
  run(pip + [f'pip=={versions["pip"]}'])
  constraints = os.path.join(os.path.dirname(venv), f'{kind}-constraints.txt')
  with open(constraints, 'w') as f:
    f.writelines(f'{name}=={version}\n' for name, version in versions.items()
                 if not KERNEL_STACK.match(name))
  run(pip + ['-c', constraints, *RUNTIME_PACKAGES[kind], pinned('ipykernel')])
  if kind == 'gpu':
    run(pip + ['--no-deps'] + [f'{name}=={version}' for name, version in versions.items()
                               if re.fullmatch(r'jax-cuda\d+-(plugin|pjrt)', name)])
    # Colab's CUDA libraries from pip (3 GB), as their metadata alone: pip sees them
    # installed, at Colab's versions, and no GPU can use them.
    (site_packages,) = glob.glob(f'{venv}/lib/python3.13/site-packages')
    for name, version in versions.items():
      if name.startswith('nvidia-') and name != 'nvidia-ml-py':
        info = os.path.join(site_packages, f'{name.replace("-", "_")}-{version}.dist-info')
        os.makedirs(info)
        for file, text in (('METADATA', f'Metadata-Version: 2.1\nName: {name}\n'
                                        f'Version: {version}\n'),
                           ('INSTALLER', 'pip\n')):
          with open(os.path.join(info, file), 'w') as f:
            f.write(text)
        with open(os.path.join(info, 'RECORD'), 'w') as f:
          f.write(''.join(f'{os.path.basename(info)}/{file},,\n'
                          for file in ('METADATA', 'INSTALLER', 'RECORD')))


@pytest.fixture(scope='module')
def repo_url(tmp_path_factory):
  """A git URL of this working tree (uncommitted changes too), as a user's fork would be."""
  return f'file://{commit_working_tree(tmp_path_factory.mktemp("fork") / "alexnet-jax")}'


class Runtime:
  """A built runtime, a kernel spec for it, and "Run all" as Colab does it."""

  def __init__(self, kind, root, startup_imports, python):
    self.kind, self.root = kind, root
    self.venv = str(root / 'venv')
    build_runtime(kind, self.venv, python)
    kernels = root / 'jupyter' / 'kernels' / 'colab'
    kernels.mkdir(parents=True)
    (kernels / 'kernel.json').write_text(json.dumps({
        'argv': [f'{self.venv}/bin/python', '-m', 'ipykernel_launcher', '-f',
                 '{connection_file}'],
        'display_name': f'Colab {kind}', 'language': 'python'}))
    # What Colab's kernel imports as it starts.
    startup = root / 'ipython' / 'profile_default' / 'startup'
    startup.mkdir(parents=True)
    (startup / '00-colab.py').write_text(''.join(f'import {m}\n' for m in startup_imports))
    self.env = {k: v for k, v in os.environ.items()
                if not k.startswith(('XLA_', 'JAX_', 'JUPYTER', 'IPYTHON', 'TF_'))}
    self.env.update(IPYTHONDIR=str(root / 'ipython'), TF_CPP_MIN_LOG_LEVEL='2')
    if kind == 'gpu':  # nvidia-smi as on a machine whose GPU does not answer
      bin_dir = root / 'bin'
      bin_dir.mkdir()
      (bin_dir / 'nvidia-smi').write_text(
          '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the '
          'NVIDIA driver."\nexit 9\n')
      (bin_dir / 'nvidia-smi').chmod(0o755)
      self.env['PATH'] = f'{bin_dir}:{self.env["PATH"]}'
    self.workdir = root / 'run'
    self.before = installed(self.venv)
    self.broken_before = pip_check(self.venv)

  def run_all(self, repo_url, monkeypatch):
    """The notebook, REPO set, every cell in order until one raises: (notebook, error)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (install,) = [c for c in notebook.cells if c.source.startswith("REPO = ''")]
    install.source = install.source.replace("REPO = ''", f'REPO = {repo_url!r}', 1)
    (parameters,) = [c for c in notebook.cells if 'parameters' in c.metadata.get('tags', [])]
    parameters.source += '\n'.join([
        '', "DATASET = 'shapes'", f'DATA_DIR = {str(self.root / "tfds")!r}',
        f'WORKDIR = {str(self.workdir)!r}', f'NUM_STEPS = {STEPS}', 'WIDTH = 0.125',
        'IMAGE_SIZE = 67', 'RESIZE_SIZE = 76', 'BATCH_SIZE = 16',
        "OVERRIDES = {'eval_batch_size': 200, 'shuffle_buffer': 200, 'cache': False, "
        f"'log_every_steps': 3, 'checkpoint_every_steps': {STEPS}}}"])
    monkeypatch.setenv('JUPYTER_PATH', str(self.root / 'jupyter'))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name='colab',
                                     resources={'metadata': {'path': str(self.root)}})
    try:
      client.execute(env=self.env)
    except (nbclient.exceptions.CellExecutionError,
            nbclient.exceptions.DeadKernelError) as error:
      return notebook, error
    return notebook, None


def output(notebook, text, name='stdout'):
  (cell,) = [c for c in notebook.cells if c.cell_type == 'code' and text in c.source]
  return ''.join(o.get('text', '') for o in cell.outputs
                 if o.output_type == 'stream' and o.name == name)


def assert_installed_as_tested(runtime):
  """jax at the pin, with the runtime's accelerator plugin at its version; nothing the
  runtime had is downgraded and pip check finds nothing newly broken."""
  pins = colab_setup.tested_pins(ROOT)
  after = installed(runtime.venv)
  assert after['jax'] == after['jaxlib'] == pins['jax'], after['jax']
  downgraded = {name: (version, after.get(name)) for name, version in runtime.before.items()
                if not colab_setup.JAX_DISTRIBUTIONS.match(name)
                and Version(after.get(name, '0')) < Version(version)}
  assert not downgraded
  assert pip_check(runtime.venv) <= runtime.broken_before
  return after


def test_cpu_runtime_trains_to_the_end_on_the_pinned_jax(tmp_path, repo_url, monkeypatch,
                                                         python313):
  runtime = Runtime('cpu', tmp_path, ['numpy'], python313)
  notebook, error = runtime.run_all(repo_url, monkeypatch)
  assert error is None, error
  after = assert_installed_as_tested(runtime)
  assert after['numpy'] == runtime.before['numpy']  # imported at start: left alone
  assert after['tensorflow'] == runtime.before['tensorflow']  # Colab's own is kept
  out = output(notebook, 'REPO_DIR = find_checkout')
  print(out)  # what the install changed: pytest -s shows it
  assert 'Runtime: CPU, Python 3.13' in out and 'restarting' not in out, out
  assert f'jax {runtime.before["jax"]} -> {after["jax"]}' in out, out
  assert 'pip check: nothing newly broken.' in out, out
  with open(runtime.workdir / 'metrics.jsonl') as f:
    steps = [json.loads(line)['step'] for line in f if 'eval_top1_error' in line]
  assert steps == [STEPS]
  assert '10 crops' in output(notebook, 'evaluate_checkpoint(')


def test_gpu_runtime_matches_the_cuda_plugin_and_stops_where_no_gpu_answers(
    tmp_path, repo_url, monkeypatch, python313):
  # A kernel that had imported jax (say, a cell run before "Run all") is restarted.
  runtime = Runtime('gpu', tmp_path, ['numpy', 'jax'], python313)
  notebook, error = runtime.run_all(repo_url, monkeypatch)
  out = output(notebook, 'REPO_DIR = find_checkout')
  print(out)
  assert 'Runtime: GPU' in out and 'restarting the kernel' in out, out
  assert isinstance(error, nbclient.exceptions.DeadKernelError), error
  after = assert_installed_as_tested(runtime)
  assert after['jax-cuda12-plugin'] == after['jax-cuda12-pjrt'] == after['jax']
  nvidia = {n: v for n, v in runtime.before.items() if n.startswith('nvidia-')}
  assert nvidia and all(after[n] == v for n, v in nvidia.items())  # Colab's CUDA libraries
  # The second "Run all": nothing left to install; training stops before it starts.
  notebook, error = runtime.run_all(repo_url, monkeypatch)
  assert 'nothing to change' in output(notebook, 'REPO_DIR = find_checkout')
  assert isinstance(error, nbclient.exceptions.CellExecutionError), error
  assert error.ename == 'SetupError', error
  assert error.evalue.startswith(
      'This is a GPU runtime, but jax runs on the CPU: no GPU answers: nvidia-smi says '
      "\"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\""), error
  assert not runtime.workdir.exists()


def test_tpu_runtime_matches_libtpu_and_stops_where_no_tpu_answers(
    tmp_path, repo_url, monkeypatch, python313):
  runtime = Runtime('tpu', tmp_path, ['numpy'], python313)
  assert 'tensorflow' not in runtime.before and 'tensorflow-cpu' not in runtime.before
  notebook, error = runtime.run_all(repo_url, monkeypatch)
  out = output(notebook, 'REPO_DIR = find_checkout')
  print(out)
  assert 'Runtime: TPU' in out and 'nothing newly broken' in out, out
  after = assert_installed_as_tested(runtime)
  # The libtpu that the pinned jax's `tpu` extra names.
  requires = run([f'{runtime.venv}/bin/python', '-c',
                  'import importlib.metadata as m; print(*m.requires("jax"), sep="\\n")'])
  (libtpu,) = re.findall(r'^libtpu==([\d.]+)\.\*; extra == "tpu"$', requires, re.M)
  assert after['libtpu'].startswith(libtpu + '.') or after['libtpu'] == libtpu
  assert 'tensorflow-cpu' in after and after['h5py'] == runtime.before['h5py']
  assert isinstance(error, nbclient.exceptions.CellExecutionError), error
  assert error.ename == 'SetupError', error
  assert error.evalue.startswith('This is a TPU runtime, but jax runs on the CPU'), error
