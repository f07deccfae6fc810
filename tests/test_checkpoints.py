"""Which checkpoints are kept, and what a restore checks."""

import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.errors import ModelMismatchError
from alexnet_jax.run import checkpoints as workdir_lib
from alexnet_jax.run.checkpoints import BEST_METRIC, Checkpoints, RunRecord
from alexnet_jax.run.workdir import Workdir

MODEL = {'variant': 'paper', 'num_classes': 6, 'image_size': 67, 'width': 0.5}
RECORD = RunRecord(MODEL, positions=[17, 21], skipped_images=[0, 2], process_count=2)


def test_keeps_the_latest_and_the_best_by_eval_error(tmp_path):
  checkpoints = Checkpoints(Workdir(tmp_path), keep=2, keep_best=1)
  errors = {1: 0.5, 2: 0.2, 3: 0.6, 4: None, 5: 0.7, 6: 0.8}  # None: saved without evaluation
  for step, error in errors.items():
    state = {'w': jnp.full((3,), float(step))}
    checkpoints.save(step, state, RECORD,
                     None if error is None else {BEST_METRIC: error})
    checkpoints.wait()
  assert checkpoints.all_steps() == [2, 5, 6]  # the best (0.2) and the latest two
  assert checkpoints.best_step() == 2
  checkpoints.close()

  # A resumed run reads the errors back from disk: the best survives its next saves.
  checkpoints = Checkpoints(Workdir(tmp_path), keep=2, keep_best=1)
  assert checkpoints.best_step() == 2
  for step in (7, 8):
    checkpoints.save(step, {'w': jnp.full((3,), float(step))}, RECORD,
                     {BEST_METRIC: 0.9})
    checkpoints.wait()
  assert checkpoints.all_steps() == [2, 7, 8]
  restored, run = checkpoints.restore(2, {'w': jnp.zeros(3)}, MODEL)
  np.testing.assert_array_equal(restored['w'], [2.0, 2.0, 2.0])
  assert run == RECORD and run.format == workdir_lib.FORMAT
  checkpoints.close()


@pytest.mark.parametrize('field,value', [('variant', 'torchvision'), ('num_classes', 1000),
                                         ('image_size', 227), ('width', 1.0)])
def test_restore_into_another_model_names_the_field(tmp_path, field, value):
  checkpoints = Checkpoints(Workdir(tmp_path), keep=1, keep_best=0)
  checkpoints.save(1, {'w': jnp.zeros(3)}, RECORD)
  checkpoints.wait()
  with pytest.raises(ModelMismatchError) as error:
    checkpoints.restore(1, {'w': jnp.zeros(3)}, {**MODEL, field: value})
  assert str(error.value) == (
      f'the checkpoints in {tmp_path}/checkpoints are of a model with {field}='
      f'{MODEL[field]!r}, but the config asks for {field}={value!r}. Use the checkpoint\'s '
      f'value, or another --workdir to start a new run; nothing was overwritten.')
  assert checkpoints.all_steps() == [1]
  checkpoints.close()


def test_checkpoint_of_another_format_is_refused_with_the_versions(tmp_path):
  checkpoints = Checkpoints(Workdir(tmp_path), keep=1, keep_best=0)
  # As an older version wrote it.
  checkpoints.save(1, {'w': jnp.zeros(3)}, RunRecord(MODEL, [0], [0], 1, format=2))
  checkpoints.wait()
  with pytest.raises(ModelMismatchError, match=r'checkpoint 1 in .* was written by another '
                                               r'version of alexnet_jax \(checkpoint format 2; '
                                               r'this version reads 3\)'):
    checkpoints.restore(1, {'w': jnp.zeros(3)}, MODEL)
  checkpoints.close()


def test_save_cadence_is_every_n_steps_and_never_a_saved_step_again(tmp_path):
  """Orbax decides the cadence: every `save_every` steps, not step 1 of a new run, and not a
  step at or before the latest checkpoint (an evaluation's save may have taken it)."""
  checkpoints = Checkpoints(Workdir(tmp_path), keep=5, keep_best=0, save_every=3)
  due = [step for step in range(1, 10) if checkpoints.should_save(step)]
  assert due == [3, 6, 9]
  checkpoints.save(7, {'w': jnp.zeros(3)}, RECORD)
  checkpoints.wait()
  assert [step for step in (6, 7, 9) if checkpoints.should_save(step)] == [9]
  checkpoints.close()


def test_stream_resumes_where_each_process_stopped_or_at_the_nominal_position():
  """The record interprets itself: the same number of processes resume their exact positions
  and skip counts; another number restarts at the step's nominal position, with no skips."""
  assert RECORD.stream_start(10, process_index=1, process_count=2, host_batch_size=2) == (21, 2)
  assert RECORD.stream_start(10, process_index=0, process_count=1, host_batch_size=4) == (40, 0)
  assert RunRecord.start(MODEL, 3) == RunRecord(MODEL, [0, 0, 0], [0, 0, 0], 3)
