"""XLA:CPU's kernel choice (alexnet_jax.model.cpu_kernels): XLA's default, the project's, applied at
import before JAX starts, the user's $XLA_FLAGS winning, and every choice the benchmark
compares compiling as it says."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.model import cpu_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One operation of each kind that every kernel of its kind takes: a convolution with over 16
# channels, a dot without transposed operands, a sum of over 4096 elements.
OPERATIONS = '''
import jax, jax.numpy as jnp, numpy as np
def operations(x, w, a, b, y):
  conv = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return conv, a @ b, jnp.sum(y, 0)
ARGS = tuple(jnp.asarray(np.random.default_rng(i).standard_normal(shape), jnp.float32)
             for i, shape in enumerate([(2, 8, 8, 32), (3, 3, 32, 32), (64, 128), (128, 64),
                                        (64, 4096)]))
'''
COMPILE = 'compiled = jax.jit(operations).lower(*ARGS).compile()\n'
namespace = {}
exec(OPERATIONS, namespace)  # noqa: S102  (the same source runs in the subprocesses below)
operations, ARGS = namespace['operations'], namespace['ARGS']


def placed(counts) -> dict[str, set[str]]:
  return {kind: set(kernels) for kind, kernels in counts.items()}


def subprocess_placement(first: str, xla_flags: str | None,
                         then: str = '') -> tuple[dict, str, str]:
  """In a fresh Python with $XLA_FLAGS as given (None: unset), runs `first`, then compiles
  OPERATIONS, then runs `then`; returns the placement, what alexnet_jax logged as its kernels
  (if imported) and the $XLA_FLAGS the program ended with."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  if xla_flags is not None:
    env['XLA_FLAGS'] = xla_flags
  script = first + OPERATIONS + COMPILE + then + '''
import json, os, sys
alexnet_jax = sys.modules.get('alexnet_jax')
print(json.dumps({'hlo': compiled.as_text(), 'xla_flags': os.environ.get('XLA_FLAGS'),
                  'kernels': alexnet_jax.model.cpu_kernels.APPLIED if alexnet_jax else None}))
'''
  done = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  return placed(cpu_kernels.placement(out['hlo'])), out['kernels'], out['xla_flags']


def test_xla_by_default_puts_every_kind_on_ynnpack():
  # Plain JAX, without alexnet_jax: what XLA_DEFAULT claims (XLA's help text says otherwise).
  placement, _, _ = subprocess_placement('', xla_flags=None)
  assert placement == {kind: {kernel} for kind, kernel in cpu_kernels.XLA_DEFAULT.items()}


def test_importing_alexnet_jax_puts_each_kind_on_the_projects_choice():
  placement, kernels, flags = subprocess_placement('import alexnet_jax\n', xla_flags=None)
  assert placement == {kind: {kernel} for kind, kernel in cpu_kernels.CHOICE.items()}
  assert flags == '--xla_cpu_experimental_ynn_fusion_type=individual_dot'
  assert kernels == (
      'convolution on eigen, dot on ynnpack, reduce on xla '
      '($XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot)')


def test_a_users_xla_flags_win_and_are_kept():
  mine = '--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=reduce'
  placement, kernels, flags = subprocess_placement(
      'import alexnet_jax\n', xla_flags=mine, then='assert jax.device_count() == 2\n')
  assert placement == {'convolution': {'eigen'}, 'dot': {'eigen'}, 'reduce': {'ynnpack'}}
  assert flags == mine  # nothing added: the one flag the choice sets is the user's
  assert kernels.startswith('as $XLA_FLAGS says where it sets '
                            'xla_cpu_experimental_ynn_fusion_type itself')


def test_once_jax_has_started_its_flags_are_left_alone():
  placement, kernels, flags = subprocess_placement(
      'import jax\njax.devices()\nimport alexnet_jax\n', xla_flags=None)
  assert placement == {kind: {kernel} for kind, kernel in cpu_kernels.XLA_DEFAULT.items()}
  assert flags is None  # the compilation cache keys on $XLA_FLAGS: it must say what compiled
  assert kernels.startswith("XLA's own choice: JAX had started before alexnet_jax")


def test_another_jaxlib_keeps_xlas_choice(monkeypatch):
  monkeypatch.setattr(cpu_kernels, 'jaxlib_version', lambda: '0.99.0')
  monkeypatch.setenv('XLA_FLAGS', '--xla_dump_to=/tmp/x')
  assert cpu_kernels.apply() == (
      "XLA's own choice: the project's (convolution on eigen, dot on ynnpack, reduce on "
      'xla) was measured on jaxlib 0.10.2, this is 0.99.0')
  assert os.environ['XLA_FLAGS'] == '--xla_dump_to=/tmp/x'


def test_the_choice_was_measured_on_the_pinned_jaxlib():
  with open(os.path.join(ROOT, 'requirements.txt'), encoding='utf-8') as requirements:
    pinned = re.search(r'^jaxlib==(\S+)$', requirements.read(), re.MULTILINE).group(1)
  assert cpu_kernels.MEASURED_JAXLIB == pinned == cpu_kernels.jaxlib_version()


@pytest.mark.parametrize('choice', [
    dict(zip(cpu_kernels.KERNELS, kernels)) for kernels in
    [('ynnpack', 'ynnpack', 'ynnpack'), ('eigen', 'ynnpack', 'ynnpack'), ('eigen', 'onednn', 'xla'),
     ('ynnpack', 'eigen', 'xla'), ('eigen', 'eigen', 'ynnpack'), ('ynnpack', 'onednn', 'ynnpack')]])
def test_compiler_options_put_each_kind_where_the_choice_says(choice):
  compiled = jax.jit(operations).lower(*ARGS).compile(
      compiler_options=cpu_kernels.compiler_options(choice))
  assert placed(cpu_kernels.placement(compiled.as_text())) == {
      kind: {kernel} for kind, kernel in choice.items()}
  for got, want in zip(compiled(*ARGS), operations(*ARGS)):  # and compute the same
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_flags_name_xla_cpu_options_only_and_only_where_they_differ_from_xlas():
  assert cpu_kernels.xla_flags(cpu_kernels.XLA_DEFAULT) == {}
  onednn = {'convolution': 'ynnpack', 'dot': 'onednn', 'reduce': 'xla'}
  assert cpu_kernels.xla_flags(onednn) == {
      'xla_cpu_experimental_ynn_fusion_type': 'individual_convolution',
      'xla_cpu_experimental_onednn_fusion_type': 'dot', 'xla_cpu_use_onednn': 'true'}
  for kernels in [('eigen', 'eigen', 'xla'), ('eigen', 'ynnpack', 'ynnpack')]:
    flags = cpu_kernels.xla_flags(dict(zip(cpu_kernels.KERNELS, kernels)))
    assert flags and all(name.startswith('xla_cpu_') for name in flags)  # GPUs keep theirs
  with pytest.raises(ValueError, match=r"dot runs on one of \('ynnpack', 'onednn', 'eigen'\)"):
    cpu_kernels.xla_flags({'convolution': 'eigen', 'dot': 'cublas', 'reduce': 'xla'})


def test_with_flags_adds_only_the_flags_not_set():
  flags = {'xla_a': '1', 'xla_b': 'x,y'}
  assert cpu_kernels.with_flags('', flags) == '--xla_a=1 --xla_b=x,y'
  assert cpu_kernels.with_flags(' --xla_b=z  --xla_c ', flags) == '--xla_b=z --xla_c --xla_a=1'


def test_the_train_step_runs_its_convolutions_on_eigen_and_matches_xlas_default():
  """This process imported alexnet_jax before JAX started (conftest), so its steps compile
  under the project's choice: the narrow net's train step, compiled again under XLA's
  default, gives the same loss and gradients."""
  from alexnet_jax.run import distributed
  from alexnet_jax.training import optim
  from alexnet_jax.training import train_step
  from alexnet_jax.model.network import AlexNet
  from alexnet_jax.model.normalization import Normalization
  from benchmarks.train_step import synthetic_batch

  mesh = distributed.data_mesh()
  optimizer = optim.paper_sgd(0.9, 5e-4)
  network, state = train_step.init(
      lambda rngs: AlexNet('paper', 1000, 67, width=0.25, rngs=rngs), optimizer, 0, mesh)
  step = train_step.make_train_step(
      network, optimizer, optim.learning_rate_schedule('constant', 0.01, total_steps=1),
      Normalization(np.full((256, 256, 3), 120, np.float32), np.ones(3, np.float32)), 0, mesh)
  batch = distributed.global_batch(synthetic_batch(8, 67, np.random.default_rng(0)), mesh)
  ours = step.lower(state, batch).compile()
  xlas = step.lower(state, batch).compile(
      compiler_options=cpu_kernels.compiler_options(cpu_kernels.XLA_DEFAULT))
  assert placed(cpu_kernels.placement(ours.as_text()))['convolution'] == {'eigen'}
  assert placed(cpu_kernels.placement(xlas.as_text()))['convolution'] == {'ynnpack'}
  copy = jax.tree.map(jnp.copy, state)  # each call donates its state
  new_ours, metrics_ours = ours(state, batch)
  new_xlas, metrics_xlas = xlas(copy, batch)
  np.testing.assert_allclose(metrics_ours['train_loss'], metrics_xlas['train_loss'], rtol=1e-5)
  for got, want in zip(jax.tree.leaves(new_ours.params), jax.tree.leaves(new_xlas.params)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
