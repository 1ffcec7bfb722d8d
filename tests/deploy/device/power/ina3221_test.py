"""Tests of deploy/device/power/ina3221.py on fake sysfs trees of both layouts."""

import os
import time

import numpy as np
import tensorflow as tf

from deploy.device import protocol
from deploy.device.power import base
from deploy.device.power import ina3221
from tests.deploy.device.power import sysfs_fakes


def _iio_tree(root):
  """JetPack 4.x TX2: two ina3221x chips, three rails each, power in mW."""
  chips = {"0-0040/iio:device0": ("VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"),
           "0-0041/iio:device1": ("VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR")}
  files = {}
  for chip, rails in chips.items():
    d = os.path.join(root, "sys/bus/i2c/drivers/ina3221x", chip)
    os.makedirs(d)
    for n, rail in enumerate(rails):
      sysfs_fakes.write_atomic(os.path.join(d, "rail_name_%d" % n), rail + "\n")
      files[rail] = os.path.join(d, "in_power%d_input" % n)
      sysfs_fakes.write_atomic(files[rail], "0\n")
  return files


def _hwmon_tree(root):
  """Upstream hwmon driver (JetPack 5+): mV and mA per labelled channel."""
  d = os.path.join(root, "sys/class/hwmon/hwmon2")
  os.makedirs(d)
  sysfs_fakes.write_atomic(os.path.join(d, "name"), "ina3221\n")
  other = os.path.join(root, "sys/class/hwmon/hwmon0")
  os.makedirs(other)
  sysfs_fakes.write_atomic(os.path.join(other, "name"), "cpu_thermal\n")
  files = {}
  for n, rail in enumerate(("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"), start=1):
    sysfs_fakes.write_atomic(os.path.join(d, "in%d_label" % n), rail + "\n")
    files[rail] = (os.path.join(d, "in%d_input" % n), os.path.join(d, "curr%d_input" % n))
    sysfs_fakes.write_atomic(files[rail][0], "5000\n")
    sysfs_fakes.write_atomic(files[rail][1], "0\n")
  sysfs_fakes.write_atomic(os.path.join(d, "in4_input"), "12\n")  # shunt, no label
  return files


def _square_wave_mw(elapsed):
  """1.5 W for 0.2 s, 6 W for 0.2 s, ... (working/idle alternation)."""
  return 6000 if int(elapsed / 0.2) % 2 else 1500


class Ina3221Test(tf.test.TestCase):

  def _sample(self, source, seconds=0.8):
    with protocol.Sampler(source, 0.02) as sampler:
      time.sleep(seconds)
      return sampler.stop()

  def test_iio_layout_sampled_while_written(self):
    root = self.get_temp_dir() + "/iio"
    files = _iio_tree(root)

    def update(elapsed):
      sysfs_fakes.write_atomic(files["VDD_IN"], "%d\n" % _square_wave_mw(elapsed))
      sysfs_fakes.write_atomic(files["VDD_SYS_GPU"], "777\n")

    with sysfs_fakes.Writer(update):
      source = ina3221.Ina3221Power(root=root)
      trace = self._sample(source)
    self.assertEqual(source.describe(), {"power_source": "ina3221", "rails": ["VDD_IN"],
                                         "layout": "iio"})
    levels = set(np.round(trace.p, 3))
    self.assertEqual(levels, {1.5, 6.0})
    self.assertBetween(np.mean(trace.p == 6.0), 0.2, 0.8)  # writer may lag under load

  def test_hwmon_layout_multiplies_mv_by_ma(self):
    root = self.get_temp_dir() + "/hwmon"
    files = _hwmon_tree(root)

    def update(elapsed):
      ma = _square_wave_mw(elapsed) / 5.0        # 5 V bus: 300 mA or 1200 mA
      sysfs_fakes.write_atomic(files["VDD_IN"][1], "%d\n" % ma)

    with sysfs_fakes.Writer(update):
      source = ina3221.Ina3221Power(root=root)
      trace = self._sample(source)
    self.assertEqual(source.describe()["layout"], "hwmon")
    self.assertEqual(set(np.round(trace.p, 3)), {1.5, 6.0})

  def test_rail_selection_sums_named_rails(self):
    root = self.get_temp_dir() + "/sum"
    files = _iio_tree(root)
    sysfs_fakes.write_atomic(files["VDD_SYS_CPU"], "1200\n")
    sysfs_fakes.write_atomic(files["VDD_SYS_GPU"], "300\n")
    source = ina3221.Ina3221Power(rail="VDD_SYS_CPU,VDD_SYS_GPU", root=root)
    self.assertAllClose(source.read_w(), 1.5)
    self.assertLen(ina3221.discover(root), 6)

  def test_unknown_rail_lists_available(self):
    root = self.get_temp_dir() + "/bad"
    _iio_tree(root)
    with self.assertRaisesRegex(ValueError, "VDD_SYS_CPU"):
      ina3221.Ina3221Power(rail="VDD_GPU", root=root)

  def test_no_tree_names_both_layouts(self):
    with self.assertRaisesRegex(base.PowerSourceError, "iio.*hwmon"):
      ina3221.Ina3221Power(root=self.get_temp_dir() + "/none")

  def test_no_default_rail_asks_for_rail(self):
    root = self.get_temp_dir() + "/nodefault"
    d = os.path.join(root, "sys/class/hwmon/hwmon1")
    os.makedirs(d)
    for name, text in (("name", "ina3221"), ("in1_label", "VDD_GPU"),
                       ("in1_input", "5000"), ("curr1_input", "100")):
      sysfs_fakes.write_atomic(os.path.join(d, name), text)
    with self.assertRaisesRegex(base.PowerSourceError, "pass rail=NAME"):
      ina3221.Ina3221Power(root=root)
    self.assertAllClose(ina3221.Ina3221Power(rail="VDD_GPU", root=root).read_w(), 0.5)


if __name__ == "__main__":
  tf.test.main()
