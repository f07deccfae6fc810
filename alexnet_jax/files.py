"""The one path layer: every read and write of a workdir or a cache goes through here.

Paths are `etils.epath.Path`s, which take local paths and, through their backends, object
store URLs alike, so that where a run keeps its files is decided in one place. Files that a
resumed run trusts are replaced whole: written under a temporary name, then renamed over
the old one, so that a kill or a full disk never leaves one half-written.
"""

from __future__ import annotations

import io
import json
import os
import re

import numpy as np
from etils import epath

_URL = re.compile(r'^[a-z][a-z0-9+.-]*://')


def path(location: str | os.PathLike) -> epath.Path:
  """`location` as a Path: a URL as given, a local path with ~ expanded and made absolute."""
  if isinstance(location, epath.Path):
    return location
  location = os.fspath(location)
  if _URL.match(location):
    return epath.Path(location)
  return epath.Path(os.path.abspath(os.path.expanduser(location)))


def write_atomically(target: str | os.PathLike, content: str | bytes) -> None:
  target = path(target)
  temporary = target.with_name(target.name + '.tmp')
  temporary.write_bytes(content.encode() if isinstance(content, str) else content)
  temporary.replace(target)


def read_json(source: str | os.PathLike):
  return json.loads(path(source).read_text())


def write_json(target: str | os.PathLike, value, indent: int | None = None) -> None:
  write_atomically(target, json.dumps(value, indent=indent))


def write_npz(target: str | os.PathLike, **arrays) -> None:
  """`np.savez`'s file, replaced whole."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_atomically(target, buffer.getvalue())


def read_npz(source: str | os.PathLike) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(path(source).read_bytes())) as arrays:
    return dict(arrays)
