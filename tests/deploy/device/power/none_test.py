"""Tests of deploy/device/power/none.py: no energy, never zero."""

import tensorflow as tf

from deploy.device import power


class NoPowerTest(tf.test.TestCase):

  def test_none_source_reports_no_power(self):
    source = power.create("none")
    self.assertFalse(source.measures_power)
    self.assertIsNone(source.read_w())
    self.assertEqual(source.read_sample(), (None, None))
    self.assertIn("energy_j is null", source.warnings()[0])


if __name__ == "__main__":
  tf.test.main()
