"""Framework-free measuring helpers, shared by the JAX benchmarks and the PyTorch baseline
(which must not import JAX, so that its process's memory and threads are its own)."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
  """Median wall-clock seconds of `fn()` after `warmup` untimed calls. `fn` must wait for its
  own result. The median resists a noisy shared machine better than the mean."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def peak_rss_bytes() -> int:
  """This process's peak resident memory so far.

  Linux's VmHWM, which starts afresh in a new program; ru_maxrss (the fallback elsewhere)
  carries over through fork and exec, so a child started by a large parent would report the
  parent's peak.
  """
  try:
    with open('/proc/self/status', encoding='ascii') as status:
      for line in status:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024  # kB
  except OSError:
    pass
  scale = 1 if sys.platform == 'darwin' else 1024  # bytes on macOS, kilobytes elsewhere
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
