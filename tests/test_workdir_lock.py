"""One writer per workdir (alexnet_jax/run/workdir_lock.py): a second training run on a
workdir stops before it writes anything and names the holder; a holder that was killed
blocks nothing. Locally the OS's lock; on gs:// a lease with generation preconditions,
against the GCS emulator (tests/gcs_emulator.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.gcs_emulator import BUCKET
from tests.test_reliability import (checkpoint_entries, complete, logged_steps, start_cli,
                                    wait_for)
from tests.test_train import ROOT, config_flags, run_cli, tiny_config

IN_USE = (r'Error: the workdir {workdir} is in use by the training run of process {pid} on host '
          r'{host} \(since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\)\. Wait for that run to end '
          r'or stop it, then run this command again, or give --workdir another directory; '
          r'nothing was written\.')


def in_use_line(workdir, pid):
  return IN_USE.format(workdir=re.escape(str(workdir)), pid=pid,
                       host=re.escape(socket.gethostname()))


def tree(workdir):
  """Every file under a local workdir with its size and modification time."""
  return {os.path.join(root, name): (os.stat(os.path.join(root, name)).st_size,
                                     os.stat(os.path.join(root, name)).st_mtime_ns)
          for root, _, names in os.walk(workdir) for name in names}


def test_a_second_run_stops_before_writing_and_a_killed_holder_blocks_no_resume(
    tf, shapes_data_dir, tmp_path):
  """Two real `train.py` runs on one local workdir: the second (started while the first is
  frozen, so that only the second could change the workdir) ends with one line naming the
  first and leaves every file as it was. Then the first is SIGKILLed, and the same command
  resumes from its checkpoint with nothing removed by hand."""
  workdir = tmp_path / 'run'
  config = tiny_config(shapes_data_dir, num_train_steps=100_000, log_every_steps=1,
                       checkpoint_every_steps=5)
  command = ['train.py', f'--workdir={workdir}', *config_flags(config)]
  holder = start_cli(command)
  try:
    wait_for(lambda: complete(checkpoint_entries(workdir)) and logged_steps(workdir) >= 6,
             holder)
    os.killpg(holder.pid, signal.SIGSTOP)
    time.sleep(1)  # writes the holder had in flight land
    before = tree(workdir)
    second = run_cli(command)
    assert second.returncode == 1, second.stderr[-3000:]
    assert 'Traceback' not in second.stderr
    assert re.fullmatch(in_use_line(workdir, holder.pid), second.stderr.splitlines()[-1])
    assert tree(workdir) == before
    assert json.loads((workdir / 'lock.json').read_text())['pid'] == holder.pid
  finally:
    holder.kill()
    holder.communicate(timeout=60)
  saved = complete(checkpoint_entries(workdir))[-1]
  resumed = run_cli([*command, f'--config.num_train_steps={saved + 2}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resumed from checkpoint {saved} ' in resumed.stderr
  assert not (workdir / 'lock.json').exists()  # removed by the run that ended


def test_a_local_lock_names_its_holder_and_is_removed_with_a_directory_it_made(tmp_path):
  from alexnet_jax import files
  from alexnet_jax.errors import WorkdirError
  from alexnet_jax.run import workdir_lock
  workdir = files.path(tmp_path / 'new')
  lock = workdir_lock.acquire(workdir, 60)
  holder = json.loads((tmp_path / 'new' / 'lock.json').read_text())
  assert (holder['pid'], holder['host']) == (os.getpid(), socket.gethostname())
  # Another process is refused; the lock is the OS's, per open file, so this one's own second
  # open is refused too.
  probe = ('from alexnet_jax import files; from alexnet_jax.run import workdir_lock; '
           f'workdir_lock.acquire(files.path({str(workdir)!r}), 60)')
  other = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
  assert other.returncode == 1
  assert re.fullmatch(in_use_line(workdir, os.getpid()).removeprefix('Error: '),
                      other.stderr.splitlines()[-1].removeprefix(
                          'alexnet_jax.errors.WorkdirError: '))
  with pytest.raises(WorkdirError, match='is in use by the training run of process'):
    workdir_lock.acquire(workdir, 60)
  lock.release()
  assert not (tmp_path / 'new').exists()  # it made the directory and wrote nothing else
  # A lock file a killed holder left (not locked) takes nothing; an existing workdir stays.
  (tmp_path / 'old').mkdir()
  (tmp_path / 'old' / 'lock.json').write_text('{"host": "x", "pid": 1, "since": "then"}')
  lock = workdir_lock.acquire(files.path(tmp_path / 'old'), 60)
  lock.release()
  assert os.listdir(tmp_path / 'old') == []
  # A path that cannot be a lock file is the workdir's problem, not storage's.
  (tmp_path / 'odd' / 'lock.json').mkdir(parents=True)
  with pytest.raises(WorkdirError, match=re.escape(
      f'cannot lock {tmp_path}/odd/lock.json ([Errno 21] Is a directory')):
    workdir_lock.acquire(files.path(tmp_path / 'odd'), 60)


PROCESS_OF_TWO = """
import json, sys
from alexnet_jax import files
from alexnet_jax.errors import WorkdirError
from alexnet_jax.run import distributed, workdir_lock
from jax.experimental import multihost_utils
distributed.initialize_if_requested(timeout_seconds=60)
try:
  with workdir_lock.held_for_run(files.path(sys.argv[1]), 60) as lock:
    print(type(lock).__name__, flush=True)
    multihost_utils.sync_global_devices('held')
except WorkdirError as error:
  print('refused:', error, flush=True)
"""


def run_two_processes(workdir):
  from tests.test_multihost import free_port
  port = free_port()
  processes = [subprocess.Popen(
      [sys.executable, '-c', PROCESS_OF_TWO, str(workdir)], cwd=ROOT,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
           'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': str(i)},
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  # The last line: gloo prints its connections to stdout.
  return [process.communicate(timeout=120)[0].strip().splitlines()[-1] for process in processes]


def test_with_two_processes_process_0_holds_the_workdir_and_both_follow_its_answer(tmp_path):
  """Process 0 takes the lock for the run, the other holds nothing; when process 0 is
  refused, both stop, the other naming process 0."""
  from alexnet_jax import files
  from alexnet_jax.run import workdir_lock
  assert run_two_processes(tmp_path / 'free') == ['LocalLock', 'NoLock']
  assert not (tmp_path / 'free').exists()
  held = workdir_lock.acquire(files.path(tmp_path / 'held'), 60)
  try:
    zero, one = run_two_processes(tmp_path / 'held')
  finally:
    held.release()
  assert re.fullmatch(in_use_line(tmp_path / 'held', os.getpid()).replace('Error: ',
                                                                          'refused: '), zero)
  assert one == (f'refused: process 0 of this run could not take the workdir {tmp_path}/held '
                 f'(its log names why); nothing was written.')


# --- gs:// --------------------------------------------------------------------------------


def lease_url(name):
  return f'gs://{BUCKET}/lease/{name}'


def write_lease(url, **fields):
  """A lease object as another holder writes it (no precondition)."""
  from alexnet_jax import files
  holder = {'host': 'elsewhere', 'pid': 4242, 'since': '2026-01-01T00:00:00+00:00',
            'machine': 'another-machine', 'renewed': time.time(), **fields}
  files.path(f'{url}/lock.json').write_text(json.dumps(holder))


def read_lease(url):
  from alexnet_jax import files
  path = files.path(f'{url}/lock.json')
  return json.loads(path.read_text()) if path.exists() else None


RACER = """
import sys, time
from alexnet_jax import files
from alexnet_jax.errors import WorkdirError
from alexnet_jax.run import workdir_lock
url, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(at - time.time(), 0))
try:
  lease = workdir_lock.acquire(files.path(url), 60)
except WorkdirError as error:
  print('refused:', error, flush=True)
else:
  print('held', flush=True)
  time.sleep(3)
  lease.release()
"""


def test_a_lease_is_taken_by_exactly_one_of_two_racing_processes_and_removed_at_release(gcs):
  """Two processes ask for one lease at the same moment: the generation precondition lets
  exactly one write it; the other reads the winner's lease and is refused."""
  url = lease_url('race')
  at = time.time() + 8  # both have imported by then
  racers = [subprocess.Popen([sys.executable, '-c', RACER, url, str(at)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
  outputs = [racer.communicate(timeout=120) for racer in racers]
  said = sorted(out.strip().split(':')[0] for out, _ in outputs)
  assert said == ['held', 'refused'], outputs
  winner, = [racer.pid for racer, (out, _) in zip(racers, outputs) if out.startswith('held')]
  refusal, = [out for out, _ in outputs if out.startswith('refused')]
  assert f'in use by the training run of process {winner} on host' in refusal
  assert read_lease(url) is None  # the winner removed it


def test_a_lease_is_renewed_and_a_live_holder_refuses_at_once(gcs):
  from alexnet_jax import files
  from alexnet_jax.errors import WorkdirError
  from alexnet_jax.run import workdir_lock
  url = lease_url('renewed')
  lease = workdir_lock.acquire(files.path(url), 2)
  try:
    first = read_lease(url)['renewed']
    time.sleep(1.5)  # renewals every 0.5 s
    assert read_lease(url)['renewed'] > first
    started = time.monotonic()
    with pytest.raises(WorkdirError, match=re.escape(
        f'the workdir {url} is in use by the training run of process {os.getpid()} on host '
        f'{socket.gethostname()}')):
      workdir_lock.acquire(files.path(url), 2)
    assert time.monotonic() - started < 1
    lease.check()
  finally:
    lease.release()


@pytest.mark.parametrize('holder, waits', [
    ({'renewed': time.time() - 1e5}, False),  # renewed long ago by its own clock
    ('unreadable', False),  # a holder killed while it wrote its first lease
    ('dead here', False),  # a process of this machine that is gone
    ({'renewed': 'overdue'}, True),  # overdue by a little: waits out the lease time
], ids=['renewed long ago', 'unreadable', 'dead here', 'overdue'])
def test_a_lease_whose_holder_died_is_taken_over(gcs, holder, waits):
  from alexnet_jax import files
  from alexnet_jax.run import workdir_lock
  url = lease_url(f'dead-{len(str(holder))}-{waits}')
  seconds = 3
  if holder == 'dead here':
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    holder = {'pid': int(gone.stdout), 'machine': workdir_lock._machine()}
  if holder == 'unreadable':
    files.path(f'{url}/lock.json').write_text('{"host": "elsewh')
  else:
    if holder.get('renewed') == 'overdue':
      holder['renewed'] = time.time() - 0.6 * seconds
    write_lease(url, **holder)
  started = time.monotonic()
  lease = workdir_lock.acquire(files.path(url), seconds)
  took = time.monotonic() - started
  try:
    assert read_lease(url)['pid'] == os.getpid()
    assert (took >= seconds) if waits else (took < 1), took
  finally:
    lease.release()


def test_a_holder_whose_lease_was_taken_over_stops_and_leaves_the_new_holders(gcs):
  from alexnet_jax import files
  from alexnet_jax.errors import WorkdirError
  from alexnet_jax.run import workdir_lock
  url = lease_url('taken')
  lease = workdir_lock.acquire(files.path(url), 2)
  write_lease(url)  # as a process that found it expired would
  deadline = time.monotonic() + 5
  with pytest.raises(WorkdirError, match=re.escape(
      f'this run lost the workdir {url} to process 4242 on host elsewhere (since '
      f'2026-01-01T00:00:00+00:00), which took it over after this process failed to renew its '
      f'lease for 2 s')):
    while time.monotonic() < deadline:
      lease.check()
      time.sleep(0.1)
  lease.release()
  assert read_lease(url)['pid'] == 4242


@pytest.mark.slow
def test_two_runs_on_a_gcs_workdir_one_refused_and_a_killed_holder_resumed(
    tf, shapes_data_dir, tmp_path, gcs):
  """The local test's sequence on gs://: the second run stops before it writes an object,
  naming the first; the SIGKILLed first leaves its lease, which the resume takes over at
  once (its holder is a process of this machine that is gone)."""
  from tests.test_gcs import objects
  url = f'gs://{BUCKET}/two_runs'
  config = tiny_config(shapes_data_dir, num_train_steps=100_000, log_every_steps=1,
                       checkpoint_every_steps=5)
  command = ['train.py', f'--workdir={url}', *config_flags(config)]
  from alexnet_jax.run.workdir import Workdir
  holder = start_cli(command)
  try:
    wait_for(lambda: len(Workdir(url).checkpoint_steps()) >= 1, holder, poll=0.5)
    os.killpg(holder.pid, signal.SIGSTOP)
    time.sleep(1)
    before = {name: read_bytes(f'{url}/{name}') for name in objects(url)}
    second = run_cli(command)
    assert second.returncode == 1, second.stderr[-3000:]
    assert re.fullmatch(in_use_line(url, holder.pid), second.stderr.splitlines()[-1])
    assert {name: read_bytes(f'{url}/{name}') for name in objects(url)} == before
  finally:
    holder.kill()
    holder.communicate(timeout=60)
  saved = Workdir(url).checkpoint_steps()[-1]
  resumed = run_cli([*command, f'--config.num_train_steps={saved + 2}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resumed from checkpoint {saved} ' in resumed.stderr
  assert 'whose lease had expired' in resumed.stderr
  assert read_lease(url) is None


def read_bytes(url):
  from alexnet_jax import files
  return files.path(url).read_bytes()
