"""Tests of search/executors.py: local workers die with the search that started them."""

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time

from absl.testing import parameterized
import tensorflow as tf

from search import executors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PR_GET_PDEATHSIG = 2

# A driver: a LocalExecutor whose one worker reports its PID, then works for
# ten minutes; with "watchdog_only" the worker first clears the Linux death
# signal, so that only the watchdog thread can notice the driver's death.
_DRIVER = """
import os, sys, time
from search import executors
from tests.search import executors_test
ex = executors.LocalExecutor(1)
if sys.argv[1] == "watchdog_only":
  ex._pool.submit(executors_test.clear_parent_death_signal).result()
print(ex._pool.submit(os.getpid).result(), flush=True)
ex._pool.submit(time.sleep, 600)
time.sleep(600)
"""


def _libc():
  return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def clear_parent_death_signal():
  """(In a worker) undo PR_SET_PDEATHSIG."""
  if sys.platform.startswith("linux"):
    _libc().prctl(1, 0, 0, 0, 0)


def worker_safeguards():
  """(In a worker) its death signal and whether the watchdog thread runs."""
  value = ctypes.c_int(-1)
  if sys.platform.startswith("linux"):
    _libc().prctl(_PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
  return value.value, [t.name for t in threading.enumerate()]


def _alive(pid):
  """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


class WatchdogTest(tf.test.TestCase):

  def test_watch_parent_exits_once_the_parent_pid_changes(self):
    exited = threading.Event()
    # As after a re-parenting: the parent recorded is no longer os.getppid().
    watcher = threading.Thread(target=executors.watch_parent,
                               args=(os.getppid() + 1, 0.01, exited.set), daemon=True)
    watcher.start()
    watcher.join(timeout=5)
    self.assertTrue(exited.is_set())
    self.assertFalse(watcher.is_alive())


class InfrastructureFailureTest(tf.test.TestCase):

  def test_infrastructure_reason_retries_lost_nodes_and_workers_only(self):
    from ray import exceptions  # pylint: disable=g-import-not-at-top
    died = exceptions.NodeDiedError(
        "Task failed because the node it was running on is dead or unavailable. Node IP: "
        "10.0.0.2, node ID: 4f2dcb333c9553ef86b8b81b201acce77d77f740748133d9f907902e. This "
        "can happen if the node was preempted.")
    self.assertEqual(executors.infrastructure_reason(died),
                     "NodeDiedError: Task failed because the node it was running on is dead or "
                     "unavailable (node 4f2dcb33)")
    self.assertStartsWith(executors.infrastructure_reason(exceptions.WorkerCrashedError()),
                          "WorkerCrashedError: The worker died unexpectedly")
    self.assertStartsWith(executors.infrastructure_reason(exceptions.OwnerDiedError(
        "ff" * 28, "", "")), "OwnerDiedError: ")
    for own in (exceptions.TaskCancelledError(), ValueError("the trial's own bug")):
      self.assertIsNone(executors.infrastructure_reason(own), msg=repr(own))


class LocalWorkerTest(tf.test.TestCase, parameterized.TestCase):

  def test_local_worker_sets_death_signal_and_watchdog(self):
    ex = executors.LocalExecutor(1)
    pool = ex._pool  # pylint: disable=protected-access
    try:
      death_signal, threads = pool.submit(worker_safeguards).result(timeout=120)
    finally:
      ex.shutdown()
    if sys.platform.startswith("linux"):
      self.assertEqual(death_signal, signal.SIGKILL)
    self.assertIn("parent-watchdog", threads)

  @parameterized.parameters("death_signal", "watchdog_only")
  def test_local_worker_dies_within_seconds_of_a_kill_9_of_its_parent(self, mode):
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, mode], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
      worker = int(driver.stdout.readline())
      self.assertTrue(_alive(worker))
      time.sleep(0.5)
      self.assertTrue(_alive(worker), msg="the worker ended before its parent was killed")
    finally:
      driver.kill()  # SIGKILL: no cleanup in the driver
      driver.wait()
    deadline = time.time() + 10
    while _alive(worker) and time.time() < deadline:
      time.sleep(0.1)
    if _alive(worker):
      os.kill(worker, signal.SIGKILL)
      self.fail("worker %d outlived its killed parent by 10 s (%s)" % (worker, mode))


if __name__ == "__main__":
  tf.test.main()
