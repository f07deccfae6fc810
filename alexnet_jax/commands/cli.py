"""The one pattern of every command (`alexnet-train`, `alexnet-evaluate`, ...): absl flags,
errors a user can act on as one `Error:` line, and the same logging.

Each command module has `define_flags()` and `main(argv)`, and its `run()` calls
`cli.run(main, define_flags)`; every way of starting a command runs that through
`commands.launch` (which turns a Ctrl-C at any moment into one line). Flags are defined when
the command runs, not on import, so that a notebook or a test can import several commands'
modules (which share flag names such as --workdir). A flag the user got wrong (a config file
or field that does not exist, a value of the wrong type) is one `Error:` line too.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging as python_logging
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags, logging

from alexnet_jax import configs
from alexnet_jax.errors import ConfigError, PeerLostError, StorageError, UserError


def define_workdir(help_text: str, required: bool = True) -> None:
  flags.DEFINE_string('workdir', None, help_text, required=required)


def define_step() -> None:
  flags.DEFINE_string('step', None, 'Checkpoint step, or "best" (the lowest evaluation top-1 '
                      'error); the latest when unset.')


def define_config(default: str, help_text: str) -> None:
  """--config: a config file, or the name of a shipped one (`alexnet_jax.configs`), with
  --config.FIELD=VALUE overrides; `default` is a shipped config's name. A config file or an
  overridden field that does not exist is a ConfigError (ml_collections would raise a
  traceback, or only when the config is first read)."""
  from ml_collections import config_flags
  argv = with_config_files(sys.argv)
  check_config_fields(config_file(argv) or configs.path(default), argv)
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


def config_file(argv: list[str]) -> str | None:
  """The last --config value of `argv` (as ml_collections reads it: a file, optionally
  `:argument`); None without one."""
  value = None
  for previous, arg in zip(['', *argv], argv):
    if arg.startswith('--config='):
      value = arg[len('--config='):]
    elif previous == '--config':
      value = arg
  return value


def field_names(config, prefix: str = '') -> list[str]:
  """Every field of an ml_collections config by its dotted name (model, model.width, ...)."""
  import ml_collections
  names = []
  for name, value in config.items():
    names.append(prefix + name)
    if isinstance(value, ml_collections.ConfigDict):
      names += field_names(value, f'{prefix}{name}.')
  return names


def load_config(value: str):
  """The config a --config value names, loaded as ml_collections loads it: the file's
  `get_config()`, given what follows a colon."""
  file, *argument = value.split(':', 1)
  spec = importlib.util.spec_from_file_location('alexnet_jax_config_to_check', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*argument)


def check_config_fields(value: str, argv: list[str]) -> None:
  """Raises ConfigError for a config file (`value`, as --config takes it) that does not
  exist, or an override in `argv` (--config.FIELD=VALUE, --[no]config.FIELD) of a field it
  does not have, naming the closest fields."""
  file = value.partition(':')[0]
  if not os.path.isfile(file):
    raise ConfigError(f'the config file {file} does not exist. Give --config a config file or '
                      f'the name of a shipped config ({", ".join(configs.names())}).')
  overrides = [match[1] for match in map(re.compile(r'--?(?:no)?config\.([^=]+)').match, argv)
               if match]
  if not overrides:
    return
  names = field_names(load_config(value))
  for field in overrides:
    if field not in names:
      close = difflib.get_close_matches(field, names, n=3)
      hint = (f'did you mean {" or ".join(f"--config.{name}" for name in close)}?' if close
              else 'the file lists its fields.')
      raise ConfigError(f'--config.{field}: the config {file} has no field {field}; {hint}')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (app.run's flags_parser), with a flag it rejects (a value of the
  wrong type, an unknown flag, a required one missing) as a ConfigError instead of absl's
  two lines."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    field = re.match(r'flag --config\.([\w.]+)=', str(error))
    if field:  # the overridden field's type and value in the config
      config = flags.FLAGS['config']
      config_value = functools.reduce(getattr, field[1].split('.'), config.value)
      hint = (f'config.{field[1]} is {config_value!r} ({type(config_value).__name__}) in '
              f'{config.config_filename}')
    else:
      hint = '--helpfull lists the flags'
    raise ConfigError(f'{str(error).rstrip(".")}; {hint}.') from None


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
  """Wraps a command's main (and its flag definition and parsing): a UserError ends the
  program with `Error: <message>` on stderr and status 1, no traceback (a Ctrl-C is
  `commands.launch`'s)."""

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

  return wrapped


def run(main: Callable[[list[str]], None], define_flags: Callable[[], None]) -> None:
  """Defines the command's flags, then runs `main` under absl with the shared handling."""
  defined_before = set(flags.FLAGS)
  exit_on_user_error(define_flags)()
  # --help lists the command's own flags, also when run through a console script (whose
  # module defines none).
  for name in set(flags.FLAGS) - defined_before:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

  def main_with_logging(argv):
    quiet_library_logs()
    return main(argv)

  app.run(exit_on_user_error(main_with_logging), argv=with_config_files(sys.argv),
          flags_parser=exit_on_user_error(parse_flags))
