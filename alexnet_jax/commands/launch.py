"""How every command starts: the console scripts (`launch:train` and so on, pyproject.toml),
`python train.py` and `python -m alexnet_jax.commands.X` all run the command through
`launch`, which imports the command's module and runs it, so that a Ctrl-C at any moment,
also while that module imports JAX and TensorFlow (seconds), ends the command with one line
and status 130, no traceback (docs/reliability.md).

Imports only the standard library, so that it is in place as soon as Python has imported the
`alexnet_jax` package (about 40 ms after the interpreter starts; a Ctrl-C before that is
Python's own traceback). The training loop handles a Ctrl-C itself, to save a checkpoint
first (`training.faults.Preemption`).
"""

from __future__ import annotations

import _thread
import functools
import importlib
import os
import signal
import sys
import threading

# The command modules of this package; `launch.<name>` runs one (the console scripts).
COMMANDS = ('train', 'evaluate', 'predict', 'plot', 'model', 'resize_dataset',
            'convert_torchvision')


def launch(module: str) -> None:
  """Imports the command module `module` (alexnet_jax.commands.train, ...) and runs it (its
  `run()`, which exits with the command's status). A Ctrl-C ends it with `Stopped by
  Ctrl-C.` and status 130, a shell's code for SIGINT."""
  sys.unraisablehook = functools.partial(deliver_ctrl_c_again, sys.unraisablehook)
  # While the module imports JAX and TensorFlow, a Ctrl-C stops at once, without raising:
  # raised inside a Python callback of their C++ extensions (nanobind's), KeyboardInterrupt
  # aborts the process (`terminate called ...`, seen once in five Ctrl-Cs 0.2 to 2 s after
  # the start). Nothing has been written yet.
  signal.signal(signal.SIGINT, lambda *_: stop())
  try:
    command = importlib.import_module(module)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command.run()
  except KeyboardInterrupt:
    # Nothing to save outside the training loop (which stops on a first Ctrl-C itself), and
    # what the command holds (its workdir, its checkpoints) was let go of on the way here.
    stop()
  finally:
    # The command is done; Python's exit handlers (JAX's, Orbax's) would print a Ctrl-C in
    # them as an ignored exception's traceback. Not after a stop, where a second Ctrl-C
    # already ends the process at once (SIGINT's default action).
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
      signal.signal(signal.SIGINT, lambda *_: stop())


def stop() -> None:
  """Ends the process after a Ctrl-C: `Stopped by Ctrl-C.` and status 130. At once, without
  Python's shutdown: a Ctrl-C that cut short JAX's set-up (compilation, a device transfer)
  can leave its threads where finalizing the interpreter crashes (a segmentation fault,
  seen once in ten Ctrl-Cs at random moments of start-up), and JAX's exit barrier would wait
  for the other processes of a multi-process run."""
  try:
    sys.stdout.flush()  # what the command printed, if a pipe still buffers it
  except (OSError, RuntimeError):  # a closed pipe; a write this signal interrupted
    pass
  print('Stopped by Ctrl-C.', file=sys.stderr, flush=True)
  os._exit(130)


def deliver_ctrl_c_again(hook, unraisable) -> None:
  """sys.unraisablehook: a Ctrl-C that landed where Python cannot raise it (a garbage
  collector callback, such as JAX's, or a `__del__`) would be printed as an ignored
  exception, and lost. It is signalled again a moment later, from another thread: signalled
  at once, it would be raised in this hook, and lost the same way."""
  if isinstance(unraisable.exc_value, KeyboardInterrupt):
    threading.Timer(0.1, _thread.interrupt_main).start()
  else:
    hook(unraisable)


def __getattr__(name: str):
  """`launch.train`, `launch.evaluate`, ...: each command's entry point."""
  if name in COMMANDS:
    return functools.partial(launch, f'{__package__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
