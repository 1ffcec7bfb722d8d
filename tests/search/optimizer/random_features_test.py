"""Tests for search/optimizer/random_features.py."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import gp as gplib
from search.optimizer import random_features as rf


class RandomFeaturesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("rbf", "matern52")
  def test_features_reproduce_kernel_covariance(self, kernel):
    rng = np.random.default_rng(0)
    x = rng.random((12, 3))
    lengths = np.array([0.3, 0.6, 1.0])
    features = rf.RandomFeatures(lengths, 1.7, kernel, 40000, rng)
    phi = features(x)
    exact = gplib.kernel_from_sqdist(gplib.scaled_sqdist(x / lengths, x / lengths), 1.7,
                                     kernel)
    self.assertAllClose(phi @ phi.T, exact, atol=0.05)

  def test_features_are_bitwise_the_textbook_expression(self):
    # Computed in place: not a single value may change (runs reproduce exactly).
    rng = np.random.default_rng(3)
    features = rf.RandomFeatures(np.array([0.5, 2.0]), 1.3, "matern52", 64, rng)
    x = rng.random((30, 2))
    self.assertAllEqual(features(x), features.scale * np.cos(x @ features.w.T + features.b))

  def test_posterior_samples_match_exact_gp_posterior(self):
    rng = np.random.default_rng(1)
    x = rng.random((8, 1))
    y = np.sin(6 * x[:, 0])
    model = gplib.ObjectiveGP(np.arange(1), kernel="rbf")
    theta = np.array([np.log(0.3), 0.0, np.log(0.05), 0.0])
    sample = model._condition(theta, x, y)
    xt = np.linspace(0, 1, 7)[:, None]
    draws = np.array([rf.SampledFunction(sample, 1000, rng)(xt) for _ in range(300)])
    mean, var = sample.predict(xt)
    self.assertAllClose(draws.mean(0), mean, atol=0.1)
    self.assertAllClose(draws.var(0), var, atol=0.05, rtol=0.3)

  def test_pathwise_and_primal_weight_draws_agree_in_distribution(self):
    rng = np.random.default_rng(2)
    phi = rng.normal(size=(6, 4))
    y = rng.normal(size=6)
    primal = np.array([rf.posterior_weights(phi, y, 0.1, rng) for _ in range(3000)])
    wide = np.hstack([phi, np.zeros((6, 4))])  # n < M: pathwise branch
    dual = np.array([rf.posterior_weights(wide, y, 0.1, rng)[:4] for _ in range(3000)])
    self.assertAllClose(primal.mean(0), dual.mean(0), atol=0.03)
    self.assertAllClose(np.cov(primal.T), np.cov(dual.T), atol=0.01)

  def test_unknown_kernel_raises(self):
    with self.assertRaisesRegex(ValueError, "Expected 'matern52' or 'rbf'"):
      rf.spectral_frequencies("linear", 3, 2, np.random.default_rng(0))

  def _table_function(self, cardinalities, rows, seed=0):
    """A posterior sample over one-hot rows of a categorical space, and the rows' encodings."""
    from search.optimizer import design  # pylint: disable=g-import-not-at-top
    space = design.DesignSpace([design.Variable("v%d" % i, design.CATEGORICAL, cardinality=c)
                                for i, c in enumerate(cardinalities)])
    rng = np.random.default_rng(seed)
    z = space.encode(rows)
    model = gplib.ObjectiveGP(space.groups, kernel="matern52", mode="map")
    model.fit(z[:12], rng.normal(size=12))
    return rf.SampledFunction(model.samples[0], 300, rng), space, z

  def test_product_grid_values_equal_row_by_row_evaluation(self):
    grid_rows = np.array(np.meshgrid(*[np.arange(c) for c in (5, 4, 3, 5)],
                                     indexing="ij")).reshape(4, -1).T.astype(float)
    rows = grid_rows[np.random.default_rng(3).permutation(grid_rows.shape[0])]
    function, space, z = self._table_function((5, 4, 3, 5), rows)
    grid = rf.ProductGrid(z, space.groups)
    self.assertTrue(grid.worthwhile())
    self.assertEqual(grid.cells, rows.shape[0])  # a full product: no wasted cell
    self.assertAllClose(grid.values(function), function(z), atol=1e-10, rtol=0)

  def test_product_grid_sparse_subset_is_not_worthwhile_but_exact(self):
    rng = np.random.default_rng(4)
    rows = np.unique(rng.integers(0, 9, size=(40, 6)), axis=0).astype(float)
    function, space, z = self._table_function((9,) * 6, rows)
    grid = rf.ProductGrid(z, space.groups)
    self.assertFalse(grid.worthwhile())  # 40 rows of a 9^6 grid: halves barely repeat
    self.assertAllClose(grid.values(function), function(z), atol=1e-10, rtol=0)


if __name__ == "__main__":
  tf.test.main()
