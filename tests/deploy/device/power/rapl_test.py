"""Tests of deploy/device/power/rapl.py against a fake powercap tree."""

import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from deploy.device import protocol
from deploy.device.power import base
from deploy.device.power import rapl
from tests.deploy.device.power import sysfs_fakes


def _zone(root, name, zone="intel-rapl:0", max_uj=2000000):
  d = os.path.join(root, "sys/class/powercap", zone)
  os.makedirs(d)
  sysfs_fakes.write_atomic(os.path.join(d, "name"), name + "\n")
  sysfs_fakes.write_atomic(os.path.join(d, "max_energy_range_uj"), "%d\n" % max_uj)
  sysfs_fakes.write_atomic(os.path.join(d, "energy_uj"), "0\n")
  return d


def _run_as_nobody(fn):
  """Run ``fn`` in a forked child with uid 65534 (real permission checks);
  returns 'ExceptionName message' or 'ok'."""
  read_fd, write_fd = os.pipe()
  pid = os.fork()
  if pid == 0:  # child: drop root, call, report through the pipe, exit hard
    os.close(read_fd)
    try:
      os.setgid(65534)
      os.setuid(65534)
      fn()
      msg = "ok"
    except BaseException as e:  # reported to the parent
      msg = "%s %s" % (type(e).__name__, e)
    os.write(write_fd, msg.encode())
    os._exit(0)
  os.close(write_fd)
  with os.fdopen(read_fd) as f:
    out = f.read()
  os.waitpid(pid, 0)
  return out


class RaplTest(tf.test.TestCase):

  def test_unwrap_delta_handles_wraparound(self):
    self.assertEqual(rapl.unwrap_delta(100, 250, 1000), 150)
    self.assertEqual(rapl.unwrap_delta(900, 50, 1000), 150)

  def test_rapl_power_reads_counter_written_by_thread(self):
    root = self.get_temp_dir() + "/live"
    max_uj = 2000000                                   # wraps every 20 ticks
    zone = _zone(root, "package-0", max_uj=max_uj)
    _zone(root, "psys", zone="intel-rapl:1")            # not selected by default
    source = rapl.RaplPower(root=root)                  # counter at 0 now
    truth = {"uj": 0}

    def update(elapsed):
      if elapsed > 0:                                   # 0.1 J per 10 ms tick
        truth["uj"] += 100000
      sysfs_fakes.write_atomic(os.path.join(zone, "energy_uj"),
                               "%d\n" % (truth["uj"] % max_uj))

    with sysfs_fakes.Writer(update, period_s=0.01):
      with protocol.Sampler(source, 0.02) as sampler:
        deadline = time.monotonic() + 30.0               # >= 3 wraps, even when starved
        while truth["uj"] < 3.5 * max_uj and time.monotonic() < deadline:
          time.sleep(0.05)
        trace = sampler.stop()
    # Every microjoule the writer added is counted across the wraps.
    self.assertAllClose(source.energy_counter_j(), truth["uj"] * 1e-6, atol=1e-9)
    self.assertEqual(source.describe()["domains"], ["package-0"])
    self.assertGreaterEqual(source.describe()["wraps"], 3)
    # Power is the counter delta over each sampling interval.
    counted = trace.counter_j[-1] - trace.counter_j[0]
    self.assertAllClose(np.nansum(trace.p[1:] * np.diff(trace.t)), counted, rtol=0.05)
    self.assertBetween(float(np.nanmedian(trace.p)), 3.0, 20.0)   # ~10 W nominal

  def test_rapl_power_missing_tree_says_what_was_expected(self):
    with self.assertRaisesRegex(base.PowerSourceError, "intel-rapl:0"):
      rapl.RaplPower(root=self.get_temp_dir() + "/empty")

  def test_rapl_power_unreadable_counter_says_root_only(self):
    if os.getuid() != 0:
      self.skipTest("needs root to drop to an unprivileged user")
    root = tempfile.mkdtemp()          # traversable by the unprivileged child
    self.addCleanup(shutil.rmtree, root)
    zone = _zone(root, "package-0")
    os.chmod(os.path.join(zone, "energy_uj"), 0o400)
    for d in (root, root + "/sys", root + "/sys/class", root + "/sys/class/powercap", zone):
      os.chmod(d, 0o755)
    out = _run_as_nobody(lambda: rapl.RaplPower(root=root))
    self.assertIn("PowerSourceError", out)
    self.assertIn("root only since Linux 5.10", out)


if __name__ == "__main__":
  tf.test.main()
