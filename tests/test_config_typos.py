"""A --config the user got wrong, on the command line: a field that does not exist, a value of
the wrong type, a config file that does not exist. Each is one `Error:` line and status 1,
before anything is read or written (alexnet_jax/commands/cli.py)."""

import pytest

from alexnet_jax import configs
from tests.test_train import run_cli

SHIPPED = ', '.join(configs.names())
TRAIN, CONVERT = 'train.py', '-m alexnet_jax.commands.convert_torchvision'


@pytest.mark.parametrize('command,flags,message', [
    (TRAIN, ['--config.model.widht=0.5'],
     '--config.model.widht: the config {default} has no field model.widht; did you mean '
     '--config.model.width or --config.model.init or --config.model.dtype?'),
    (TRAIN, ['--config.nosuchfield=3'],
     '--config.nosuchfield: the config {default} has no field nosuchfield; the file lists its '
     'fields.'),
    (TRAIN, ['--noconfig.cahce'],
     '--config.cahce: the config {default} has no field cahce; did you mean --config.cache?'),
    (TRAIN, ['--config=configs/imagenet.py', '--config.bach_size=3'],
     '--config.bach_size: the config configs/imagenet.py has no field bach_size; did you mean '
     '--config.batch_size or --config.eval_batch_size or --config.image_size?'),
    (TRAIN, ['--config.batch_size=abc'],
     "flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'; "
     'config.batch_size is 64 (int) in {default}.'),
    (TRAIN, ['--config=no/such/config.py'],
     f'the config file no/such/config.py does not exist. Give --config a config file or the '
     f'name of a shipped config ({SHIPPED}).'),
    # The other command with a --config (its default is torchvision.py).
    (CONVERT, ['--config.model.widht=0.5'],
     '--config.model.widht: the config {torchvision} has no field model.widht; did you mean '
     '--config.model.width or --config.model.init or --config.model.dtype?'),
    (CONVERT, ['--config.batch_size=1.5'],
     "flag --config.batch_size=1.5: invalid literal for int() with base 10: '1.5'; "
     'config.batch_size is 256 (int) in {torchvision}.'),
])
def test_a_config_mistake_is_one_error_line(command, flags, message, tmp_path):
  workdir = tmp_path / 'run'
  result = run_cli([*command.split(), f'--workdir={workdir}', *flags])
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == 'Error: ' + message.format(
      default=configs.path('default'), torchvision=configs.path('torchvision'))
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()


def test_a_flag_error_is_one_error_line(tmp_path):
  """absl's other flag errors too: an unknown flag, a required one missing."""
  result = run_cli(['train.py', f'--workdir={tmp_path}', '--nosuch=1'])
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      "Error: Unknown command line flag 'nosuch'; --helpfull lists the flags.")
  result = run_cli(['train.py'])
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      'Error: flag --workdir=None: Flag --workdir must have a value other than None; --helpfull '
      'lists the flags.')
