"""Tests of deploy/device/session.py: the whole protocol with a real runtime and a
real INA3221 reader on a fake sysfs tree that a thread drives from whether
inference is running."""

import csv
import json
import os
import threading
import time

import numpy as np
import tensorflow as tf

from deploy.device import protocol
from deploy.device import runtimes
from deploy.device import session
from deploy.device.power import ina3221
from deploy.device.power import none
from deploy.device.power import usb_meter
from tests.deploy import tiny_model
from tests.deploy.device.power import ina3221_test
from tests.deploy.device.power import sysfs_fakes

IDLE_MW, BUSY_MW = 500, 3000


class _Flagged(object):
  """Wraps a real runtime; the rail file reads BUSY_MW from the first batch of
  a run to the end of its last one (``batches_per_run``), written
  synchronously so that no writer thread can lag behind."""

  def __init__(self, rt, power_file, batches_per_run):
    self.rt, self.power_file, self.batches_per_run = rt, power_file, batches_per_run
    self.name, self.fixed_batch_size = rt.name, rt.fixed_batch_size
    self.calls = 0
    sysfs_fakes.write_atomic(power_file, "%d\n" % IDLE_MW)

  def predict(self, batch):
    if self.calls % self.batches_per_run == 0:
      sysfs_fakes.write_atomic(self.power_file, "%d\n" % BUSY_MW)
    out = self.rt.predict(batch)
    self.calls += 1
    if self.calls % self.batches_per_run == 0:
      sysfs_fakes.write_atomic(self.power_file, "%d\n" % IDLE_MW)
    return out

  def describe(self):
    return self.rt.describe()


class _MeterLog(object):
  """Plays a USB meter's own logging software: a thread appending
  ``time,power_w`` rows (host wall clock) for whatever the stick draws now."""

  def __init__(self, path, period_s=0.005):
    self.path, self.period_s, self.watts = path, period_s, 0.2
    self._stop = threading.Event()
    with open(path, "w") as f:
      f.write("time,power_w\n")
    self._thread = threading.Thread(target=self._loop)

  def _loop(self):
    with open(self.path, "a") as f:
      while not self._stop.is_set():
        f.write("%.6f,%.3f\n" % (time.time(), self.watts))
        f.flush()
        self._stop.wait(self.period_s)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


class _Stick(object):
  """Wraps a real runtime; the meter log reads 1.5 W while a batch runs."""

  def __init__(self, rt, log):
    self.rt, self.log = rt, log
    self.name, self.fixed_batch_size = rt.name, rt.fixed_batch_size

  def predict(self, batch):
    self.log.watts = 1.5
    try:
      return self.rt.predict(batch)
    finally:
      self.log.watts = 0.2

  def describe(self):
    return self.rt.describe()


class SessionTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()
    cls.rt = runtimes.create("onnxruntime", cls.tiny["onnx"], "cpu", intra_op_threads=1)

  def _assert_energy_within_sampling_bound(self, result, busy_w, idle_w):
    """Each repeat's working time against its host-timed window, and its
    energy against BUSY x that time, within what its own trace's sampling
    allows. The load reads ``busy_w`` while inference
    runs and ``idle_w`` otherwise; the trapezoid rule interpolates linearly
    between samples, so over the working span it falls short of BUSY x time
    only on intervals with an idle end, by at most (busy - idle) x their
    length: the intervals touching a working sample with an idle end (the
    two edges, and any dip between batches the meter caught). Sampler or
    meter-thread delays on a loaded machine lengthen those intervals and the
    bound with them, so it holds however late the sampling ran. The span's
    ends are threshold crossings inside the intervals around the first and
    last working samples, and the load switches inside them too: the time
    differs from the host window by at most those two intervals (plus 10 ms
    between a switch and the host clock's read)."""
    ratios = []
    for path, t_s, host_s, e_j in zip(result["traces"], result["time_s_stats"]["values"],
                                      result["host_time_s_stats"]["values"],
                                      result["energy_j_stats"]["values"]):
      with open(path) as f:
        rows = list(csv.DictReader(f))
      t = np.array([float(r["t_s"]) for r in rows])
      p = np.array([float(r["power_w"]) for r in rows])
      working = np.array([r["working"] == "1" for r in rows])
      idle_end = (p[:-1] < busy_w - 1e-6) | (p[1:] < busy_w - 1e-6)
      touching = working[:-1] | working[1:]
      short_s = float(np.sum(np.diff(t)[idle_end & touching]))
      first, last = np.flatnonzero(working)[[0, -1]]
      edges_s = (t[first] - t[max(first - 1, 0)]) + (t[min(last + 1, len(t) - 1)] - t[last])
      self.assertLessEqual(abs(t_s - host_s), edges_s + 0.01)
      self.assertLessEqual(e_j, busy_w * t_s + 1e-6)
      self.assertGreaterEqual(e_j, busy_w * t_s - (busy_w - idle_w) * short_s - 1e-6)
      ratios.append(e_j / t_s)
    self.assertAllClose(result["mean_power_w"], np.median(ratios))
    # Time and energy of one repeat, the fastest (the one other load touched least).
    fastest = int(np.argmin(result["time_s_stats"]["values"]))
    self.assertEqual(result["reported_repeat"], fastest)
    self.assertEqual(result["time_s"], min(result["time_s_stats"]["values"]))
    self.assertAllClose(result["energy_j"], result["energy_j_stats"]["values"][fastest])
    self.assertEqual(result["trace"], result["traces"][fastest])

  def test_run_measurement_time_only_with_none(self):
    result = session.run_measurement(self.rt, none.NoPower(), self.tiny["images"], "cpu",
                                     batch_size=16, repeats=3, warmup_batches=1)
    for key in ("time_s", "energy_j", "images", "batch_size", "mean_power_w",
                "idle_power_w", "samples", "threshold_w", "power_source", "runtime",
                "device", "trace"):
      self.assertIn(key, result)
    self.assertGreater(result["time_s"], 0.0)
    self.assertIsNone(result["energy_j"])
    self.assertIsNone(result["mean_power_w"])
    self.assertEqual((result["images"], result["batch_size"], result["repeats"]), (64, 16, 3))
    self.assertEqual(result["time_s_stats"]["n"], 3)
    self.assertEqual(result["time_s"], min(result["time_s_stats"]["values"]))
    self.assertEqual(result["time_statistic"], "fastest repeat")
    self.assertEqual(result["time_source"], "host_clock")
    self.assertGreater(result["process_cpu_s_stats"]["median"], 0.0)
    self.assertLen(result["loadavg_at_start"], 3)
    json.dumps(result)

  def test_run_measurement_energy_from_ina3221_trace(self):
    root = os.path.join(self.get_temp_dir(), "jetson")
    files = ina3221_test._iio_tree(root)
    images = np.concatenate([self.tiny["images"]] * 8)   # 512 images, 8 batches
    flagged = _Flagged(self.rt, files["VDD_IN"], batches_per_run=8)
    trace_dir = os.path.join(self.get_temp_dir(), "traces")
    result = session.run_measurement(
        flagged, ina3221.Ina3221Power(root=root), images, "jetson", batch_size=64,
        repeats=3, warmup_batches=0, idle_s=0.3, trace_dir=trace_dir)
    self.assertEqual(result["threshold_w"], 1.0)           # the paper's TX2 value
    self.assertEqual(result["threshold_source"], "paper")
    self.assertEqual(result["time_source"], "power_threshold")
    self._assert_energy_within_sampling_bound(result, BUSY_MW / 1000.0, IDLE_MW / 1000.0)
    self.assertAllClose(result["idle_power_w"], IDLE_MW / 1000.0)
    self.assertAllClose(result["energy_above_idle_j"],
                        result["energy_j"] - IDLE_MW / 1000.0 * result["time_s"])
    self.assertGreater(result["samples"], 5)
    self.assertTrue(os.path.exists(result["trace_png"]))
    trace = protocol.read_trace_csv(result["trace"])
    self.assertGreater(len(trace), result["samples"])
    with open(os.path.join(trace_dir, "result.json")) as f:
      self.assertEqual(json.load(f)["energy_j"], result["energy_j"])

  def test_run_measurement_aligns_usb_meter_log_by_wall_clock(self):
    path = os.path.join(self.get_temp_dir(), "meter.csv")
    images = np.concatenate([self.tiny["images"]] * 8)
    with _MeterLog(path) as log:
      result = session.run_measurement(
          _Stick(self.rt, log), usb_meter.UsbMeterCsv(path), images, "myriad",
          batch_size=64, repeats=3, warmup_batches=0, idle_s=0.3,
          trace_dir=os.path.join(self.get_temp_dir(), "meter_traces"))
    self.assertEqual((result["threshold_w"], result["power_source"]), (0.45, "usb_meter"))
    self.assertEqual(result["time_source"], "power_threshold")
    self._assert_energy_within_sampling_bound(result, 1.5, 0.2)
    self.assertAllClose(result["idle_power_w"], 0.2)

  def test_empty_meter_log_reports_energy_unavailable(self):
    path = os.path.join(self.get_temp_dir(), "silent.csv")
    with open(path, "w") as f:
      f.write("time,power_w\n0,1.0\n")                  # nothing in the run's window
    result = session.run_measurement(self.rt, usb_meter.UsbMeterCsv(path),
                                     self.tiny["images"], "myriad", batch_size=16,
                                     repeats=1, warmup_batches=0, idle_s=0.05)
    self.assertIsNone(result["energy_j"])
    self.assertGreater(result["time_s"], 0.0)
    self.assertTrue(any("fewer than 2 power samples" in w for w in result["warnings"]))

  def test_threshold_above_trace_falls_back_to_host_clock(self):
    root = os.path.join(self.get_temp_dir(), "flat")
    files = ina3221_test._iio_tree(root)
    sysfs_fakes.write_atomic(files["VDD_IN"], "500\n")
    result = session.run_measurement(self.rt, ina3221.Ina3221Power(root=root),
                                     self.tiny["images"], "jetson", batch_size=16,
                                     repeats=1, warmup_batches=0, idle_s=0.1)
    self.assertEqual(result["time_source"], "host_clock")
    self.assertTrue(any("no working span" in w for w in result["warnings"]))
    self.assertAllClose(result["mean_power_w"], 0.5)

  def test_make_batches_pads_for_fixed_batch_and_validates(self):
    images = self.tiny["images"][:10]
    batches = session.make_batches(images, 4, fixed_batch_size=4)
    self.assertEqual([len(b) for b in batches], [4, 4, 4])
    self.assertAllEqual(batches[-1][2:], np.zeros((2, 32, 32, 3)))
    self.assertEqual([len(b) for b in session.make_batches(images, 4)], [4, 4, 2])
    with self.assertRaisesRegex(ValueError, "float32 NHWC"):
      session.make_batches(images.astype(np.float64), 4)
    with self.assertRaisesRegex(ValueError, "built for batch 8"):
      session.make_batches(images, 4, fixed_batch_size=8)

  def test_run_measurement_rejects_unknown_device(self):
    with self.assertRaisesRegex(ValueError, "cpu\\|gpu\\|jetson\\|myriad"):
      session.run_measurement(self.rt, none.NoPower(), self.tiny["images"], "tpu")

  def test_choose_threshold_paper_values(self):
    self.assertEqual(session.choose_threshold("gpu", None), (80.0, "paper"))
    self.assertEqual(session.choose_threshold("myriad", None), (0.45, "paper"))
    self.assertEqual(session.choose_threshold("cpu", None), (None, "auto"))
    self.assertEqual(session.choose_threshold("cpu", 20), (20.0, "user"))
    with self.assertRaisesRegex(ValueError, "threshold_w"):
      session.choose_threshold("cpu", -1.0)


if __name__ == "__main__":
  tf.test.main()
