"""Tests for search/optimizer/pesmo.py: acquisition properties and proposals."""

import copy

import numpy as np
import tensorflow as tf

from search import cellspace
from search.optimizer import design
from search.optimizer import gp as gplib
from search.optimizer import pesmo


def _fitted_gps(x, ys, space):
  """Noiseless 1-D GPs with fixed hyperparameters (the acquisition's contract
  is about a given posterior, not about hyperparameter learning)."""
  gps = []
  for y in ys:
    model = gplib.ObjectiveGP(space.groups, kernel="rbf", min_noise=1e-8)
    theta = np.array([np.log(0.15), 0.0, np.log(1e-8), 0.0])
    model.samples = [model._condition(theta, space.encode(x), y)]
    gps.append(model)
  return gps


class PESMOTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.space = design.continuous_space([(0.0, 1.0)])
    self.x = np.array([[0.1], [0.3], [0.35], [0.5], [0.55]])
    t = self.x[:, 0]
    self.ys = [np.sin(6 * t), np.cos(6 * t)]
    self.acq = pesmo.PESMOAcquisition(_fitted_gps(self.x, self.ys, self.space), self.space,
                                      self.x, np.random.default_rng(0), num_features=300)

  def test_acquisition_is_non_negative(self):
    grid = np.linspace(0, 1, 101)[:, None]
    per = self.acq.per_objective(grid)
    self.assertEqual(per.shape, (101, 2))
    self.assertTrue(np.all(per >= 0.0))
    self.assertAllClose(self.acq(grid), per.sum(1))

  def test_acquisition_near_zero_at_observed_noiseless_point(self):
    far = self.acq(np.array([[0.95]]))[0]
    self.assertGreater(far, 0.05)
    self.assertLess(self.acq(self.x[3:4])[0], 1e-3 * far)

  def test_acquisition_larger_far_from_data(self):
    near = self.acq(np.array([[0.32]]))[0]
    far = self.acq(np.array([[0.9]]))[0]
    self.assertGreater(far, near)

  def test_pareto_set_excludes_evaluated_points(self):
    space = cellspace.cell_space()
    x = space.sample(0, 30)
    y = np.stack([x[:, 2], -x[:, 2] + 0.1 * x[:, 3]], axis=1)
    gps = [gplib.ObjectiveGP(space.groups, num_samples=1, burn_in=5).fit(space.encode(x), v)
           for v in y.T]
    functions = pesmo.sample_functions(gps, 0, 100, np.random.default_rng(1))
    pset = pesmo.sample_pareto_set(functions, space, x, np.random.default_rng(2),
                                   pool_size=200, max_pareto=7)
    self.assertLessEqual(pset.shape[0], 7)
    self.assertEmpty(set(space.keys(pset)) & set(space.keys(x)))
    space.validate(pset)

  def test_pareto_set_of_a_large_table_is_the_exact_front_of_the_draw(self):
    # 6,000 rows: above the acquisition's exhaustive limit, below the Pareto sets'.
    cards = (10, 10, 6, 10)
    rows = np.array(np.meshgrid(*[np.arange(c) for c in cards], indexing="ij")).reshape(
        4, -1).T.astype(float)
    self.assertGreater(rows.shape[0], pesmo.EXHAUSTIVE_LIMIT)
    space = design.DesignSpace([design.Variable("v%d" % i, design.CATEGORICAL, cardinality=c)
                                for i, c in enumerate(cards)]).with_candidates(rows)
    x = space.sample(np.random.default_rng(0), 25)
    y = np.stack([x[:, 0] + 0.3 * x[:, 1], -x[:, 0] + 0.2 * x[:, 2]], axis=1)
    gps = [gplib.ObjectiveGP(space.groups, num_samples=1, burn_in=5).fit(space.encode(x), v)
           for v in y.T]
    functions = pesmo.sample_functions(gps, 0, 200, np.random.default_rng(1))
    pset = pesmo.sample_pareto_set(functions, space, x, np.random.default_rng(2),
                                   max_pareto=10 ** 6)
    # Brute force: every row's values row by row, then the non-dominated unevaluated rows.
    values = np.stack([f(space.encode(rows)) for f in functions], axis=1)
    dominated = np.array([np.any(np.all(values <= v, 1) & np.any(values < v, 1))
                          for v in values])
    seen = set(space.keys(x))
    expected = {k for k, d in zip(space.keys(rows), dominated) if not d and k not in seen}
    self.assertNotEmpty(expected)
    self.assertEqual(set(space.keys(pset)), expected)

  def _front_keys(self, space, values, rows, seen, upper):
    """Brute force: the unevaluated rows on the front of those with values <= upper."""
    inside = np.all(values <= upper, axis=1)
    keys = space.keys(rows)
    out = set()
    for i in np.flatnonzero(inside):
      v = values[i]
      if not np.any(inside & np.all(values <= v, 1) & np.any(values < v, 1)):
        out.add(keys[i])
    return out - seen

  def test_pareto_sets_keep_the_front_inside_the_reference_point(self):
    cards = (5, 5, 4, 5)
    rows = np.array(np.meshgrid(*[np.arange(c) for c in cards], indexing="ij")).reshape(
        4, -1).T.astype(float)
    space = design.DesignSpace([design.Variable("v%d" % i, design.CATEGORICAL, cardinality=c)
                                for i, c in enumerate(cards)]).with_candidates(rows)
    x = space.sample(np.random.default_rng(0), 25)
    y = np.stack([x[:, 0] + 0.3 * x[:, 1] + 0.1 * x[:, 3], -x[:, 0] + 0.2 * x[:, 2]], axis=1)
    gps = [gplib.ObjectiveGP(space.groups, num_samples=1, burn_in=5).fit(space.encode(x), v)
           for v in y.T]
    seen = set(space.keys(x))
    ref = np.median(y, axis=0)
    # The region in the GPs' units by hand: no log, no warping, so (r - mean) / std.
    upper = (ref - y.mean(axis=0)) / y.std(axis=0)
    for restrict, ref_point in ((True, ref), (None, ref), (True, ref - 100.0)):
      options = {} if restrict is None else {"pareto_in_reference": restrict}  # None: default
      strategy = pesmo.PESMOStrategy(space, 2, seed=3, max_pareto=10 ** 6,
                                     reference_point=list(ref_point), **options)
      rng = copy.deepcopy(strategy.rng)
      functions = pesmo.sample_functions(gps, 0, 500, rng)
      values = np.stack([f(space.encode(rows)) for f in functions], axis=1)
      whole = self._front_keys(space, values, rows, seen, np.full(2, np.inf))
      pset = strategy._pareto_sets(gps, x)[0]
      if restrict and ref_point is ref:
        expected = self._front_keys(space, values, rows, seen, upper)
        self.assertNotEmpty(expected)
        self.assertLess(len(expected), len(whole))  # the region cuts the front
      else:  # not restricted, or no point of the draw in the region: the whole front
        expected = whole
      self.assertEqual(set(space.keys(pset)), expected)

  def test_strategy_reports_timings_and_proposes_new_point(self):
    strategy = pesmo.PESMOStrategy(self.space, 2, seed=0, num_samples=2, burn_in=5,
                                   acq_pool=100, pool_size=100)
    pending = np.array([[0.8]])
    point = strategy.propose(self.x, np.stack(self.ys, 1), pending)
    self.assertEqual(point.shape, (1,))
    self.assertNotIn(self.space.keys(point)[0], self.space.keys(np.vstack([self.x, pending])))
    self.assertGreater(strategy.timings["fit_seconds"], 0.0)
    self.assertGreater(strategy.timings["acquisition_seconds"], 0.0)

  def test_pending_point_pushes_next_proposal_away(self):
    options = dict(num_samples=3, burn_in=10, acq_pool=200, pool_size=200)
    y = np.stack(self.ys, 1)
    first = pesmo.PESMOStrategy(self.space, 2, seed=0, **options).propose(self.x, y)
    second = pesmo.PESMOStrategy(self.space, 2, seed=0, **options).propose(
        self.x, y, first[None])
    self.assertGreater(abs(second[0] - first[0]), 0.03)

  def test_strategy_output_warping_reaches_every_objective_gp(self):
    strategy = pesmo.PESMOStrategy(self.space, 2, seed=0, num_samples=2, burn_in=5,
                                   acq_pool=100, pool_size=100, output_warping="yeo-johnson")
    y = np.stack(self.ys, 1)
    y[0, 0] = 50.0  # one far outlier in the first objective
    point = strategy.propose(self.x, y)
    self.assertNotIn(self.space.keys(point)[0], self.space.keys(self.x))
    lambdas = [gp.warp[0] for gp in strategy.gps]
    self.assertLess(lambdas[0], 0.0)  # the outlier is compressed
    for k, gp in enumerate(strategy.gps):
      order = np.argsort(y[:, k])
      self.assertTrue(np.all(np.diff(gp.standardize(y[order, k])) > 0))

  def test_strategy_rejects_bad_options(self):
    with self.assertRaisesRegex(ValueError, "reference_point.*positive.*log"):
      pesmo.PESMOStrategy(self.space, 2, log_objectives=[True, False], reference_point=[0, 1])
    with self.assertRaisesRegex(ValueError, "output_warping"):
      pesmo.PESMOStrategy(self.space, 2, output_warping="boxcox")
    with self.assertRaisesRegex(ValueError, "Unknown options"):
      pesmo.PESMOStrategy(self.space, 2, not_an_option=1)
    with self.assertRaisesRegex(ValueError, "Expected 2 booleans"):
      pesmo.PESMOStrategy(self.space, 2, log_objectives=[True])


if __name__ == "__main__":
  tf.test.main()
