"""Ctrl-C at any moment, sent as a terminal sends it (SIGINT to the command's process group):
while Python imports JAX and TensorFlow, while the run sets up, during an evaluation inside
training, during `alexnet-evaluate` (docs/reliability.md)."""

import json
import re
import time

import numpy as np
import pytest

from tests.test_reliability import (assert_same_final_parameters, checkpoint_entries, complete,
                                    ctrl_c, output_with_times, start_cli)
from tests.test_train import config_flags, final_params, read_metrics, run_cli, tiny_config


def ctrl_c_after(args, delay):
  """Starts the command, sends it a Ctrl-C `delay` seconds later; returns its exit status and
  output."""
  process = start_cli(args)
  time.sleep(delay)
  ctrl_c(process)
  output = process.communicate(timeout=120)[0]
  return process.returncode, output


def assert_stopped_in_one_line(returncode, output):
  """Stopped by the Ctrl-C with one line and no traceback: `Stopped by Ctrl-C.` and status 130
  before training starts, the loop's own stop (status 0) once it has."""
  assert 'Traceback' not in output and 'KeyboardInterrupt' not in output, output[-3000:]
  if 'Stopped by Ctrl-C at step' in output:
    assert returncode == 0, output[-3000:]
  else:
    assert returncode == 130, output[-3000:]
    assert output.strip().splitlines()[-1] == 'Stopped by Ctrl-C.', output[-3000:]


def test_ctrl_c_while_the_commands_import_is_one_line_and_status_130(shapes_data_dir, tmp_path):
  """A Ctrl-C 0.2 to 2 s after `python train.py` and `python -m alexnet_jax.commands.X` start,
  while they import JAX, TensorFlow and flax (before absl or our handlers run): one line,
  status 130. The workdir is then absent or resumable: the same command trains to the end."""
  config = tiny_config(shapes_data_dir, num_train_steps=4)
  args = ['train.py', f'--workdir={tmp_path / "run"}', *config_flags(config)]
  for delay in (0.2, 0.8, 2.0):
    assert_stopped_in_one_line(*ctrl_c_after(args, delay))
  assert_stopped_in_one_line(*ctrl_c_after(
      ['-m', 'alexnet_jax.commands.evaluate', f'--workdir={tmp_path / "run"}'], 0.5))
  result = run_cli(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert final_params(tmp_path / 'run')[0] == 4


@pytest.mark.slow
def test_ctrl_c_at_random_moments_of_start_up_leaves_a_resumable_workdir(shapes_data_dir,
                                                                        tmp_path):
  """A Ctrl-C at 10 random moments from 0.2 s after the start to the first training steps
  (about 8 s on 2 cores: imports, data, pixel statistics, compilation, the restore of a
  checkpoint) of a run too long to end first; each time one line and no traceback, and the
  workdir resumes: a run 5 steps longer than its last checkpoint trains to the end. About 2
  minutes."""
  config = tiny_config(shapes_data_dir, num_train_steps=100_000, checkpoint_every_steps=1,
                       log_every_steps=1)
  workdir = tmp_path / 'run'
  args = ['train.py', f'--workdir={workdir}', *config_flags(config)]
  for delay in np.random.default_rng(0).uniform(0.2, 9, 10):
    assert_stopped_in_one_line(*ctrl_c_after(args, delay))
  steps = (complete(checkpoint_entries(workdir)) or [0])[-1] + 5
  result = run_cli([*args, f'--config.num_train_steps={steps}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert final_params(workdir)[0] == steps


def long_evaluation_config(data_dir, **overrides):
  """Evaluations that take seconds on `shapes`: the 3,000 training images in 10 crops, 8 at a
  time."""
  return tiny_config(data_dir, **{'eval_split': 'train', 'ten_crop_eval': True,
                                  'eval_batch_size': 8, **overrides})


def test_ctrl_c_during_an_evaluation_stops_at_once_and_the_resume_runs_it(shapes_data_dir,
                                                                          tmp_path):
  """A Ctrl-C during the evaluation at step 4 of 8: the run stops within seconds (not at the
  end of the evaluation), saves step 4 without that evaluation's score and exits 0; the same
  command resumes at step 4, runs that evaluation first, and ends at the parameters of an
  uninterrupted run, with one evaluation logged at step 4 and one at step 8."""
  from alexnet_jax.training.loop import train_and_evaluate
  config = long_evaluation_config(shapes_data_dir, num_train_steps=8, eval_every_steps=4,
                                  log_every_steps=4)
  workdir = tmp_path / 'run'
  args = ['train.py', f'--workdir={workdir}', *config_flags(config)]
  process = start_cli(args)
  for line in process.stdout:  # logged after step 4, before its evaluation
    if 'step 4/8' in line:
      break
  time.sleep(1)
  ctrl_c(process)
  asked = time.monotonic()
  lines, ended = output_with_times(process)
  output = ''.join(line for _, line in lines)
  assert process.returncode == 0, output[-3000:]
  (stopped, _), = [(t, line) for t, line in lines
                   if re.search(r'Stopped by Ctrl-C at step 4; checkpoint saved in', line)]
  assert 'eval top-1 error' not in output and 'Traceback' not in output
  assert stopped - asked < 5, f'stopped {stopped - asked:.1f} s after the Ctrl-C'
  assert complete(checkpoint_entries(workdir)) == [4]

  result = run_cli(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from checkpoint 4 ' in result.stderr
  assert [m['step'] for m in read_metrics(workdir) if 'eval_top1_error' in m] == [4, 8]
  # The steps schedule: evaluations do not change the training, so the uninterrupted run
  # needs none but the last, on the validation split.
  straight = tmp_path / 'straight'
  train_and_evaluate(tiny_config(shapes_data_dir, num_train_steps=8), str(straight))
  assert_same_final_parameters(straight, workdir, 8)


def test_ctrl_c_during_alexnet_evaluate_is_one_line_and_writes_nothing(shapes_data_dir,
                                                                       tmp_path):
  """`alexnet-evaluate` stopped by a Ctrl-C while it scores a checkpoint: one line, status
  130, and no eval-<step>.json."""
  from alexnet_jax.training.loop import train_and_evaluate
  workdir = tmp_path / 'run'
  train_and_evaluate(long_evaluation_config(shapes_data_dir, num_train_steps=2,
                                            eval_split='validation'), str(workdir))
  process = start_cli(['-m', 'alexnet_jax.commands.evaluate', f'--workdir={workdir}',
                       '--split=train'])
  for line in process.stdout:  # the data set opened, the evaluation (about 6 s) next
    if 'Load dataset info' in line:
      break
  time.sleep(1.5)
  ctrl_c(process)
  output = process.communicate(timeout=60)[0]
  assert_stopped_in_one_line(process.returncode, output)
  assert 'checkpoint 2 of' not in output  # the report was not printed
  assert not list(workdir.glob('eval-*.json'))
  assert json.loads((workdir / 'config.json').read_text())['eval_batch_size'] == 8
