"""`pip install .`: the wheel holds every module of alexnet_jax and nothing else, and
pyproject.toml's dependencies can't drift from the versions requirements*.txt pin."""

import ast
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
  for directory, subdirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
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
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
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


def test_installed_wheel_imports_without_the_checkout(wheel, tmp_path):
  """Installed into a folder of its own and imported from there, away from the checkout."""
  target = tmp_path / 'site'
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '--quiet',
       '--target', str(target), str(wheel)], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  code = ('import alexnet_jax, alexnet_jax.model, sys; '
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
  assert pyproject()['scripts'] == {name: f'{PACKAGE}.{module}:run'
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


def test_dependencies_are_lower_bounds_at_the_tested_pins():
  pins = pinned()
  for extra, requirements in declared().items():
    for requirement in requirements:
      name = canonicalize_name(requirement.name)
      assert name in pins, f'{requirement} ([{extra}]) is pinned in no requirements*.txt'
      assert [(s.operator, s.version) for s in requirement.specifier] == [('>=', pins[name])], (
          f'pyproject.toml [{extra or "core"}] says {requirement}; the tested version is '
          f'{name}=={pins[name]}: use {name}>={pins[name]}')
      assert not requirement.marker and not requirement.extras, requirement


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
