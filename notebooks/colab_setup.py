"""What the notebook installs into the runtime it runs in, and the check that it trains where
the runtime's accelerator is.

Colab's runtimes (docs/colab.md) come with their own jax, its CUDA plugin or libtpu at the same
version, TensorFlow (not on TPU) and numpy, and the kernel imports numpy as it starts. The
notebook installs alexnet-jax with the jax that requirements.txt pins, together with the plugin
or libtpu of the runtime's accelerator at that jax's version, and changes nothing else that
the runtime has: no installed package is downgraded, and where pip must replace a module
the kernel has already imported, the kernel is restarted, after which the next "Run all" finds
everything installed. It needs only the standard library and pip, since it runs before
anything is installed; the notebook loads it from the checkout by path, so that importing
it does not import alexnet_jax (whose import sets XLA's flags for the jaxlib installed then).
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Distributions the install sets to the pinned jax's versions whatever the runtime has: the
# rest of the runtime may only move up.
JAX_DISTRIBUTIONS = re.compile(r'^(jax|jaxlib|jax-cuda\d+-(plugin|pjrt)|libtpu)$')
CUDA_PLUGIN = re.compile(r'jax-(cuda\d+)-plugin')


class SetupError(Exception):
  """The notebook cannot go on: the message names the problem and the fix."""


def canonical(name):
  return re.sub(r'[-_.]+', '-', name).lower()


def installed_versions():
  """{canonical distribution name: version} of what the kernel's Python has installed."""
  return {canonical(d.metadata['Name']): d.version for d in importlib.metadata.distributions()
          if d.metadata['Name']}


def tested_pins(repo_dir):
  """{canonical name: version} of requirements.txt's `==` pins: the versions tested together."""
  pins = {}
  with open(os.path.join(repo_dir, 'requirements.txt')) as f:
    for line in f:
      match = re.fullmatch(r'([A-Za-z0-9_.-]+)==([^\s;]+)', line.split('#')[0].strip())
      if match:
        pins[canonical(match.group(1))] = match.group(2)
  return pins


def cuda_plugin(installed):
  """The name of the runtime's CUDA plugin of jax (jax-cuda12-plugin on Colab), or None."""
  return next((name for name in sorted(installed) if CUDA_PLUGIN.fullmatch(name)), None)


def accelerator(installed, nvidia_smi):
  """'tpu', 'gpu' or 'cpu': what the runtime was set up for. Colab's TPU image is the one
  with libtpu; its GPU image has nvidia-smi and a CUDA plugin of jax."""
  if 'libtpu' in installed:
    return 'tpu'
  if nvidia_smi or cuda_plugin(installed):
    return 'gpu'
  return 'cpu'


def cuda_flavour(installed):
  """The runtime's CUDA major version for jax's plugin: that of the plugin it has (Colab:
  cuda12, whose CUDA libraries its torch shares), else 12, which also runs on CUDA 13
  drivers."""
  plugin = cuda_plugin(installed)
  return CUDA_PLUGIN.fullmatch(plugin).group(1) if plugin else 'cuda12'


def requirements(repo_dir, accelerator_kind, installed, pins):
  """The pip requirements: the checkout with its extras, and the pinned jax for the
  accelerator (with its plugin at the same version, CUDA libraries from pip, or libtpu)."""
  # TensorFlow serves the input pipeline only; a runtime's own (Colab GPU and CPU) is kept,
  # while tensorflow-cpu next to a `tensorflow` would overwrite its files.
  extras = ['tfds' if 'tensorflow' in installed or 'tensorflow-cpu' in installed else 'data']
  if 'matplotlib' not in installed:
    extras.append('plot')
  version = pins['jax']
  jax = {'cpu': [f'jax=={version}'],
         'gpu': [f'jax[{cuda_flavour(installed)}]=={version}'],
         'tpu': [f'jax[tpu]=={version}']}[accelerator_kind]
  return [f'{repo_dir}[{",".join(extras)}]'] + jax + [f'jaxlib=={pins["jaxlib"]}']


def no_downgrades(installed):
  """pip constraints that keep every installed distribution at its version or above, but
  jax's own (JAX_DISTRIBUTIONS), which follow the pin."""
  lines = []
  for name, version in sorted(installed.items()):
    release = re.match(r'\d+(\.\d+)*', version)  # `>=` takes no local label (+cu128)
    if release and not JAX_DISTRIBUTIONS.match(name):
      lines.append(f'{name}>={release.group(0)}')
  return lines


def pip(*args, capture=False):
  return subprocess.run([sys.executable, '-m', 'pip', *args], check=False, text=True,
                        capture_output=capture)


def pip_check():
  """pip check's complaints, a set of lines, each naming a broken package."""
  result = pip('check', capture=True)
  return set() if result.returncode == 0 else {
      line for line in result.stdout.splitlines() if line.strip()}


def plan(requirements_list, constraints):
  """{canonical name: version} that `pip install` would install, from its dry run."""
  with tempfile.TemporaryDirectory() as directory:
    report = os.path.join(directory, 'report.json')
    result = pip('install', '--dry-run', '--quiet', '--report', report, '-c', constraints,
                 *requirements_list, capture=True)
    if result.returncode != 0:
      raise SetupError(
          'pip finds no way to install alexnet-jax without moving down a package this '
          f'runtime has:\n{result.stderr.strip()}\nFix: Runtime > Disconnect and delete '
          'runtime, then run all cells again in a fresh runtime.')
    with open(report) as f:
      return {canonical(item['metadata']['name']): item['metadata']['version']
              for item in json.load(f)['install']}


def changes(planned, installed):
  """[(name, old version or None, new version)] that the install would make; alexnet-jax
  itself is always reinstalled from the checkout and counts only when new."""
  return sorted((name, installed.get(name), version) for name, version in planned.items()
                if installed.get(name) != version
                and not (name == 'alexnet-jax' and name in installed))


def imported_modules(distribution):
  """The modules of a distribution that this process has imported."""
  try:
    files = importlib.metadata.distribution(distribution).files or []
  except importlib.metadata.PackageNotFoundError:
    return []
  names = set()
  for file in files:
    if file.suffix == '.py':
      parts = file.with_suffix('').parts
      names.add('.'.join(parts[:-1] if parts[-1] == '__init__' else parts))
  return sorted(names & set(sys.modules))


def install(repo_dir):
  """Installs what the notebook needs, prints each change and pip check's verdict, and
  restarts the kernel where a replaced package was already imported. Returns the accelerator
  the runtime was set up for."""
  installed = installed_versions()
  kind = accelerator(installed, shutil.which('nvidia-smi'))
  pins = tested_pins(repo_dir)
  wanted = requirements(repo_dir, kind, installed, pins)
  print(f'Runtime: {kind.upper()}, Python {sys.version.split()[0]}, jax '
        f'{installed.get("jax", "not installed")}; alexnet-jax is tested with jax {pins["jax"]}.')
  with tempfile.TemporaryDirectory() as directory:
    constraints = os.path.join(directory, 'constraints.txt')
    with open(constraints, 'w') as f:
      f.write('\n'.join(no_downgrades(installed)) + '\n')
    todo = changes(plan(wanted, constraints), installed)
    if not todo:
      print('Everything is installed: nothing to change.')
      return kind
    print('Installing:\n' + '\n'.join(
        f'  {name} {old or "(new)"} -> {new}' for name, old, new in todo))
    stale = {}  # {distribution: its imported modules}, read before pip replaces its files
    for name, old, _ in todo:
      modules = imported_modules(name) if old else []
      if modules:
        stale[name] = modules
    broken_before = pip_check()
    if pip('install', '--quiet', '-c', constraints, *wanted).returncode != 0:
      raise SetupError('pip install failed (its message is above). Fix: run this cell again.')
  newly_broken = sorted(pip_check() - broken_before)
  print('pip check: ' + ('nothing newly broken.' if not newly_broken else
                         'newly broken by this install:\n  ' + '\n  '.join(newly_broken)))
  importlib.invalidate_caches()
  if stale:
    print('This kernel had already imported ' + ', '.join(
        f'{name} ({", ".join(modules[:3])})' for name, modules in sorted(stale.items())) +
          ', which pip has just replaced: restarting the kernel. Then run all cells again.')
    restart()
  return kind


def restart():
  """Restarts the kernel as Colab's own notebooks do: the running cell and those queued
  after it do not run; the next "Run all" starts in a fresh interpreter."""
  from IPython import get_ipython  # pylint: disable=import-outside-toplevel
  get_ipython().kernel.do_shutdown(True)


def check_backend(kind, backend, full_size):
  """Raises SetupError where training would run on the CPU by mistake: a runtime with an
  accelerator whose jax does not reach it, or a full-size run on a CPU runtime."""
  installed = installed_versions()
  fix = ('Fix: Runtime > Disconnect and delete runtime, then run all cells again in a new '
         f'{kind.upper()} runtime.')
  if kind == 'gpu' and backend != 'gpu':
    answer = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, check=False)
    said = (answer.stdout + answer.stderr).strip().splitlines()
    if answer.returncode != 0:
      why = 'no GPU answers: nvidia-smi says ' + (
          repr(said[0]) if said else f'nothing, exit status {answer.returncode}')
    else:
      plugin = cuda_plugin(installed)
      plugin = f'{plugin} {installed[plugin]}' if plugin else 'no CUDA plugin'
      why = f'jax {installed.get("jax")} with {plugin} did not start CUDA (its error is above)'
    raise SetupError(f'This is a GPU runtime, but jax runs on the {backend.upper()}: {why}. '
                     f'{fix}')
  if kind == 'tpu' and backend != 'tpu':
    raise SetupError(
        f'This is a TPU runtime, but jax runs on the {backend.upper()}: jax '
        f'{installed.get("jax")} with libtpu {installed.get("libtpu")} found no TPU (its '
        f'message is above). {fix}')
  if backend == 'cpu' and full_size:
    raise SetupError(
        'A full-size data set on the CPU would take days. Fix: choose a GPU runtime (Runtime '
        "> Change runtime type > GPU) and run all cells again, or set DATASET = 'shapes'.")
