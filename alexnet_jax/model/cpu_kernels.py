"""Which kernels XLA:CPU runs each kind of operation on: the project's measured choice, and the
XLA flags that make it.

jaxlib 0.10.2's XLA:CPU can run

    a convolution (forward, input gradient, kernel gradient)  on YNNPACK or Eigen
    a dot (fc6-fc8 and their gradients)                       on YNNPACK, oneDNN or Eigen
    a reduction (bias gradients, the softmax's sums)          on YNNPACK or XLA's own loops

and by default sends all three to YNNPACK (`--xla_cpu_experimental_ynn_fusion_type` defaults
to `individual_dot,individual_convolution,reduce`, whatever its help text says), where the
train step's convolutions take 1.9x as long as on Eigen. `CHOICE` is the combination
`benchmarks/cpu_kernels.py` measured fastest over the whole train step, and the eval step
next: not always each operation's fastest alone, since a library call also decides what XLA
fuses around it (docs/performance.md).

`apply()`, which importing `alexnet_jax` calls, adds `CHOICE`'s flags to `$XLA_FLAGS` before
JAX starts its CPU backend, so that training, every command, the notebook, the tests and the
benchmarks run on it. A flag the user has set in `$XLA_FLAGS` keeps the user's value. Only
XLA:CPU reads these flags: programs for GPUs and TPUs are compiled as before. The choice was
measured on one jaxlib (`MEASURED_JAXLIB`); another may name its flags otherwise, and an
unknown flag in `$XLA_FLAGS` aborts the process, so there XLA's own choice stays.
"""

from __future__ import annotations

import collections
import importlib.metadata
import os
import re
import sys
from collections.abc import Mapping

# The jaxlib the choice was measured on (requirements.txt pins it; a test keeps the two equal).
MEASURED_JAXLIB = '0.10.2'

# Each kind of operation, and the kernels this jaxlib can run it on.
KERNELS = {
    'convolution': ('ynnpack', 'eigen'),
    'dot': ('ynnpack', 'onednn', 'eigen'),
    'reduce': ('ynnpack', 'xla'),
}
# XLA's own choice, with no flags.
XLA_DEFAULT = {'convolution': 'ynnpack', 'dot': 'ynnpack', 'reduce': 'ynnpack'}
# The fastest measured (benchmarks/cpu_kernels.py).
CHOICE = {'convolution': 'eigen', 'dot': 'ynnpack', 'reduce': 'xla'}

YNN_FUSION_TYPE = 'xla_cpu_experimental_ynn_fusion_type'
USE_ONEDNN = 'xla_cpu_use_onednn'
ONEDNN_FUSION_TYPE = 'xla_cpu_experimental_onednn_fusion_type'
# The YNNPACK fusion type that takes each kind of operation.
_YNN_TYPES = {'convolution': 'individual_convolution', 'dot': 'individual_dot',
              'reduce': 'reduce'}


def _checked(choice: Mapping[str, str]) -> Mapping[str, str]:
  if set(choice) != set(KERNELS):
    raise ValueError(f'a kernel choice names {sorted(KERNELS)}, got {sorted(choice)}')
  for kind, kernel in choice.items():
    if kernel not in KERNELS[kind]:
      raise ValueError(f'{kind} runs on one of {KERNELS[kind]}, not {kernel!r}')
  return choice


def _fusion_types(choice: Mapping[str, str]) -> dict[str, list[str]]:
  """The YNNPACK and oneDNN fusion types that put each kind of operation where `choice` says."""
  _checked(choice)
  return {YNN_FUSION_TYPE: [_YNN_TYPES[kind] for kind in KERNELS if choice[kind] == 'ynnpack'],
          ONEDNN_FUSION_TYPE: ['dot'] if choice['dot'] == 'onednn' else []}


def xla_flags(choice: Mapping[str, str]) -> dict[str, str]:
  """{flag: value}, as `$XLA_FLAGS` takes them, for the flags where `choice` differs from
  XLA's default."""
  types, default = _fusion_types(choice), _fusion_types(XLA_DEFAULT)
  flags = {name: ','.join(values) for name, values in types.items() if values != default[name]}
  if types[ONEDNN_FUSION_TYPE]:
    flags[USE_ONEDNN] = 'true'
  return flags


def compiler_options(choice: Mapping[str, str]) -> dict[str, str | bool]:
  """The same choice as options for one compilation, every flag set:
  `jax.jit(f).lower(...).compile(compiler_options=...)`, so that one process can compare
  several choices. They override `$XLA_FLAGS`."""
  types = _fusion_types(choice)
  as_enum = lambda names: ','.join(f'LIBRARY_FUSION_TYPE_{n.upper()}' for n in names)  # noqa: E731
  return {YNN_FUSION_TYPE: as_enum(types[YNN_FUSION_TYPE]),
          ONEDNN_FUSION_TYPE: as_enum(types[ONEDNN_FUSION_TYPE]),
          USE_ONEDNN: bool(types[ONEDNN_FUSION_TYPE])}


def _parsed(xla_flags_value: str) -> dict[str, str]:
  """{name: value} of an `$XLA_FLAGS` value ('' for a flag without `=value`)."""
  return dict((flag.lstrip('-').split('=', 1) + [''])[:2] for flag in xla_flags_value.split())


def with_flags(xla_flags_value: str, flags: Mapping[str, str]) -> str:
  """An `$XLA_FLAGS` value with `--name=value` added for each of `flags` it does not set
  already: a flag set there keeps its value."""
  already = _parsed(xla_flags_value)
  added = [f'--{name}={value}' for name, value in flags.items() if name not in already]
  return ' '.join([*xla_flags_value.split(), *added])


def describe(choice: Mapping[str, str]) -> str:
  return ', '.join(f'{kind} on {kernel}' for kind, kernel in _checked(choice).items())


# The HLO operations of each kind, and the fusions XLA hands to a library.
_OPCODES = {'convolution': 'convolution', 'dot': 'dot', 'reduce': 'reduce'}
_LIBRARY_FUSIONS = {'__ynn_fusion': 'ynnpack', '__onednn_fusion': 'onednn'}
# XLA's own kernel for each kind: what runs an operation no library takes.
OWN_KERNEL = {kind: kernels[-1] for kind, kernels in KERNELS.items()}


def placement(hlo_text: str) -> dict[str, collections.Counter]:
  """How many operations of each kind a compiled program (`compiled.as_text()`, optimised
  HLO) runs on each kernel: {'convolution': Counter({'eigen': 18}), ...}."""
  library_of = {}  # fused computation -> the library its fusion calls
  for line in hlo_text.splitlines():
    called = re.search(r'calls=%?([\w.\-]+)', line)
    kind = re.search(r'"kind":"(__\w+_fusion)"', line)
    if called and kind and kind.group(1) in _LIBRARY_FUSIONS:
      library_of[called.group(1)] = _LIBRARY_FUSIONS[kind.group(1)]
  counts = {kind: collections.Counter() for kind in KERNELS}
  computation = None
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%?([\w.\-]+) \(', line)
    if header:
      computation = header.group(1)
      continue
    op = re.search(r' = [^ ]+ ([a-z][\w-]*)\(', line)
    for kind, opcode in _OPCODES.items():
      if op and op.group(1) == opcode:
        counts[kind][library_of.get(computation, OWN_KERNEL[kind])] += 1
  return counts


def jaxlib_version() -> str:
  try:
    return importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return ''


def _backends_started() -> bool:
  bridge = sys.modules.get('jax._src.xla_bridge')  # not imported: no backend can have started
  started = getattr(bridge, 'backends_are_initialized', None)
  return bool(started and started())


# Which kernels XLA:CPU runs, in words, for the log of a run on a CPU: set by `apply`, which
# importing alexnet_jax calls.
APPLIED = 'XLA\'s own choice: alexnet_jax.model.cpu_kernels.apply() was not called'


def apply() -> str:
  """Adds `CHOICE`'s flags to `$XLA_FLAGS`, unless this is not the jaxlib they were measured
  on or JAX has started its backends already: XLA reads the variable once, when the first
  backend starts, and JAX's persistent compilation cache keys on it, so it must say what
  compiled. Returns, for the log, which kernels XLA:CPU runs, and keeps it in `APPLIED`."""
  global APPLIED
  APPLIED = _applied_choice()
  return APPLIED


def _applied_choice() -> str:
  version = jaxlib_version()
  if version != MEASURED_JAXLIB:
    return (f"XLA's own choice: the project's ({describe(CHOICE)}) was measured on jaxlib "
            f'{MEASURED_JAXLIB}, this is {version or "no jaxlib"}')
  flags = xla_flags(CHOICE)
  current = os.environ.get('XLA_FLAGS', '')
  if _backends_started() and with_flags(current, flags) != current:
    return ("XLA's own choice: JAX had started before alexnet_jax was imported, and reads "
            '$XLA_FLAGS only then')
  os.environ['XLA_FLAGS'] = with_flags(current, flags)
  current_values = _parsed(current)
  own = [name for name, value in flags.items() if current_values.get(name, value) != value]
  if own:
    return (f'as $XLA_FLAGS says where it sets {", ".join(own)} itself, else '
            f'{describe(CHOICE)} ($XLA_FLAGS={os.environ["XLA_FLAGS"]})')
  return f'{describe(CHOICE)} ($XLA_FLAGS={os.environ["XLA_FLAGS"]})'
