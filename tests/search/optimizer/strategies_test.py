"""Tests for search/optimizer/strategies.py: interface contract of every strategy."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import design
from search.optimizer import strategies


def _tiny_space():
  """12 points in all, so collisions with evaluated/pending points are likely."""
  return design.DesignSpace([design.Variable("a", "categorical", cardinality=2),
                             design.Variable("b", "categorical", cardinality=2),
                             design.Variable("c", "categorical", cardinality=3)])


def _all_points(space):
  grid = np.meshgrid(*[np.arange(c) for c in space.cardinalities], indexing="ij")
  return np.stack([g.ravel() for g in grid], axis=1).astype(float)


class StrategiesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("random", "pesmo", "parego")
  def test_proposals_never_repeat_evaluated_or_pending_points(self, name):
    space = _tiny_space()
    points = _all_points(space)
    rng = np.random.default_rng(0)
    order = rng.permutation(points.shape[0])
    x, pending, left = points[order[:8]], points[order[8:11]], points[order[11:]]
    y = np.stack([x.sum(1), (2 - x[:, 2]) + x[:, 0]], axis=1)
    options = {"num_samples": 2, "burn_in": 5, "acq_pool": 20, "pool_size": 20} \
        if name == "pesmo" else {}
    strategy = strategies.make_strategy(name, space, 2, seed=1, **options)
    point = strategy.propose(x, y, pending)
    # Only one point of the space is neither evaluated nor pending.
    self.assertAllEqual(point, left[0])
    self.assertSetEqual(set(strategy.timings), {"fit_seconds", "acquisition_seconds"})

  @parameterized.parameters("random", "parego")
  def test_proposals_are_new_points_in_continuous_space(self, name):
    space = design.continuous_space([(0.0, 1.0), (-1.0, 1.0)])
    x = space.sample(0, 6)
    y = np.stack([x[:, 0], 1 - x[:, 0] + x[:, 1] ** 2], axis=1)
    point = strategies.make_strategy(name, space, 2, seed=0).propose(x, y)
    space.validate(point)
    self.assertNotIn(space.keys(point)[0], space.keys(x))

  def test_chebyshev_scalarization(self):
    y = np.array([[0.0, 10.0], [1.0, 0.0], [0.5, 5.0]])
    values = strategies.chebyshev_scalarize(y, np.array([0.5, 0.5]), rho=0.1)
    self.assertAllClose(values, [0.5 + 0.05, 0.5 + 0.05, 0.25 + 0.05])

  def test_bad_arguments_raise(self):
    space = _tiny_space()
    with self.assertRaisesRegex(ValueError, "Expected one of parego, pesmo, qlognehvi, random"):
      strategies.make_strategy("ehvi", space, 2)
    with self.assertRaisesRegex(ValueError, "Expected a DesignSpace"):
      strategies.make_strategy("random", [0, 1], 2)
    strategy = strategies.make_strategy("random", space, 2)
    with self.assertRaisesRegex(ValueError, "drop failed trials"):
      strategy.propose(np.zeros((2, 3)), np.array([[1.0, np.nan], [0.0, 0.0]]))
    with self.assertRaisesRegex(ValueError, "must be an integer"):
      strategy.propose(np.full((1, 3), 0.5), np.zeros((1, 2)))

  def test_exhausted_space_raises(self):
    space = _tiny_space()
    points = _all_points(space)
    with self.assertRaisesRegex(ValueError, "exhausted"):
      strategies.make_strategy("random", space, 1).propose(points, np.zeros((12, 1)))


if __name__ == "__main__":
  tf.test.main()
