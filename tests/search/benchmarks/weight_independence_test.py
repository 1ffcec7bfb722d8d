"""Tests for search/benchmarks/weight_independence.py: the exports' graphs
(why untrained and trained times can agree, and where they cannot), the
summary's statistics against scipy and by hand, and the CLI end to end."""

import csv
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from search.benchmarks import weight_independence as wi
from tea_keras import data
from tea_keras import recipes
from tea_keras import space

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Two blocks with weights on one input each, and a max pool: small and quick.
GENOTYPE = "conv3x3(prev)+sep3x3(prev_prev); max3x3(b0)+identity(prev)"


def _tiny_splits(n=64):
  splits = data.load("cifar10_sample", seed=0)
  return dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n],
                             x_val=splits.x_val[:32], y_val=splits.y_val[:32])


class GraphTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from tea_keras import training  # pylint: disable=g-import-not-at-top
    folder = pathlib.Path(tf.compat.v1.test.get_temp_dir()) / "wi_graph"
    recipe = recipes.search_recipe(num_cells=1, filters=4, epochs=1, batch_size=32)
    model = training.build_cell_network(space.Genotype.parse(GENOTYPE), recipe, 1, 4, seed=0)
    images = data.normalize(_tiny_splits().x_val[:4])
    initial = [w.numpy() for w in model.weights]
    cls.paths = {}
    cls.paths["untrained"] = wi.export_all(model, str(folder / "u"), ("onnxruntime",),
                                           ("fp32",), images, None)[("onnxruntime", "fp32")]
    cls.drawn = wi.randomize_constant_weights(model, seed=1)
    cls.paths["randomized"] = wi.export_all(model, str(folder / "r"), ("onnxruntime",),
                                            ("fp32",), images, None)[("onnxruntime", "fp32")]
    for variable, value in zip(model.weights, initial):
      variable.assign(value)
    training.train_model(model, recipe, _tiny_splits(), None, verbose=0, seed=0)
    cls.paths["trained"] = wi.export_all(model, str(folder / "t"), ("onnxruntime",),
                                         ("fp32",), images, None)[("onnxruntime", "fp32")]

  def _weights(self, state):
    import onnx  # pylint: disable=g-import-not-at-top
    return [onnx.numpy_helper.to_array(t) for t in onnx.load(self.paths[state]).graph.initializer]

  def test_graph_signature_randomized_and_trained_exports_have_the_same_graph(self):
    randomized, trained = (wi.graph_signature(self.paths[s]) for s in ("randomized", "trained"))
    self.assertEqual(randomized["nodes"], trained["nodes"])
    self.assertEqual(randomized["initializers"], trained["initializers"])
    # ... and other weights: the same shapes (tf2onnx may order them differently),
    # most of them with other values
    randomized, trained = self._weights("randomized"), self._weights("trained")
    self.assertEqual(sorted(a.shape for a in randomized), sorted(b.shape for b in trained))
    twins = sum(1 for a in randomized if any(a.shape == b.shape and np.array_equal(a, b)
                                             for b in trained))
    self.assertLess(twins, len(randomized) // 2)

  def test_graph_signature_keras_initial_weights_lose_their_zero_biases(self):
    # Keras initializes batch-norm offsets and means to 0 (scales and variances
    # to 1); tf2onnx then drops the folded zero biases: fewer initializers
    # than the trained network's, so the graph is not the same.
    untrained, trained = (wi.graph_signature(self.paths[s]) for s in ("untrained", "trained"))
    self.assertLess(len(untrained["initializers"]), len(trained["initializers"]))
    self.assertNotEqual(untrained, trained)

  def test_randomize_constant_weights_leaves_no_constant_tensor(self):
    self.assertGreater(self.drawn, 0)
    for value in self._weights("randomized"):
      if value.size > 1 and np.issubdtype(value.dtype, np.floating):
        self.assertGreater(len(np.unique(value)), 1)


class SummaryTest(tf.test.TestCase):

  def _rows(self, untrained, trained):
    return [{"runtime": "onnxruntime", "precision": "fp32", "variant": "randomized",
             "untrained_ms_per_image": u, "trained_ms_per_image": t,
             "time_pct_diff": wi.pct_diff(u, t), "untrained_mj_per_image": None,
             "trained_mj_per_image": None, "energy_pct_diff": None, "same_graph": True,
             "contended": False, "decouplable": True} for u, t in zip(untrained, trained)]

  def test_pct_diff_is_relative_to_the_trained_export(self):
    self.assertAllClose(wi.pct_diff(1.1, 1.0), 10.0)
    self.assertAllClose(wi.pct_diff(0.9, 1.0), -10.0)
    self.assertIsNone(wi.pct_diff(None, 1.0))

  def test_summarize_matches_hand_computed_statistics(self):
    from scipy import stats  # pylint: disable=g-import-not-at-top
    untrained, trained = [1.0, 2.2, 2.9, 4.4], [1.1, 2.0, 3.0, 4.0]
    entry = wi.summarize(self._rows(untrained, trained))["onnxruntime/fp32/randomized"]
    diffs = [abs(100.0 * (u - t) / t) for u, t in zip(untrained, trained)]
    self.assertEqual(entry["cells"], 4)
    self.assertAllClose(entry["time"]["mean_abs_pct_diff"], np.mean(diffs))
    self.assertAllClose(entry["time"]["max_abs_pct_diff"], 10.0)
    self.assertAllClose(entry["time"]["spearman_rho"], 1.0)   # same ranks
    self.assertAllClose(entry["time"]["spearman_rho"],
                        stats.spearmanr(untrained, trained)[0])
    self.assertNotIn("energy", entry)

  def test_sample_cells_is_seeded_and_distinct(self):
    cells = wi.sample_cells(5, seed=3)
    self.assertEqual([c.key() for c in cells], [c.key() for c in wi.sample_cells(5, seed=3)])
    self.assertLen({c.key() for c in cells}, 5)


class CliTest(tf.test.TestCase):

  @pytest.mark.slow  # two cells: three exports, a training and 12 measurements each
  def test_cli_runs_two_tiny_cells_end_to_end(self):
    out = os.path.join(self.get_temp_dir(), "wi")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "search.benchmarks.weight_independence", "--cells=2",
         "--num_cells=1", "--filters=4", "--train_images=64", "--measure_images=50",
         "--batch_size=25", "--repeats=1", "--runtimes=onnxruntime,openvino",
         "--precisions=fp32", "--results_dir=" + out],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("cell 2/2", proc.stderr)
    self.assertIn("ETA", proc.stderr)
    with open(os.path.join(out, "weight_independence.csv")) as f:
      rows = list(csv.DictReader(f))
    # 2 cells x 2 runtimes x 2 untrained variants, each against the trained export
    self.assertLen(rows, 8)
    self.assertSetEqual({r["variant"] for r in rows}, {"untrained", "randomized"})
    for row in rows:
      self.assertGreater(float(row["untrained_ms_per_image"]), 0.0)
      self.assertGreater(float(row["trained_ms_per_image"]), 0.0)
    self.assertTrue(all(r["same_graph"] == "True" for r in rows
                        if r["variant"] == "randomized" and r["runtime"] == "onnxruntime"))
    with open(os.path.join(out, "summary.json")) as f:
      summary = json.load(f)["per_runtime_precision"]
    self.assertSetEqual(set(summary), {"%s/fp32/%s" % (r, v) for r in ("onnxruntime", "openvino")
                                       for v in ("untrained", "randomized")})
    self.assertEqual(summary["openvino/fp32/randomized"]["cells"], 2)
    self.assertTrue(os.path.exists(os.path.join(out, "weight_independence.png")))


if __name__ == "__main__":
  tf.test.main()
