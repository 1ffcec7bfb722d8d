"""Tests of search/device_lock.py: measurements exclude trainings and each
other, and a waiting measurement is not starved by new trainings."""

import threading
import time

import tensorflow as tf

from search import device_lock


class DeviceLockTest(tf.test.TestCase):

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

  def test_remote_devices_need_no_lock(self):
    class Config:
      device, results_dir = "remote", self.get_temp_dir()
    self.assertIsNone(device_lock.for_config(Config()))
    with device_lock.measuring(None) as waited:
      self.assertEqual(waited, 0.0)


if __name__ == "__main__":
  tf.test.main()
