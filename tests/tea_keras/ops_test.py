"""Tests for tea_keras/ops.py: every op is shape- and width-correct."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tea_keras import ops
from tea_keras import space


class OpsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(op=space.OPS, stride=(1, 2))
  def test_op_output_shape(self, op, stride):
    layer = ops.build_op(op, 8, stride)
    y = layer(np.random.rand(2, 16, 16, 8).astype("float32"))
    self.assertEqual(tuple(y.shape), (2, 16 // stride, 16 // stride, 8))

  def test_build_op_rejects_unknown_op(self):
    with self.assertRaisesRegex(ValueError, "Expected one of max3x3.*Received op_name='conv9x9'"):
      ops.build_op("conv9x9", 8, 1)

  def test_build_op_rejects_bad_stride(self):
    with self.assertRaisesRegex(ValueError, "Expected 1 or 2. Received stride=3"):
      ops.build_op("conv3x3", 8, 3)

  def test_identity_stride1_is_exact(self):
    x = np.random.rand(1, 4, 4, 8).astype("float32")
    self.assertAllClose(ops.build_op("identity", 8, 1)(x), x)

  def test_factorized_reduction_halves_resolution(self):
    layer = ops.FactorizedReduction(10)
    y = layer(np.random.rand(2, 16, 16, 6).astype("float32"))
    self.assertEqual(tuple(y.shape), (2, 8, 8, 10))

  def test_drop_path_identity_at_inference_and_scales_in_training(self):
    layer = ops.DropPath(0.5, seed=1)
    x = np.ones((400, 1, 1, 1), "float32")
    self.assertAllClose(layer(x, training=False), x)
    y = np.asarray(layer(x, training=True)).ravel()
    self.assertTrue(set(np.unique(y)).issubset({0.0, 2.0}))
    self.assertAllClose(y.mean(), 1.0, atol=0.2)

  def test_drop_path_rejects_bad_rate(self):
    with self.assertRaisesRegex(ValueError, r"Expected a float in \[0, 1\)"):
      ops.DropPath(1.0)


if __name__ == "__main__":
  tf.test.main()
