"""The path layer (alexnet_jax/files.py) and the workdir's run files (alexnet_jax/workdir.py)."""

import json
import os

import numpy as np
import pytest

pytest.importorskip('ml_collections')  # absent on accelerator machines with only jax

from alexnet_jax import files
from alexnet_jax.errors import MissingDataError
from alexnet_jax.model.normalization import Normalization
from alexnet_jax.run.workdir import Workdir


def test_local_paths_are_made_absolute_and_urls_are_kept(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(files.path('run')) == str(tmp_path / 'run')
  assert str(files.path('~/run')) == os.path.join(os.path.expanduser('~'), 'run')
  # Not a local path: `gs:/bucket/run` in the current directory would be the wrong place.
  assert str(files.path('gs://bucket/run') / 'config.json') == 'gs://bucket/run/config.json'


def test_a_file_is_replaced_whole_and_no_temporary_is_left(tmp_path):
  path = tmp_path / 'record.json'
  files.write_json(path, {'step': 1})
  files.write_json(path, {'step': 2})
  assert files.read_json(path) == {'step': 2}
  assert sorted(p.name for p in tmp_path.iterdir()) == ['record.json']


def test_run_files_round_trip_and_a_missing_one_is_named(tmp_path):
  from configs import default
  workdir = Workdir(tmp_path / 'run')
  with pytest.raises(MissingDataError, match=r'run/config\.json does not exist: .* is not the '
                                             r'workdir of a training run'):
    workdir.read_run_files()
  config = default.get_config()
  normalization = Normalization(np.arange(12, dtype=np.float32).reshape(2, 2, 3),
                                np.array([0.5, 0.25, 0.125], np.float32))
  workdir.write_run_files(config, normalization, ['circle', 'ring'])
  read_config, read_normalization, class_names = workdir.read_run_files()
  assert read_config.to_dict() == json.loads(config.to_json())  # tuples come back as lists
  np.testing.assert_array_equal(read_normalization.mean_image, normalization.mean_image)
  np.testing.assert_array_equal(read_normalization.pixel_scale, normalization.pixel_scale)
  assert class_names == ['circle', 'ring']
  assert workdir.holds_a_run() == ['config.json', 'normalization.npz']


def test_a_file_in_place_of_the_workdir_is_named_and_left_alone(tmp_path):
  from alexnet_jax.errors import WorkdirError
  (tmp_path / 'run').write_text('notes')
  with pytest.raises(WorkdirError) as error:
    Workdir(tmp_path / 'run').check_usable()
  assert str(error.value) == (f'the workdir {tmp_path}/run is a file, not a directory. Give '
                              f'--workdir a new or existing directory; the file was left as '
                              f'it is.')
  with pytest.raises(WorkdirError, match=rf'^the workdir {tmp_path}/run/a/b is inside '
                                         rf'{tmp_path}/run, which is a file, not a directory\.'):
    Workdir(tmp_path / 'run' / 'a' / 'b').check_usable()
  assert (tmp_path / 'run').read_text() == 'notes'
  Workdir(tmp_path / 'new' / 'run').check_usable()  # made later, by the run
  assert not (tmp_path / 'new').exists()


def test_a_workdir_that_cannot_be_written_is_named(tmp_path):
  """On a read-only filesystem (mounted in a private user and mount namespace), where even
  root cannot write."""
  import shutil
  import subprocess
  import sys
  from tests.test_reliability import can_mount_tmpfs
  if shutil.which('unshare') is None or not can_mount_tmpfs():
    pytest.skip('needs `unshare` and user namespaces to mount a read-only tmpfs')
  check = ('from alexnet_jax.run.workdir import Workdir; import sys; '
           'Workdir(sys.argv[1]).check_usable()')
  result = subprocess.run(
      ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
       f'mount -t tmpfs -o ro,size=1m tmpfs {tmp_path} && "$0" -c "$1" {tmp_path}/run',
       sys.executable, check], capture_output=True, text=True,
      cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'alexnet_jax.errors.WorkdirError: cannot write to {tmp_path} (no permission, or '
      f'read-only), so the workdir {tmp_path}/run cannot be made. Give --workdir a directory '
      f'you can write to.')
