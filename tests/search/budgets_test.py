"""Tests for search/budgets.py: known budgets as the design space's constraint."""

import os

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from search import budgets
from search import config as config_lib
from search import cellspace
from search.optimizer import strategies
from tea_keras import cost
from tea_keras import network
from tea_keras import space
from tests.tea_keras import onnx_params

N, F = 1, 8
# A cell that never reads ``prev``: every other cell of its network is dead.
NO_PREV = ("sep3x3(prev_prev)+conv3x3(prev_prev); max3x3(b0)+identity(prev_prev); "
           "conv5x5(b1)+sep5x5(b0); identity(b2)+max3x3(prev_prev); sep7x7(b3)+conv3x3(b1)")
# The cell with the fewest live weights: max pools in a chain from prev_prev
# (only every other cell live, each projecting one input, one output block).
LEAST = "; ".join("max3x3(%s)+max3x3(%s)" % ((space.input_name(b + 1 if b else 0),) * 2)
                  for b in range(space.NUM_BLOCKS))
SMALL_PESMO = {"num_samples": 2, "burn_in": 5, "acq_pool": 60, "pool_size": 60,
               "num_features": 100}


def _quantile(key, q, count=300, seed=0):
  values = [cost.genotype_cost(g, N, F)[key]
            for g in space.sample_many(np.random.default_rng(seed), count)]
  return int(np.quantile(values, q))


def _brute_force_ok(vector, limits):
  """Independent check: the cost module's counts against the limits."""
  c = cost.genotype_cost(space.Genotype.from_vector(np.rint(vector).astype(int)), N, F)
  return all(c[k[len("max_"):]] <= v for k, v in limits.items())


class BudgetsTest(tf.test.TestCase, parameterized.TestCase):

  def test_violations_names_each_budget(self):
    values = {"params": 1000, "peak_activation_bytes": 5000}
    self.assertEqual(budgets.violations(values, {"max_params": 999}, ("fp32",)),
                     ["max_params"])
    self.assertEqual(budgets.violations(values, {"max_peak_activation_bytes": 4999},
                                        ("fp32",)), ["max_peak_activation_bytes"])
    # 1000 weights: 4000 bytes at fp32, 1000 at int8.
    self.assertEqual(budgets.violations(values, {"max_model_bytes": 3999}, ("fp32",)),
                     ["max_model_bytes"])
    self.assertEqual(budgets.violations(values, {"max_model_bytes": 3999},
                                        ("fp32", "int8")), [])
    self.assertEqual(budgets.violations(values, {"max_params": 1000}, ("fp32",)), [])

  def test_pair_violations_uses_artifact_bytes_and_measurements(self):
    limits = {"max_model_bytes": 100, "max_time_s": 1.0}
    self.assertEqual(budgets.pair_violations({"model_bytes": 101, "time_s": 0.5}, limits),
                     ["max_model_bytes"])
    self.assertEqual(budgets.pair_violations({"model_bytes": 100, "time_s": 1.5}, limits),
                     ["max_time_s"])

  def test_constraint_mask_equals_brute_force(self):
    limits = {"max_params": _quantile("params", 0.5),
              "max_peak_activation_bytes": _quantile("peak_activation_bytes", 0.5)}
    fn, text = budgets.constraint(limits, N, F, ("fp32",))
    rows = np.array([g.to_vector() for g in space.sample_many(np.random.default_rng(9), 300)],
                    float)
    mask = fn(rows)
    costs = [cost.genotype_cost(space.Genotype.from_vector(row.astype(int)), N, F)
             for row in rows]
    by_params = [c["params"] <= limits["max_params"] for c in costs]
    by_peak = [c["peak_activation_bytes"] <= limits["max_peak_activation_bytes"] for c in costs]
    self.assertEqual(mask.tolist(), [p and q for p, q in zip(by_params, by_peak)])
    # Each budget rejects some rows the other lets through (both are checked).
    self.assertTrue(any(p and not q for p, q in zip(by_params, by_peak)))
    self.assertTrue(any(q and not p for p, q in zip(by_params, by_peak)))
    self.assertIn("peak_activation_bytes <=", text)

  def _never_infeasible(self, name, seeds):
    limits = {"max_params": _quantile("params", 0.15),
              "max_peak_activation_bytes": _quantile("peak_activation_bytes", 0.5)}
    fn, text = budgets.constraint(limits, N, F, ("fp32",))
    restricted = cellspace.cell_space().with_constraint(fn, text)
    for seed in seeds:
      rng = np.random.default_rng(seed)
      x = restricted.sample(rng, 4)
      for row in x:
        self.assertTrue(_brute_force_ok(row, limits), msg="initial %s" % row)
      y = rng.normal(size=(len(x), 2))
      strategy = strategies.make_strategy(name, restricted, 2, seed=seed,
                                          **(SMALL_PESMO if name == "pesmo" else {}))
      for _ in range(3):
        point = strategy.propose(x, y, np.zeros((0, restricted.dim)))
        self.assertTrue(_brute_force_ok(point, limits),
                        msg="%s seed %d proposed %s over %s" % (name, seed, point, limits))
        x = np.vstack([x, point])
        y = np.vstack([y, rng.normal(size=(1, 2))])

  # ParEGO's proposals under a peak-activation budget cost ~12 s each here
  # (GPyOpt scores many candidates, each through the liveness count): one
  # seed by default (PESMO two), six more in the slow suite.
  @parameterized.parameters(("random", 6), ("parego", 1), ("pesmo", 2))
  def test_strategies_never_propose_an_infeasible_cell(self, name, num_seeds):
    self._never_infeasible(name, range(num_seeds))

  @parameterized.parameters("parego", "pesmo")
  @pytest.mark.slow  # under the parameterization, so that each generated test carries it
  def test_strategies_never_propose_an_infeasible_cell_many_seeds(self, name):
    self._never_infeasible(name, range(2, 8))

  def test_check_space_refuses_a_budget_no_cell_meets(self):
    smallest = budgets.cell_cost(space.Genotype.parse(LEAST), N, F)
    with self.assertRaisesRegex(budgets.InfeasibleBudgetError, "params <= %d"
                                % (smallest["params"] - 1)):
      budgets.check_space({"max_params": smallest["params"] - 1}, N, F, ("fp32",))
    # At the smallest cell's count the space is not empty (that cell fits).
    self.assertGreaterEqual(
        budgets.check_space({"max_params": smallest["params"]}, N, F, ("fp32",)), 0.0)

  def test_constraint_and_check_space_count_the_exported_network(self):
    """The budgets count the weights of the exported ONNX file (read from its
    initializers), not those of cells whose output reaches no logit."""
    n, f = 1, 4
    genotype = space.Genotype.parse(NO_PREV)
    exported = onnx_params.exported_params(network.build_network(genotype, n, f),
                                           self.get_temp_dir())
    self.assertEqual(budgets.cell_cost(genotype, n, f)["params"], exported)
    row = np.array([genotype.to_vector()], float)
    for limit, fits in ((exported, True), (exported - 1, False)):
      fn, _ = budgets.constraint({"max_params": limit}, n, f, ("fp32",))
      self.assertEqual(fn(row).tolist(), [fits], msg="max_params=%d" % limit)
    least = onnx_params.exported_params(
        network.build_network(space.Genotype.parse(LEAST), n, f, name="least"),
        self.get_temp_dir())
    self.assertGreaterEqual(budgets.check_space({"max_params": least}, n, f, ("fp32",)), 0.0)
    with self.assertRaisesRegex(budgets.InfeasibleBudgetError, "params <= %d" % (least - 1)):
      budgets.check_space({"max_params": least - 1}, n, f, ("fp32",))

  def test_check_space_fraction_matches_quantile(self):
    limit = _quantile("params", 0.5, count=budgets.CHECK_DRAWS, seed=3)
    fraction = budgets.check_space({"max_params": limit}, N, F, ("fp32",), seed=3)
    self.assertAllClose(fraction, 0.5, atol=0.01)

  def test_config_validates_budgets_and_precisions(self):
    base = dict(results_dir="x", objectives=("error", "time"), runtime="onnxruntime")
    config_lib.validate(config_lib.SearchConfig(precisions=("fp32", "int8"),
                                                max_params=10 ** 6, **base))
    for bad, pattern in (({"precisions": ("fp64",)}, "precisions"),
                         ({"precisions": ("int8", "int8")}, "distinct"),
                         ({"max_params": 0}, "max_params"),
                         ({"max_energy_j": 1.0}, "energy among"),
                         ({"precisions": ("int8",), "runtime": "keras"}, "keras"),
                         ({"max_params": 10}, "No cell of the search space")):
      with self.assertRaisesRegex(ValueError, pattern):
        config_lib.validate(config_lib.SearchConfig(**dict(base, **bad)))


if __name__ == "__main__":
  tf.test.main()


class NumClassesTest(tf.test.TestCase):

  def test_budgets_count_the_classifier_of_the_data_sets_classes(self):
    """An image folder of 3 classes: the budget counts a 3-way classifier."""
    folder = os.path.join(self.get_temp_dir(), "three")
    for name in ("cat", "dog", "owl", ".hidden"):
      os.makedirs(os.path.join(folder, name), exist_ok=True)
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    self.assertEqual(data.num_classes("folder", folder), 3)
    self.assertEqual(data.num_classes("cifar10_sample"), 10)
    genotype = space.sample(np.random.default_rng(4))
    ten = cost.genotype_params(genotype, 1, 4)
    three = cost.genotype_params(genotype, 1, 4, num_classes=3)
    self.assertLess(three, ten)
    vector = np.array([genotype.to_vector()], float)
    for classes, params in ((10, ten), (3, three)):
      fn, _ = budgets.constraint({"max_params": params}, 1, 4, ("fp32",), num_classes=classes)
      self.assertTrue(fn(vector)[0])
      fn, _ = budgets.constraint({"max_params": params - 1}, 1, 4, ("fp32",),
                                 num_classes=classes)
      self.assertFalse(fn(vector)[0])
