"""Tests for tea_keras/network.py and tea_keras/cells.py."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tea_keras import cells
from tea_keras import network
from tea_keras import space

# Exact parameter counts (trainable + BN statistics) of the named cells.
PINNED_PARAMS = {
    ("pnasnet5", 1, 8): 80082,
    ("chain", 1, 8): 169554,
    ("pnasnet5", 2, 24): 809410,
    ("chain", 2, 24): 2147650,
}


class NetworkTest(tf.test.TestCase, parameterized.TestCase):

  def test_random_genotypes_give_logits(self):
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    for g in space.sample_many(123, 50):
      model = network.build_network(g, num_cells=1, filters=8)
      logits = model(x, training=False)
      self.assertEqual(tuple(logits.shape), (2, 10), msg=g.to_string())
      self.assertTrue(np.all(np.isfinite(logits)), msg=g.to_string())

  @parameterized.parameters(*PINNED_PARAMS.items())
  def test_named_genotype_param_count_pinned(self, key, expected):
    name, n, f = key
    model = network.build_network(space.resolve(name), num_cells=n, filters=f)
    self.assertEqual(model.count_params(), expected)

  def test_layout_strides_and_widths(self):
    g = space.resolve("pnasnet5")
    model = network.build_network(g, num_cells=2, filters=8)
    cell_layers = [l for l in model.layers if isinstance(l, cells.Cell)]
    self.assertEqual([c.stride for c in cell_layers], [1, 1, 2, 1, 1, 2, 1, 1])
    self.assertEqual([c.filters for c in cell_layers], [8, 8, 16, 16, 16, 32, 32, 32])
    shapes = [tuple(c.output.shape[1:]) for c in cell_layers]
    self.assertEqual(shapes[0], (32, 32, 8 * 4))
    self.assertEqual(shapes[2], (16, 16, 16 * 4))
    self.assertEqual(shapes[-1], (8, 8, 32 * 4))
    self.assertEqual(model.get_layer("stem_conv").filters, 24)

  def test_cell_after_reduction_uses_factorized_reduction(self):
    model = network.build_network(space.resolve("chain"), num_cells=1, filters=8)
    after = model.get_layer("cell_2")
    self.assertEqual(after.prev_prev_proj.__class__.__name__, "FactorizedReduction")
    self.assertNotEqual(model.get_layer("cell_1_reduce").prev_prev_proj.__class__.__name__,
                        "FactorizedReduction")

  def test_params_grow_with_n_and_f(self):
    g = space.sample(11)
    counts = [network.build_network(g, n, f).count_params() for n, f in ((1, 8), (2, 8), (2, 16))]
    self.assertLess(counts[0], counts[1])
    self.assertLess(counts[1], counts[2])

  def test_weight_decay_reaches_every_kernel(self):
    model = network.build_network(space.resolve("pnasnet5"), 1, 4, weight_decay=4e-5)
    kernels = [w for w in model.trainable_weights
               if w.path.endswith(("kernel", "depthwise_kernel", "pointwise_kernel"))]
    self.assertLen(model.losses, len(kernels))
    expected = sum(4e-5 / 2 * float(np.sum(np.square(w.numpy()))) for w in kernels)
    self.assertAllClose(float(sum(model.losses)), expected, rtol=1e-4)

  def test_save_load_round_trip(self):
    model = network.build_network(space.sample(3), 1, 4, drop_path_rate=0.1)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    path = os.path.join(self.get_temp_dir(), "m.keras")
    model.save(path)
    loaded = network.load_model(path)
    self.assertAllClose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    self.assertEqual(model.count_params(), loaded.count_params())

  def test_cell_config_round_trip(self):
    g = space.sample(4)
    cell = cells.Cell(g, 8, stride=2, weight_decay=1e-4, drop_path_rate=0.2, name="c")
    config = cell.get_config()
    self.assertEqual(config["genotype"], g.to_string())
    clone = cells.Cell.from_config(config)
    self.assertEqual(clone.genotype, g)
    self.assertEqual((clone.filters, clone.stride, clone.drop_path_rate), (8, 2, 0.2))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    self.assertEqual(restored.get_config(), config)

  @parameterized.parameters(
      (dict(num_cells=0), "Expected an integer >= 1. Received num_cells=0"),
      (dict(filters=1), "Expected an integer >= 2. Received filters=1"),
      (dict(weight_decay=-1.0), "Received weight_decay=-1.0"),
  )
  def test_build_network_rejects_bad_arguments(self, kwargs, message):
    args = dict(num_cells=1, filters=8)
    args.update(kwargs)
    with self.assertRaisesRegex(ValueError, message):
      network.build_network(space.sample(0), **args)

  def test_cell_rejects_bad_genotype(self):
    with self.assertRaisesRegex(ValueError, "block 0 has unknown op"):
      cells.Cell("bad3x3(prev)+identity(prev)", 8)


if __name__ == "__main__":
  tf.test.main()
