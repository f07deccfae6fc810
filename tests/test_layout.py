"""The package's layout, read from its import graph: folders in layers with imports one way
(commands, training, run, data, model, then errors.py and files.py), no circle between
modules, TensorFlow only on the data side, and no function over 60 lines."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'alexnet_jax')
# Top to bottom: a module may import from its own folder and from the folders below it.
LAYERS = ('commands', 'training', 'run', 'data', 'model', 'base')
BASE = ('alexnet_jax.errors', 'alexnet_jax.files', 'alexnet_jax.configs')
TENSORFLOW = ('tensorflow', 'tensorflow_datasets')
# What must run where TensorFlow is absent (an accelerator machine with only jax): the
# network, the steps and what a run keeps, and what loads a trained network back.
WITHOUT_TENSORFLOW = ('alexnet_jax.model', 'alexnet_jax.training.train_step',
                      'alexnet_jax.training.optim', 'alexnet_jax.training.inference',
                      'alexnet_jax.training.faults', 'alexnet_jax.training.config_checks',
                      'alexnet_jax.run.checkpoints', 'alexnet_jax.run.workdir',
                      'alexnet_jax.run.distributed', 'alexnet_jax.run.compilation_cache')
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, str]:
  """{module name: path} of every module of the package (the configs are the checkout's)."""
  found = {}
  for directory, subdirs, names in os.walk(PACKAGE):
    subdirs[:] = [d for d in subdirs if d not in ('__pycache__', 'configs')]
    for name in names:
      if name.endswith('.py'):
        parts = os.path.relpath(os.path.join(directory, name), ROOT)[:-3].split(os.sep)
        found['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = os.path.join(
            directory, name)
  return found


MODULES = module_files()


def imports(path: str) -> set[str]:
  """Every module `path` imports, at any depth (inside functions too)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      found.add(node.module)
      found.update(f'{node.module}.{alias.name}' for alias in node.names)
  return found


def graph() -> dict[str, set[str]]:
  """{module: the package's modules it imports}; a package's names resolve to its modules."""
  edges = {}
  for module, path in MODULES.items():
    targets = set()
    for name in imports(path):
      if name == 'alexnet_jax.configs' or name.startswith('alexnet_jax.configs.'):
        targets.add('alexnet_jax.configs')
      elif name in MODULES and name != 'alexnet_jax':
        targets.add(name)
    edges[module] = targets - {module}
  return edges


def layer(module: str) -> int:
  """The index in LAYERS of the module's folder; the package's __init__ sits above all."""
  if module == 'alexnet_jax':
    return -1
  if module in BASE:
    return LAYERS.index('base')
  return LAYERS.index(module.split('.')[1])


def reached(start: str, edges: dict[str, set[str]]) -> set[str]:
  seen, todo = set(), [start]
  while todo:
    for target in edges.get(todo.pop(), ()):
      if target not in seen:
        seen.add(target)
        todo.append(target)
  return seen


def test_every_module_sits_in_a_layer():
  folders = {module.split('.')[1] for module in MODULES if module.count('.') >= 2}
  assert folders == set(LAYERS) - {'base'}
  packages = {f'alexnet_jax.{folder}' for folder in folders}
  assert packages <= set(MODULES)  # each folder is a package with its __init__.py
  loose = {module for module in MODULES if module.count('.') == 1} - set(BASE) - packages
  assert not loose, f'modules outside the layers: {sorted(loose)}'


def test_imports_go_down_the_layers_only():
  upward = [f'{module} imports {target}' for module, targets in graph().items()
            for target in targets if layer(target) < layer(module)]
  assert not upward, '\n'.join(sorted(upward))


def test_no_module_imports_itself_through_others():
  edges = graph()
  circles = sorted(module for module in edges if module in reached(module, edges))
  assert not circles, f'modules on an import circle: {circles}'


def test_the_layer_rule_would_catch_an_upward_import():
  """The rule's own check: the model importing the loop is refused."""
  edges = graph()
  edges['alexnet_jax.model.network'] = edges['alexnet_jax.model.network'] | {
      'alexnet_jax.training.loop'}
  assert any(layer(t) < layer(m) for m, ts in edges.items() for t in ts)
  assert 'alexnet_jax.model.network' in reached('alexnet_jax.model.network', edges)


def test_only_the_data_side_imports_tensorflow():
  direct = sorted(module for module, path in MODULES.items()
                  if any(name.split('.')[0] in TENSORFLOW for name in imports(path)))
  assert direct and all(module.startswith('alexnet_jax.data.') for module in direct), direct
  edges = graph()
  for root in WITHOUT_TENSORFLOW:
    modules = [m for m in MODULES if m == root or m.startswith(root + '.')]
    assert modules, root
    for module in modules:
      data = sorted(m for m in reached(module, edges) if m.startswith('alexnet_jax.data'))
      assert not data, f'{module} reaches the data side (TensorFlow): {data}'


def test_the_model_and_the_steps_run_where_tensorflow_cannot_be_imported():
  """Not by reading imports but by running: TensorFlow blocked, every module that must do
  without it imports, and a train step runs."""
  modules = [m for m in MODULES if any(m == r or m.startswith(r + '.')
                                        for r in WITHOUT_TENSORFLOW)]
  code = f'''
import importlib, sys
for name in {TENSORFLOW!r}:
  sys.modules[name] = None
for module in {modules!r}:
  importlib.import_module(module)
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from alexnet_jax.model.network import AlexNet
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run import distributed
from alexnet_jax.training import optim, train_step
mesh = distributed.data_mesh()
optimizer = optim.paper_sgd(0.9, 5e-4)
network, state = train_step.init(lambda rngs: AlexNet('paper', 4, 67, width=0.125, rngs=rngs),
                                 optimizer, 0, mesh)
normalization = Normalization(np.zeros((67, 67, 3), np.float32), np.ones(3, np.float32))
step = train_step.make_train_step(network, optimizer, lambda step, drops: 0.01,
                                  normalization.on_device(distributed.replicated(mesh), 'float32'),
                                  0, mesh)
batch = {{'image': np.zeros((2, 67, 67, 3), np.uint8), 'label': np.array([0, 1], np.int32),
         'crop_offset': np.zeros((2, 2), np.int32), 'flipped': np.zeros(2, bool),
         'lighting': np.zeros((2, 3), np.float32)}}
state, metrics = step(state, distributed.global_batch(batch, mesh))
print(int(state.step), sorted(name for name in sys.modules if name.startswith('tensorflow')))
'''
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  # None entries are the blocks themselves: nothing of TensorFlow was loaded.
  assert result.stdout.split('\n')[-2] == "1 ['tensorflow', 'tensorflow_datasets']"


def test_a_command_module_holds_only_its_flags_main_and_run():
  commands = {m: p for m, p in MODULES.items() if m.startswith('alexnet_jax.commands.')
              and m not in ('alexnet_jax.commands.cli', 'alexnet_jax.commands.launch')}
  assert len(commands) == 7
  for module, path in commands.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    defined = [node.name for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    assert defined == ['define_flags', 'main', 'run'], (module, defined)


def test_no_function_is_over_60_lines():
  long = []
  for module, path in sorted(MODULES.items()):
    with open(path) as f:
      tree = ast.parse(f.read())
    long += [f'{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines'
             for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
  assert not long, '\n'.join(long)
