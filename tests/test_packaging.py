"""`pip install .`: the wheel holds every module of alexnet_jax and nothing else, and
pyproject.toml's dependencies can't drift from the versions requirements*.txt pin."""

import ast
import json
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.test_colab_setup import RUNTIMES, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'alexnet_jax'
# Import names whose distribution is named otherwise, for when it is not installed here (the
# accelerator machine has no TensorFlow); where it is installed, its metadata says.
DISTRIBUTIONS = {'absl': 'absl-py', 'orbax': 'orbax-checkpoint', 'PIL': 'pillow',
                 'tensorflow': 'tensorflow-cpu', 'yaml': 'pyyaml'}


def pyproject():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']


def declared():
  """{extra ('' for the core): [Requirement]} from pyproject.toml."""
  project = pyproject()
  groups = {'': project['dependencies'], **project.get('optional-dependencies', {})}
  return {extra: [Requirement(line) for line in lines] for extra, lines in groups.items()}


def pinned(name='requirements-bench.txt'):
  """{canonical name: version} of the `==` pins in a requirements file and those it includes
  with -r (requirements-bench.txt includes requirements.txt and adds torch)."""
  pins = {}
  with open(os.path.join(ROOT, name)) as f:
    for line in f:
      line = line.split('#')[0].strip()
      if line.startswith('-r'):
        pins.update(pinned(line[2:].strip()))
      elif line:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == '==', line
        pins[canonicalize_name(requirement.name)] = specifier.version
  return pins


def package_modules():
  """Every module of the package in the source tree, as paths relative to ROOT."""
  found = []
  # followlinks: alexnet_jax/configs links to configs/, which the wheel ships.
  for directory, subdirs, files in os.walk(os.path.join(ROOT, PACKAGE), followlinks=True):
    subdirs[:] = [d for d in subdirs if d != '__pycache__']
    found += [os.path.relpath(os.path.join(directory, f), ROOT).replace(os.sep, '/')
              for f in files if f.endswith('.py')]
  return sorted(found)


def imported_distributions():
  """{canonical distribution name: [modules that import it]} for every third-party import in
  the package's source, at any depth (TensorFlow and others are imported inside functions)."""
  stdlib = sys.stdlib_module_names
  installed = importlib.metadata.packages_distributions()
  found = {}
  for path in package_modules():
    with open(os.path.join(ROOT, path)) as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module]
      else:
        continue
      for name in names:
        top = name.split('.')[0]
        if top == PACKAGE or top in stdlib:
          continue
        dist = installed.get(top, [DISTRIBUTIONS.get(top, top)])[0]
        found.setdefault(canonicalize_name(dist), set()).add(path)
  return found


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  """The wheel `pip install .` would install, built from a copy of the tree: building in place
  would leave build/ and *.egg-info in the checkout. No build isolation, so nothing is
  downloaded: the setuptools of this environment builds it."""
  source = tmp_path_factory.mktemp('source') / 'alexnet-jax'
  # symlinks=True: the tree as a clone has it, alexnet_jax/configs a link to configs/.
  shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
      '.git', '.venv', '__pycache__', '.pytest_cache', 'build', '*.egg-info', 'workdir', '.whl'))
  out = tmp_path_factory.mktemp('wheel')
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
       '--quiet', '-w', str(out), str(source)], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  (path,) = out.glob('alexnet_jax-*.whl')
  return path


def test_wheel_holds_every_module_and_nothing_else(wheel):
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    metadata = archive.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
  modules = package_modules()
  assert f'{PACKAGE}/__init__.py' in modules and len(modules) > 20
  # Modules listed from the source tree: a new module can't be left out of the wheel.
  assert sorted(n for n in names if n.endswith('.py')) == modules
  payload = [n for n in names if '.dist-info/' not in n]
  assert all(n.startswith(f'{PACKAGE}/') for n in payload), payload
  assert re.search(r'^Requires-Python: >=3\.11$', metadata, re.M)
  assert re.search(r'^Name: alexnet-jax$', metadata, re.M)


def commit_working_tree(repo):
  """A git repository at `repo` whose one commit is the working tree, uncommitted changes
  included: what `git+URL` or a clone of a user's fork gives."""
  shutil.copytree(ROOT, repo, symlinks=True, ignore=shutil.ignore_patterns(
      '.git', '.venv', '__pycache__', '.pytest_cache', 'build', '*.egg-info', 'workdir', '.whl'))
  git = ['git', '-C', str(repo), '-c', 'user.name=test', '-c', 'user.email=test@localhost']
  for command in (['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'tree']):
    subprocess.run(git + command, check=True, capture_output=True, timeout=120)
  return repo


def test_a_wheel_from_a_git_url_holds_the_same_files(wheel, tmp_path):
  """`pip install git+URL` builds from a clone, where alexnet_jax/configs is the committed
  link: its wheel holds the same files as the checkout's, the configs among them."""
  repo = commit_working_tree(tmp_path / 'repo')
  out = tmp_path / 'wheel'
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
       '--quiet', '-w', str(out), f'git+file://{repo}'], capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  (from_git,) = out.glob('alexnet_jax-*.whl')
  names = [sorted(n for n in zipfile.ZipFile(w).namelist() if '.dist-info/' not in n)
           for w in (wheel, from_git)]
  assert names[0] == names[1]
  assert {f'{PACKAGE}/configs/{name}.py' for name in ('default', 'imagenet', 'imagenet_pod',
                                                      'imagenette', 'torchvision')} <= set(names[1])


def test_installed_wheel_imports_without_the_checkout(wheel, tmp_path):
  """Installed into a folder of its own and imported from there, away from the checkout."""
  target = tmp_path / 'site'
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '--quiet',
       '--target', str(target), str(wheel)], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  code = ('import alexnet_jax, alexnet_jax.model.network, alexnet_jax.training.train_step, sys; '
          'print(alexnet_jax.__file__); print("tensorflow" in sys.modules)')
  env = {**os.environ, 'PYTHONPATH': str(target), 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  location, tensorflow = result.stdout.split()
  assert location == str(target / PACKAGE / '__init__.py')
  assert tensorflow == 'False'  # the model needs only the core dependencies


COMMANDS = {'alexnet-train': 'train', 'alexnet-evaluate': 'evaluate',
            'alexnet-predict': 'predict', 'alexnet-plot': 'plot', 'alexnet-model': 'model',
            'alexnet-resize-dataset': 'resize_dataset',
            'alexnet-convert-torchvision': 'convert_torchvision'}


def test_every_command_is_an_entry_point_that_answers_help(wheel, tmp_path):
  """Installed from the wheel, away from the checkout: each command's console script runs,
  lists its own flags under --help, and the layer table command does its job."""
  target = tmp_path / 'site'
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '--quiet',
       '--target', str(target), str(wheel)], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  scripts = {p.name for p in (target / 'bin').iterdir()}
  assert scripts == set(COMMANDS)
  assert pyproject()['scripts'] == {name: f'{PACKAGE}.commands.launch:{module}'
                                    for name, module in COMMANDS.items()}
  env = {**os.environ, 'PYTHONPATH': str(target), 'JAX_PLATFORMS': 'cpu',
         'TF_CPP_MIN_LOG_LEVEL': '2'}
  own_flags = {'alexnet-train': ['--config', '--workdir'], 'alexnet-evaluate': ['--step', '--split'],
               'alexnet-predict': ['--top', '--workdir'], 'alexnet-plot': ['--output'],
               'alexnet-model': ['--variant', '--image_size', '--num_classes'],
               'alexnet-resize-dataset': ['--output_dir', '--size'],
               'alexnet-convert-torchvision': ['--config', '--workdir']}
  for name in COMMANDS:
    result = subprocess.run([str(target / 'bin' / name), '--help'], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (name, result.stderr[-3000:])  # absl's status after help
    assert 'Traceback' not in result.stderr, (name, result.stderr[-3000:])
    for flag in own_flags[name]:
      assert f'  {flag}:' in result.stdout, (name, flag, result.stdout[-3000:])
  result = subprocess.run([str(target / 'bin' / 'alexnet-model'), '--variant=torchvision'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert 'total parameters        61,100,840' in result.stdout, result.stderr[-3000:]


def colab_versions():
  """{canonical name: {versions}} over Colab's published runtimes (tests/colab_runtimes/),
  which tests/test_colab.py builds and runs the notebook in. tensorflow-cpu is TensorFlow's
  CPU build of the same code, under another name."""
  versions = {}
  for kind in RUNTIMES:
    for name, version in runtime(kind).items():
      versions.setdefault(name, set()).add(version)
  versions['tensorflow-cpu'] = versions.get('tensorflow', set())
  return versions


def test_dependencies_are_lower_bounds_at_the_pins_or_at_a_colab_runtimes_versions():
  """Each bound is the tested pin, or lower only at a version a Colab runtime has (so that
  pip leaves it there, and the notebook is tested with it): no untested minimum."""
  pins, colab = pinned(), colab_versions()
  lowered = set()
  for extra, requirements in declared().items():
    for requirement in requirements:
      name = canonicalize_name(requirement.name)
      assert name in pins, f'{requirement} ([{extra}]) is pinned in no requirements*.txt'
      ((operator, version),) = [(s.operator, s.version) for s in requirement.specifier]
      assert operator == '>=' and not requirement.marker and not requirement.extras, requirement
      assert version == pins[name] or version in colab.get(name, ()), (
          f'pyproject.toml [{extra or "core"}] says {requirement}; the tested versions are '
          f'{name}=={pins[name]} and Colab\'s {sorted(colab.get(name, ()))}')
      assert Version(version) <= Version(pins[name]), requirement
      if version != pins[name]:
        lowered.add(name)
  # What Colab's runtimes need lowered (tests/test_colab.py): numpy, imported by its kernel;
  # pillow and fsspec, capped by its packages; TensorFlow 2.21 would downgrade the TPU's h5py.
  assert lowered == {'numpy', 'pillow', 'fsspec', 'tensorflow-cpu'}


def test_every_imported_distribution_is_declared():
  groups = {extra: {canonicalize_name(r.name) for r in requirements}
            for extra, requirements in declared().items()}
  everywhere = set().union(*groups.values())
  imported = imported_distributions()
  missing = {dist: sorted(paths) for dist, paths in imported.items() if dist not in everywhere}
  assert not missing, f'imported by alexnet_jax but not in pyproject.toml: {missing}'
  # Colab keeps its own CUDA TensorFlow: the core must not pull in tensorflow(-cpu).
  assert not {name for name in groups[''] if name.startswith('tensorflow')}
  assert {'jax', 'flax', 'tensorflow-cpu', 'tensorflow-datasets'} <= set(imported)  # it looks


def test_every_direct_pin_of_requirements_txt_is_in_pyproject():
  """requirements.txt's pins are alexnet_jax's dependencies, plus the test-only ones named
  here; a new pin has to be declared or named as test-only."""
  test_only = {'pytest'}
  everywhere = {canonicalize_name(r.name) for group in declared().values() for r in group}
  left_out = set(pinned('requirements.txt')) - everywhere - test_only
  assert not left_out, f'pinned in requirements.txt but not in pyproject.toml: {left_out}'


def test_a_pip_user_trains_with_the_shipped_configs_away_from_the_checkout(
    wheel, tmp_path, shapes_data_dir):
  """The wheel installed into a fresh virtual environment (its dependencies are this
  environment's, linked in), run from another directory: `alexnet-train --workdir=DIR` trains
  the default config, and every shipped config can be named."""
  env_dir = tmp_path / 'env'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env_dir)], check=True,
                 timeout=120)
  (site,) = env_dir.glob('lib/python*/site-packages')
  dependencies = [p for p in sys.path if p.endswith('site-packages') and os.path.isdir(p)]
  (site / 'dependencies.pth').write_text('\n'.join(dependencies) + '\n')
  result = subprocess.run(
      [sys.executable, '-m', 'pip', '--python', str(env_dir / 'bin' / 'python'), 'install',
       '--no-deps', '--no-index', '--quiet', str(wheel)], capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  train = str(env_dir / 'bin' / 'alexnet-train')
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [train, f'--workdir={workdir}', f'--config.data_dir={shapes_data_dir}',
       '--config.num_train_steps=2', '--config.model.width=0.125', '--config.batch_size=8',
       '--config.eval_batch_size=200', '--config.compilation_cache=False'],
      cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  config = json.loads((workdir / 'config.json').read_text())
  assert config['dataset'] == 'shapes' and config['image_size'] == 67  # configs/default.py's
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['2']
  # Each shipped config by its name, and by its checkout path: loaded, then refused by the
  # config check (num_train_steps=-1), before any data is read.
  for name in ('default', 'imagenet', 'imagenet_pod', 'imagenette', 'torchvision',
               'configs/imagenet.py'):
    result = subprocess.run([train, f'--config={name}', f'--workdir={tmp_path / "w"}',
                             '--config.num_train_steps=-1'], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, (name, result.stderr[-3000:])
    assert result.stderr.strip().splitlines()[-1] == (
        'Error: config.num_train_steps=-1 must be >= 0.'), (name, result.stderr[-3000:])
  assert not any(elsewhere.iterdir())
