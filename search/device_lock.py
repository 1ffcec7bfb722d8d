"""Keep measurements on a local device apart from training and from each other.

With several trials in flight on one machine, a trial's time and energy must
not be measured while another trial trains (or measures) on the same device:
the contention would land in the objectives. ``DeviceLock`` is a
readers-writer lock between the processes of the machine (``fcntl.flock``, so
it also holds between the local executor's workers, Ray tasks on this machine
and other programs, and is released by the kernel when a process dies):

* ``training()`` (also ``shared()``): any number of holders at once: trials
  training, and the search driver while it proposes the next cell (GP fit,
  acquisition) and while it writes its outputs and plots;
* ``measuring()``: exclusive; waits for the shared holders in progress to end
  and keeps new ones from starting until it is done (writer preference
  through a turnstile, so a measurement is never starved by a stream of
  trainings): a trial's measurement, and a re-measurement by
  ``search.reports`` or ``search.reports.cross_device``.

The lock is one per machine and device kind, whatever the results directory,
so that two searches, or a re-measurement beside a search, exclude each
other: its files are in ``$TEA_LOCK_DIR/<device>``, else in
``<tempfile.gettempdir()>/tea-keras-locks/<device>`` (``lock_directory``).

A remote device (the agent) serializes its own measurements and is not
disturbed by work on the host, so nothing takes a lock for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from typing import Any, ContextManager, Iterator

LOCK_DIR_ENV = "TEA_LOCK_DIR"


class DeviceLock:
  """Readers-writer lock on ``<directory>/.device.lock`` (see module doc)."""

  def __init__(self, directory: str) -> None:
    self.directory = directory
    _make_lock_dir(directory)
    self._main = os.path.join(directory, ".device.lock")
    self._turnstile = os.path.join(directory, ".device.turnstile")

  @staticmethod
  def _open(path: str) -> int:
    # Read-only is enough for flock, and lets the processes of every user of
    # the machine lock a file that one of them created.
    try:
      return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as e:
      raise OSError("Cannot open the device lock %s (%s); expected a lock directory every "
                    "process of this machine can use: set %s to another one." % (
                        path, e.strerror or e, LOCK_DIR_ENV)) from e

  @contextlib.contextmanager
  def shared(self) -> Iterator[None]:
    """Shared with the other shared holders; waits behind a measurement."""
    gate, main = self._open(self._turnstile), self._open(self._main)
    try:
      fcntl.flock(gate, fcntl.LOCK_EX)      # wait behind a waiting measurement
      fcntl.flock(main, fcntl.LOCK_SH)
      fcntl.flock(gate, fcntl.LOCK_UN)
      yield
    finally:
      os.close(main)
      os.close(gate)

  training = shared

  @contextlib.contextmanager
  def measuring(self) -> Iterator[float]:
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


def _make_lock_dir(directory: str) -> None:
  """Create ``directory``; the default one, in the temp dir, open to every
  user (sticky, like /tmp) so that all processes of the machine share it."""
  default_root = os.path.join(tempfile.gettempdir(), "tea-keras-locks")
  for path in (default_root, directory) if directory.startswith(default_root + os.sep) else ():
    try:
      os.mkdir(path)
      os.chmod(path, 0o1777)
    except OSError:
      pass  # it exists (made by another process or user), or it cannot be: makedirs says
  os.makedirs(directory, exist_ok=True)


def lock_directory(device: str) -> str:
  """The machine-wide lock directory of local device kind ``device``."""
  root = os.environ.get(LOCK_DIR_ENV) or os.path.join(tempfile.gettempdir(), "tea-keras-locks")
  return os.path.join(root, device)


@contextlib.contextmanager
def _nothing() -> Iterator[float]:
  yield 0.0


def for_config(config: Any) -> DeviceLock | None:
  """The machine-wide lock of a search's local device, or None for a remote one."""
  if config.device == "remote":
    return None
  return DeviceLock(lock_directory(config.device))


def training(lock: DeviceLock | None) -> ContextManager[Any]:
  return lock.training() if lock else _nothing()


def shared(lock: DeviceLock | None) -> ContextManager[Any]:
  """``lock`` held shared (the driver's own work); nothing for None."""
  return lock.shared() if lock else _nothing()


def measuring(lock: DeviceLock | None) -> ContextManager[Any]:
  return lock.measuring() if lock else _nothing()
