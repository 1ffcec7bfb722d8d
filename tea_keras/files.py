"""Atomic file writes: the one home of the project's write-then-rename.

A file written through ``atomic_path`` appears complete or not at all: a
killed process leaves the previous file (or none), never half of one, and a
reader never sees a partial file. The device side (``deploy/device``, copied
to a board on its own) keeps its own ``tensorrt_build.write_atomic``.
"""

import contextlib
import json
import os
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def temporary_path(path: PathLike, keep_suffix: bool = False) -> str:
  """The temporary name ``atomic_path`` writes first: ``path + ".tmp"`` (a
  glob for ``*.json`` never matches a file being written), or with
  ``keep_suffix`` the extensions kept last (``model.tmp.keras``,
  ``ckpt.tmp.weights.h5``) for writers that infer the format from them
  (Keras, matplotlib)."""
  path = os.fspath(path)
  if not keep_suffix:
    return path + ".tmp"
  directory, name = os.path.split(path)
  head, dot, tail = name.partition(".")
  return os.path.join(directory, head + ".tmp" + dot + tail if dot else name + ".tmp")


@contextlib.contextmanager
def atomic_path(path: PathLike, keep_suffix: bool = False) -> Iterator[str]:
  """Yields a temporary path beside ``path``; when the block ends without an
  exception the temporary file replaces ``path`` (``os.replace``), otherwise
  it is removed and ``path`` is left as it was."""
  tmp = temporary_path(path, keep_suffix)
  try:
    yield tmp
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  os.replace(tmp, os.fspath(path))


def write_text(path: PathLike, text: str, newline: Union[str, None] = None) -> None:
  """Writes ``text`` to ``path`` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline=newline) as f:
      f.write(text)


def write_json(path: PathLike, obj: Any, **dump_kwargs: Any) -> None:
  """Writes ``json.dumps(obj, **dump_kwargs)`` to ``path`` atomically."""
  write_text(path, json.dumps(obj, **dump_kwargs))
