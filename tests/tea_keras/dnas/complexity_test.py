"""Tests of tea_keras.dnas.complexity: size and MACs through the masks equal
the exported model's own counts (``count_params()`` and the project's
profiler), on random masks."""

import numpy as np
import tensorflow as tf

from deploy.device import devices
from tea_keras import profiling
from tea_keras.dnas import complexity
from tea_keras.dnas import export
from tea_keras.dnas import graph
from tea_keras.dnas import seeds
from tea_keras.dnas import supernet
from tests.tea_keras.dnas import fixtures


class CountsTest(tf.test.TestCase):

  def _check_counts(self, seed, seeds_to_try):
    net = supernet.make_supernet(seed)
    # All masks at 1: the seed's own counts.
    self.assertEqual(float(net.size()), seed.count_params())
    self.assertEqual(float(net.cost()), profiling.profile_model(seed)["flops"])
    for s in seeds_to_try:
      fixtures.random_masks(net, np.random.default_rng(s))
      found = export.export_model(net)
      self.assertLess(found.count_params(), seed.count_params())  # channels were pruned
      self.assertEqual(float(net.size()), found.count_params())
      self.assertEqual(float(net.cost()), profiling.profile_model(found)["flops"])
      for precision, per_weight in (("fp32", 4), ("fp16", 2), ("int8", 1)):
        self.assertEqual(float(net.size(precision)), per_weight * found.count_params())

  def test_size_and_macs_equal_export_counts_on_resnet8(self):
    self._check_counts(seeds.resnet8_v05(), (0, 1))

  def test_size_and_macs_equal_export_counts_with_concat_depthwise_separable(self):
    self._check_counts(fixtures.concat_model(), (0, 1, 2))

  def test_layer_counts_of_a_conv_by_hand(self):
    """3x3 conv with bias on an 8x8 output; theta keeps inputs 0-3 of 6 and
    outputs 0, 2, 4, 6, 8 of 10: 9*4*5 + 5 = 185 parameters and
    64*9*4*5 = 11,520 MACs."""
    theta = np.array([1, 1, 1, 1, 0, 0] + [1, 0] * 5 + [1], dtype="float32")
    spec = graph.LayerSpec("probe", "conv", in_index=np.arange(6), out_index=np.arange(6, 16),
                           kernel=9, positions=64, bias=True)
    alive = complexity.alive_channels([spec], theta)
    self.assertEqual([float(c) for c in alive["probe"]], [4.0, 5.0])
    self.assertEqual(float(complexity.params([spec], alive)), 185.0)
    self.assertEqual(float(complexity.macs([spec], alive)), 11520.0)

  def test_bytes_per_weight_match_deploy_precisions(self):
    self.assertEqual(complexity.BYTES_PER_WEIGHT,
                     {name: p.bytes_per_weight for name, p in devices.PRECISIONS.items()})
    with self.assertRaisesRegex(ValueError, "Invalid value for argument `precision`"):
      complexity.size_bytes("bf16")


if __name__ == "__main__":
  tf.test.main()
