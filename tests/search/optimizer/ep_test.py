"""Tests for search/optimizer/ep.py: tilted moments by quadrature, EP against Monte Carlo."""

import numpy as np
import tensorflow as tf
from scipy import stats

from search.optimizer import ep


def _toy_joint():
  """GP posterior (2 objectives) of f at 1-D points [x*_1, x*_2, x*_3, x] after
  four noisy observations; returns mean (K, 4), cov (K, 4, 4)."""
  grid = np.array([0.1, 0.45, 0.8, 0.6])
  obs = np.array([0.0, 0.3, 0.7, 1.0])
  values = [np.array([0.9, 0.3, -0.2, -0.6]), np.array([-0.8, -0.1, 0.4, 0.9])]
  k = lambda a, b: np.exp(-0.5 * (a[:, None] - b[None, :]) ** 2 / 0.3 ** 2)
  kxx = k(obs, obs) + 0.05 * np.eye(4)
  kgx, kgg = k(grid, obs), k(grid, grid)
  means, covs = [], []
  for y in values:
    means.append(kgx @ np.linalg.solve(kxx, y))
    covs.append(kgg - kgx @ np.linalg.solve(kxx, kgx.T))
  return np.array(means), np.array(covs)


def _monte_carlo(mean, cov, num=400000, seed=0):
  """Samples of f(X* + x) kept when no point of X* + {x} dominates a Pareto point."""
  rng = np.random.default_rng(seed)
  draws = np.stack([rng.multivariate_normal(mean[k], cov[k], size=num)
                    for k in range(mean.shape[0])], axis=-1)   # (num, 4, K)
  ok = np.ones(num, dtype=bool)
  for i in range(3):          # Pareto points
    for a in range(4):        # any other point of X* and the candidate
      if a != i:
        dominated = np.all(draws[:, a, :] <= draws[:, i, :], axis=-1)
        ok &= ~dominated
  return draws[ok]


class EPTest(tf.test.TestCase):

  def test_tilted_moments_equal_quadrature(self):
    mean, var = np.array([0.3, -0.2]), np.array([0.5, 1.2])
    grid = np.linspace(-8, 8, 1600)  # cell midpoints: 0 is not a node
    d1, d2 = np.meshgrid(grid, grid, indexing="ij")
    dens = stats.norm.pdf(d1, mean[0], np.sqrt(var[0])) * stats.norm.pdf(
        d2, mean[1], np.sqrt(var[1]))
    weight = dens * (1.0 - (d1 >= 0) * (d2 >= 0))
    z = weight.sum()
    expected_mean = [np.sum(weight * d1) / z, np.sum(weight * d2) / z]
    expected_var = [np.sum(weight * d1 ** 2) / z - expected_mean[0] ** 2,
                    np.sum(weight * d2 ** 2) / z - expected_mean[1] ** 2]
    new_mean, new_var, log_z = ep.nondominance_tilted_moments(mean, var)
    self.assertAllClose(new_mean, expected_mean, atol=2e-3)
    self.assertAllClose(new_var, expected_var, atol=2e-3)
    self.assertAllClose(log_z, np.log(z * (grid[1] - grid[0]) ** 2), atol=1e-3)

  def test_site_precision_matches_explicit_sum(self):
    rng = np.random.default_rng(0)
    tau, nu = rng.random((1, 3, 3)), rng.normal(size=(1, 3, 3))
    expected_prec, expected_shift = np.zeros((3, 3)), np.zeros(3)
    for i in range(3):
      for j in range(3):
        if i != j:
          e = np.eye(3)[i] - np.eye(3)[j]
          expected_prec += tau[0, i, j] * np.outer(e, e)
          expected_shift += nu[0, i, j] * e
    prec, shift = ep.site_precision(tau, nu)
    self.assertAllClose(prec[0], expected_prec)
    self.assertAllClose(shift[0], expected_shift)

  def test_pareto_posterior_equals_natural_parameter_form(self):
    mean, cov = _toy_joint()
    rng = np.random.default_rng(3)
    tau, nu = 0.3 * rng.random((2, 4, 4)), rng.normal(size=(2, 4, 4))
    m, v = ep.pareto_posterior(mean, cov, tau, nu)
    prec, shift = ep.site_precision(tau, nu)
    for k in range(2):
      prior_prec = np.linalg.inv(cov[k])
      expected_v = np.linalg.inv(prior_prec + prec[k])
      self.assertAllClose(v[k], expected_v, atol=1e-6)
      self.assertAllClose(m[k], expected_v @ (prior_prec @ mean[k] + shift[k]), atol=1e-6)

  def test_ep_marginals_match_monte_carlo_conditional(self):
    mean, cov = _toy_joint()
    result = ep.run_pareto_ep(mean[:, :3], cov[:, :3, :3], max_iter=200)
    self.assertTrue(result["converged"])
    kept = _monte_carlo(mean, cov)
    # Pareto points: the MC conditional also includes the candidate's factors,
    # which barely move them; compare EP's Pareto marginals.
    mc_mean = kept[:, :3, :].mean(0).T
    mc_var = kept[:, :3, :].var(0).T
    sd = np.sqrt(np.einsum("kii->ki", cov[:, :3, :3]))
    self.assertAllClose(result["mean"] / sd, mc_mean / sd, atol=0.15)
    self.assertAllClose(np.einsum("kii->ki", result["cov"]) / sd ** 2, mc_var / sd ** 2,
                        atol=0.15)
    # Candidate: conditional variance of f_k(x) after the test-phase update.
    a = np.linalg.solve(cov[:, :3, :3], cov[:, :3, 3:])[..., 0]        # (K, 3)
    cand_mean = mean[:, 3] + np.einsum("ki,ki->k", a, result["mean"] - mean[:, :3])
    cand_var = (cov[:, 3, 3] - np.einsum("ki,ki->k", a, cov[:, :3, 3])
                + np.einsum("ki,kij,kj->k", a, result["cov"], a))
    cross = np.einsum("ki,kij->kj", a, result["cov"])
    var = ep.candidate_variances(result["mean"], result["cov"], cand_mean[:, None],
                                 cand_var[:, None], cross[:, None, :])
    self.assertAllClose(var[:, 0] / cov[:, 3, 3], kept[:, 3, :].var(0) / cov[:, 3, 3],
                        atol=0.15)
    self.assertTrue(np.all(var[:, 0] <= cand_var + 1e-12))

  def test_run_pareto_ep_single_point_is_prior(self):
    mean, cov = _toy_joint()
    result = ep.run_pareto_ep(mean[:, :1], cov[:, :1, :1])
    self.assertAllClose(result["mean"], mean[:, :1])
    self.assertEqual(result["iterations"], 0)


if __name__ == "__main__":
  tf.test.main()
