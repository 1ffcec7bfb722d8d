"""Tests for search/optimizer/trust_region.py: length schedule, boxes and candidates."""

import numpy as np
import tensorflow as tf

from search import cellspace
from search.optimizer import design
from search.optimizer import pesmo
from search.optimizer import trust_region


class TrustRegionTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.space = design.continuous_space([(0.0, 1.0)] * 4)

  def _region(self, **kwargs):
    region = trust_region.TrustRegion(self.space, **kwargs)
    region.update(np.array([[1.0, 1.0]]))  # the initial design is not scored
    return region

  def test_trust_region_doubles_after_successes(self):
    region = self._region(success_tolerance=2)
    # Each new row is not dominated by the earlier ones: successes.
    region.update(np.array([[1.0, 1.0], [0.5, 2.0], [2.0, 0.5]]))
    self.assertEqual(region.length, 1.6)
    self.assertEqual(region.successes, 0)

  def test_trust_region_halves_after_failures_and_restarts_below_minimum(self):
    region = self._region(failure_tolerance=2, min_length=0.3, initial_length=0.8)
    y = [[1.0, 1.0]]
    for _ in range(2):  # dominated rows: failures
      y.append([2.0, 2.0])
      region.update(np.array(y))
    self.assertAllClose(region.length, 0.4)
    for _ in range(2):
      y.append([3.0, 3.0])
      region.update(np.array(y))
    # 0.2 < min_length: reset to the initial length.
    self.assertAllClose(region.length, 0.8)
    self.assertEqual(region.restarts, 1)

  def test_trust_region_success_needs_hypervolume_gain_with_reference(self):
    region = self._region(success_tolerance=1)
    # Non-dominated but outside the reference box (2, 2): a failure.
    region.update(np.array([[1.0, 1.0], [0.0, 5.0]]), ref_point=[2.0, 2.0])
    self.assertEqual(region.failures, 1)
    # Adds hypervolume: a success (tolerance 1 doubles the length).
    region.update(np.array([[1.0, 1.0], [0.0, 5.0], [0.5, 1.5]]), ref_point=[2.0, 2.0])
    self.assertEqual(region.failures, 0)
    self.assertAllClose(region.length, 1.6)

  def test_hypervolume_contributions_equal_brute_force(self):
    y = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.6, 0.6], [0.0, 3.0]])
    ref = [2.0, 2.0]
    got = trust_region.hypervolume_contributions(y, ref)
    # Exclusive regions: [0,0.5]x[1,2], [1,2]x[0,0.5], and the square
    # [0.5,1]^2 less [0.6,1]^2 (still covered by the dominated (0.6, 0.6));
    # dominated rows and rows outside the box contribute nothing.
    self.assertAllClose(got, [0.5, 0.5, 0.25 - 0.16, 0.0, 0.0])

  def test_trust_region_centers_prefer_contributing_points(self):
    x = np.arange(4.0)[:, None] * np.ones((1, 4)) / 4.0
    y = np.array([[0.5, 0.5], [0.0, 5.0], [5.0, 0.0], [1.0, 1.0]])
    self.assertAllClose(trust_region.centers(x, y, [2.0, 2.0]), x[:1])
    self.assertAllClose(trust_region.centers(x, y), x[:3])
    # No point inside the reference box: fall back to the non-dominated ones.
    self.assertAllClose(trust_region.centers(x, y, [0.1, 0.1]), x[:3])

  def test_trust_region_failure_tolerance_defaults_to_dimension(self):
    space = design.continuous_space([(0.0, 1.0)] * 6)
    self.assertEqual(trust_region.TrustRegion(space).failure_tolerance, 6)
    self.assertEqual(trust_region.TrustRegion(self.space).failure_tolerance, 4)

  def test_trust_region_boxes_scale_with_lengthscales_and_clip_to_domain(self):
    space = design.continuous_space([(0.0, 10.0), (0.0, 1.0)])
    region = trust_region.TrustRegion(space, initial_length=0.2)
    lower, upper = region.boxes(np.array([[5.0, 0.5], [0.0, 1.0]]), lengthscales=[2.0, 0.5])
    # Weights = lengthscales / geometric mean = (2, 0.5); half sides
    # 0.5 * 0.2 * w * range = (2, 0.05).
    self.assertAllClose(lower[0], [3.0, 0.45])
    self.assertAllClose(upper[0], [7.0, 0.55])
    self.assertAllClose(lower[1], [0.0, 0.95])
    self.assertAllClose(upper[1], [2.0, 1.0])

  def test_trust_region_candidates_lie_in_their_boxes(self):
    region = self._region(initial_length=0.2)
    rng = np.random.default_rng(0)
    x = rng.random((12, 4))
    y = rng.random((12, 2))
    points, lower, upper = region.candidates(x, y, rng, 300)
    self.assertEqual(points.shape, (300, 4))
    self.assertTrue(np.all(points >= lower) and np.all(points <= upper))
    self.assertTrue(np.all(region.contains(points, x, y)))
    self.assertFalse(region.contains(np.full((1, 4), 5.0), x, y)[0])

  def test_trust_region_rejects_categorical_space_and_bad_lengths(self):
    with self.assertRaisesRegex(ValueError, "all-continuous"):
      trust_region.TrustRegion(cellspace.cell_space())
    with self.assertRaisesRegex(ValueError, "min_length <= initial_length"):
      trust_region.TrustRegion(self.space, initial_length=2.0)

  def test_pesmo_proposal_lies_in_trust_region_of_observed_front(self):
    rng = np.random.default_rng(1)
    x = rng.random((10, 4))
    y = np.stack([x[:, 0] + x[:, 2], 1.0 - x[:, 0] + x[:, 3]], axis=1)
    strategy = pesmo.PESMOStrategy(self.space, 2, seed=0, num_samples=2, burn_in=5,
                                   acq_pool=100, pool_size=100)
    strategy.trust_region.length = 0.1
    point = strategy.propose(x, y)
    # Default: cubes (no lengthscale weights), centred on non-dominated points.
    self.assertTrue(strategy.trust_region.contains(point[None], x, y)[0])

  def test_pesmo_trust_region_option_is_validated(self):
    with self.assertRaisesRegex(ValueError, "all-continuous"):
      pesmo.PESMOStrategy(cellspace.cell_space(), 3, trust_region=True)
    with self.assertRaisesRegex(ValueError, "Expected true, false"):
      pesmo.PESMOStrategy(self.space, 2, trust_region="yes")
    with self.assertRaisesRegex(ValueError, "Expected 2 finite numbers"):
      pesmo.PESMOStrategy(self.space, 2, reference_point=[1.0])
    self.assertIsNone(pesmo.PESMOStrategy(self.space, 2, trust_region=False).trust_region)
    self.assertIsNone(pesmo.PESMOStrategy(cellspace.cell_space(), 3).trust_region)


if __name__ == "__main__":
  tf.test.main()
