"""Which checkpoints are kept, and what a restore checks."""

import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import checkpoints as checkpoints_lib
from alexnet_jax.checkpoints import BEST_METRIC, Checkpoints, ModelMismatchError

MODEL = {'variant': 'paper', 'num_classes': 6, 'image_size': 67, 'width': 0.5}


def test_keeps_the_latest_and_the_best_by_eval_error(tmp_path):
  checkpoints = Checkpoints(str(tmp_path), keep=2, keep_best=1)
  errors = {1: 0.5, 2: 0.2, 3: 0.6, 4: None, 5: 0.7, 6: 0.8}  # None: saved without evaluation
  for step, error in errors.items():
    state = {'w': jnp.full((3,), float(step))}
    checkpoints.save(step, state, {'model': MODEL},
                     None if error is None else {BEST_METRIC: error})
    checkpoints.wait()
  assert checkpoints.all_steps() == [2, 5, 6]  # the best (0.2) and the latest two
  assert checkpoints.best_step() == 2
  checkpoints.close()

  # A resumed run reads the errors back from disk: the best survives its next saves.
  checkpoints = Checkpoints(str(tmp_path), keep=2, keep_best=1)
  assert checkpoints.best_step() == 2
  for step in (7, 8):
    checkpoints.save(step, {'w': jnp.full((3,), float(step))}, {'model': MODEL},
                     {BEST_METRIC: 0.9})
    checkpoints.wait()
  assert checkpoints.all_steps() == [2, 7, 8]
  restored, run = checkpoints.restore(2, {'w': jnp.zeros(3)}, MODEL)
  np.testing.assert_array_equal(restored['w'], [2.0, 2.0, 2.0])
  assert run == {'model': MODEL, 'format': checkpoints_lib.FORMAT}
  checkpoints.close()


@pytest.mark.parametrize('field,value', [('variant', 'torchvision'), ('num_classes', 1000),
                                         ('image_size', 227), ('width', 1.0)])
def test_restore_into_another_model_names_the_field(tmp_path, field, value):
  checkpoints = Checkpoints(str(tmp_path), keep=1, keep_best=0)
  checkpoints.save(1, {'w': jnp.zeros(3)}, {'model': MODEL})
  checkpoints.wait()
  with pytest.raises(ModelMismatchError) as error:
    checkpoints.restore(1, {'w': jnp.zeros(3)}, {**MODEL, field: value})
  assert str(error.value) == (
      f'the checkpoints in {tmp_path}/checkpoints are of a model with {field}='
      f'{MODEL[field]!r}, but the config asks for {field}={value!r}. Use the checkpoint\'s '
      f'value, or another --workdir to start a new run; nothing was overwritten.')
  assert checkpoints.all_steps() == [1]
  checkpoints.close()


def test_checkpoint_of_another_format_is_refused_with_the_versions(tmp_path, monkeypatch):
  checkpoints = Checkpoints(str(tmp_path), keep=1, keep_best=0)
  monkeypatch.setattr(checkpoints_lib, 'FORMAT', 1)  # as an older version wrote it
  checkpoints.save(1, {'w': jnp.zeros(3)}, {'model': MODEL})
  checkpoints.wait()
  monkeypatch.undo()
  with pytest.raises(ModelMismatchError, match=r'checkpoint 1 in .* was written by another '
                                               r'version of alexnet_jax \(checkpoint format 1; '
                                               r'this version reads 2\)'):
    checkpoints.restore(1, {'w': jnp.zeros(3)}, MODEL)
  checkpoints.close()
