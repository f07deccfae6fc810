"""The commands leave the temp dir as they found it, also when killed: a run's files go to its
workdir, its data set's data_dir and the compilation cache, never to $TMPDIR, where nothing
would remove them."""

import os
import tempfile

import pytest

from tests.test_train import config_flags, run_cli, tiny_config


def assert_temp_dir_empty(directory, after):
  left = sorted(os.listdir(directory))
  assert not left, f'{after} left {len(left)} file(s) in the temp dir: {left[:10]}'


def empty_temp_dir(tmp_path):
  directory = tmp_path / 'temp'
  directory.mkdir()
  return directory


def test_tfds_builders_of_data_sets_not_prepared_leave_the_temp_dir_empty(tf, tmp_path,
                                                                        monkeypatch):
  """TFDS makes a directory in the temp dir for each such builder, and never removes it:
  here for the ImageNet class names that alexnet-predict shows, and a data set whose files
  are missing."""
  from alexnet_jax.data import imagenet_classes, sources
  from alexnet_jax.errors import MissingDataError
  temp_dir = empty_temp_dir(tmp_path)
  monkeypatch.setattr(tempfile, 'tempdir', str(temp_dir))
  assert len(imagenet_classes.wordnet_ids()) == 1000
  with pytest.raises(MissingDataError, match='imagenet2012 is not prepared yet'):
    sources.open_source('imagenet2012', data_dir=str(tmp_path / 'tfds'))
  assert_temp_dir_empty(temp_dir, 'making the builders')


def test_train_evaluate_predict_plot_and_resize_leave_the_temp_dir_empty(tf, tmp_path):
  """The whole cycle as a user runs it, from a data_dir where `shapes` is not prepared yet
  (the first run builds it), each command with $TMPDIR an empty directory."""
  from alexnet_jax.data.shapes_dataset import draw_example
  temp_dir, workdir = empty_temp_dir(tmp_path), tmp_path / 'run'
  image = tmp_path / 'circle.jpg'
  tf.io.write_file(str(image), tf.io.encode_jpeg(draw_example(1, 0)[0], quality=95))
  config = tiny_config(tmp_path / 'tfds', num_train_steps=4)
  commands = {
      'train.py': ['train.py', f'--workdir={workdir}', *config_flags(config)],
      'alexnet-evaluate': ['-m', 'alexnet_jax.commands.evaluate', f'--workdir={workdir}'],
      'alexnet-predict': ['-m', 'alexnet_jax.commands.predict', f'--workdir={workdir}',
                          str(image)],
      'alexnet-plot': ['-m', 'alexnet_jax.commands.plot', f'--workdir={workdir}'],
      'alexnet-resize-dataset': ['-m', 'alexnet_jax.commands.resize_dataset', '--dataset=shapes',
                                 f'--data_dir={config.data_dir}', '--splits=validation',
                                 '--size=32', f'--output_dir={tmp_path / "resized"}'],
  }
  for name, args in commands.items():
    result = run_cli(args, env={'TMPDIR': str(temp_dir)})
    assert result.returncode == 0, f'{name}: {result.stderr[-3000:]}'
    assert_temp_dir_empty(temp_dir, name)


def test_a_run_on_gcs_killed_mid_run_leaves_the_temp_dir_empty(tf, shapes_data_dir, tmp_path,
                                                               gcs):
  """SIGKILL once a run into gs:// has evaluated and uploaded its TensorBoard events: no exit
  handler runs, so whatever the run had put in $TMPDIR would stay there."""
  from alexnet_jax import files
  from tests.gcs_emulator import BUCKET
  from tests.test_gcs import objects
  from tests.test_reliability import start_cli, wait_for
  temp_dir, url = empty_temp_dir(tmp_path), f'gs://{BUCKET}/killed_with_a_temp_dir'
  config = tiny_config(shapes_data_dir, num_train_steps=10_000, eval_every_steps=4)
  process = start_cli(['train.py', f'--workdir={url}', *config_flags(config)],
                      env={'TMPDIR': str(temp_dir)})
  wait_for(lambda: files.path(url).exists() and any(
      name.startswith('tensorboard/events.out.tfevents.') for name in objects(url)),
           process, poll=0.2)
  process.kill()
  process.communicate(timeout=60)
  assert_temp_dir_empty(temp_dir, 'a killed train.py')
