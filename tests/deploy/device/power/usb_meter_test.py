"""Tests of deploy/device/power/usb_meter.py: CSV import/alignment, serial lines
through pyserial's real loop:// port."""

import os
import time

import serial
import tensorflow as tf

from deploy.device.power import usb_meter
from deploy.device.power import create


class UsbMeterTest(tf.test.TestCase):

  def _csv(self, text):
    path = os.path.join(self.get_temp_dir(), "meter%d.csv" % len(os.listdir(self.get_temp_dir())))
    with open(path, "w") as f:
      f.write(text)
    return path

  def test_csv_power_column_aligned_to_window(self):
    rows = "\n".join("%.3f,%.2f" % (1000.0 + 0.1 * i, 2.0 + (i % 3)) for i in range(50))
    source = usb_meter.UsbMeterCsv(self._csv("timestamp,power_w\n" + rows))
    t, w = source.trace_between(1001.0, 1002.0)
    self.assertLen(t, 11)
    self.assertAllClose(t[0], 1001.0)
    self.assertAllClose(w[:3], [3.0, 4.0, 2.0])

  def test_csv_volts_amps_and_iso_times_with_offset(self):
    text = ("Time,Voltage,Current\n2024-05-01 12:00:00.000,5.0,0.2\n"
            "2024-05-01 12:00:00.500,5.1,0.4\n")
    source = usb_meter.UsbMeterCsv(self._csv(text), clock_offset_s=2.0)
    base = usb_meter.parse_time("2024-05-01 12:00:00")
    t, w = source.trace_between(base, base + 10)
    self.assertAllClose(t, [base + 2.0, base + 2.5])
    self.assertAllClose(w, [1.0, 2.04])

  def test_csv_errors_name_file_and_line(self):
    with self.assertRaisesRegex(ValueError, "no time column"):
      usb_meter.load_csv(self._csv("x,power_w\n1,2\n"))
    with self.assertRaisesRegex(ValueError, "line 3"):
      usb_meter.load_csv(self._csv("time,power_w\n1,2\n2,oops\n"))

  def test_parse_line_formats(self):
    self.assertEqual(usb_meter.parse_line("P=2.50W", "watts"), 2.5)
    self.assertAllClose(usb_meter.parse_line("5.05V 0.500A", "volts_amps"), 2.525)
    self.assertIsNone(usb_meter.parse_line("hello", "watts"))
    with self.assertRaisesRegex(ValueError, "volts_amps"):
      usb_meter.parse_line("1", "amps")

  def test_serial_meter_reads_loopback_port(self):
    ports = []

    def factory(url, **kw):
      ports.append(serial.serial_for_url(url, **kw))
      return ports[-1]

    meter = usb_meter.SerialMeter("loop://", fields="volts_amps", serial_factory=factory)
    start = time.time()
    for i in range(5):
      ports[0].write(b"5.00 V, %.2f A\n" % (0.1 * (i + 1)))
      time.sleep(0.02)
    time.sleep(0.2)
    t, w = meter.trace_between(start, time.time())
    meter.close()
    self.assertAllClose(w, [0.5, 1.0, 1.5, 2.0, 2.5])
    self.assertTrue(all(b > a for a, b in zip(t, t[1:])))

  def test_create_requires_csv_or_port(self):
    with self.assertRaisesRegex(ValueError, "csv_path=PATH.*port=DEVICE"):
      create("usb_meter")
    with self.assertRaisesRegex(ValueError, "nvml\\|ina3221"):
      create("multimeter")


if __name__ == "__main__":
  tf.test.main()
