"""Timing helpers shared by the benchmarks: compiled functions, medians, one device."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import jax

from benchmarks.measure import median_seconds


def time_jitted(fn: Callable, *args, repeats: int = 5, warmup: int = 1) -> float:
  """Median wall-clock seconds of one call of a jitted `fn(*args)`, results awaited.

  The warm-up calls compile and are not timed.
  """
  return median_seconds(lambda: jax.block_until_ready(fn(*args)), repeats, warmup)


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
