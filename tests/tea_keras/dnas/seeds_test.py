"""Tests of tea_keras.dnas.seeds: ResNet-8 of MLPerf Tiny v0.5, cell networks."""

import numpy as np
import tensorflow as tf

from tea_keras import network
from tea_keras import profiling
from tea_keras.dnas import export
from tea_keras.dnas import seeds
from tea_keras.dnas import supernet
from tests.tea_keras.dnas import fixtures

# Reads both cell inputs (no dead cell, no unread projection: every version
# of build_network builds all of it); sep, conv, identity, max pool, an add
# and a concatenation of two blocks.
GENOTYPE = "sep3x3(prev)+identity(prev_prev); conv3x3(prev)+max3x3(b0)"


class ResNet8Test(tf.test.TestCase):

  def test_resnet8_v05_parameter_count_pinned(self):
    """mlcommons/tiny v0.5 ``resnet_v1_eembc``: every Conv2D has a bias,
    every BatchNormalization 4 numbers per channel (gamma, beta, moving
    mean, moving variance).

    stem   conv 3x3x3x16 + 16 = 448,    bn 64
    stack1 conv 3x3x16x16 + 16 = 2,320, bn 64; conv 2,320, bn 64
    stack2 conv 3x3x16x32 + 32 = 4,640, bn 128; conv 3x3x32x32 + 32 = 9,248,
           bn 128; shortcut 1x1x16x32 + 32 = 544
    stack3 conv 3x3x32x64 + 64 = 18,496, bn 256; conv 3x3x64x64 + 64 =
           36,928, bn 256; shortcut 1x1x32x64 + 64 = 2,112
    dense  64x10 + 10 = 650
    total  512 + 4,768 + 14,688 + 58,048 + 650 = 78,666; moving statistics
           2 x (16+16+16+32+32+64+64) = 480 not trainable: 78,186 trainable.
    Kernels alone (the issue's "77,360 weights"): 432 + 2,304 + 2,304 +
    4,608 + 9,216 + 512 + 18,432 + 36,864 + 2,048 + 640 = 77,360."""
    model = seeds.resnet8_v05()
    self.assertEqual(model.count_params(), 78666)
    self.assertEqual(sum(int(np.prod(w.shape)) for w in model.trainable_weights), 78186)
    self.assertEqual(sum(int(np.prod(w.shape)) for w in model.weights
                         if w.path.endswith("/kernel")), 77360)

  def test_resnet8_v05_macs_pinned(self):
    """Profiler MACs (convolutions and the dense layer), H x W of the output:

    stem   32x32 x 9x3x16                      =    442,368
    stack1 2 x 32x32 x 9x16x16                 =  4,718,592
    stack2 16x16 x (9x16x32 + 9x32x32 + 16x32) =  3,670,016
    stack3 8x8 x (9x32x64 + 9x64x64 + 32x64)   =  3,670,016
    dense  64x10                               =        640
    total                                        12,501,632 (the issue's 12.5M)."""
    self.assertEqual(profiling.profile_model(seeds.resnet8_v05())["flops"], 12501632)

  def test_resnet8_v05_softmax_output_has_the_same_counts(self):
    probs = seeds.resnet8_v05(logits=False)
    self.assertEqual(probs.count_params(), 78666)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    self.assertAllClose(np.sum(probs(x), axis=-1), [1.0, 1.0], atol=1e-5)
    self.assertEqual(len(supernet.make_supernet(probs).mask_variables), 6)

  def test_resnet8_v05_inner_filters_counts(self):
    """The six free widths (three stacks, three first convolutions): the
    parameter count by the arithmetic of the pinned test, written per width,
    and the supernet's six mask groups sized as those widths."""
    a, b, c, p, q, r = 12, 20, 40, 5, 9, 30

    def conv(k, cin, cout):
      return k * k * cin * cout + cout

    expected = (conv(3, 3, a) + 4 * a
                + conv(3, a, p) + 4 * p + conv(3, p, a) + 4 * a
                + conv(3, a, q) + 4 * q + conv(3, q, b) + 4 * b + conv(1, a, b)
                + conv(3, b, r) + 4 * r + conv(3, r, c) + 4 * c + conv(1, b, c)
                + c * 10 + 10)
    model = seeds.resnet8_v05(filters=(a, b, c), inner_filters=(p, q, r))
    self.assertEqual(model.count_params(), expected)
    self.assertEqual(sorted(int(v.shape[0]) for v in
                            supernet.make_supernet(model).mask_variables),
                     sorted([a, b, c, p, q, r]))
    with self.assertRaisesRegex(ValueError, "Invalid value for argument `inner_filters`"):
      seeds.resnet8_v05(inner_filters=(4, 0, 4))

  def test_resnet8_v05_rejects_bad_num_classes(self):
    with self.assertRaisesRegex(ValueError, "Invalid value for argument `num_classes`"):
      seeds.resnet8_v05(num_classes=1)


class CellNetworkTest(tf.test.TestCase):

  def test_cell_network_equals_build_network(self):
    """Same outputs (inference), parameters and MACs as the Cell model."""
    rng = np.random.default_rng(0)
    cell_model = network.build_network(GENOTYPE, 1, 4)
    fixtures.randomize_weights(cell_model, rng)  # the cells' batch norms included
    flat = seeds.flatten_cell_network(cell_model)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    self.assertAllClose(flat(x, training=False), cell_model(x, training=False), atol=1e-5)
    self.assertEqual(flat.count_params(), cell_model.count_params())
    self.assertEqual(profiling.profile_model(flat)["flops"],
                     profiling.profile_model(cell_model)["flops"])

  def test_cell_network_supernet_counts_and_export(self):
    rng = np.random.default_rng(1)
    net = supernet.make_supernet(seeds.cell_network(GENOTYPE, 1, 4))
    fixtures.random_masks(net, rng)
    found = export.export_model(net)
    self.assertEqual(float(net.size()), found.count_params())
    self.assertEqual(float(net.cost()), profiling.profile_model(found)["flops"])
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    self.assertAllClose(found(x, training=False), net(x, training=False), atol=1e-5)

  def test_cell_network_refuses_drop_path(self):
    with self.assertRaisesRegex(ValueError, "drop_path_rate=0"):
      seeds.cell_network(GENOTYPE, 1, 4, drop_path_rate=0.1)


if __name__ == "__main__":
  tf.test.main()
