"""Tests of search/optimizer/errors.py: the optimizer's own copy of the
Keras-style messages (its agreement with tea_keras.errors:
tests/tea_keras/errors_test.py)."""

import unittest

from search.optimizer import errors


class ErrorsTest(unittest.TestCase):

  def test_invalid_value_names_the_argument_the_expectation_and_the_value(self):
    error = errors.invalid_value("num_samples", ">= 1", 0)
    self.assertIsInstance(error, ValueError)
    self.assertEqual(str(error), "Invalid value for argument `num_samples`. Expected >= 1. "
                     "Received num_samples=0")

  def test_invalid_option_names_the_option(self):
    self.assertEqual(str(errors.invalid_option("trust_region", 'true, false or "auto"', 3)),
                     "Invalid value for option `trust_region`. Expected true, false or "
                     "\"auto\". Received trust_region=3")


if __name__ == "__main__":
  unittest.main()
