"""Tests of search/device_lock.py: measurements exclude trainings and each
other, and a waiting measurement is not starved by new trainings; the lock of
a local device is one per machine, whatever the results directory."""

import os
import subprocess
import sys
import tempfile
import threading
import time
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

from search import device_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Holds --device=argv[1]'s lock exclusive (as a measurement does) for the search
# in argv[2] until a line comes on stdin; prints the time just before letting go.
HOLDER = r"""
import sys, time
from search import device_lock
class Settings:
  device, results_dir = sys.argv[1], sys.argv[2]
with device_lock.for_config(Settings()).measuring():
  print("held", flush=True)
  sys.stdin.readline()
  print(repr(time.monotonic()), flush=True)
"""


class Settings:
  """The two fields of a search config that ``device_lock.for_config`` reads."""

  def __init__(self, device, results_dir):
    self.device, self.results_dir = device, results_dir


class ExclusiveHolder:
  """Another process measuring on ``device`` for the search in ``results_dir``."""

  def __init__(self, device, results_dir):
    self.proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, device, results_dir], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    line = self.proc.stdout.readline()
    if line.strip() != "held":
      self.__exit__()
      raise AssertionError("expected the holder process to print 'held'; it printed %r" % line)

  def release(self):
    """Let the lock go; returns the (monotonic, machine-wide) time it did."""
    self.proc.stdin.write("release\n")
    self.proc.stdin.flush()
    released = float(self.proc.stdout.readline())
    self.proc.wait(60)
    return released

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait(60)
    self.proc.stdout.close()
    self.proc.stdin.close()


def finish_time_behind(device, results_dir, work):
  """``(finished, released)``: when ``work()``, started while another process
  measures on ``device`` for the search in ``results_dir``, returned, and when
  that process let the lock go.

  ``work`` is run once before, unhindered, for its duration: the holder lets go
  once ``work`` has returned or ten such durations (plus half a second) have
  passed, whichever is first. A ``work`` that waits for the lock can only
  finish after ``released``, however slow the machine."""
  start = time.monotonic()
  work()
  bound = 10 * (time.monotonic() - start) + 0.5
  finished, failed, done = [], [], threading.Event()

  def run():
    try:
      work()
      finished.append(time.monotonic())
    except Exception as e:  # pylint: disable=broad-except
      failed.append(e)
    done.set()
  with ExclusiveHolder(device, results_dir) as holder:
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    done.wait(bound)
    released = holder.release()
  thread.join(120)
  if failed:
    raise failed[0]
  if not finished:
    raise AssertionError("expected the work to finish within 120 s of the lock's release")
  return finished[0], released


class DeviceLockTest(tf.test.TestCase, parameterized.TestCase):

  def _events(self):
    events, lock = [], threading.Lock()

    def log(name):
      with lock:
        events.append((time.monotonic(), name))
    return events, log

  def test_measuring_waits_for_training_and_blocks_new_training(self):
    lock = device_lock.DeviceLock(self.get_temp_dir())
    events, log = self._events()

    def train(name, hold_s):
      with lock.training():
        log(name + " start")
        time.sleep(hold_s)
        log(name + " end")

    def measure():
      with lock.measuring() as waited:
        log("measure start")
        self.assertGreater(waited, 0.1)
        time.sleep(0.3)
        log("measure end")

    first = threading.Thread(target=train, args=("train1", 0.5))
    first.start()
    time.sleep(0.1)
    meas = threading.Thread(target=measure)
    meas.start()
    time.sleep(0.1)
    second = threading.Thread(target=train, args=("train2", 0.0))
    second.start()
    for t in (first, meas, second):
      t.join(10)
    order = [name for _, name in sorted(events)]
    self.assertEqual(order, ["train1 start", "train1 end", "measure start", "measure end",
                             "train2 start", "train2 end"])

  def _two_at_once(self, hold):
    """Order of start/end events of two threads each holding ``hold()``."""
    events, log = self._events()

    def work(name):
      with hold():
        log(name + " start")
        time.sleep(0.25)
        log(name + " end")
    threads = [threading.Thread(target=work, args=("w%d" % i,)) for i in range(2)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(10)
    return [name.split()[1] for _, name in sorted(events)]

  def test_trainings_share_the_device(self):
    lock = device_lock.DeviceLock(self.get_temp_dir())
    self.assertEqual(self._two_at_once(lock.training), ["start", "start", "end", "end"])

  def test_two_measurements_never_overlap(self):
    lock = device_lock.DeviceLock(self.get_temp_dir())
    self.assertEqual(self._two_at_once(lock.measuring), ["start", "end", "start", "end"])

  @parameterized.parameters("measuring", "training")
  def test_device_lock_of_two_results_dirs_exclude_each_other(self, kind):
    temp = self.get_temp_dir()
    with mock.patch.dict(os.environ, TEA_LOCK_DIR=os.path.join(temp, "locks_" + kind)):
      other = device_lock.for_config(Settings("cpu", os.path.join(temp, "search_b_" + kind)))

      def acquire():
        with getattr(other, kind)():
          pass
      finished, released = finish_time_behind("cpu", os.path.join(temp, "search_a_" + kind),
                                              acquire)
    self.assertGreater(finished, released,
                       msg="expected %s() for a second results dir to wait for the first's "
                       "measurement" % kind)

  def test_device_lock_of_another_device_kind_is_another_lock(self):
    temp = self.get_temp_dir()
    with mock.patch.dict(os.environ, TEA_LOCK_DIR=os.path.join(temp, "locks_kinds")):
      gpu = device_lock.for_config(Settings("gpu", os.path.join(temp, "search_gpu")))

      def measure():
        with gpu.measuring():
          pass
      finished, released = finish_time_behind("cpu", os.path.join(temp, "search_cpu"), measure)
    self.assertLess(finished, released,
                    msg="expected the gpu's lock free while the cpu's is held")

  def test_device_lock_lives_in_a_machine_wide_directory(self):
    with mock.patch.dict(os.environ, TEA_LOCK_DIR=""):
      lock = device_lock.for_config(Settings("myriad", self.get_temp_dir()))
    self.assertEqual(lock.directory,
                     os.path.join(tempfile.gettempdir(), "tea-keras-locks", "myriad"))
    mine = os.path.join(self.get_temp_dir(), "mine")
    with mock.patch.dict(os.environ, TEA_LOCK_DIR=mine):
      lock = device_lock.for_config(Settings("cpu", self.get_temp_dir()))
    self.assertEqual(lock.directory, os.path.join(mine, "cpu"))

  @parameterized.parameters("cross_device", "table2")
  def test_remeasurement_holds_the_device_exclusive(self, path):
    import fcntl  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from search import config as config_lib  # pylint: disable=g-import-not-at-top
    from search.reports import cross_device_lib  # pylint: disable=g-import-not-at-top
    from search.reports import figures as report  # pylint: disable=g-import-not-at-top
    from search import store as store_lib  # pylint: disable=g-import-not-at-top
    from tea_keras import space  # pylint: disable=g-import-not-at-top
    temp = os.path.join(self.get_temp_dir(), "remeasure_" + path)
    source = os.path.join(temp, "source")
    config = config_lib.SearchConfig(results_dir=source, objectives=("error", "time"),
                                     dataset="cifar10_sample", measure_images=100)
    config_lib.write_config(config)
    store = store_lib.TrialStore(os.path.join(source, "trials.db"))
    trial_id = store.add(space.sample(np.random.default_rng(0)), "initial")
    store.mark_running(trial_id)
    store.finish(trial_id, "done", {"val_error": 0.5, "time_s": 0.1},
                 {"model": os.path.join(source, "model.keras")})
    store.close()
    held = []

    def fake_measure(model, work, settings, images):
      del model, settings, images
      lock_dir = device_lock.lock_directory("cpu")
      os.makedirs(lock_dir, exist_ok=True)
      fd = os.open(os.path.join(lock_dir, ".device.lock"), os.O_RDONLY | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        held.append(False)
      except BlockingIOError:
        held.append(True)
      finally:
        os.close(fd)
      os.makedirs(work, exist_ok=True)
      return {"time_s": 0.2}, {}

    class Splits:
      x_val = np.zeros((100, 32, 32, 3), np.uint8)
    with mock.patch.dict(os.environ, TEA_LOCK_DIR=os.path.join(temp, "locks")), \
        mock.patch("deploy.pipeline.export_and_measure", fake_measure), \
        mock.patch("tea_keras.network.load_model", lambda path: object()), \
        mock.patch("tea_keras.data.load", lambda *a, **kw: Splits()):
      if path == "cross_device":
        rows = cross_device_lib.remeasure(source, config, os.path.join(temp, "out"),
                                      log=lambda line: None)
        self.assertEqual([r["time_s"] for r in rows], [0.2])
      else:
        os.makedirs(os.path.join(temp, "model_dir", "measurements"))
        report.measure_model_dir(os.path.join(temp, "model_dir"), "cpu", config)
    self.assertEqual(held, [True], msg="expected the measurement to hold the device's lock "
                     "exclusive (a shared flock refused)")

  def test_remote_devices_need_no_lock(self):
    class Config:
      device, results_dir = "remote", self.get_temp_dir()
    self.assertIsNone(device_lock.for_config(Config()))
    with device_lock.measuring(None) as waited:
      self.assertEqual(waited, 0.0)


if __name__ == "__main__":
  tf.test.main()
