"""Fake sysfs trees for the power-reader tests: files written by a thread
(atomically, like sysfs attribute reads) while the real reader samples."""

import os
import threading
import time


def write_atomic(path, text):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


class Writer(object):
  """Calls ``update(elapsed_s)`` every ``period_s`` in a thread."""

  def __init__(self, update, period_s=0.005):
    self.update, self.period_s = update, period_s
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop)
    self._thread.daemon = True

  def _loop(self):
    t0 = time.monotonic()
    while not self._stop.is_set():
      self.update(time.monotonic() - t0)
      self._stop.wait(self.period_s)

  def __enter__(self):
    self.update(0.0)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
