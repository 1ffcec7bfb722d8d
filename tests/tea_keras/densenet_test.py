"""Tests for tea_keras/densenet.py."""

import numpy as np
import tensorflow as tf

from tea_keras import densenet


class DenseNetTest(tf.test.TestCase):

  def test_densenet40_param_count_pinned(self):
    model = densenet.build_densenet40()
    self.assertEqual(model.count_params(), 1037818)  # published: ~1.0 M
    self.assertBetween(model.count_params(), 0.95e6, 1.15e6)

  def test_densenet_small_gives_logits(self):
    model = densenet.build_densenet(depth=10, growth_rate=4)
    y = model(np.zeros((2, 32, 32, 3), "float32"))
    self.assertEqual(tuple(y.shape), (2, 10))
    self.assertEqual(model.get_layer("transition1_pool").output.shape[1], 8)

  def test_densenet_rejects_bad_depth(self):
    with self.assertRaisesRegex(ValueError, r"\(depth - 4\) divisible by 3. Received depth=41"):
      densenet.build_densenet(depth=41)


if __name__ == "__main__":
  tf.test.main()
