"""Tests of tea_keras.dnas.masks: binarization and its straight-through gradient."""

import numpy as np
import tensorflow as tf

from tea_keras.dnas import masks


class BinarizeTest(tf.test.TestCase):

  def test_binarize_forward_is_exactly_the_step(self):
    """0/1 exactly (no rounding residue), including masks far above 1."""
    alpha = tf.constant([-3.0, 0.2, 0.5, 0.5000001, 0.7, 1.0, 2.5, 100000008.0])
    got = masks.binarize(alpha).numpy()
    self.assertAllEqual(got, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])

  def test_binarize_gradient_is_the_identity(self):
    """d/d alpha of sum(w * binarize(alpha)) is w for masks on both sides
    of the threshold (the released code's STE, no clipping)."""
    alpha = tf.Variable([-1.0, 0.3, 0.7, 4.0])
    w = tf.constant([1.0, -2.0, 3.0, 0.5])
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(w * masks.binarize(alpha))
    self.assertAllClose(tape.gradient(loss, alpha), w)

  def test_keep_alive_theta_forces_one_and_blocks_gradient(self):
    alpha = tf.Variable([0.1, 0.1, 0.9])
    with tf.GradientTape() as tape:
      theta = masks.keep_alive_theta(alpha, np.array([1.0, 0.0, 0.0]))
      loss = tf.reduce_sum(theta * tf.constant([5.0, 6.0, 7.0]))
    self.assertAllEqual(theta, [1.0, 0.0, 1.0])
    self.assertAllClose(tape.gradient(loss, alpha), [0.0, 6.0, 7.0])

  def test_check_threshold_rejects_values_outside_the_unit_interval(self):
    for bad in (0.0, 1.0, -0.5, True, "0.5"):
      with self.assertRaisesRegex(ValueError, "Invalid value for argument `threshold`"):
        masks.check_threshold(bad)
    self.assertEqual(masks.check_threshold(0.5), 0.5)


if __name__ == "__main__":
  tf.test.main()
