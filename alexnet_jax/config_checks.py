"""Checks of a training config, run before any data is read or anything is compiled.

Each problem is one line naming the field, what it holds, and what it may hold.
"""

from __future__ import annotations

import ml_collections

from alexnet_jax import model as model_lib
from alexnet_jax import optim
from alexnet_jax.errors import ConfigError
from alexnet_jax.pixels import MEAN_MODES

DTYPES = ('float32', 'bfloat16')


def _choice(config, field: str, choices) -> None:
  value = _get(config, field)
  if value not in choices:
    raise ConfigError(f'config.{field}={value!r} is not one of {list(choices)}.')


def _positive(config, field: str, allow_zero: bool = False) -> None:
  value = _get(config, field)
  if not (value >= 0 if allow_zero else value > 0):
    bound = '>= 0' if allow_zero else '> 0'
    raise ConfigError(f'config.{field}={value!r} must be {bound}.')


def _get(config, field: str):
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def validate(config: ml_collections.ConfigDict, device_count: int) -> None:
  """Raises ConfigError naming the first field that cannot work."""
  _choice(config, 'model.variant', sorted(model_lib.ARCHITECTURES))
  _choice(config, 'model.dtype', DTYPES)
  _choice(config, 'model.init', ('paper', 'he'))
  _choice(config, 'model.grouped_conv', ('split', 'xla'))
  _choice(config, 'lr_schedule', optim.SCHEDULES)
  _choice(config, 'mean', MEAN_MODES)
  for field in ('batch_size', 'learning_rate', 'log_every_steps', 'resize_size',
                'shuffle_buffer', 'keep_checkpoints', 'model.width', 'peer_timeout_seconds'):
    _positive(config, field)
  for field in ('num_epochs', 'num_train_steps', 'eval_every_steps', 'checkpoint_every_steps',
                'eval_batch_size', 'weight_decay', 'momentum', 'lighting_std', 'warmup_epochs',
                'image_size', 'num_classes', 'keep_best_checkpoints', 'max_nonfinite_steps'):
    _positive(config, field, allow_zero=True)
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError('config.num_epochs and config.num_train_steps are both 0: set one of '
                      'them to the length of the run.')
  if not config.dataset:
    raise ConfigError("config.dataset is empty: name a TFDS data set, a prepared directory, "
                      "folder:/path or 'shapes'.")
  for field in ('batch_size', 'eval_batch_size'):
    value = config[field]
    if value % device_count:
      raise ConfigError(f'config.{field}={value} does not divide over the {device_count} '
                        f'devices: use a multiple of {device_count}.')
  size = model_lib.image_size(config)
  smallest = model_lib.min_image_size(config.model.variant)
  if size < smallest:
    raise ConfigError(f'config.image_size={size} is below the smallest input of '
                      f'{config.model.variant!r}, {smallest}.')
  if size > config.resize_size:
    raise ConfigError(f'config.image_size={size} is larger than config.resize_size='
                      f'{config.resize_size}: the crop must fit in the resized square.')
