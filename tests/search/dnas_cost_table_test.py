"""Tests of search/dnas/cost_table.py: the measured per-layer table, its
one-layer models and its interpolation as a differentiable cost model."""

import collections
import os

import keras
import numpy as np
import tensorflow as tf

from search.dnas import cost_table
from tea_keras.dnas import graph as graph_lib
from tests.tea_keras.dnas import fixtures

Spec = collections.namedtuple("Spec", "name")


def _bilinear_truth(c_in, c_out):
  """A function bilinear in (c_in, c_out): its interpolation is exact."""
  return 2e-6 + 3e-7 * c_in + 5e-7 * c_out + 1e-8 * c_in * c_out


class InterpolationTest(tf.test.TestCase):

  def _table(self):
    ins, outs = [2, 4, 8, 16], [3, 6, 12]
    conv = [[_bilinear_truth(a, b) for b in outs] for a in ins]
    depthwise = [[4e-6 + 2e-7 * a] for a in ins]
    return {"layers": {
        "conv": {"kind": "conv", "c_in": ins, "c_out": outs, "time_s_per_image": conv,
                 "energy_j_per_image": None},
        "dw": {"kind": "depthwise", "c_in": ins, "c_out": [None],
               "time_s_per_image": depthwise, "energy_j_per_image": None}}}

  def test_latency_table_is_exact_for_a_bilinear_layer_anywhere_on_and_beyond_the_grid(self):
    table = cost_table.LatencyTable(self._table())
    specs = [Spec("conv"), Spec("dw")]
    for c_in, c_out in ((2, 3), (5.5, 7.25), (16, 12), (9, 4), (20, 13)):
      alive = {"conv": (tf.constant(c_in, "float64"), tf.constant(c_out, "float64")),
               "dw": (tf.constant(c_in, "float64"), tf.constant(0.0, "float64"))}
      got = float(table(specs, alive))
      # Piecewise bilinear interpolation of a bilinear function is the
      # function itself (and the outer segments extend it linearly).
      self.assertAllClose(got, _bilinear_truth(c_in, c_out) + 4e-6 + 2e-7 * c_in, rtol=1e-9)

  def test_latency_table_gradient_equals_the_functions_derivative(self):
    table = cost_table.LatencyTable(self._table())
    c_in, c_out = tf.Variable(5.5, dtype="float64"), tf.Variable(7.25, dtype="float64")
    with tf.GradientTape() as tape:
      value = table([Spec("conv")], {"conv": (c_in, c_out)})
    d_in, d_out = tape.gradient(value, [c_in, c_out])
    self.assertAllClose(float(d_in), 3e-7 + 1e-8 * 7.25, rtol=1e-9)
    self.assertAllClose(float(d_out), 5e-7 + 1e-8 * 5.5, rtol=1e-9)

  def test_energy_table_refuses_a_table_without_energy_naming_the_layers(self):
    with self.assertRaisesRegex(ValueError, "energy_j_per_image.*conv, dw"):
      cost_table.EnergyTable(self._table())

  def test_grid_counts_are_distinct_ascending_and_at_least_one(self):
    self.assertEqual(cost_table.grid_counts(16), [4, 8, 12, 16])
    self.assertEqual(cost_table.grid_counts(2), [1, 2])
    self.assertEqual(cost_table.grid_counts(1), [1])


class MeasureTableTest(tf.test.TestCase):

  def test_measure_table_builds_each_layer_at_each_grid_point(self):
    """A measurement that returns the one-layer model's parameter count as
    its time (per 10 images): the table must hold, at each grid point, the
    count of that layer rebuilt with those channels, i.e. Keras' own count
    for a layer of c_in inputs and c_out outputs."""
    seed = fixtures.concat_model()
    specs = graph_lib.analyze(seed).specs
    seen = []

    def measure(model):
      layer = model.get_layer("layer")
      seen.append((type(layer).__name__, int(model.input.shape[-1]), layer.count_params()))
      return {"time_s": 10.0 * model.count_params(), "energy_j": None, "images": 10}

    table = cost_table.measure_table(seed, specs, measure, log=lambda _: None)
    conv_d = table["layers"]["conv_d"]  # 1x1 conv of the 11 concatenated channels to 7
    self.assertEqual((conv_d["c_in"], conv_d["c_out"]), ([3, 6, 8, 11], [2, 4, 5, 7]))
    for a, c_in in enumerate(conv_d["c_in"]):
      for b, c_out in enumerate(conv_d["c_out"]):
        self.assertEqual(conv_d["time_s_per_image"][a][b], c_in * c_out + c_out)
    dw = table["layers"]["dw_c"]  # 3x3 depthwise: one column
    self.assertEqual(dw["c_out"], [None])
    self.assertEqual([row[0] for row in dw["time_s_per_image"]],
                     [9 * c + c for c in dw["c_in"]])
    sep = table["layers"]["sep_b"]  # separable, depth multiplier 2, 5 filters
    self.assertEqual(sep["time_s_per_image"][-1][-1], 6 * 2 * 9 + 6 * 2 * 5 + 5)
    self.assertIsNone(conv_d["energy_j_per_image"])
    self.assertEqual(len(seen), sum(np.size(e["time_s_per_image"])
                                    for e in table["layers"].values()))
    keras.backend.clear_session()


class MeasureLayerTest(tf.test.TestCase):

  def test_measure_layer_times_a_one_layer_model_of_any_input_shape_on_the_cpu(self):
    """The sweep's layer measurement, for real (ONNX Runtime on this CPU): a
    one-layer model whose input is not an image (11 channels) is exported
    and timed on inputs of its own shape."""
    from search import device_lock, loop  # pylint: disable=g-import-not-at-top
    from search.dnas import sweep  # pylint: disable=g-import-not-at-top
    from tests.search import loop_test  # pylint: disable=g-import-not-at-top
    seed = fixtures.concat_model()
    spec = [s for s in graph_lib.analyze(seed).specs if s.name == "conv_d"][0]
    model = cost_table.layer_model(spec, seed.get_layer("conv_d"), 8, 5)
    self.assertEqual(tuple(model.input.shape[1:]), (6, 6, 8))
    config = loop.resolve(loop_test.tiny_config(self.get_temp_dir()))
    metrics = sweep.measure_layer(model, os.path.join(self.get_temp_dir(), "work"), config,
                                  device_lock.for_config(config), np.random.default_rng(0))
    self.assertGreater(metrics["time_s"], 0.0)
    self.assertEqual(metrics["images"], config.measure_images)
    # A dense layer (features, not an image) as a 1x1 image of its features.
    dense_spec = [s for s in graph_lib.analyze(seed).specs if s.name == "logits"][0]
    dense = cost_table.layer_model(dense_spec, seed.get_layer("logits"), 20, 4)
    self.assertEqual(tuple(dense.input.shape[1:]), (1, 1, 20))
    self.assertEqual(dense.count_params(), 20 * 4 + 4)
    metrics = sweep.measure_layer(dense, os.path.join(self.get_temp_dir(), "dense"), config,
                                  device_lock.for_config(config), np.random.default_rng(0))
    self.assertGreater(metrics["time_s"], 0.0)
    keras.backend.clear_session()

if __name__ == "__main__":
  tf.test.main()
