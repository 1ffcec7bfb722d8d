"""Tests for search/optimizer/feasibility.py and PESMO's ``objective_bounds``."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
from scipy import linalg

from search import config as config_lib
from search import loop
from search import cellspace
from search.optimizer import design
from search.optimizer import feasibility
from search.optimizer import gp as gplib
from search.optimizer import pesmo
from search.benchmarks import table as table_lib
from search.benchmarks import benchmark


def _gp(space, x, y, theta, log_transform=False, shift=0.0, scale=1.0):
  """A GP with fixed hyperparameters (one sample) on standardized values ``y``."""
  model = gplib.ObjectiveGP(space.groups, kernel="rbf", min_noise=1e-8,
                            log_transform=log_transform)
  model.y_shift, model.y_scale = shift, scale
  model.samples = [model._condition(np.asarray(t, float), space.encode(x), y) for t in theta]
  return model


def _hand_posterior(x_train, y, x_test, lengthscale, amplitude, noise, mean):
  """RBF GP posterior mean and variance of the latent f, written out
  (Rasmussen & Williams eq. 2.25-2.26), independent of gp.py."""
  def k(a, b):
    d = (a[:, None, :] - b[None, :, :]) / lengthscale
    return amplitude * np.exp(-0.5 * np.sum(d * d, -1))
  kxx = k(x_train, x_train) + noise * np.eye(len(x_train))
  ks = k(x_train, x_test)
  mu = mean + ks.T @ linalg.solve(kxx, y - mean)
  var = amplitude - np.sum(ks * linalg.solve(kxx, ks), 0)
  return mu, var


def _dominated_brute(y):
  """(n,) whether each row is dominated by another (loops, no numpy tricks)."""
  n = len(y)
  out = np.zeros(n, bool)
  for i in range(n):
    for j in range(n):
      if j != i and all(y[j] <= y[i]) and any(y[j] < y[i]):
        out[i] = True
        break
  return out


class FeasibilityTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.space = design.continuous_space([(0.0, 1.0)])
    self.x = np.array([[0.05], [0.2], [0.45], [0.6], [0.9]])

  def test_averaged_pof_matches_monte_carlo_of_hand_posterior(self):
    rng = np.random.default_rng(0)
    t = self.x[:, 0]
    y1, y2 = np.sin(5 * t), np.cos(4 * t)
    thetas = [[np.log(0.2), 0.0, np.log(1e-3), 0.1], [np.log(0.35), np.log(1.5), np.log(1e-2), 0.0]]
    # Objective 2 is log-modelled: raw = exp(f * scale + shift).
    gps = [_gp(self.space, self.x, y1, thetas),
           _gp(self.space, self.x, y2, thetas, log_transform=True, shift=0.3, scale=2.0)]
    bounds_raw = [0.2, np.exp(0.3 + 2.0 * 0.4)]
    bounds = feasibility.model_bounds(gps, bounds_raw)
    self.assertAllClose(bounds, [0.2, 0.4])
    x_test = np.array([[0.1], [0.3], [0.52], [0.75], [1.0]])
    pof = feasibility.averaged_pof(gps, bounds, self.space.encode(x_test))
    draws, hits = 200000, np.zeros(len(x_test))
    for theta in thetas:
      ls, amp, noise, mean = np.exp(theta[0]), np.exp(theta[1]), np.exp(theta[2]), theta[3]
      m1, v1 = _hand_posterior(self.x, y1, x_test, ls, amp, noise, mean)
      m2, v2 = _hand_posterior(self.x, y2, x_test, ls, amp, noise, mean)
      f1 = m1 + np.sqrt(v1) * rng.standard_normal((draws, len(x_test)))
      f2 = m2 + np.sqrt(v2) * rng.standard_normal((draws, len(x_test)))
      raw2 = np.exp(0.3 + 2.0 * f2)
      hits += np.mean((f1 <= bounds_raw[0]) & (raw2 <= bounds_raw[1]), axis=0)
    mc = hits / len(thetas)
    self.assertAllClose(pof, mc, atol=5e-3)
    self.assertGreater(np.ptp(mc), 0.3)  # the test points span feasible and not

  def test_averaged_pof_near_one_inside_and_near_zero_outside(self):
    x = np.linspace(0, 1, 12)[:, None]
    gps = [_gp(self.space, x, 2.0 * x[:, 0], [[np.log(0.3), 0.0, np.log(1e-6), 0.0]])]
    bounds = feasibility.model_bounds(gps, [1.0])  # feasible iff x <= 0.5
    pof = feasibility.averaged_pof(gps, bounds, self.space.encode(np.array([[0.1], [0.95]])))
    self.assertGreater(pof[0], 0.999)
    self.assertLess(pof[1], 1e-3)

  def test_check_bounds_refuses_bad_values(self):
    for bad in ([1.0], ["fast", None], [np.nan, None], [None, -1.0], [True, None]):
      with self.assertRaisesRegex(ValueError, "option `objective_bounds`. Expected 2"):
        feasibility.check_bounds(bad, 2, (False, True))
    self.assertIsNone(feasibility.check_bounds([None, None], 2, (False, True)))
    self.assertEqual(feasibility.check_bounds([None, 2], 2, (False, True)), [None, 2.0])

  def test_anchor_rows_are_feasible_or_closest(self):
    y = np.array([[1.0, 5.0], [2.0, 3.0], [3.0, 1.0]])
    self.assertAllEqual(feasibility.anchor_rows(y, [None, 3.5]), [False, True, True])
    self.assertAllEqual(feasibility.anchor_rows(y, [None, 0.5]), [False, False, True])

  def _categorical(self, candidates):
    space = design.DesignSpace([design.Variable("v%d" % i, design.CATEGORICAL, cardinality=6)
                                for i in range(3)])
    if candidates:
      space = space.with_candidates(np.array(list(itertools.product(range(6), repeat=3)),
                                             float))
    return space

  def _sampled(self, space, rng):
    x = space.sample(rng, 12)
    theta = [[np.log(1.0)] * 3 + [0.0, np.log(1e-4), 0.0]]
    if space.all_continuous:
      theta = [[np.log(0.3)] * space.dim + [0.0, np.log(1e-4), 0.0]]
    gps = [_gp(space, x, rng.standard_normal(12), theta) for _ in range(2)]
    return x, pesmo.sample_functions(gps, 0, 300, rng)

  def test_sample_pareto_set_meets_bounds_under_sampled_functions(self):
    for kind in ("exhaustive", "pool", "continuous"):
      rng = np.random.default_rng(1)
      space = (design.continuous_space([(0.0, 1.0)] * 2) if kind == "continuous"
               else self._categorical(kind == "exhaustive"))
      x, functions = self._sampled(space, rng)
      probe = pesmo._evaluate(functions, space, space.sample(rng, 2000, min_count=1))
      bounds = np.array([np.median(probe[:, 0]), np.inf])  # about half infeasible
      pset = pesmo.sample_pareto_set(functions, space, x, rng, max_pareto=1000, bounds=bounds)
      self.assertGreater(pset.shape[0], 0, kind)
      values = pesmo._evaluate(functions, space, pset)
      self.assertTrue(np.all(values[:, 0] <= bounds[0]), kind)
      if kind == "exhaustive":  # the exact feasible Pareto set of the draw, by brute force
        all_y = pesmo._evaluate(functions, space, space.candidates)
        ok = all_y[:, 0] <= bounds[0]
        feas = space.candidates[ok]
        front = feas[~_dominated_brute(all_y[ok])]
        front = {k for k in space.keys(front)} - set(space.keys(x))
        self.assertEqual(set(space.keys(pset)), front)

  def test_sample_pareto_set_is_empty_when_no_point_meets_bounds(self):
    rng = np.random.default_rng(2)
    space = self._categorical(True)
    x, functions = self._sampled(space, rng)
    pset = pesmo.sample_pareto_set(functions, space, x, rng, bounds=np.array([-1e9, np.inf]))
    self.assertEqual(pset.shape, (0, 3))

  def test_strategy_rejects_bad_objective_bounds(self):
    with self.assertRaisesRegex(ValueError, "option `objective_bounds`"):
      pesmo.PESMOStrategy(self.space, 2, objective_bounds=[1.0])
    with self.assertRaisesRegex(ValueError, "option `objective_bounds`"):
      pesmo.PESMOStrategy(self.space, 2, log_objectives=[False, True],
                          objective_bounds=[None, 0.0])

  def test_strategy_with_bounds_proposes_new_point_with_pof(self):
    t = self.x[:, 0]
    y = np.stack([t, 1.0 - t], 1)
    strategy = pesmo.PESMOStrategy(self.space, 2, seed=0, num_samples=2, burn_in=5,
                                   acq_pool=100, pool_size=100, objective_bounds=[0.5, None])
    point = strategy.propose(self.x, y)
    self.assertNotIn(self.space.keys(point)[0], self.space.keys(self.x))
    self.assertIsInstance(strategy.last_acquisition, feasibility.FeasibilityWeighted)
    pof = strategy.last_acquisition.pof(np.array([[0.02], [0.98]]))
    self.assertGreater(pof[0], pof[1])

  def test_loop_measured_bounds_go_to_pesmo_only(self):
    cfg = config_lib.SearchConfig(results_dir="r", objectives=("error", "time", "energy"),
                                  max_time_s=0.5, max_energy_j=None)
    self.assertEqual(loop.measured_bounds(cfg), {"objective_bounds": [None, 0.5, None]})
    logged = []
    other = config_lib.SearchConfig.from_dict(dict(cfg.__dict__, strategy="random"))
    self.assertEqual(loop.measured_bounds(other, logged.append), {})
    self.assertIn("does not model the measured budgets", logged[0])
    plain = config_lib.SearchConfig(results_dir="r")
    self.assertEqual(loop.measured_bounds(plain), {})
    # What the loop builds accepts them.
    strategy = pesmo.PESMOStrategy(cellspace.cell_space(), 3, log_objectives=(False, True, True),
                                   **loop.measured_bounds(cfg))
    self.assertEqual(strategy.bounds, [None, 0.5, None])


def _toy_table(path):
  """300 designs (a, b in 0..9, c in 0..2): cost = 1 + a + b/2 + c and
  error = 20 / (1 + a + b) + c / 2 conflict; cost <= 5 leaves 50 rows."""
  rows = []
  for a, b, c in itertools.product(range(10), range(10), range(3)):
    rows.append("%d,%d,%d,%.6f,%.6f" % (a, b, c, 20.0 / (1 + a + b) + 0.5 * c,
                                        1 + a + 0.5 * b + c))
  with open(path, "w") as f:
    f.write("a,b,c,error,cost\n" + "\n".join(rows) + "\n")
  return path


class ConstrainedTableTest(tf.test.TestCase):

  @pytest.mark.slow
  def test_constrained_pesmo_proposes_feasible_rows_more_often(self):
    path = _toy_table(os.path.join(self.get_temp_dir(), "toy.csv"))
    table = table_lib.Table(path, ["a", "b", "c"], ["error", "cost"])
    self.assertEqual(int(np.sum(table.y[:, 1] <= 5)), 50)
    problem, _ = benchmark.with_bounds(benchmark.make_problem(
        "table", table=table, variables=None, objectives=None), [None, 5.0])
    counts = {True: 0, False: 0}
    seeds, proposals = range(5), 15
    for to_strategy in (True, False):
      for seed in seeds:
        run = benchmark.run_one(problem, "pesmo", 10 + proposals, seed, bounds=[None, 5.0],
                                bounds_to_strategy=to_strategy, num_samples=3)
        counts[to_strategy] += run["feasible_proposals"]
    total = proposals * len(seeds)
    # Under no effect the difference of the two fractions has a standard
    # deviation of about 0.07 here; 0.15 is about two of them.
    self.assertGreater(counts[True] / total - counts[False] / total, 0.15, counts)


if __name__ == "__main__":
  tf.test.main()
