"""Tests of tea_keras/errors.py: Keras-style argument-validation messages, and
that the device side's and the optimizer's copies write the same ones."""

import tensorflow as tf

from deploy.device import errors as device_errors
from search.optimizer import errors as optimizer_errors
from tea_keras import errors

COPIES = (errors, optimizer_errors, device_errors)


class ErrorsTest(tf.test.TestCase):

  def test_invalid_value_names_the_argument_the_expectation_and_the_value(self):
    error = errors.invalid_value("filters", "an integer >= 2", 0)
    self.assertIsInstance(error, ValueError)
    self.assertEqual(str(error), "Invalid value for argument `filters`. Expected an integer >= 2. "
                     "Received filters=0")

  def test_invalid_value_shows_the_repr_of_the_received_value(self):
    self.assertEqual(str(errors.invalid_value("mode", "'slice' or 'map'", "grid")),
                     "Invalid value for argument `mode`. Expected 'slice' or 'map'. "
                     "Received mode='grid'")
    self.assertEqual(str(errors.invalid_value("concat", "one of a, b", None)),
                     "Invalid value for argument `concat`. Expected one of a, b. "
                     "Received concat=None")

  def test_invalid_value_qualifies_the_argument_with_where(self):
    self.assertEqual(str(errors.invalid_value("device", "cpu or gpu", "tpu",
                                              where="with runtime=keras")),
                     "Invalid value for argument `device` with runtime=keras. Expected cpu or "
                     "gpu. Received device='tpu'")

  def test_invalid_value_shows_the_received_value_in_the_callers_words(self):
    self.assertEqual(str(errors.invalid_value("y", "a finite (n, m) array", shown="shape (3,).")),
                     "Invalid value for argument `y`. Expected a finite (n, m) array. "
                     "Received shape (3,).")

  def test_invalid_value_without_a_received_value_ends_after_the_expectation(self):
    self.assertEqual(str(errors.invalid_value("token", "the agent's token")),
                     "Invalid value for argument `token`. Expected the agent's token.")
    self.assertEqual(str(errors.invalid_value("x", "finite coordinates.")),
                     "Invalid value for argument `x`. Expected finite coordinates.")

  def test_message_names_what_kind_of_name_is_invalid(self):
    self.assertEqual(errors.message("--lr", "a number or 'none'", "x", noun="flag"),
                     "Invalid value for flag `--lr`. Expected a number or 'none'. "
                     "Received --lr='x'")

  def test_copies_write_the_same_messages(self):
    cases = (
        (("filters", "an integer >= 2", 0), {}),
        (("device", "cpu or gpu", "tpu"), {"where": "with runtime=keras"}),
        (("y", "an array"), {"shown": "shape (3,)"}),
        (("token", "the agent's token"), {}),
        (("bounds", "two numbers", [1]), {"noun": "option"}),
    )
    for args, kwargs in cases:
      expected = errors.message(*args, **kwargs)
      for copy in COPIES[1:]:
        self.assertEqual(copy.message(*args, **kwargs), expected, copy.__name__)
        if "noun" not in kwargs:
          self.assertEqual(str(copy.invalid_value(*args, **kwargs)), expected, copy.__name__)


if __name__ == "__main__":
  tf.test.main()
