"""The agent's files: its work dir and the measurement traces it keeps.

The work dir (``$TMPDIR/tea-agent-*``, holding the uploads while they are
measured) records its owner's PID and start time, so that a later agent can
tell the dirs of agents that are gone (``clean_stale_work_dirs``) from those
of live ones. Traces go to one ``measurement_NNNN`` folder per measurement,
numbered after the highest already there and created exclusively;
``prune_traces`` keeps the newest.

Device-side module: Python 3.6 syntax, standard library only.
"""

import os
import re
import shutil
import sys
import tempfile
import time
from typing import List, Optional

WORK_PREFIX = "tea-agent-"
OWNER_FILE = "owner"
LEGACY_WORK_DIR_AGE_S = 3600.0
TRACE_NAME = re.compile(r"^measurement_(\d+)$")


def _process_start(pid: int) -> str:
  """The start time of process ``pid`` (Linux /proc), '' where unknown: tells
  a live owner from a new process that got a dead owner's PID."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[-1].split()[19]
  except (OSError, IndexError):
    return ""


def _owner_alive(pid: int, start: str) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  now = _process_start(pid)
  return not start or not now or now == start


def make_work_dir(root: Optional[str] = None) -> str:
  """A new ``tea-agent-*`` dir under ``root`` (the temp dir) naming its owner."""
  path = tempfile.mkdtemp(prefix=WORK_PREFIX, dir=root)
  with open(os.path.join(path, OWNER_FILE), "w") as f:
    f.write("%d %s\n" % (os.getpid(), _process_start(os.getpid())))
  return path


def clean_stale_work_dirs(root: Optional[str] = None, now: Optional[float] = None) -> List[str]:
  """Remove this user's ``tea-agent-*`` dirs under ``root`` whose owner is not
  alive (without an owner file: untouched for an hour); returns their paths."""
  root = root or tempfile.gettempdir()
  now = time.time() if now is None else now
  removed = []
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name)
    try:
      st = os.lstat(path)
    except OSError:  # gone meanwhile
      continue
    if (not name.startswith(WORK_PREFIX) or not os.path.isdir(path) or os.path.islink(path)
        or st.st_uid != os.getuid()):
      continue
    try:
      with open(os.path.join(path, OWNER_FILE)) as f:
        fields = f.read().split()
      stale = not _owner_alive(int(fields[0]), fields[1] if len(fields) > 1 else "")
    except (OSError, ValueError, IndexError):
      stale = now - st.st_mtime > LEGACY_WORK_DIR_AGE_S
    if stale:
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
  return removed


def new_trace_dir(root: str) -> str:
  """A new ``measurement_NNNN`` folder under ``root``, numbered after the
  highest there and created exclusively (two agents never share one)."""
  if not os.path.isdir(root):
    os.makedirs(root)
  numbers = [int(m.group(1)) for m in map(TRACE_NAME.match, os.listdir(root)) if m]
  number = max(numbers) + 1 if numbers else 1
  while True:
    path = os.path.join(root, "measurement_%04d" % number)
    try:
      os.mkdir(path)
      return path
    except FileExistsError:
      number += 1


def prune_traces(root: str, keep: int) -> List[str]:
  """Remove all but the newest ``keep`` measurement folders; their paths."""
  found = sorted((int(m.group(1)), m.group(0)) for m in map(TRACE_NAME.match, os.listdir(root))
                 if m and os.path.isdir(os.path.join(root, m.group(0))))
  old = [os.path.join(root, name) for _, name in found[:max(0, len(found) - keep)]]
  for path in old:
    shutil.rmtree(path, ignore_errors=True)
  return old


def tidy_traces(trace_root: Optional[str], trace_dir: str, max_traces: int) -> None:
  """After a measurement: drop ``trace_dir`` if it stayed empty (the
  measurement failed before writing), then keep the newest ``max_traces``
  (0: all) under ``trace_root``; a failure is logged, never raised."""
  try:
    if os.path.isdir(trace_dir) and not os.listdir(trace_dir):  # failed before writing
      os.rmdir(trace_dir)
    if max_traces:
      prune_traces(trace_root, max_traces)  # type: ignore[arg-type]  # set with trace_dir
  except OSError as e:  # never at the cost of the measurement
    sys.stderr.write("agent: could not tidy %s: %s\n" % (trace_root, e))
