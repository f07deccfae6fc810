"""The one pattern of every command (`alexnet-train`, `alexnet-evaluate`, ...): absl flags,
errors a user can act on as one `Error:` line, and the same logging.

Each command module has `define_flags()` and `main(argv)`, and its console entry point `run()`
calls `cli.run(main, define_flags)`; `python -m alexnet_jax.commands.X` does the same. Flags
are defined when the command runs, not on import, so that a notebook or a test can import
several commands' modules (which share flag names such as --workdir).
"""

from __future__ import annotations

import functools
import logging as python_logging
import os
import signal
import sys
from collections.abc import Callable

from absl import app, flags, logging

from alexnet_jax import configs
from alexnet_jax.errors import PeerLostError, StorageError, UserError


def define_workdir(help_text: str, required: bool = True) -> None:
  flags.DEFINE_string('workdir', None, help_text, required=required)


def define_step() -> None:
  flags.DEFINE_string('step', None, 'Checkpoint step, or "best" (the lowest evaluation top-1 '
                      'error); the latest when unset.')


def define_config(default: str, help_text: str) -> None:
  """--config: a config file, or the name of a shipped one (`alexnet_jax.configs`), with
  --config.FIELD=VALUE overrides; `default` is a shipped config's name."""
  from ml_collections import config_flags
  config_flags.DEFINE_config_file('config', configs.path(default), f'{help_text} A file, or the '
                                  f'name of a shipped config ({", ".join(configs.names())}); '
                                  f'override any field with --config.FIELD=VALUE.')


def with_config_files(argv: list[str]) -> list[str]:
  """`argv` with each --config value as `configs.resolve` makes it a file."""
  resolved = []
  for arg in argv:
    if arg.startswith('--config='):
      arg = '--config=' + configs.resolve(arg[len('--config='):])
    elif resolved and resolved[-1] == '--config':
      arg = configs.resolve(arg)
    resolved.append(arg)
  return resolved


def no_arguments(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')


def quiet_library_logs() -> None:
  """Keeps Orbax's per-save INFO lines (a dozen per checkpoint) and fsspec's and gcsfs's
  per-file ones out of the log; their warnings and errors still show."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or not any(
          f'{os.sep}{library}{os.sep}' in record.pathname
          for library in ('orbax', 'fsspec', 'gcsfs')))
  # gcsfs also logs, with a traceback, each error it then raises, which the command reports.
  python_logging.getLogger('gcsfs').setLevel(python_logging.CRITICAL)


def exit_on_user_error(main: Callable) -> Callable:
  """Wraps a command's main: a UserError ends the program with `Error: <message>` on stderr
  and status 1, a Ctrl-C with one line and status 130 (a shell's code for SIGINT); neither
  prints a traceback."""

  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except (PeerLostError, StorageError) as error:
      print(f'Error: {error}', file=sys.stderr, flush=True)
      # Not sys.exit: JAX's exit barrier would wait for the lost process until the timeout,
      # then abort with a stack dump that buries this message; Orbax's and gcsfs's exit
      # handlers would retry writes to storage that cannot be reached, for minutes.
      os._exit(1)
    except UserError as error:
      print(f'Error: {error}', file=sys.stderr, flush=True)
      # The message is the last line: a failed checkpoint write leaves Orbax's sibling write
      # tasks to fail the same way, and at exit its threads print "Event loop is closed"
      # tracebacks (and asyncio "exception was never retrieved") that would bury it. The
      # exit handlers still run; only their noise is dropped.
      python_logging.getLogger('asyncio').setLevel(python_logging.CRITICAL)
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, sys.stderr.fileno())
      sys.exit(1)
    except KeyboardInterrupt:
      # Outside the training loop, which saves and stops on a first Ctrl-C itself
      # (faults.Preemption): there is nothing to save. A second Ctrl-C ends the exit too.
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      print('Stopped by Ctrl-C.', file=sys.stderr, flush=True)
      sys.exit(130)

  return wrapped


def run(main: Callable[[list[str]], None], define_flags: Callable[[], None]) -> None:
  """Defines the command's flags, then runs `main` under absl with the shared handling."""
  defined_before = set(flags.FLAGS)
  define_flags()
  # --help lists the command's own flags, also when run through a console script (whose
  # module defines none).
  for name in set(flags.FLAGS) - defined_before:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

  def main_with_logging(argv):
    quiet_library_logs()
    return main(argv)

  app.run(exit_on_user_error(main_with_logging), argv=with_config_files(sys.argv))
