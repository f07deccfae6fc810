"""The command lines the README and docs/performance.md give, run as a user would, in
subprocesses."""

import os
import re
import subprocess
import sys

import pytest

from tests.test_temp_files import assert_temp_dir_empty, empty_temp_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, succeed=True, temp_dir=None):
  """Runs python with `args` from the repository root; asserts the exit status and, with
  `temp_dir` (empty) as its $TMPDIR, that the command left it empty."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  if temp_dir:
    env['TMPDIR'] = str(temp_dir)
  result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
  assert (result.returncode == 0) == succeed, result.stderr[-3000:]
  if temp_dir:
    assert_temp_dir_empty(temp_dir, ' '.join(args))
  return result


def test_model_command_prints_the_layer_table():
  out = run('-m', 'alexnet_jax.commands.model', '--variant=torchvision').stdout
  assert "AlexNet variant='torchvision' image_size=224" in out
  assert 'total parameters        61,100,840' in out


@pytest.mark.parametrize('module,args,last_line', [
    ('benchmarks.lrn', ['--batch=2', '--repeats=1'],
     r'banded_vs_reduce_window_fwd=[\d.]+x banded_vs_reduce_window_fwd_bwd=[\d.]+x'),
    ('benchmarks.grouped_conv', ['--batch=1', '--repeats=1'],
     r'grouped_layers_split_vs_xla=[\d.]+x model_split_vs_xla=[\d.]+x'),
    ('benchmarks.conv_grad', ['--batch=1', '--repeats=1'], r'matmul_vs_xla_kernel_grad=[\d.]+x'),
    ('benchmarks.max_pool', ['--batch=2', '--repeats=1'],
     r'strided_vs_reduce_window_fwd=[\d.]+x strided_vs_reduce_window_fwd_bwd=[\d.]+x '
     r'train_step_strided_vs_reduce_window=[\d.]+x'),
    ('benchmarks.cpu_kernels', ['--batch=2', '--repeats=1', '--width=0.25', '--image_size=67'],
     r'choice=convolution:eigen,dot:ynnpack,reduce:xla train_images_per_second=[\d.]+ '
     r'eval_images_per_second=[\d.]+ train_vs_xla_default=[\d.]+x eval_vs_xla_default=[\d.]+x '
     r'train_vs_fastest=[\d.]+x eval_vs_fastest=[\d.]+x '
     r'operations_fastest=convolution:\w+,dot:\w+,reduce:\w+'),
    # With the PyTorch baseline (requirements-bench.txt, which the test command installs).
    ('benchmarks.train_step', ['--batch=2', '--repeats=1', '--width=0.25',
                               '--baseline=pytorch', '--device_crop'],
     r'train_vs_pytorch=[\d.]+x eval_vs_pytorch=[\d.]+x eval_vs_torch_compile=[\d.]+x '
     r'train_mfu=[\d.]+ eval_mfu=[\d.]+ train_images_per_second=[\d.]+ '
     r'eval_images_per_second=[\d.]+ compile_seconds=[\d.]+ cached_compile_seconds=[\d.]+ '
     r'peak_rss_gib=[\d.]+ device_crop_cost=[+-][\d.]+%'),
])
@pytest.mark.slow  # about three minutes together
def test_benchmarks_run_and_their_forms_agree(module, args, last_line, tmp_path):
  # Each benchmark asserts that the forms it times give the same numbers before it reports.
  out = run('-m', module, *args, temp_dir=empty_temp_dir(tmp_path)).stdout
  assert re.fullmatch(last_line, out.strip().splitlines()[-1])


@pytest.mark.slow
def test_input_pipeline_benchmark_runs_tiny(tf, tmp_path):
  out = run('-m', 'benchmarks.input_pipeline', '--images=24', '--batch=8', '--workers=2',
            '--repeats=1', f'--data_dir={tmp_path / "data"}',
            temp_dir=empty_temp_dir(tmp_path)).stdout
  assert re.fullmatch(r'pipeline_vs_loader=[\d.]+x converted_vs_loader=[\d.]+x '
                      r'converted_vs_decode_ceiling=[\d.]+x pixels_per_core=\d+',
                      out.strip().splitlines()[-1])
  for method in ('loader', 'pipeline', 'converted', 'converted_host', 'pixels',
                 'decode_ceiling', 'pixels_reading', 'pixels_records'):
    assert re.search(rf'^ *{method}: +\d+ +\d+ +[\d.]+  \(', out, re.MULTILINE), method


@pytest.mark.slow
def test_exit_after_stop_benchmark_runs_tiny(shapes_data_dir, tmp_path):
  out = run('-m', 'benchmarks.exit_after_stop', '--steps=30', f'--data_dir={shapes_data_dir}',
            '--signal=SIGINT', temp_dir=empty_temp_dir(tmp_path)).stdout
  assert 'SIGINT at step 30: exited ' in out
  assert re.fullmatch(r'exit_after_stop_max=[\d.]+s of_preemption_grace=[\d.]+x',
                      out.strip().splitlines()[-1])


@pytest.mark.slow
def test_time_to_accuracy_benchmark_runs_tiny_and_reads_a_finished_run_back(tf, tmp_path):
  """Two seeds of a 1/8-width recipe for 6 steps on small IDX files: each run's accuracy per
  evaluation and its timing, then the same command reads the runs back without training."""
  from tests.test_fashion_mnist import write_fashion_files
  write_fashion_files(tmp_path / 'files')
  args = ['-m', 'benchmarks.time_to_accuracy', '--seeds=0,1', f'--workdir={tmp_path / "runs"}',
          '--set', f'data_dir={tmp_path / "tfds"}', '--set', f'manual_dir={tmp_path / "files"}',
          '--set', 'model.width=0.125', '--set', 'num_train_steps=6', '--set',
          'batch_size=8', '--set', 'eval_every_steps=3', '--set', 'log_every_steps=3',
          '--set', 'checkpoint_every_steps=6', '--set', 'cache=False', '--validation']
  out = run(*args, temp_dir=empty_temp_dir(tmp_path)).stdout
  assert 'trained on train[:90%], scored on train[90%:]' in out
  for seed in (0, 1):
    assert re.search(rf'^seed {seed}: accuracy [\d.]+ [\d.]+; target 0.94 (at epoch \d|not '
                     r'reached); \d+ s, [\d.]+ images/s, input wait [\d.]+%$', out, re.MULTILINE)
  last = out.strip().splitlines()[-1]
  assert re.fullmatch(r'accuracy_mean=[\d.]+ accuracy_min=[\d.]+ accuracy_max=[\d.]+ '
                      r'reached_target=\d/2 seconds_per_run=\d+ run_vs_step_alone=[\d.]+x '
                      r'input_wait=[\d.]+', last)
  started = os.path.getmtime(tmp_path / 'runs' / 'validation-seed0' / 'time_to_accuracy.json')
  seed_lines = [line for line in out.splitlines() if line.startswith('seed ')]
  again = run(*args).stdout  # the step alone is timed again; the runs are read back
  assert [line for line in again.splitlines() if line.startswith('seed ')] == seed_lines
  assert os.path.getmtime(
      tmp_path / 'runs' / 'validation-seed0' / 'time_to_accuracy.json') == started
