"""Tests of deploy/device/errors.py: the device side's copy of the Keras-style
messages (its agreement with tea_keras.errors: tests/tea_keras/errors_test.py)
and the message for an invalid field of a file the device reads."""

import unittest

from deploy.device import errors


class ErrorsTest(unittest.TestCase):

  def test_invalid_value_names_the_argument_the_expectation_and_the_value(self):
    error = errors.invalid_value("batch_size", "a positive integer", 0)
    self.assertIsInstance(error, ValueError)
    self.assertEqual(str(error), "Invalid value for argument `batch_size`. Expected a positive "
                     "integer. Received batch_size=0")

  def test_invalid_field_names_the_file_the_field_and_the_json_value(self):
    self.assertEqual(errors.invalid_field("cascade.json", "points[0].error", "a number in [0, 1]",
                                          None),
                     "cascade.json: invalid `points[0].error`. Expected a number in [0, 1]. "
                     "Received error=null")

  def test_invalid_field_cuts_long_values(self):
    text = errors.invalid_field("c.json", "stages", "a list", "x" * 500)
    self.assertEqual(text, "c.json: invalid `stages`. Expected a list. Received stages=" +
                     ('"' + "x" * 99))


if __name__ == "__main__":
  unittest.main()
