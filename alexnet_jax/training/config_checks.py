"""Checks of a training config, run before any data is read or anything is compiled: its
fields, and, when a run resumes, what changed since the workdir's config.json.

Each problem is one line naming the field, what it holds, and what it may hold.
"""

from __future__ import annotations

import json

import ml_collections
from absl import logging

from alexnet_jax.errors import ConfigError
from alexnet_jax.model import network as model_lib
from alexnet_jax.model.normalization import MEAN_MODES
from alexnet_jax.training import optim

DTYPES = ('float32', 'bfloat16')
# What a checkpoint's data stream position and pixels mean: a resumed run that changed one of
# these would not continue the run it resumes (the shuffle order, the epoch boundaries, the
# crops or the normalisation would differ from those the checkpointed steps saw). The
# network's own fields (variant, width, classes, crop size) are the checkpoint's to refuse.
STREAM_FIELDS = ('seed', 'batch_size', 'dataset', 'train_split', 'resize_size',
                 'shuffle_buffer', 'fast_decode', 'mean', 'normalize_std', 'lighting_std')
# The checkpoint's velocity was built by its run's optimiser: SGD's and LARS's differ in scale
# by the trust ratios but not in structure, so the restore would take it without a word.
FIXED_AT_RESUME = STREAM_FIELDS + ('optimizer',)


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
  _choice(config, 'optimizer', optim.OPTIMIZERS)
  _choice(config, 'mean', MEAN_MODES)
  for field in ('batch_size', 'learning_rate', 'resize_size',
                'shuffle_buffer', 'keep_checkpoints', 'model.width', 'peer_timeout_seconds',
                'lars_trust_coefficient', 'workdir_lease_seconds'):
    _positive(config, field)
  for field in ('num_epochs', 'num_train_steps', 'log_every_steps', 'eval_every_steps',
                'checkpoint_every_steps',
                'eval_batch_size', 'weight_decay', 'momentum', 'lighting_std', 'warmup_epochs',
                'image_size', 'num_classes', 'keep_best_checkpoints', 'max_nonfinite_steps',
                'learning_rate_batch_size'):
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


def _flat(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def changes(saved: dict, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{field: (saved value, config's value)} for every field that differs, compared as they
  read back from config.json (tuples are lists there)."""
  old, new = _flat(saved), _flat(json.loads(config.to_json_best_effort()))
  return {field: (old.get(field), new.get(field)) for field in sorted(old.keys() | new.keys())
          if old.get(field) != new.get(field)}


def check_resume(saved: dict | None, config: ml_collections.ConfigDict, location: str,
                 allowed: tuple[str, ...] = ()) -> None:
  """Logs each field that differs from the config the run in `location` last ran with
  (`saved`, None if unknown); ConfigError for a change of a FIXED_AT_RESUME field not in
  `allowed`."""
  # A config.json written before config.optimizer existed is a run of the paper's SGD.
  changed = changes({'optimizer': 'sgd', **saved}, config) if saved is not None else {}
  if not changed:
    return
  logging.warning('Resuming %s with a changed config (its config.json -> now): %s.', location,
                  '; '.join(f'{field} {old!r} -> {new!r}'
                            for field, (old, new) in changed.items()))
  refused = [field for field in FIXED_AT_RESUME if field in changed and field not in allowed]
  if refused:
    listed = ', '.join(f'{field} ({changed[field][0]!r} -> {changed[field][1]!r})'
                       for field in refused)
    plural = 's' if len(refused) > 1 else ''
    stream = [field for field in refused if field in STREAM_FIELDS]
    reasons = []
    if stream:
      reasons.append(f'the checkpoint\'s data position, shuffle and pixels were drawn with the '
                     f'old value{"s" if len(stream) > 1 else ""}')
    if 'optimizer' in refused:
      reasons.append('the checkpoint\'s velocity was built by the old optimizer')
    raise ConfigError(
        f'resuming {location} with {listed} changed would not continue its run exactly: '
        f'{"; ".join(reasons)}. Resume with the old value{plural}, accept the change with '
        f'--allow_config_changes={",".join(refused)}, or start a new run in another --workdir; '
        f'nothing was changed.')
