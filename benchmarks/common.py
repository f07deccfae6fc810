"""Timing helpers shared by the benchmarks: compiled functions, medians, one device."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.measure import median_seconds


def time_jitted(fn: Callable, *args, repeats: int = 5, warmup: int = 1) -> float:
  """Median wall-clock seconds of one call of a jitted `fn(*args)`, results awaited.

  The warm-up calls compile and are not timed.
  """
  return median_seconds(lambda: jax.block_until_ready(fn(*args)), repeats, warmup)


def time_forms(layer: str, forms: dict[str, Callable], x: jax.Array, cotangent: jax.Array,
               repeats: int) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], float]]:
  """Times each form of one layer forward ('fwd') and forward+backward ('fwd+bwd'), printing
  each; returns every form's output (float32, for the caller to compare) and the seconds.

  The backward pass is the gradient of <form(x), cotangent>, i.e. the form's backward pass
  for that cotangent.
  """
  outputs, seconds = {}, {}
  for form, fn in forms.items():
    forward = jax.jit(fn)
    backward = jax.jit(jax.grad(
        lambda x, fn=fn: jnp.vdot(fn(x), cotangent).astype(jnp.float32)))
    outputs[form] = np.asarray(forward(x), np.float32)
    for pass_, step in (('fwd', forward), ('fwd+bwd', backward)):
      seconds[form, pass_] = time_jitted(step, x, repeats=repeats)
      print(f'{layer} {tuple(x.shape[1:])} {form:>14} {pass_:>8}: '
            f'{seconds[form, pass_] * 1e3:9.2f} ms')
  return outputs, seconds


def print_ratios(name: str, totals, baseline: str, form: str, **more: float) -> None:
  """The machine-readable last line: `baseline`'s seconds over `form`'s, forward and
  forward+backward, as NAME_fwd=..x NAME_fwd_bwd=..x, then each of `more` as KEY=..x."""
  ratios = {pass_: totals[baseline, pass_] / totals[form, pass_] for pass_ in ('fwd', 'fwd+bwd')}
  print(' '.join([f'{name}_fwd={ratios["fwd"]:.2f}x', f'{name}_fwd_bwd={ratios["fwd+bwd"]:.2f}x',
                  *(f'{key}={value:.2f}x' for key, value in more.items())]))


def describe_device() -> str:
  device = jax.devices()[0]
  return f'{device.platform}: {getattr(device, "device_kind", device)} x{jax.device_count()}'


def parse_args(doc: str, batch: int, repeats: int) -> argparse.Namespace:
  """--batch, --dtype and --repeats, then print the device and settings being measured."""
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('--batch', type=int, default=batch)
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=repeats)
  args = parser.parse_args()
  print(f'device {describe_device()}, batch {args.batch}, {args.dtype}')
  return args
