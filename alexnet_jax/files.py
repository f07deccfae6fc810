"""Files replaced whole: written under a temporary name, then renamed over the old one, so that
a kill or a full disk never leaves one half-written."""

from __future__ import annotations

import io
import os

import numpy as np


def write_atomically(path: str, content: str | bytes) -> None:
  temporary = path + '.tmp'
  with open(temporary, 'wb') as f:
    f.write(content.encode() if isinstance(content, str) else content)
  os.replace(temporary, path)


def npz_bytes(**arrays) -> bytes:
  """`np.savez`'s file, in memory."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()
