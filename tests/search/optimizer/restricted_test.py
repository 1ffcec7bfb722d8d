"""Tests for restricted design spaces (search/optimizer/design.py: constraints,
candidate sets, canonical points) and that every strategy honours them."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search import cellspace
from search.optimizer import design
from search.optimizer import strategies
from tea_keras import space as cell

SMALL_PESMO = {"num_samples": 2, "burn_in": 5, "acq_pool": 60, "pool_size": 60,
               "num_features": 100}


def _grid_space():
  """5^4 = 625 categorical points."""
  return design.DesignSpace([design.Variable("v%d" % i, "categorical", cardinality=5)
                             for i in range(4)])


def _sum_at_most_3(x):
  """35 of the 625 grid points (5.6%)."""
  return np.asarray(x).sum(axis=1) <= 3


def _options(name):
  return dict(SMALL_PESMO) if name == "pesmo" else {}


def _objectives(x):
  x = np.asarray(x, dtype=float)
  return np.stack([np.sin(x).sum(1) + 0.1 * x[:, 0], np.cos(x).sum(1) + x[:, -1]], axis=1)


def _run(name, space, x, seed, proposals, check):
  """Proposes ``proposals`` points one at a time; ``check(point, strategy)``
  on every one (through ``propose`` and the strategy's own ``_propose``)."""
  strategy = strategies.make_strategy(name, space, 2, seed=seed, **_options(name))
  for _ in range(proposals):
    y = _objectives(x)
    # The strategy's own point (``propose`` would replace an infeasible one).
    point = np.asarray(strategy._propose(x, y, np.zeros((0, space.dim))))  # pylint: disable=protected-access
    check(point)
    if space.keys(point)[0] in set(space.keys(x)):  # allowed; ``propose`` replaces it
      point = strategy.propose(x, y)
      check(point)
    x = np.vstack([x, point])
  return x


class RestrictedSpaceTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("random", "pesmo", "parego")
  def test_strategy_never_proposes_infeasible_categorical_point(self, name):
    space = _grid_space().with_constraint(_sum_at_most_3, "sum of values <= 3")

    def check(point):
      self.assertLessEqual(float(np.sum(point)), 3.0, msg="infeasible proposal %s" % point)
      self.assertTrue(np.all(point == np.round(point)) and np.all(point >= 0))

    for seed in range(3):
      x0 = space.sample(np.random.default_rng(seed), 4)
      self.assertTrue(np.all(_sum_at_most_3(x0)))
      _run(name, space, x0, seed, 2, check)

  @parameterized.parameters("random", "pesmo", "parego")
  def test_strategy_never_proposes_infeasible_continuous_point(self, name):
    box = design.continuous_space([(0.0, 1.0), (0.0, 1.0)])
    space = box.with_constraint(lambda x: x[:, 0] + x[:, 1] <= 0.3, "x0 + x1 <= 0.3")

    def check(point):
      self.assertLessEqual(point[0] + point[1], 0.3 + 1e-12, msg="infeasible %s" % point)
      self.assertTrue(np.all((point >= 0) & (point <= 1)))

    for seed in range(2):
      _run(name, space, space.sample(np.random.default_rng(seed), 5), seed, 2, check)

  @parameterized.parameters("random", "pesmo", "parego")
  def test_candidate_strategy_proposes_only_new_rows_of_the_set(self, name):
    grid = _grid_space()
    rows = grid.sample(np.random.default_rng(5), 40)
    space = grid.with_candidates(rows)
    row_keys = set(map(bytes, rows.astype(np.int64)))
    for seed in range(2):
      x0 = space.sample(np.random.default_rng(seed), 5)
      x = _run(name, space, x0, seed, 3, lambda p: self.assertIn(
          bytes(p.astype(np.int64)), row_keys, msg="not a candidate: %s" % p))
      self.assertLen(set(map(bytes, x.astype(np.int64))), x.shape[0])  # no repeat

  def test_candidate_set_exhausted_raises(self):
    rows = _grid_space().sample(np.random.default_rng(1), 6)
    space = _grid_space().with_candidates(rows)
    with self.assertRaisesRegex(design.InfeasibleSpaceError, "exhausted"):
      strategies.make_strategy("random", space, 2).propose(rows, _objectives(rows))

  def test_sample_is_uniform_over_the_feasible_set(self):
    space = _grid_space().with_constraint(_sum_at_most_3, "sum of values <= 3")
    x = space.sample(np.random.default_rng(0), 3500)
    self.assertTrue(np.all(_sum_at_most_3(x)))
    _, counts = np.unique(x, axis=0, return_counts=True)
    self.assertLen(counts, 35)  # brute force: C(3 + 4, 4) = 35 feasible points
    self.assertAllInRange(counts, 60, 145)  # 100 expected each

  def test_mutate_and_neighbours_stay_feasible(self):
    space = _grid_space().with_constraint(_sum_at_most_3, "sum of values <= 3")
    x = np.array([[1.0, 1.0, 1.0, 0.0]])
    neigh = space.neighbours(x[0])
    brute = [p for p in _grid_space().neighbours(x[0]) if p.sum() <= 3]
    self.assertAllEqual(neigh, np.array(brute))
    self.assertTrue(np.all(_sum_at_most_3(space.mutate(x, 0, 200))))

  def test_infeasible_constraint_raises_naming_it(self):
    space = _grid_space().with_constraint(lambda x: np.zeros(len(x), bool), "params < 0")
    self.assertFalse(space.has_feasible_point(0, tries=1000))
    with self.assertRaisesRegex(design.InfeasibleSpaceError, "params < 0"):
      space.check_feasible(0, tries=1000)
    with self.assertRaisesRegex(design.InfeasibleSpaceError, "params < 0"):
      space.sample(0, 3)
    with self.assertRaisesRegex(ValueError, "params < 0"):
      strategies.make_strategy("random", space, 2).propose(np.zeros((0, 4)), np.zeros((0, 2)))
    with self.assertRaisesRegex(design.InfeasibleSpaceError, "params < 0"):
      _grid_space().with_candidates(np.zeros((1, 4))).with_constraint(
          lambda x: np.zeros(len(x), bool), "params < 0")
    self.assertTrue(_grid_space().with_constraint(_sum_at_most_3, "s").has_feasible_point(0))

  def test_bad_constraint_and_candidates_raise(self):
    bad = _grid_space().with_constraint(lambda x: x.sum(1), "returns sums")
    with self.assertRaisesRegex(ValueError, "'returns sums': expected an \\(n,\\) bool"):
      bad.sample(0, 2)
    with self.assertRaisesRegex(ValueError, "Expected a callable"):
      _grid_space().with_constraint(3, "x")
    with self.assertRaisesRegex(ValueError, "non-empty string"):
      _grid_space().with_constraint(_sum_at_most_3, "")
    with self.assertRaisesRegex(ValueError, "Expected distinct rows. Received row 2 equal to "
                                "row 0"):
      _grid_space().with_candidates(np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0.0]]))
    with self.assertRaisesRegex(ValueError, "must be an integer in"):
      _grid_space().with_candidates(np.array([[7, 0, 0, 0.0]]))

  def test_candidates_intersect_constraint_and_index(self):
    rows = np.array([[0, 0, 0, 0], [4, 4, 4, 4], [1, 1, 1, 0.0]])
    space = _grid_space().with_candidates(rows).with_constraint(_sum_at_most_3, "s <= 3")
    self.assertAllEqual(space.candidates, rows[[0, 2]])
    self.assertAllEqual(space.candidate_index(np.array([[1, 1, 1, 0], [4, 4, 4, 4.0]])),
                        [1, -1])
    self.assertAllEqual(space.feasible(rows), [True, False, True])
    self.assertLen(space.sample(0, 10, min_count=1), 2)  # distinct rows, at most N

  def test_cell_keys_identify_swapped_branches_as_genotype_key_does(self):
    s = cellspace.cell_space()
    x = s.sample(np.random.default_rng(3), 300)
    swapped = x.reshape(300, 5, 4)[:, :, [1, 0, 3, 2]].reshape(300, 20)
    self.assertEqual(s.keys(x), s.keys(swapped))
    self.assertAllClose(s.encode(x), s.encode(swapped))
    by_key, both = {}, np.vstack([x, s.mutate(x, 0, 300)])
    for row, key in zip(both, s.keys(both)):
      by_key.setdefault(key, set()).add(cell.Genotype.from_vector(row.astype(int)).key())
    self.assertTrue(all(len(v) == 1 for v in by_key.values()))
    genotype_keys = [cell.Genotype.from_vector(r.astype(int)).key() for r in x]
    self.assertLen(set(s.keys(x)), len(set(genotype_keys)))


if __name__ == "__main__":
  tf.test.main()
