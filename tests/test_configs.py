"""The shipped configs are valid and say how to run them; bad fields are named before any
data is read."""

import importlib
import inspect
import re

import pytest

pytest.importorskip('ml_collections')  # absent on accelerator machines with only jax

from alexnet_jax.model import network
from alexnet_jax.training import config_checks
from alexnet_jax.training.config_checks import ConfigError

CONFIGS = ('default', 'fashion_mnist', 'imagenet', 'imagenet_pod', 'imagenette', 'torchvision')


@pytest.mark.parametrize('name', CONFIGS)
def test_config_is_valid_and_its_docstring_gives_the_command(name):
  module = importlib.import_module(f'configs.{name}')
  config_checks.validate(module.get_config(), device_count=8)
  doc = inspect.getdoc(module)
  assert f'python train.py --config=configs/{name}.py --workdir=' in doc
  assert 'Hardware:' in doc and 'Expected result:' in doc


def test_imagenet_config_is_the_papers_recipe():
  from configs import imagenet
  config = imagenet.get_config()
  assert (config.dataset, config.num_classes, network.image_size(config)) == (
      'imagenet2012', 1000, 227)
  assert (config.batch_size, config.learning_rate, config.momentum, config.weight_decay) == (
      128, 0.01, 0.9, 5e-4)
  assert (config.lr_schedule, config.plateau_max_drops, config.lr_drop_factor) == (
      'plateau', 3, 0.1)
  assert (config.model.variant, config.model.init, config.model.width) == ('paper', 'paper', 1.0)
  assert (config.resize_size, config.mean, config.normalize_std) == (256, 'per_pixel', False)


def test_fashion_mnist_recipe_keeps_the_papers_network_and_is_chosen_without_the_test_split():
  from configs import fashion_mnist
  config = fashion_mnist.get_config()
  assert (config.model.variant, config.model.width, config.model.dropout_rate) == (
      'paper', 1.0, 0.5)
  assert (config.dataset, config.num_classes, config.eval_split) == ('fashion_mnist', 10, 'test')
  assert config.num_epochs <= 10
  doc = inspect.getdoc(fashion_mnist)
  for departure in ('Image size', 'Learning rate and schedule', 'Weight decay', 'dropout',
                    'Augmentation', 'Label smoothing', 'Init'):
    assert departure in doc
  assert "--config.train_split='train[:90%]' --config.eval_split='train[90%:]'" in doc


def bad(fields):
  from configs import default
  config = default.get_config()
  config.update_from_flattened_dict(fields)  # 'model.variant' names a nested field
  return config


@pytest.mark.parametrize('fields,devices,message', [
    ({'model.variant': 'vgg'}, 1,
     "config.model.variant='vgg' is not one of ['paper', 'paper_ungrouped', 'torchvision']."),
    ({'lr_schedule': 'linear'}, 1,
     "config.lr_schedule='linear' is not one of ['plateau', 'steps', 'cosine', 'polynomial', "
     "'constant']."),
    ({'optimizer': 'adam'}, 1, "config.optimizer='adam' is not one of ['sgd', 'lars']."),
    ({'lars_trust_coefficient': 0.0}, 1, 'config.lars_trust_coefficient=0.0 must be > 0.'),
    ({'learning_rate_batch_size': -128}, 1,
     'config.learning_rate_batch_size=-128 must be >= 0.'),
    ({'model.dtype': 'float16'}, 1,
     "config.model.dtype='float16' is not one of ['float32', 'bfloat16']."),
    ({'batch_size': 60}, 8,
     'config.batch_size=60 does not divide over the 8 devices: use a multiple of 8.'),
    ({'image_size': 40}, 1,
     "config.image_size=40 is below the smallest input of 'paper', 67."),
    ({'image_size': 80}, 1,
     'config.image_size=80 is larger than config.resize_size=76: the crop must fit in the '
     'resized square.'),
    ({'num_epochs': 0, 'num_train_steps': 0}, 1,
     'config.num_epochs and config.num_train_steps are both 0: set one of them to the length '
     'of the run.'),
    ({'num_train_steps': -5}, 1, 'config.num_train_steps=-5 must be >= 0.'),
    ({'learning_rate': 0.0}, 1, 'config.learning_rate=0.0 must be > 0.'),
])
def test_bad_field_is_named_with_its_valid_values(fields, devices, message):
  with pytest.raises(ConfigError) as error:
    config_checks.validate(bad(fields), device_count=devices)
  assert str(error.value) == message


def test_log_every_steps_of_0_is_once_per_epoch(tf):
  """log_every_steps=0 is valid and means once per epoch, as for eval_every_steps and
  checkpoint_every_steps; a negative value is refused. 1,000 training images in batches of 64
  are 15 steps an epoch."""
  from alexnet_jax.training.loop import Schedule
  config_checks.validate(bad({'log_every_steps': 0}), device_count=1)
  with pytest.raises(ConfigError) as error:
    config_checks.validate(bad({'log_every_steps': -1}), device_count=1)
  assert str(error.value) == 'config.log_every_steps=-1 must be >= 0.'
  per_epoch = Schedule.of(bad({'log_every_steps': 0}), num_train=1000)
  assert (per_epoch.steps_per_epoch, per_epoch.log_every, per_epoch.eval_every,
          per_epoch.checkpoint_every) == (15, 15, 15, 15)
  assert Schedule.of(bad({}), num_train=1000).log_every == 20  # the default config's
  assert Schedule.of(bad({'log_every_steps': 7}), num_train=1000).log_every == 7


@pytest.mark.parametrize('fields,message', [
    ({'dataset': 'imagenet2013'},
     "config.dataset='imagenet2013': unknown data set 'imagenet2013': use \"shapes\", a TFDS "
     "name such as \"imagenet2012\""),
    ({'train_split': 'trian'},
     "config.train_split='trian': shapes/1.1.0 has no split 'trian'; its splits are "
     "['train', 'validation']."),
    ({'eval_split': 'test'},
     "config.eval_split='test': shapes/1.1.0 has no split 'test'; its splits are "
     "['train', 'validation']."),
])
def test_unknown_data_set_or_split_names_the_field(tf, shapes_data_dir, fields, message):
  from alexnet_jax.data.sources import open_configured
  with pytest.raises(ConfigError) as error:
    open_configured(bad({'data_dir': shapes_data_dir, **fields}))
  assert str(error.value).startswith(message)


def test_class_count_that_differs_from_the_data_is_refused(tf, shapes_data_dir):
  from alexnet_jax.data.sources import open_configured
  config = bad({'num_classes': 1000, 'data_dir': shapes_data_dir})
  with pytest.raises(ConfigError, match='config.num_classes=1000 but shapes/1.1.0 has 6 '
                                        'classes: set it to 6, or 0 to follow the data.'):
    open_configured(config)


def saved_json(config):
  """The config as a workdir's config.json holds it."""
  import json
  return json.loads(config.to_json_best_effort())


def test_resume_logs_every_changed_field_and_refuses_one_that_breaks_exactness(caplog):
  saved = saved_json(bad({}))
  config = bad({'batch_size': 32, 'num_train_steps': 700, 'lr_drop_epochs': (10, 20)})
  with pytest.raises(ConfigError) as error:
    config_checks.check_resume(saved, config, '/runs/a')
  assert str(error.value) == (
      'resuming /runs/a with batch_size (64 -> 32) changed would not continue its run exactly: '
      "the checkpoint's data position, shuffle and pixels were drawn with the old value. Resume "
      'with the old value, accept the change with --allow_config_changes=batch_size, or start '
      'a new run in another --workdir; nothing was changed.')
  logged = ('Resuming /runs/a with a changed config (its config.json -> now): batch_size 64 -> '
            '32; lr_drop_epochs [30, 60, 80] -> [10, 20]; num_train_steps 0 -> 700.')
  assert [r.getMessage() for r in caplog.records] == [logged]
  caplog.clear()
  config_checks.check_resume(saved, config, '/runs/a', allowed=('batch_size',))
  assert [r.getMessage() for r in caplog.records] == [logged]


def test_resume_refuses_another_optimizer_and_reads_an_older_config_as_sgd(caplog):
  saved = saved_json(bad({}))
  with pytest.raises(ConfigError) as error:
    config_checks.check_resume(saved, bad({'optimizer': 'lars', 'seed': 1}), '/runs/a')
  assert str(error.value) == (
      "resuming /runs/a with seed (0 -> 1), optimizer ('sgd' -> 'lars') changed would not "
      "continue its run exactly: the checkpoint's data position, shuffle and pixels were drawn "
      "with the old value; the checkpoint's velocity was built by the old optimizer. Resume "
      'with the old values, accept the change with --allow_config_changes=seed,optimizer, or '
      'start a new run in another --workdir; nothing was changed.')
  # A config.json from before config.optimizer existed: a run of the paper's SGD, so 'sgd'
  # resumes it and 'lars' is refused.
  for field in ('optimizer', 'lars_trust_coefficient', 'learning_rate_batch_size'):
    del saved[field]
  caplog.clear()
  config_checks.check_resume(saved, bad({}), '/runs/a')
  assert [r.getMessage() for r in caplog.records] == [
      'Resuming /runs/a with a changed config (its config.json -> now): lars_trust_coefficient '
      'None -> 0.001; learning_rate_batch_size None -> 0.']
  with pytest.raises(ConfigError, match=r"^resuming /runs/a with optimizer \('sgd' -> 'lars'\)"):
    config_checks.check_resume(saved, bad({'optimizer': 'lars'}), '/runs/a')


@pytest.mark.parametrize('field', config_checks.FIXED_AT_RESUME)
def test_each_field_that_fixes_the_stream_is_refused_at_resume(field):
  from configs import default
  value = default.get_config()[field]
  changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v + 0.5,
             str: lambda v: v + 'x'}[type(value)](value)
  start = re.escape(f'resuming d with {field} ({value!r} -> {changed!r}) changed ')
  with pytest.raises(ConfigError, match=f'^{start}.*--allow_config_changes={field},'):
    config_checks.check_resume(saved_json(bad({})), bad({field: changed}), 'd')


def test_unchanged_config_or_no_saved_one_resumes_silently(caplog):
  config_checks.check_resume(saved_json(bad({})), bad({}), 'd')
  config_checks.check_resume(None, bad({'seed': 3}), 'd')
  assert not caplog.records
