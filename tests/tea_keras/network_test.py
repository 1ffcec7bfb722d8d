"""Tests for tea_keras/network.py and tea_keras/cells.py."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tea_keras import cells
from tea_keras import cost
from tea_keras import network
from tea_keras import space

# Exact parameter counts (trainable + BN statistics) of the named cells.
PINNED_PARAMS = {
    ("chain", 1, 8): 169554,
    ("chain", 2, 24): 2147650,
}

# Cells that leave a cell input unread: with the same cell repeated, no block
# reading ``prev`` leaves every other cell dead, none reading ``prev_prev``
# leaves every cell's prev_prev projection dead.
NO_PREV = ("sep3x3(prev_prev)+conv3x3(prev_prev); max3x3(b0)+identity(prev_prev); "
           "conv5x5(b1)+sep5x5(b0); identity(b2)+max3x3(prev_prev); sep7x7(b3)+conv3x3(b1)")
NO_PREV_PREV = ("conv3x3(prev)+sep3x3(prev); identity(b0)+max3x3(prev); "
                "sep5x5(b1)+conv3x3(prev); max3x3(b2)+identity(b0); sep3x3(b3)+conv5x5(prev)")


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

  @parameterized.parameters((NO_PREV, 1), (NO_PREV, 2), (NO_PREV_PREV, 1))
  def test_build_network_unread_cell_input_leaves_no_dead_weight(self, text, num_cells):
    """Every trainable weight of the built network gets a gradient from the
    logits (TensorFlow's autodiff decides what is live), and the cost model
    counts that network: ``count_params`` of the model that is built."""
    genotype = space.Genotype.parse(text)
    model = network.build_network(genotype, num_cells, 4)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    self.assertEqual([w.path for w, g in zip(model.trainable_weights, grads) if g is None], [])
    self.assertEqual(cost.genotype_cost(genotype, num_cells, 4)["params"], model.count_params())

  @parameterized.parameters((NO_PREV, 1), (NO_PREV, 2), (NO_PREV_PREV, 1))
  def test_build_network_live_network_computes_the_full_networks_logits(self, text, n):
    """The network of live cells computes what the full one (every cell, every
    input projected: ``live_only=False``) does with the same weights: what is
    left out is dead. Weights are matched by layer name, and within a cell by
    part (a projection, a block op)."""
    genotype = space.Genotype.parse(text)
    full = network.build_network(genotype, n, 4, live_only=False)
    live = network.build_network(genotype, n, 4)
    for layer in live.layers:
      other = full.get_layer(layer.name)
      pairs = [(layer, other)]
      if isinstance(layer, cells.Cell):
        pairs = [(getattr(layer, part), getattr(other, part))
                 for part in ("prev_prev_proj", "prev_proj")
                 if getattr(layer, part) is not None]
        pairs += zip(sum(layer.block_ops, []), sum(other.block_ops, []))
      for source, target in pairs:
        for a, b in zip(source.weights, target.weights, strict=True):
          b.assign(a)
    self.assertLess(live.count_params(), full.count_params())
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    self.assertAllClose(live(x, training=False), full(x, training=False), rtol=1e-5, atol=1e-5)
    index = lambda layer: int(layer.name.split("_")[1])
    kept = {index(l) for l in live.layers if isinstance(l, cells.Cell)}
    dead = [index(l) for l in full.layers if isinstance(l, cells.Cell) and index(l) not in kept]
    self.assertEqual(dead, [i for i, alive in enumerate(space.live_cells(genotype, n))
                            if not alive])

  def test_save_load_round_trip_with_dead_cells(self):
    model = network.build_network(NO_PREV, 1, 4)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    path = os.path.join(self.get_temp_dir(), "dead.keras")
    model.save(path)
    loaded = network.load_model(path)
    self.assertAllClose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    self.assertEqual(loaded.count_params(), model.count_params())

  def test_cell_config_saved_before_live_cells_projects_every_input(self):
    """A cell config without ``project_unread_inputs`` comes from a network
    that projected both inputs; loading it must create those weights."""
    config = cells.Cell(NO_PREV, 8, name="c").get_config()
    del config["project_unread_inputs"], config["reduce_prev_prev"]
    old = cells.Cell.from_config(config)
    old([keras.ops.zeros((1, 8, 8, 8)), keras.ops.zeros((1, 8, 8, 8))])
    new = cells.Cell(NO_PREV, 8, reduce_prev_prev=False)
    new([keras.ops.zeros((1, 8, 8, 8)), None])
    self.assertIsNotNone(old.prev_proj)
    self.assertIsNone(new.prev_proj)
    self.assertEqual(old.count_params() - new.count_params(), 8 * 8 + 4 * 8)

  def test_cell_rejects_bad_genotype(self):
    with self.assertRaisesRegex(ValueError, "block 0 has unknown op"):
      cells.Cell("bad3x3(prev)+identity(prev)", 8)


if __name__ == "__main__":
  tf.test.main()
