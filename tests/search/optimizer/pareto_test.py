"""Tests for search/optimizer/pareto.py against brute force."""

import itertools

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import pareto


def brute_force_mask(y):
  n = y.shape[0]
  return np.array([not any(np.all(y[j] <= y[i]) and np.any(y[j] < y[i])
                           for j in range(n) if j != i) for i in range(n)])


def brute_force_hypervolume(y, ref):
  """Inclusion-exclusion over all subsets of the points (exact, small n)."""
  y = y[np.all(y < ref, axis=1)]
  total = 0.0
  for size in range(1, y.shape[0] + 1):
    for subset in itertools.combinations(range(y.shape[0]), size):
      corner = np.max(y[list(subset)], axis=0)
      total += (-1) ** (size + 1) * np.prod(ref - corner)
  return total


class ParetoTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((8, 2), (30, 3), (200, 2), (150, 3))
  def test_non_dominated_mask_equals_brute_force(self, n, m):
    rng = np.random.default_rng(n * 10 + m)
    y = np.round(rng.random((n, m)), 1)  # rounding creates ties and duplicates
    self.assertAllEqual(pareto.non_dominated_mask(y), brute_force_mask(y))

  def test_non_dominated_mask_keeps_duplicates(self):
    y = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    self.assertAllEqual(pareto.non_dominated_mask(y), [True, True, True, False])

  @parameterized.parameters((6, 2), (7, 3), (9, 2))
  def test_hypervolume_equals_brute_force(self, n, m):
    rng = np.random.default_rng(n + m)
    y = rng.random((n, m))
    ref = np.full(m, 1.1)
    self.assertAllClose(pareto.hypervolume(y, ref), brute_force_hypervolume(y, ref),
                        rtol=1e-10)

  def test_hypervolume_ignores_points_outside_reference_box(self):
    y = np.array([[0.5, 0.5], [2.0, 0.0]])
    self.assertAllClose(pareto.hypervolume(y, np.array([1.0, 1.0])), 0.25)
    self.assertEqual(pareto.hypervolume(y[1:], np.array([1.0, 1.0])), 0.0)

  def test_reference_point_is_nadir_plus_margin(self):
    y = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 3.0]])  # last row dominated
    self.assertAllClose(pareto.reference_point(y, margin=0.1), [1.1, 2.2])

  def test_log_hv_gap(self):
    y = np.array([[0.0, 0.0]])
    self.assertAllClose(pareto.log_hv_gap(y, np.array([1.0, 1.0]), 1.5), np.log10(0.5))

  def test_bad_inputs_raise_with_expectation(self):
    with self.assertRaisesRegex(ValueError, "Expected a 2-D array"):
      pareto.non_dominated_mask(np.zeros(3))
    with self.assertRaisesRegex(ValueError, "finite"):
      pareto.non_dominated_mask(np.array([[np.nan, 1.0]]))
    with self.assertRaisesRegex(ValueError, "one per objective"):
      pareto.hypervolume(np.zeros((2, 2)), np.ones(3))


if __name__ == "__main__":
  tf.test.main()
