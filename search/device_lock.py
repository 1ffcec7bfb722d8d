"""Keep measurements on a local device apart from training and from each other.

With several trials in flight on one machine, a trial's time and energy must
not be measured while another trial trains (or measures) on the same device:
the contention would land in the objectives. ``DeviceLock`` is a
readers-writer lock between the processes of one search, on files in the
results directory (``fcntl.flock``, so it also holds between the local
executor's workers and Ray tasks on this machine, and is released by the
kernel when a process dies):

* ``training()``: shared; any number of trials train at once;
* ``measuring()``: exclusive; waits for the trainings in progress to end and
  keeps new ones from starting until it is done (writer preference through a
  turnstile, so a measurement is never starved by a stream of trainings).

A remote device (the agent) serializes its own measurements and is not
disturbed by training on the host, so the search uses no lock for it.
"""

import contextlib
import fcntl
import os
import time


class DeviceLock:
  """Readers-writer lock on ``<directory>/.device.lock`` (see module doc)."""

  def __init__(self, directory):
    os.makedirs(directory, exist_ok=True)
    self._main = os.path.join(directory, ".device.lock")
    self._turnstile = os.path.join(directory, ".device.turnstile")

  @staticmethod
  def _open(path):
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

  @contextlib.contextmanager
  def training(self):
    gate, main = self._open(self._turnstile), self._open(self._main)
    try:
      fcntl.flock(gate, fcntl.LOCK_EX)      # wait behind a waiting measurement
      fcntl.flock(main, fcntl.LOCK_SH)
      fcntl.flock(gate, fcntl.LOCK_UN)
      yield
    finally:
      os.close(main)
      os.close(gate)

  @contextlib.contextmanager
  def measuring(self):
    """Exclusive; yields the seconds waited for it."""
    gate, main = self._open(self._turnstile), self._open(self._main)
    start = time.monotonic()
    try:
      fcntl.flock(gate, fcntl.LOCK_EX)      # no new training from here on
      fcntl.flock(main, fcntl.LOCK_EX)      # the trainings in progress have ended
      yield time.monotonic() - start
    finally:
      os.close(main)
      os.close(gate)


@contextlib.contextmanager
def _nothing():
  yield 0.0


def for_config(config):
  """The lock of a search's local device, or None for a remote one."""
  if config.device == "remote":
    return None
  return DeviceLock(config.results_dir)


def training(lock):
  return lock.training() if lock else _nothing()


def measuring(lock):
  return lock.measuring() if lock else _nothing()
