"""Tests for search/optimizer/botorch_strategy.py: qLogNEHVI (BoTorch) as a strategy."""

import itertools
import subprocess
import sys
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.benchmarks.problems import branin_currin
from search.optimizer import botorch_strategy
from search.optimizer import design
from search.optimizer import pareto
from search.optimizer import strategies

FAST = {"mc_samples": 32, "acq_pool": 100, "num_restarts": 2, "raw_samples": 64}


def _toy_table():
  """A 3-variable categorical table (4 x 4 x 3 = 48 rows) and its 2 objectives:
  accuracy-like and cost-like, in conflict, plus an interaction."""
  rows = np.array(list(itertools.product(range(4), range(4), range(3))), dtype=float)
  cost = 1.0 + rows[:, 0] + 0.5 * rows[:, 1] + 0.3 * rows[:, 2]
  error = 4.0 / cost + 0.2 * (rows[:, 1] == rows[:, 0]) + 0.05 * rows[:, 2]
  space = design.DesignSpace([design.Variable("a", "categorical", cardinality=4),
                              design.Variable("b", "categorical", cardinality=4),
                              design.Variable("c", "categorical", cardinality=3)])
  return space.with_candidates(rows), rows, np.stack([error, cost], axis=1)


def _lookup(rows, values, x):
  index = [int(np.flatnonzero((rows == p).all(axis=1))[0]) for p in np.atleast_2d(x)]
  return values[index]


def _constrained_cell_space():
  """8 categorical variables (two PNAS-like blocks); a constraint keeps half."""
  cards = [2, 2, 8, 8, 3, 3, 8, 8]
  space = design.DesignSpace([design.Variable("v%d" % i, "categorical", cardinality=c)
                              for i, c in enumerate(cards)])
  return space.with_constraint(lambda x: np.asarray(x)[:, 2] < 4, "v2 < 4")


def _cell_objectives(x):
  x = np.atleast_2d(x)
  return np.stack([1.0 + np.cos(x[:, 2]) + 0.1 * x[:, 3], 1.0 + 0.2 * x[:, 6] + x[:, 4]], axis=1)


class QLogNEHVIStrategyTest(tf.test.TestCase, parameterized.TestCase):

  def test_registry_holds_qlognehvi(self):
    self.assertIs(strategies.STRATEGIES["qlognehvi"], botorch_strategy.QLogNEHVIStrategy)

  def test_proposals_are_feasible_unevaluated_and_deterministic_for_a_seed(self):
    space = _constrained_cell_space()
    x = space.sample(np.random.default_rng(0), 12)
    y = _cell_objectives(x)
    pending = space.sample(np.random.default_rng(1), 2)
    first = strategies.make_strategy("qlognehvi", space, 2, seed=3, **FAST)
    point = first.propose(x, y, pending)
    self.assertTrue(space.feasible(point)[0])
    self.assertNotIn(space.keys(point)[0], set(space.keys(np.vstack([x, pending]))))
    self.assertGreater(first.timings["fit_seconds"], 0.0)
    # A fresh strategy (a resumed search builds one) proposes the same point, even
    # after a proposal on other data.
    again = strategies.make_strategy("qlognehvi", space, 2, seed=3, **FAST)
    again.propose(x[:8], y[:8])
    self.assertAllEqual(again.propose(x, y, pending), point)

  def test_hypervolume_beats_the_initial_design_on_branin_currin(self):
    space = design.continuous_space([(0.0, 1.0)] * 2)
    ref = np.array([18.0, 6.0])
    x = space.sample(np.random.default_rng(0), 6)
    y = branin_currin(x)
    initial = pareto.hypervolume(y, ref)
    strategy = strategies.make_strategy("qlognehvi", space, 2, seed=0,
                                        log_objectives=[True, True],
                                        reference_point=ref.tolist(), **FAST)
    for _ in range(6):
      point = strategy.propose(x, y)
      x, y = np.vstack([x, point]), np.vstack([y, branin_currin(point)])
    self.assertGreater(pareto.hypervolume(y, ref), initial)

  def test_categorical_table_through_the_mixed_model_reaches_more_of_the_front(self):
    space, rows, values = _toy_table()
    ref = values.max(axis=0) * 1.1
    best = pareto.hypervolume(values, ref)  # brute force over the 48 rows
    order = np.random.default_rng(2).permutation(rows.shape[0])
    x = rows[order[:6]]
    y = _lookup(rows, values, x)
    initial = pareto.hypervolume(y, ref) / best
    strategy = strategies.make_strategy("qlognehvi", space, 2, seed=0, **FAST)
    for _ in range(8):
      point = strategy.propose(x, y)
      self.assertTrue(space.feasible(point)[0])  # a row of the table
      x, y = np.vstack([x, point]), np.vstack([y, _lookup(rows, values, point)])
    self.assertLen(set(space.keys(x)), 14)
    self.assertGreater(pareto.hypervolume(y, ref) / best, initial)

  def test_fit_model_uses_the_categorical_kernel_on_integer_codes(self):
    from botorch.models import MixedSingleTaskGP  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    space, rows, values = _toy_table()
    with botorch_strategy.torch_threads(torch, 1):
      model = botorch_strategy.fit_model(torch, space, rows[:10], -values[:10])
    self.assertIsInstance(model, MixedSingleTaskGP)
    self.assertAllEqual(model.train_inputs[0][0].numpy(), rows[:10])

  def test_pending_point_is_not_proposed_and_gains_nothing(self):
    space, rows, values = _toy_table()
    x = rows[np.random.default_rng(4).permutation(rows.shape[0])[:10]]
    y = _lookup(rows, values, x)
    strategy = strategies.make_strategy("qlognehvi", space, 2, seed=0, **FAST)
    best = strategy.propose(x, y)
    pending = best[None]
    # _propose, not propose: no fallback that would replace a pending point.
    with_pending = strategy._propose(x, y, pending)  # pylint: disable=protected-access
    self.assertNotEqual(space.keys(with_pending)[0], space.keys(best)[0])
    import torch  # pylint: disable=import-outside-toplevel
    targets = botorch_strategy.to_maximize(y, strategy.logs)
    with botorch_strategy.torch_threads(torch, 1):
      model = botorch_strategy.fit_model(torch, space, x, targets)
      z = botorch_strategy.model_inputs(space, pending)
      alone = strategy.acquisition(torch, model, x, targets, np.zeros((0, 3)))
      beside = strategy.acquisition(torch, model, x, targets, pending)
      gain_alone = botorch_strategy.score(torch, alone, z)[0]
      gain_beside = botorch_strategy.score(torch, beside, z)[0]
    self.assertLess(gain_beside, gain_alone - 3.0)  # log-improvement: ~e^-3 of it at most

  def test_equivalent_cells_are_one_model_input(self):
    from search import cellspace  # pylint: disable=import-outside-toplevel
    space = cellspace.cell_space(num_blocks=1)
    swapped = np.array([[0.0, 1.0, 2.0, 5.0], [1.0, 0.0, 5.0, 2.0]])  # one block, two orders
    inputs = botorch_strategy.model_inputs(space, swapped)
    self.assertAllEqual(inputs[0], inputs[1])

  def test_a_failed_fit_warns_and_still_proposes(self):
    from botorch.exceptions.errors import ModelFittingError  # pylint: disable=import-outside-toplevel
    space, rows, values = _toy_table()
    x = rows[:8]
    strategy = strategies.make_strategy("qlognehvi", space, 2, seed=0, **FAST)
    with mock.patch("botorch.fit.fit_gpytorch_mll", side_effect=ModelFittingError("boom")):
      with self.assertWarnsRegex(RuntimeWarning, "the GP fit failed .*boom"):
        point = strategy.propose(x, _lookup(rows, values, x))
    self.assertNotIn(space.keys(point)[0], set(space.keys(x)))

  def test_log_objectives_are_modelled_in_log(self):
    self.assertAllClose(botorch_strategy.to_maximize([[2.0, np.e]], np.array([False, True])),
                        [[-2.0, -1.0]])

  @parameterized.named_parameters(
      ("log_objectives_length", {"log_objectives": [True]}, "log_objectives"),
      ("reference_not_positive_for_log", {"log_objectives": [False, True],
                                          "reference_point": [1.0, 0.0]}, "reference_point"),
      ("unknown_option", {"num_samples": 3}, "Unknown options"))
  def test_bad_options_raise(self, options, message):
    space, _, _ = _toy_table()
    with self.assertRaisesRegex(ValueError, message):
      strategies.make_strategy("qlognehvi", space, 2, **options)

  def test_missing_botorch_raises_import_error_naming_the_extra(self):
    space, _, _ = _toy_table()
    with mock.patch.dict(sys.modules, {"botorch": None}):
      with self.assertRaisesRegex(ImportError, r"pip install -e \"\.\[bench\]\".*botorch"):
        strategies.make_strategy("qlognehvi", space, 2)
      with self.assertRaisesRegex(ImportError, r"bench.*Import error: .*botorch"):
        strategies.check_available("qlognehvi")
    strategies.check_available("random")  # no optional package: never raises

  def test_registry_imports_without_torch(self):
    # (Not sys.modules['torch'] = None: SciPy's array-API helpers then fail.)
    code = ("import sys\n"
            "from search.optimizer import strategies\n"
            "print(sorted(strategies.STRATEGIES), 'torch' in sys.modules)\n"
            "sys.modules['botorch'] = None\n"
            "try:\n  strategies.check_available('qlognehvi')\n"
            "except ImportError as e:\n  print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    self.assertIn("'qlognehvi', 'random'] False", out)  # registered, PyTorch not imported
    self.assertIn("refused: --strategy=qlognehvi needs BoTorch", out)


if __name__ == "__main__":
  tf.test.main()
