"""Tests of deploy/device/contention.py and the contention policy of the protocol:
other processes' CPU use is seen, re-measured, flagged or refused."""

import os
import subprocess
import sys
import time

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from deploy.device import contention
from deploy.device import session
from deploy.device.power import none


class _Runtime(object):
  """Busy for ~0.2 s per batch, so that /proc/stat's 10 ms ticks resolve it."""
  name, fixed_batch_size = "numpy", None

  def predict(self, batch):
    x = batch.reshape(len(batch), -1)
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
      x = np.tanh(x @ np.ones((x.shape[1], x.shape[1]), np.float32) * 1e-3)
    return x[:, :10]

  def describe(self):
    return {"runtime": self.name}


def _burners(count):
  """CPU-bound processes, killed by the caller."""
  return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


class ContentionTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.images = np.random.default_rng(0).normal(size=(40, 8, 8, 3)).astype(np.float32)

  def _fake_stat(self, user, system, idle):
    path = os.path.join(self.get_temp_dir(), "stat")
    with open(path, "w") as f:
      f.write("cpu  %d 0 %d %d 7 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n" % (user, system, idle))
    return path

  def test_machine_busy_seconds_counts_busy_ticks_only(self):
    path = self._fake_stat(user=300, system=100, idle=5000)
    # user + system, in clock ticks (idle and iowait are not busy)
    self.assertAlmostEqual(contention.machine_busy_seconds(path),
                           400.0 / os.sysconf("SC_CLK_TCK"))
    self.assertIsNone(contention.machine_busy_seconds(os.path.join(self.get_temp_dir(), "no")))

  def test_meter_sees_another_process_burning_cpu(self):
    if contention.machine_busy_seconds() is None:
      self.skipTest("no /proc/stat here")
    procs = _burners(1)
    try:
      time.sleep(0.3)
      meter = contention.CpuMeter().start()
      time.sleep(1.0)
      share = meter.stop()["other_cpu_share"]
    finally:
      for p in procs:
        p.kill()
        p.wait()
    # one busy core out of cpu_count(), minus scheduling slack
    self.assertGreater(share, 0.7 / contention.cpu_count())

  def test_quiet_repeat_is_not_flagged(self):
    self.enter_context(tf.compat.v1.test.mock.patch.object(
        contention, "STAT_PATH", self._fake_stat(1, 1, 1)))
    result = session.run_measurement(_Runtime(), none.NoPower(), self.images, "cpu",
                                     batch_size=20, repeats=2, warmup_batches=0)
    self.assertFalse(result["contended"])
    self.assertEqual(result["other_cpu_share"], 0.0)
    self.assertEqual(result["remeasured"], 0)

  @parameterized.parameters(("remeasure", 2), ("warn", 0))
  def test_contended_repeat_is_remeasured_then_flagged(self, policy, remeasured):
    if contention.machine_busy_seconds() is None:
      self.skipTest("no /proc/stat here")
    procs = _burners(contention.cpu_count())
    try:
      time.sleep(0.3)
      result = session.run_measurement(
          _Runtime(), none.NoPower(), self.images, "cpu", batch_size=20, repeats=1,
          warmup_batches=0, contention_policy=policy, remeasure_pause_s=0.05)
    finally:
      for p in procs:
        p.kill()
        p.wait()
    self.assertTrue(result["contended"])
    self.assertGreater(result["other_cpu_share"], contention.DEFAULT_THRESHOLD)
    self.assertEqual(result["remeasured"], remeasured)
    self.assertTrue(any("contended measurement" in w for w in result["warnings"]))

  def test_refuse_policy_raises_while_busy(self):
    if contention.machine_busy_seconds() is None:
      self.skipTest("no /proc/stat here")
    procs = _burners(contention.cpu_count())
    try:
      time.sleep(0.3)
      with self.assertRaisesRegex(contention.ContentionError, "used \\d+% of this machine"):
        session.run_measurement(_Runtime(), none.NoPower(), self.images, "cpu", batch_size=20,
                                repeats=1, warmup_batches=0, contention_policy="refuse")
    finally:
      for p in procs:
        p.kill()
        p.wait()

  def test_bad_policy_is_refused_before_any_work(self):
    with self.assertRaisesRegex(ValueError, "Expected one of remeasure|warn|refuse"):
      session.run_measurement(_Runtime(), none.NoPower(), self.images, "cpu",
                              contention_policy="ignore")


if __name__ == "__main__":
  tf.test.main()
