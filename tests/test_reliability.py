"""Faults provoked for real (docs/reliability.md): the training command killed with SIGTERM
and with SIGKILL in the middle of writing a checkpoint, a disk that fills up, a loss that
becomes NaN, a process of a two-process run that dies, corrupt and odd images, bad configs."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.test_train import ROOT, config_flags, final_params, read_metrics, run_cli, tiny_config

CLI_ENV = {'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2'}


def start_cli(args, env=None):
  """The command in a session of its own, as a shell starts a job: a terminal's Ctrl-C goes
  to its whole process group (`ctrl_c`)."""
  return subprocess.Popen([sys.executable, *args], cwd=ROOT,
                          env={**os.environ, **CLI_ENV, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)


def ctrl_c(process):
  """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
  os.killpg(process.pid, signal.SIGINT)


def catches_sigint(process):
  """Whether the process has a handler for SIGINT (its /proc status, SigCgt mask)."""
  with open(f'/proc/{process.pid}/status') as status:
    mask = next(line for line in status if line.startswith('SigCgt:')).split()[1]
  return bool(int(mask, 16) >> (signal.SIGINT - 1) & 1)


def output_with_times(process):
  """The process's output lines, each with the time it arrived, and the time it ended."""
  lines = [(time.monotonic(), line) for line in process.stdout]
  process.wait()
  return lines, time.monotonic()


def wait_for(condition, process, timeout=240, poll=0.05):
  deadline = time.time() + timeout
  while not condition():
    if process.poll() is not None:
      pytest.fail(f'exited before the fault was provoked:\n{process.stdout.read()[-3000:]}')
    assert time.time() < deadline, 'timed out waiting'
    time.sleep(poll)


def logged_steps(workdir):
  path = workdir / 'metrics.jsonl'
  return len(path.read_text().splitlines()) if path.exists() else 0


def checkpoint_entries(workdir):
  directory = workdir / 'checkpoints'
  return os.listdir(directory) if directory.exists() else []


def partial(entries):
  return [name for name in entries if 'orbax-checkpoint-tmp' in name]


def complete(entries):
  return sorted(int(name) for name in entries if name.isdigit())


def kill_while_writing(process, workdir, after):
  """SIGKILL while a checkpoint after step `after` is half-written. A write can finish between
  seeing its partial directory and the kill, so the process is frozen first (SIGSTOP stops
  every thread, Orbax's writers too): killed if the partial directory is still there,
  resumed to try the next checkpoint if not."""
  latest = lambda: (complete(checkpoint_entries(workdir)) or [-1])[-1]  # noqa: E731
  while True:
    wait_for(lambda: partial(checkpoint_entries(workdir)) and latest() >= after, process,
             poll=0.001)
    os.killpg(process.pid, signal.SIGSTOP)
    if partial(checkpoint_entries(workdir)):
      process.kill()
      return
    os.killpg(process.pid, signal.SIGCONT)


def reference_and_command(data_dir, tmp_path, steps, keep):
  """A run that logs and saves every step: trained to the end in this process (the
  uninterrupted reference, in tmp_path/'straight'), and the command line that runs it in
  tmp_path/'interrupted'."""
  from alexnet_jax.training.loop import train_and_evaluate
  config = tiny_config(data_dir, num_train_steps=steps, log_every_steps=1,
                       checkpoint_every_steps=1, keep_checkpoints=keep)
  straight, workdir = tmp_path / 'straight', tmp_path / 'interrupted'
  train_and_evaluate(config, str(straight))
  return straight, workdir, ['train.py', f'--workdir={workdir}', *config_flags(config)]


def assert_same_final_parameters(straight, workdir, steps):
  (step_a, a), (step_b, b) = final_params(straight), final_params(workdir)
  assert step_a == step_b == steps
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def stop_and_read(process, interrupt):
  """Sends `interrupt`, then returns the process's output and how many seconds after its
  'Stopped by' line it exited."""
  interrupt(process)
  lines, ended = output_with_times(process)
  output = ''.join(line for _, line in lines)
  assert process.returncode == 0, output[-3000:]
  (stopped_at, _), = [(t, line) for t, line in lines if 'Stopped by' in line]
  assert 'Traceback' not in output and 'KeyboardInterrupt' not in output
  return output, ended - stopped_at


def test_sigterm_ctrl_c_and_kills_resume_to_the_uninterrupted_result(tf, shapes_data_dir,
                                                                     tmp_path):
  """One run stopped four times, each followed by the same command:
  - SIGTERM (a preemption): saves at the step reached, says how to resume, exits 0;
  - Ctrl-C as a terminal sends it: the same, saying so first;
  - Ctrl-C twice: the second ends the process at once (killed by SIGINT);
  - SIGKILL while a checkpoint is half-written (the partial directory is left behind).
  Each stopped run exits within seconds of saying it stopped (a preempted VM gets about
  30 s); each resume starts from the newest complete checkpoint (and removes a partial one);
  the run ends with the parameters and the logged losses of an uninterrupted run, bit for
  bit."""
  steps = 40
  straight, workdir, args = reference_and_command(shapes_data_dir, tmp_path, steps, keep=3)
  latest = lambda: complete(checkpoint_entries(workdir))[-1]  # noqa: E731

  process = start_cli(args)
  wait_for(lambda: logged_steps(workdir) >= 5, process)
  output, exit_delay = stop_and_read(process, lambda p: p.send_signal(signal.SIGTERM))
  stop = int(re.search(r'Stopped by SIGTERM at step (\d+); checkpoint saved in .*\. Run the '
                       r'same command again to resume\.', output).group(1))
  assert latest() == stop == max(m['step'] for m in read_metrics(workdir))
  assert exit_delay < 10, f'exited {exit_delay:.1f} s after saying it stopped'

  process = start_cli(args)
  wait_for(lambda: logged_steps(workdir) >= stop + 4, process)
  output, exit_delay = stop_and_read(process, ctrl_c)
  assert f'Resumed from checkpoint {stop} ' in output  # SIGTERM lost no step
  assert re.search(r'Ctrl-C: saving a checkpoint at the end of this step, then stopping\. '
                   r'Ctrl-C again stops at once; the run would then resume from step \d+\.',
                   output)
  previous, stop = stop, int(re.search(r'Stopped by Ctrl-C at step (\d+); checkpoint saved in '
                                       r'.*\. Run the same command again to resume\.',
                                       output).group(1))
  assert latest() == stop > previous
  assert exit_delay < 10, f'exited {exit_delay:.1f} s after saying it stopped'

  process = start_cli(args)
  wait_for(lambda: logged_steps(workdir) >= stop + 4, process)
  ctrl_c(process)
  # The first is handled once SIGINT is no longer caught; saving and exiting take seconds.
  wait_for(lambda: not catches_sigint(process), process, timeout=30, poll=0.001)
  ctrl_c(process)
  output = process.communicate(timeout=30)[0]
  assert process.returncode == -signal.SIGINT, output[-3000:]
  assert f'Resumed from checkpoint {stop} ' in output
  stop = latest()

  process = start_cli(args)
  kill_while_writing(process, workdir, after=stop + 3)
  output = process.communicate(timeout=60)[0]
  assert f'Resumed from checkpoint {stop} ' in output
  entries = checkpoint_entries(workdir)
  assert partial(entries), f'the kill did not land mid-write: {entries}'

  result = run_cli(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resumed from checkpoint {complete(entries)[-1]} ' in result.stderr
  assert not partial(checkpoint_entries(workdir))
  assert_same_final_parameters(straight, workdir, steps)
  losses = lambda w: [(m['step'], m['train_loss']) for m in read_metrics(w)  # noqa: E731
                      if 'train_loss' in m]
  # Each step logged once; the first step after each of the 4 restarts is not logged (its
  # time includes compilation), the rest equal the uninterrupted run's.
  assert set(losses(workdir)) <= set(losses(straight))
  assert len(losses(workdir)) == len(losses(straight)) - 4


def can_mount_tmpfs():
  probe = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
                          'mount -t tmpfs -o size=1m tmpfs /mnt'], capture_output=True)
  return probe.returncode == 0


@pytest.mark.skipif(shutil.which('unshare') is None or not can_mount_tmpfs(),
                    reason='needs `unshare` and user namespaces to mount a small tmpfs')
def test_full_disk_is_named_and_the_earlier_checkpoints_stay_restorable(
    tf, shapes_data_dir, tmp_path):
  """The workdir on a 6 MB tmpfs, mounted in a private user and mount namespace (`unshare`,
  no root needed): the third 2.5 MB checkpoint does not fit. The run stops with one line
  naming the full disk and the last complete checkpoint; copied to a disk with room, the
  workdir resumes from that checkpoint, deletes what is left of the partial one, and
  finishes."""
  config = tiny_config(shapes_data_dir, num_train_steps=10, checkpoint_every_steps=2,
                       keep_checkpoints=10)
  workdir, copy = tmp_path / 'small_disk', tmp_path / 'copy'
  workdir.mkdir()
  copy.mkdir()
  script = ('mount -t tmpfs -o size=6m tmpfs "$WORKDIR" || exit 99; "$@"; status=$?; '
            'cp -a "$WORKDIR/." "$COPY"; exit $status')
  result = subprocess.run(
      ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script, 'sh',
       sys.executable, 'train.py', f'--workdir={workdir}', *config_flags(config)],
      cwd=ROOT, env={**os.environ, **CLI_ENV, 'WORKDIR': str(workdir), 'COPY': str(copy)},
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  last_line = result.stderr.strip().splitlines()[-1]
  match = re.fullmatch(
      rf'Error: the disk holding {workdir} is full \(no space left on device\) at step \d+\. '
      rf'The last complete checkpoint is step (\d+) in {workdir}/checkpoints, intact\. Free '
      rf'some space, then run the same command to resume from it \(it first deletes any '
      rf'partial checkpoint\)\.', last_line)
  assert match, result.stderr[-3000:]
  assert complete(checkpoint_entries(copy))[-1] == int(match.group(1)) == 4

  result = run_cli(['train.py', f'--workdir={copy}', *config_flags(config)])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from checkpoint 4 ' in result.stderr
  assert not partial(checkpoint_entries(copy))
  assert final_params(copy)[0] == 10


def test_nonfinite_loss_stops_or_is_skipped_and_never_reaches_a_checkpoint(
    tf, shapes_data_dir, tmp_path):
  """A learning rate of 100 sends the loss to NaN within a few steps. By default the run
  stops at the first such step, naming it and the last checkpoint; with
  max_nonfinite_steps=2 it skips two (parameters unchanged) and stops at the third. Every
  checkpoint written holds finite parameters."""
  from alexnet_jax.run import checkpoints as checkpoints_lib
  from alexnet_jax.training import inference
  from alexnet_jax.errors import NonFiniteError
  from alexnet_jax.training.loop import train_and_evaluate
  from alexnet_jax.run.workdir import Workdir
  stopped, skipping = tmp_path / 'stopped', tmp_path / 'skipping'
  config = tiny_config(shapes_data_dir, learning_rate=100.0, lr_schedule='constant',
                       log_every_steps=1, checkpoint_every_steps=1, keep_checkpoints=10)
  with pytest.raises(NonFiniteError) as error:
    train_and_evaluate(config, str(stopped))
  bad = int(re.match(r'the loss or the gradients were NaN or infinite at step (\d+); its '
                     r'update was not applied and training stopped\.', str(error.value))[1])
  assert str(error.value).endswith(
      f'The last complete checkpoint is step {bad - 1} in {stopped}/checkpoints, with finite '
      f'parameters.')
  losses = {m['step']: m['train_loss'] for m in read_metrics(stopped)}
  assert np.isnan(losses[bad]) and all(np.isfinite(losses[s]) for s in range(2, bad))

  config.max_nonfinite_steps = 2
  with pytest.raises(NonFiniteError, match=rf'at step {bad + 2} \(the 3 such steps are more '
                                           r'than config.max_nonfinite_steps=2\)'):
    train_and_evaluate(config, str(skipping))
  saved = checkpoints_lib.Checkpoints(Workdir(skipping), keep=10, keep_best=0)
  assert saved.all_steps() == list(range(1, bad + 2))
  saved.close()
  params = {step: jax.tree.leaves(jax.device_get(inference.load(str(skipping), step).params))
            for step in (bad - 1, bad, bad + 1)}
  assert all(np.all(np.isfinite(leaf)) for leaves in params.values() for leaf in leaves)
  for step in (bad, bad + 1):  # the skipped steps changed nothing
    for before, after in zip(params[bad - 1], params[step]):
      np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize('fault', [
    'SIGKILL',
    # JAX's heartbeat timeout, which this project only configures: slow, to keep .ci/run
    # under 10 minutes.
    pytest.param('SIGSTOP', marks=pytest.mark.slow)])
def test_a_dead_or_hung_process_stops_the_other_with_an_error(tf, shapes_data_dir, tmp_path,
                                                              fault):
  """Two processes on localhost; one is killed (SIGKILL) or frozen (SIGSTOP, a hung host
  whose connections stay open). The other must not wait forever: a killed peer breaks its
  next collective at once, a frozen one stops sending heartbeats and is declared dead after
  config.peer_timeout_seconds (5 here)."""
  from tests.test_multihost import free_port
  timeout = 5
  config = tiny_config(shapes_data_dir, num_train_steps=100_000, log_every_steps=1,
                       peer_timeout_seconds=timeout)
  port = free_port()
  processes = [start_cli(['train.py', f'--workdir={tmp_path}', *config_flags(config)],
                         env={'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
                              'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': str(i)})
               for i in range(2)]
  try:
    wait_for(lambda: logged_steps(tmp_path) >= 3, processes[0])
    processes[1].send_signal(getattr(signal, fault))
    stopped = time.time()
    output = processes[0].communicate(timeout=timeout + 60)[0]
    waited = time.time() - stopped
  finally:
    for process in processes:
      process.kill()
  assert processes[0].returncode != 0, output[-3000:]
  assert waited < timeout + 30, f'{waited:.0f} s'
  if fault == 'SIGKILL' and processes[0].returncode == 1:
    # The next gradient all-reduce failed: our message, at once.
    assert re.search(r'Error: process 0 of 2 lost contact with another process at step \d+ '
                     r'\(.*\); it has probably stopped, see its log\. .*: on every process, '
                     r'run the same command', output), output[-3000:]
  else:
    # JAX's coordination service declared the other process dead and stopped this one: always
    # for a frozen process; for a killed one when it notices before the all-reduce fails (once
    # in seven runs on a fresh clone).
    assert 'another task died' in output, output[-3000:]
    if fault == 'SIGSTOP':
      assert 'stopped sending heartbeats' in output, output[-3000:]


def write_odd_and_broken_images(root, split, rng):
  """root/split/{a,b}/: 4 plain JPEGs per class, then images in odd modes that must be
  converted (CMYK and grayscale JPEG, RGBA and 16-bit PNG, palette GIF) and files that cannot
  be decoded (empty, truncated JPEG, random bytes). Returns (decodable, broken) counts."""
  import io

  from PIL import Image

  def encoded(image, image_format):
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()

  def pixels():
    return rng.integers(0, 256, (80, 90, 3), np.uint8)

  files = {}
  for cls in 'ab':
    for i in range(4):
      files[f'{cls}/{i}.jpg'] = encoded(Image.fromarray(pixels()), 'JPEG')
  odd = {'a/cmyk.jpg': encoded(Image.fromarray(pixels()).convert('CMYK'), 'JPEG'),
         'a/gray.jpg': encoded(Image.fromarray(pixels()).convert('L'), 'JPEG'),
         'b/rgba.png': encoded(Image.fromarray(pixels()).convert('RGBA'), 'PNG'),
         'b/palette.gif': encoded(Image.fromarray(pixels()).convert('P'), 'GIF'),
         'b/sixteen_bit.png': encoded(Image.fromarray(
             pixels()[..., 0].astype(np.uint16) * 257), 'PNG')}
  broken = {'a/empty.jpg': b'', 'b/truncated.jpg': files['b/0.jpg'][:len(files['b/0.jpg']) // 3],
            'b/random.png': rng.integers(0, 256, 5000, np.uint8).tobytes()}
  for name, data in {**files, **odd, **broken}.items():
    path = root / split / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
  return len(files) + len(odd), len(broken)


def test_corrupt_and_odd_images_are_converted_or_skipped_counted_and_reported(tf, tmp_path,
                                                                              caplog):
  """Both splits hold images in odd modes (converted) and undecodable files (skipped).
  Training goes on and reports each epoch's skipped images; the evaluation scores every
  decodable image and counts the others."""
  import logging

  from alexnet_jax.training.loop import train_and_evaluate
  rng = np.random.default_rng(0)
  root = tmp_path / 'images'
  train_good, train_broken = write_odd_and_broken_images(root, 'train', rng)
  eval_good, eval_broken = write_odd_and_broken_images(root, 'validation', rng)
  config = tiny_config('', dataset=f'folder:{root}', batch_size=4, eval_batch_size=4,
                       num_train_steps=10, shuffle_buffer=32)  # 40 images: 3 epochs of 13
  with caplog.at_level(logging.INFO):
    result = train_and_evaluate(config, str(tmp_path / 'run'))
  ends = re.findall(r'Epoch (\d) of the training data ended at step \d+: (\d) image\(s\) in it '
                    r'could not be decoded and were skipped\.', caplog.text)
  # An epoch ends when the first image of the next is delivered: 3 of the 40 images are.
  assert train_good == 13 and (10 * 4 - 1) // train_good == 3
  assert ends == [(str(epoch), str(train_broken)) for epoch in (1, 2, 3)]
  assert (result['eval_examples'], result['eval_skipped']) == (eval_good, eval_broken)
  assert (f'on {eval_good} examples (centre crop); {eval_broken} could not be decoded'
          in caplog.text)


@pytest.mark.parametrize('flag,message', [
    ('--config.model.variant=vgg',
     "config.model.variant='vgg' is not one of ['paper', 'paper_ungrouped', 'torchvision']."),
    ('--config.train_split=trian',
     "config.train_split='trian': shapes/1.1.0 has no split 'trian'; its splits are "
     "['train', 'validation']."),
])
def test_config_error_is_one_line_before_any_data_is_read(shapes_data_dir, tmp_path, flag,
                                                          message):
  """The command prints the problem on one line and exits 1: no traceback, no workdir, no
  pixel statistics read from the data, nothing compiled."""
  workdir = tmp_path / 'run'
  result = run_cli(['train.py', f'--workdir={workdir}', f'--config.data_dir={shapes_data_dir}',
                    flag])
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == f'Error: {message}'
  assert 'Traceback' not in result.stderr and 'mean image' not in result.stderr
  assert not workdir.exists()


def test_a_file_given_as_the_workdir_is_one_error_line_before_anything_runs(
    shapes_data_dir, tmp_path):
  """--workdir naming an existing file: one line naming it, before any data is read or
  anything compiled, and the file is left as it was."""
  notes = tmp_path / 'notes.txt'
  notes.write_text('not a workdir')
  result = run_cli(['train.py', f'--workdir={notes}', f'--config.data_dir={shapes_data_dir}'])
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'Error: the workdir {notes} is a file, not a directory. Give --workdir a new or '
      f'existing directory; the file was left as it is.')
  assert 'Traceback' not in result.stderr and 'Constructing tf.data' not in result.stderr
  assert notes.read_text() == 'not a workdir'


def test_ctrl_c_before_training_starts_is_one_line_and_status_130(shapes_data_dir, tmp_path):
  """Ctrl-C while the run sets up (the pixel statistics, compilation), where there is
  nothing to save yet: one line, no traceback, the shell's status for SIGINT."""
  process = start_cli(['train.py', f'--workdir={tmp_path / "run"}',
                       f'--config.data_dir={shapes_data_dir}',
                       f'--config.mean_cache_dir={tmp_path / "stats"}'])
  for line in process.stdout:  # the first line after the checks, before the data is read
    if 'Compiled steps are cached' in line:
      ctrl_c(process)
      break
  output = process.communicate(timeout=60)[0]
  assert process.returncode == 130, output[-3000:]
  assert output.strip().splitlines()[-1] == 'Stopped by Ctrl-C.'
  assert 'Traceback' not in output and 'step 1/' not in output


def test_a_resume_with_a_changed_config_logs_it_and_refuses_what_breaks_exactness(
    tf, shapes_data_dir, tmp_path, caplog):
  """A workdir resumed with other config values: every changed field is logged; a batch size
  change is refused on the command line, naming the override, before anything runs and
  changing nothing; a longer run or another log cadence resumes; with the override, so does
  the new batch size, and config.json then holds it."""
  import logging

  from alexnet_jax.training.loop import train_and_evaluate
  workdir = tmp_path / 'run'
  config = tiny_config(shapes_data_dir, num_train_steps=4, checkpoint_every_steps=2)
  train_and_evaluate(config, str(workdir))

  def state():
    return sorted(os.listdir(workdir / 'checkpoints')), (workdir / 'config.json').read_bytes()

  before = state()
  args = ['train.py', f'--workdir={workdir}', *config_flags(config)]
  result = run_cli([*args, '--config.batch_size=8', '--config.num_train_steps=6'])
  assert result.returncode == 1
  assert (f'Resuming {workdir} with a changed config (its config.json -> now): batch_size 16 '
          f'-> 8; num_train_steps 4 -> 6.') in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f'Error: resuming {workdir} with batch_size (16 -> 8) changed would not continue its run '
      f"exactly: the checkpoint's data position, shuffle and pixels were drawn with the old "
      f'value. Resume with the old value, accept the change with '
      f'--allow_config_changes=batch_size, or start a new run in another --workdir; nothing '
      f'was changed.')
  assert state() == before
  assert 'Compiled' not in result.stderr and 'Constructing tf.data' not in result.stderr

  config.update_from_flattened_dict({'num_train_steps': 6, 'log_every_steps': 1})
  with caplog.at_level(logging.INFO):
    train_and_evaluate(config, str(workdir))
  assert (f'with a changed config (its config.json -> now): log_every_steps 4 -> 1; '
          f'num_train_steps 4 -> 6.') in caplog.text
  assert 'Resumed from checkpoint 4 ' in caplog.text
  assert max(m['step'] for m in read_metrics(workdir)) == 6

  args = ['train.py', f'--workdir={workdir}', *config_flags(config)]
  result = run_cli([*args, '--config.num_train_steps=8', '--config.batch_size=8',
                    '--allow_config_changes=batch_size'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'batch_size 16 -> 8; num_train_steps 6 -> 8.' in result.stderr
  assert 'Resumed from checkpoint 6 ' in result.stderr
  assert json.loads((workdir / 'config.json').read_text())['batch_size'] == 8


@pytest.mark.slow
def test_kills_at_random_moments_still_end_at_the_uninterrupted_result(tf, shapes_data_dir,
                                                                       tmp_path):
  """SIGKILL at 8 random moments, 2 to 10 s after each start, of a run that saves every step
  and keeps 2 checkpoints (so kills also land in start-up, restore, compilation and the
  deletion of old checkpoints); after each, the same command resumes; the run ends with the
  uninterrupted parameters. About 2 minutes."""
  steps = 150
  straight, workdir, args = reference_and_command(shapes_data_dir, tmp_path, steps, keep=2)
  rng = np.random.default_rng(0)
  for delay in rng.uniform(2, 10, 8):  # start-up to the first step is about 6 s
    process = start_cli(args)
    time.sleep(delay)
    process.kill()
    output = process.communicate(timeout=60)[0]
    assert process.returncode == -signal.SIGKILL, output[-3000:]
  result = run_cli(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_same_final_parameters(straight, workdir, steps)
