"""gs:// workdirs, caches and conversions, against a GCS emulator on localhost that the tests
start and stop (tests/gcs_emulator.py): every gs:// path of the project goes there once
STORAGE_EMULATOR_HOST is set. What only TensorFlow's file system reads (TFDS on a gs://
data_dir) cannot be emulated: docs/cloud.md."""

import json
import os
import re
import time

import numpy as np
import pytest

from tests.gcs_emulator import BUCKET
from tests.test_reliability import (assert_same_final_parameters, reference_and_command,
                                    start_cli, wait_for)
from tests.test_train import config_flags, run_cli, tiny_config


def objects(url):
  """The object names under `url`, relative to it."""
  from alexnet_jax import files
  root = files.path(url)
  fs = root._backend.fs(os.fspath(root))  # gcsfs, through etils' fsspec backend
  prefix = os.fspath(root).removeprefix('gs://')
  return sorted(name[len(prefix) + 1:] for name in fs.find(prefix, withdirs=False))


def test_files_are_replaced_whole_and_leave_nothing_behind(gcs, tmp_path):
  from alexnet_jax import files
  url = f'gs://{BUCKET}/path_layer'
  files.write_json(f'{url}/a.json', {'x': 1})
  files.write_json(f'{url}/a.json', {'x': 2})
  files.write_npz(f'{url}/b.npz', mean=np.arange(6.0).reshape(2, 3))
  with files.written_locally(f'{url}/c.bin') as local:
    with open(local, 'wb') as f:
      f.write(b'\0' * 100_000)
  assert files.read_json(f'{url}/a.json') == {'x': 2}
  np.testing.assert_array_equal(files.read_npz(f'{url}/b.npz')['mean'],
                                np.arange(6.0).reshape(2, 3))
  assert files.path(f'{url}/c.bin').read_bytes() == b'\0' * 100_000
  assert objects(url) == ['a.json', 'b.npz', 'c.bin']  # no temporaries
  assert not os.path.exists(local)
  # A write that fails leaves the object as it was.
  with pytest.raises(RuntimeError), files.written_locally(f'{url}/c.bin') as local:
    with open(local, 'wb') as f:
      f.write(b'partial')
    raise RuntimeError
  assert files.path(f'{url}/c.bin').read_bytes() == b'\0' * 100_000


def test_a_usable_gcs_workdir_is_left_empty_and_a_missing_bucket_is_named(gcs):
  from alexnet_jax.errors import StorageError
  from alexnet_jax.run.workdir import Workdir
  Workdir(f'gs://{BUCKET}/usable/run').check_usable()
  assert objects(f'gs://{BUCKET}/usable') == []
  with pytest.raises(StorageError, match=re.escape(
      'the bucket gs://no-such-bucket of the workdir gs://no-such-bucket/run does not exist. '
      'Create it (gcloud storage buckets create gs://no-such-bucket')):
    Workdir('gs://no-such-bucket/run').check_usable()


def test_a_partial_checkpoint_on_gcs_is_never_taken_for_one_and_is_removed(gcs):
  """On an object store Orbax marks a complete checkpoint with commit_success.txt (there is
  no rename): a step directory without it, as a kill mid-write leaves one, is not listed,
  not restored, and removed by the next run before its first save (Orbax's cleanup)."""
  import jax.numpy as jnp

  from alexnet_jax import files
  from alexnet_jax.run.checkpoints import Checkpoints
  from alexnet_jax.run.checkpoints import RunRecord
  from alexnet_jax.run.workdir import Workdir
  workdir = Workdir(f'gs://{BUCKET}/partial')
  state = {'w': jnp.arange(4.0)}
  checkpoints = Checkpoints(workdir, keep=3, keep_best=0)
  checkpoints.save(1, state, RunRecord.start({'variant': 'test'}))
  checkpoints.wait()
  checkpoints.close()
  step_1 = objects(f'{workdir.checkpoints_dir}/1')
  assert 'commit_success.txt' in step_1
  for name in step_1:  # step 2: step 1's objects, all but the mark
    if name != 'commit_success.txt':
      files.path(f'{workdir.checkpoints_dir}/2/{name}').write_bytes(
          files.path(f'{workdir.checkpoints_dir}/1/{name}').read_bytes())
  assert workdir.checkpoint_steps() == [1]
  assert {name.split('/')[0] for name in objects(workdir.checkpoints_dir)} == {'1', '2'}
  checkpoints = Checkpoints(workdir, keep=3, keep_best=0)  # what a resumed run opens
  assert checkpoints.latest_step() == 1
  checkpoints.save(3, state, RunRecord.start({'variant': 'test'}))
  checkpoints.wait()
  assert {name.split('/')[0] for name in objects(workdir.checkpoints_dir)} == {'1', '3'}
  assert workdir.checkpoint_steps() == [1, 3]
  checkpoints.close()


@pytest.mark.slow
def test_a_checkpoint_write_to_lost_storage_fails_within_a_minute_as_unreachable(gcs):
  """TensorStore writes Orbax's arrays; in the context Orbax gives it, a write to storage
  that has gone away gives up after checkpoints.STORAGE_RETRIES (about 47 s), not after its
  default quarter of an hour, with an error that errors.is_unreachable recognises, so that
  a run whose save is in flight when storage is lost can stop and say where to resume."""
  import orbax.checkpoint as ocp
  import tensorstore as ts

  from alexnet_jax.errors import is_unreachable
  from alexnet_jax.run import checkpoints  # noqa: F401  (bounds the retries on import)
  store = ts.KvStore.open({'driver': 'gcs', 'bucket': BUCKET, 'path': 'lost_write/'},
                          context=ocp.type_handlers.get_ts_context(use_ocdbt=True)).result()
  store.write('before', b'1').result()
  gcs.stop()
  started = time.time()
  try:
    with pytest.raises(ValueError) as raised:
      store.write('after', b'2').result()
    took = time.time() - started
  finally:
    gcs.start()
  assert is_unreachable(raised.value), str(raised.value)
  assert 20 < took < 120, f'the write gave up after {took:.0f} s'


def gcs_command(args, url):
  """`args` (a train.py command) with its --workdir replaced by `url`."""
  return [f'--workdir={url}' if arg.startswith('--workdir=') else arg for arg in args]


def logged_steps(url, metric):
  """The steps of metrics.jsonl's lines that hold `metric`, in file order."""
  from alexnet_jax import files
  lines = [json.loads(line) for line in
           (files.path(url) / 'metrics.jsonl').read_text().splitlines()]
  return [line['step'] for line in lines if metric in line]


@pytest.mark.slow
def test_a_run_on_gcs_killed_mid_run_resumes_to_the_uninterrupted_result_and_is_readable(
    tf, shapes_data_dir, tmp_path, gcs):
  """The default config (tiny) trains into gs://, is SIGKILLed mid-run and resumed by the
  same command: the parameters of the same run on a local disk, bit for bit, each step once
  in metrics.jsonl. Then evaluate, predict and plot read the gs:// workdir and give what
  they give for the local run."""
  from alexnet_jax.training import evaluation
  from alexnet_jax.training import inference
  from alexnet_jax.training import prediction
  from alexnet_jax.run.workdir import Workdir
  steps = 20
  straight, _, args = reference_and_command(shapes_data_dir, tmp_path, steps, keep=3)
  url = f'gs://{BUCKET}/killed'
  caches = f'gs://{BUCKET}/caches'  # the pixel statistics and compiled steps, on gs:// too
  args = [*gcs_command(args, url), f'--config.mean_cache_dir={caches}/pixel_stats',
          f'--config.compilation_cache_dir={caches}/xla']
  process = start_cli(args)
  wait_for(lambda: len(Workdir(url).checkpoint_steps()) >= 2, process, poll=0.2)
  process.kill()
  process.communicate(timeout=60)
  killed_at = Workdir(url).checkpoint_steps()[-1]
  result = run_cli(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert int(re.search(r'Resumed from checkpoint (\d+) ', result.stderr).group(1)) >= killed_at
  assert_same_final_parameters(straight, url, steps)
  assert f'Compiled steps are cached in {caches}/xla.' in result.stderr
  cached = objects(caches)
  assert cached[0].startswith('pixel_stats/pixel_stats-train-') and cached[0].endswith('.npz')
  # JAX caches a program whose compilation took a second or more: the train step here.
  assert 'xla/jit_train_step' in {name.split('-')[0] for name in cached}
  train = logged_steps(url, 'train_loss')
  assert train == sorted(set(train)) and train[-1] == steps  # each step once, in order
  assert logged_steps(url, 'eval_top1_error') == [steps]

  result = run_cli(['-m', 'alexnet_jax.commands.evaluate', f'--workdir={url}'])
  assert result.returncode == 0, result.stderr[-3000:]
  from alexnet_jax import files
  scores = files.read_json(f'{url}/eval-{steps}.json')
  assert scores == json.loads(json.dumps(evaluation.evaluate_checkpoint(str(straight))))

  image = _an_image(tmp_path)
  result = run_cli(['-m', 'alexnet_jax.commands.predict', f'--workdir={url}', str(image)])
  assert result.returncode == 0, result.stderr[-3000:]
  expected = prediction.predict(inference.load(str(straight)), [str(image)])[0]
  assert [line.split('%  ')[1] for line in result.stdout.splitlines()[1:]] == [
      name for name, _ in expected]

  result = run_cli(['-m', 'alexnet_jax.commands.plot', f'--workdir={url}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert files.path(f'{url}/learning_curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert any(name.startswith('tensorboard/events.out.tfevents.') for name in objects(url))


def _an_image(tmp_path):
  from PIL import Image
  path = tmp_path / 'image.jpg'
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 90, 3), np.uint8)).save(path)
  return path


@pytest.mark.slow
def test_the_conversion_writes_the_same_files_to_gcs_as_to_a_local_disk(tf, shapes_data_dir,
                                                                       tmp_path, gcs):
  from alexnet_jax import files
  url = f'gs://{BUCKET}/converted'
  outputs = {}
  for output in (str(tmp_path / 'converted'), url):
    result = run_cli(['-m', 'alexnet_jax.commands.resize_dataset', '--dataset=shapes',
                      f'--data_dir={shapes_data_dir}', f'--output_dir={output}', '--size=40',
                      '--examples_per_shard=1000'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'--config.dataset={output}' in result.stdout
    outputs[output] = files.path(output)
  local = sorted(os.listdir(tmp_path / 'converted'))
  assert objects(url) == local and len([n for n in local if '.tfrecord-' in n]) == 4
  for name in local:
    stored = (outputs[url] / name).read_bytes()
    expected = (tmp_path / 'converted' / name).read_bytes()
    if '.tfrecord-' in name:  # the same examples: protobuf writes a map in any order
      assert records(stored, tmp_path / 'from_gcs') == records(expected, tmp_path / 'local')
    elif name != 'dataset_info.json':  # it records when it was written
      assert stored == expected, name


def records(shard: bytes, scratch) -> list:
  """The tf.train.Examples of a TFRecord shard's bytes."""
  from alexnet_jax.data.tensorflow_cpu import tf
  scratch.write_bytes(shard)
  return [tf.train.Example.FromString(record.numpy())
          for record in tf.data.TFRecordDataset(str(scratch))]


class Refusing:
  """A storage endpoint on localhost that answers every request with 403 Forbidden, as GCS
  does to credentials without write access."""

  def __enter__(self):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
      def _refuse(self):
        body = json.dumps({'error': {'code': 403, 'message': 'caller does not have '
                                     'storage.objects.create access'}}).encode()
        self.send_response(403)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      do_GET = do_POST = do_PUT = do_DELETE = _refuse

      def log_message(self, *args):
        pass

    self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=self.server.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{self.server.server_port}'

  def __exit__(self, *exc):
    self.server.shutdown()


@pytest.mark.slow
def test_unusable_gcs_workdirs_are_one_error_line_before_anything_compiles(shapes_data_dir,
                                                                        tmp_path, gcs):
  from tests.gcs_emulator import free_port
  args = ['train.py', *config_flags(tiny_config(shapes_data_dir, num_train_steps=2))]
  with Refusing() as refusing:
    cases = [
        ({}, 'gs://no-such-bucket/run', 'Error: the bucket gs://no-such-bucket of the workdir '
         'gs://no-such-bucket/run does not exist. Create it'),
        ({'STORAGE_EMULATOR_HOST': refusing}, f'gs://{BUCKET}/run', 'Error: the credentials '
         f'in use may not write to gs://{BUCKET}/run (Forbidden: '),
        ({'STORAGE_EMULATOR_HOST': f'http://127.0.0.1:{free_port()}'}, f'gs://{BUCKET}/run',
         f'Error: cannot reach the storage of gs://{BUCKET}/run (Cannot connect to host')]
    for env, url, message in cases:
      result = run_cli([*args, f'--workdir={url}'], env=env)
      errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]
      assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
      assert errors[0].startswith(message), errors[0]
      assert 'Traceback' not in result.stderr and 'Compiled steps' not in result.stderr


@pytest.mark.slow
def test_storage_lost_mid_run_is_one_error_line_and_the_run_resumes_once_it_is_back(
    tf, shapes_data_dir, tmp_path, gcs):
  """The emulator stops while a gs:// run trains: the run ends with one Error line naming its
  last complete checkpoint; with storage back, the same command resumes from that checkpoint
  and ends with the uninterrupted run's parameters, bit for bit."""
  from alexnet_jax.training.loop import train_and_evaluate
  from alexnet_jax.run.workdir import Workdir
  steps = 60
  config = tiny_config(shapes_data_dir, num_train_steps=steps, log_every_steps=1,
                       checkpoint_every_steps=5)
  straight = tmp_path / 'straight'
  train_and_evaluate(config, str(straight))
  url = f'gs://{BUCKET}/lost'
  args = ['train.py', *config_flags(config), f'--workdir={url}']
  try:
    process = start_cli(args)
    wait_for(lambda: len(Workdir(url).checkpoint_steps()) >= 2, process, poll=0.2)
    gcs.stop()  # its objects stay on disk for the restart
    stopped = time.time()
    output = process.communicate(timeout=300)[0]
    ended = time.time() - stopped
    errors = [line for line in output.splitlines() if line.startswith('Error:')]
    assert process.returncode == 1 and len(errors) == 1, output[-3000:]
    found = re.fullmatch(
        rf'Error: the storage of {url} could not be reached at step \d+ \(.*\)\. The last '
        rf'complete checkpoint is step (\d+) in {url}/checkpoints; once storage is reachable '
        rf'again, run the same command to resume from it\.', errors[0])
    assert found, errors[0]
    gcs.start()
    last = int(found.group(1))
    assert last == Workdir(url).checkpoint_steps()[-1]
    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'Resumed from checkpoint {last} ' in result.stderr
    assert_same_final_parameters(straight, url, steps)
  finally:
    if not gcs.running:
      gcs.start()  # for the tests after this one
  assert ended < 200, f'the run ended {ended:.0f} s after storage was lost'
