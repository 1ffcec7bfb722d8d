"""Tests for tea_keras/network.py and tea_keras/cells.py."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tea_keras import cells
from tea_keras import network
from tea_keras import space

# Exact parameter counts (trainable + BN statistics) of the named cells.
PINNED_PARAMS = {
    ("chain", 1, 8): 169554,
    ("chain", 2, 24): 2147650,
}


def _op_params(op, f, strided):
  """Parameters of one op at width ``f`` (BN: gamma, beta, mean, variance)."""
  bn = 4 * f
  if op.startswith("sep"):  # (depthwise k*k*f + pointwise f*f + BN) twice
    k = int(op[3])
    return 2 * (k * k * f + f * f + bn)
  if op.startswith("conv"):
    k = int(op[4])
    return k * k * f * f + bn
  if op == "identity" and strided:  # slim's strided 1x1 'none'
    return f * f + bn
  return 0  # max pooling, identity


def hand_count(genotype, num_cells, filters, num_classes=10, stem_multiplier=3):
  """Count by hand: stem conv3x3+BN; per cell two 1x1 (or factorized, same
  count) projections to F, the ops, ``F * len(output_blocks)`` channels out;
  PNAS CIFAR layout (N cells, stride-2, N, stride-2, N), widths doubling at
  each stride-2 cell; dense logits."""
  stem = stem_multiplier * filters
  params = 3 * 3 * 3 * stem + 4 * stem
  c_prev_prev = c_prev = stem
  width = filters
  strides = ([1] * num_cells + [2]) * 2 + [1] * num_cells
  for stride in strides:
    width *= stride
    params += (c_prev_prev + c_prev) * width + 2 * 4 * width
    for blk in genotype.blocks:
      for inp, op in ((blk.input1, blk.op1), (blk.input2, blk.op2)):
        params += _op_params(op, width, stride == 2 and inp < 2)
    c_prev_prev, c_prev = c_prev, width * len(genotype.output_blocks())
  return params + c_prev * num_classes + num_classes


class NetworkTest(tf.test.TestCase, parameterized.TestCase):

  def _random_genotypes_give_logits(self, count):
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    for g in space.sample_many(123, count):
      model = network.build_network(g, num_cells=1, filters=8)
      logits = model(x, training=False)
      self.assertEqual(tuple(logits.shape), (2, 10), msg=g.to_string())
      self.assertTrue(np.all(np.isfinite(logits)), msg=g.to_string())

  def test_random_genotypes_give_logits(self):
    self._random_genotypes_give_logits(10)

  @pytest.mark.slow
  def test_random_genotypes_give_logits_many(self):
    self._random_genotypes_give_logits(50)

  @parameterized.parameters(*PINNED_PARAMS.items())
  def test_named_genotype_param_count_pinned(self, key, expected):
    name, n, f = key
    model = network.build_network(space.resolve(name), num_cells=n, filters=f)
    self.assertEqual(model.count_params(), expected)

  @parameterized.parameters(*PINNED_PARAMS.items())
  def test_hand_count_matches_pinned_counts(self, key, expected):
    name, n, f = key
    self.assertEqual(hand_count(space.resolve(name), n, f), expected)

  @parameterized.parameters((1, 8), (2, 24))
  def test_pnasnet5_param_count_equals_hand_count(self, n, f):
    g = space.resolve("pnasnet5")
    model = network.build_network(g, num_cells=n, filters=f)
    self.assertEqual(model.count_params(), hand_count(g, n, f))
    unused = network.build_network(g, num_cells=n, filters=f, concat="unused")
    self.assertEqual(unused.count_params(), hand_count(space.Genotype(g.blocks), n, f))
    self.assertLess(unused.count_params(), model.count_params())

  def test_layout_strides_and_widths(self):
    g = space.resolve("pnasnet5")  # concat="all": 5 blocks out
    model = network.build_network(g, num_cells=2, filters=8)
    cell_layers = [l for l in model.layers if isinstance(l, cells.Cell)]
    self.assertEqual([c.stride for c in cell_layers], [1, 1, 2, 1, 1, 2, 1, 1])
    self.assertEqual([c.filters for c in cell_layers], [8, 8, 16, 16, 16, 32, 32, 32])
    shapes = [tuple(c.output.shape[1:]) for c in cell_layers]
    self.assertEqual(shapes[0], (32, 32, 8 * 5))
    self.assertEqual(shapes[2], (16, 16, 16 * 5))
    self.assertEqual(shapes[-1], (8, 8, 32 * 5))
    self.assertEqual(model.get_layer("stem_conv").filters, 24)
    self.assertEqual(model.get_layer("logits").kernel.shape, (32 * 5, 10))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    self.assertEqual(tuple(model(x, training=False).shape), (2, 10))

  def test_cell_concat_option_overrides_genotype(self):
    g = space.resolve("chain")  # unused rule: only block 4 is output
    cell = cells.Cell(g, 8, concat="all")
    self.assertEqual(cell.genotype.concat, "all")
    self.assertEqual(cell.compute_output_shape(((None, 8, 8, 8), (None, 8, 8, 8))), (None, 8, 8, 40))
    out = cell([keras.ops.zeros((1, 8, 8, 8)), keras.ops.zeros((1, 8, 8, 8))])
    self.assertEqual(tuple(out.shape), (1, 8, 8, 40))
    self.assertEqual(cells.Cell.from_config(cell.get_config()).genotype.concat, "all")
    with self.assertRaisesRegex(ValueError, "Expected None or one of unused, all. "
                                "Received concat='some'"):
      cells.Cell(g, 8, concat="some")

  def test_save_load_round_trip_concat_all(self):
    model = network.build_network(space.resolve("pnasnet5"), 1, 4)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    path = os.path.join(self.get_temp_dir(), "pnas.keras")
    model.save(path)
    loaded = network.load_model(path)
    self.assertEqual(loaded.get_layer("cell_0").genotype, space.resolve("pnasnet5"))
    self.assertAllClose(loaded(x, training=False), model(x, training=False), atol=1e-6)

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
