"""Keep TensorFlow's native (C++) log lines off the console unless asked.

TensorFlow's C++ core writes ``I0000 ... port.cc:153] oneDNN custom
operations are on``, ``E0000 ... failed call to cuInit``, ``WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR`` and
the like straight to file descriptor 2, some of them before any setting of
``TF_CPP_MIN_LOG_LEVEL`` is read. ``quiet_native_logs()`` routes this
process's fd 2 through a pipe and a thread that drops exactly those lines
(the absl/glog prefix ``[IWEF]mmdd hh:mm:ss.micros thread file:line]`` whose
file is a C/C++ source or header, ``port.cc:153]``, and the known banner
lines) and passes everything else through: Python tracebacks, warnings and
the project's own messages are untouched, and so are absl's and the
``logging`` module's Python log lines, which carry the same prefix with a
Python file (``W1207 00:41:51.123456 140234 cascade.py:123] ...``). Set
``TEA_TF_LOGS=1`` to see everything.
"""

import atexit
import os
import re
import sys
import threading

# C, C++ and CUDA sources and headers: the files TensorFlow's native core logs from.
NATIVE_SUFFIXES = ("c", "cc", "cpp", "cxx", "cu", "h", "hh", "hpp", "hxx", "inc")
NATIVE_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]\s]+\.(?:"
    + "|".join(NATIVE_SUFFIXES) + r"):\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|This TensorFlow binary is optimized to use available CPU instructions)")
_STATE = {}


def is_native_log(line):
  return bool(NATIVE_LINE.match(line))


def _pump(read_fd, write_fd):
  with os.fdopen(read_fd, "rb", buffering=0) as pipe:
    pending = b""
    while True:
      chunk = pipe.read(65536)
      if not chunk:
        break
      pending += chunk
      *lines, pending = pending.split(b"\n")
      out = [l for l in lines if not is_native_log(l.decode("utf-8", "replace"))]
      if out:
        os.write(write_fd, b"\n".join(out) + b"\n")
    if pending and not is_native_log(pending.decode("utf-8", "replace")):
      os.write(write_fd, pending)


def quiet_native_logs():
  """Filter this process's fd 2 (idempotent; a no-op with TEA_TF_LOGS=1)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if _STATE or os.environ.get("TEA_TF_LOGS", "") not in ("", "0"):
    return
  sys.stderr.flush()
  read_fd, write_fd = os.pipe()
  saved = os.dup(2)
  os.dup2(write_fd, 2)
  os.close(write_fd)
  thread = threading.Thread(target=_pump, args=(read_fd, saved), name="native-log-filter")
  thread.daemon = True
  thread.start()
  _STATE.update(saved=saved, thread=thread)
  atexit.register(restore)


def restore():
  """Give fd 2 back to the terminal, after passing on what is in the pipe."""
  if not _STATE:
    return
  try:
    sys.stderr.flush()
  except (OSError, ValueError):
    pass
  os.dup2(_STATE["saved"], 2)  # closes the pipe's last write end: the pump sees EOF
  _STATE["thread"].join(timeout=2.0)
  _STATE.clear()
