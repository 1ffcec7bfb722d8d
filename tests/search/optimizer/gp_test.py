"""Tests for search/optimizer/gp.py: likelihood and predictions against GPy, sampler, errors."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import gp as gplib


def _toy(n=15, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n, 2))
  return x, np.sin(5 * x[:, 0]) + x[:, 1]


class ObjectiveGPTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("rbf", "matern52")
  def test_log_likelihood_and_prediction_equal_gpy(self, kernel):
    import GPy  # pylint: disable=import-outside-toplevel
    x, y = _toy()
    model = gplib.ObjectiveGP(np.arange(2), kernel=kernel)
    theta = np.array([np.log(0.3), np.log(0.5), np.log(1.5), np.log(0.01), 0.0])
    ours = model.log_posterior(theta, x, y) - model.log_prior(theta)
    kern = {"rbf": GPy.kern.RBF, "matern52": GPy.kern.Matern52}[kernel](
        2, variance=1.5, lengthscale=[0.3, 0.5], ARD=True)
    reference = GPy.models.GPRegression(x, y[:, None], kern, noise_var=0.01)
    self.assertAllClose(ours, reference.log_likelihood(), atol=1e-4)
    xt = np.random.default_rng(1).random((5, 2))
    mean, var = model._condition(theta, x, y).predict(xt)
    ref_mean, ref_var = reference.predict_noiseless(xt)
    self.assertAllClose(mean, ref_mean[:, 0], atol=1e-6)
    self.assertAllClose(var, ref_var[:, 0], atol=1e-6)

  def test_grouped_lengthscales_share_one_per_variable(self):
    model = gplib.ObjectiveGP(np.array([0, 0, 0, 1]))
    self.assertEqual(model.num_groups, 2)
    x = np.array([[1, 0, 0, 0.2], [0, 1, 0, 0.2], [0, 0, 1, 0.2]])
    theta = np.array([0.0, 0.0, 0.0, np.log(1e-3), 0.0])
    sample = model._condition(theta, x, np.zeros(3))
    k = sample.cross(x)
    # Any two different categories are equally far apart.
    self.assertAllClose(k[0, 1], k[0, 2])
    self.assertAllClose(k[1, 2], k[0, 2])

  def test_slice_sampler_recovers_gaussian_moments(self):
    rng = np.random.default_rng(0)
    logp = lambda t: -0.5 * float(t @ t)
    theta, value, draws = np.zeros(2), 0.0, []
    for _ in range(3000):
      theta, value = gplib.slice_step(logp, theta, value, rng)
      draws.append(theta)
    draws = np.array(draws[200:])
    self.assertAllClose(draws.mean(0), [0.0, 0.0], atol=0.15)
    self.assertAllClose(draws.var(0), [1.0, 1.0], atol=0.2)

  @parameterized.parameters("slice", "map")
  def test_fit_samples_and_predicts_training_data(self, mode):
    x, y = _toy(20)
    model = gplib.ObjectiveGP(np.arange(2), mode=mode, num_samples=4, burn_in=20,
                              map_restarts=2, seed=0).fit(x, y)
    self.assertLen(model.samples, 4 if mode == "slice" else 1)
    mean, var = model.samples[-1].predict(x)
    self.assertAllClose(mean, model.standardize(y), atol=0.2)
    self.assertTrue(np.all(var > 0))

  def test_log_transform_models_log_values(self):
    x, y = _toy(10)
    model = gplib.ObjectiveGP(np.arange(2), log_transform=True, num_samples=2,
                              burn_in=5).fit(x, np.exp(y))
    self.assertAllClose(np.mean(model.standardize(np.exp(y))), 0.0, atol=1e-9)
    with self.assertRaisesRegex(ValueError, "log_transform needs y > 0"):
      model.fit(x, y - 10.0)

  def test_refit_with_fantasy_shrinks_variance_at_pending_point(self):
    x, y = _toy(10)
    model = gplib.ObjectiveGP(np.arange(2), num_samples=2, burn_in=10).fit(x, y)
    pending = np.array([[0.5, 0.5]])
    before = model.samples[0].predict(pending)[1]
    fantasy = model.refit_with(pending, model.samples[0].predict(pending)[0])
    self.assertLess(fantasy.samples[0].predict(pending)[1][0], 0.5 * before[0])
    self.assertLen(model._y, 10)  # the original model is unchanged

  def test_refit_with_extends_the_factors_as_a_fresh_condition_would(self):
    x, y = _toy(12)
    model = gplib.ObjectiveGP(np.arange(2), num_samples=3, burn_in=10).fit(x, y)
    pending = np.array([[0.5, 0.5], [0.1, 0.9]])
    fantasy = model.refit_with(pending, np.array([0.3, -0.2]))
    xt = np.random.default_rng(3).random((5, 2))
    for s in fantasy.samples:
      fresh = model._condition(s.theta, fantasy._x, fantasy._y, strict=True)
      self.assertAllClose(s.predict(xt, full_cov=True), fresh.predict(xt, full_cov=True),
                          atol=1e-8)

  def test_extend_cholesky_equals_a_fresh_condition(self):
    x, y = _toy(25)
    model = gplib.ObjectiveGP(np.arange(2))
    theta = np.array([np.log(0.3), np.log(0.6), 0.2, np.log(1e-3), 0.1])
    small = model._condition(theta, x[:20], y[:20])
    grown = gplib.extend_cholesky(small, x[20:], y)
    fresh = model._condition(theta, x, y)
    self.assertAllClose(grown.chol, fresh.chol, atol=1e-10)
    self.assertAllClose(grown.alpha, fresh.alpha, atol=1e-8)
    xt = np.random.default_rng(2).random((6, 2))
    self.assertAllClose(grown.predict(xt, full_cov=True)[1],
                        fresh.predict(xt, full_cov=True)[1], atol=1e-10)

  def test_fit_extends_factors_until_the_data_grow_by_refresh_growth(self):
    rng = np.random.default_rng(0)
    x = rng.random((70, 2))
    y = np.sin(5 * x[:, 0]) + x[:, 1]
    model = gplib.ObjectiveGP(np.arange(2), num_samples=3, burn_in=5, max_fit_points=40,
                              refresh_growth=0.1, large_n_samples=3, seed=0)
    model.fit(x[:60], y[:60])
    thetas = [s.theta.copy() for s in model.samples]
    model.fit(x[:63], y[:63])  # 5 % more: the same hyperparameters, factors extended
    self.assertAllClose([s.theta for s in model.samples], thetas)
    for s in model.samples:  # equal to conditioning from scratch on the new data
      fresh = model._condition(s.theta, x[:63], model._y)
      self.assertAllClose(s.predict(x[63:])[0], fresh.predict(x[63:])[0], atol=1e-8)
    model.fit(x[:70], y[:70])  # 17 % more than at the last draw: re-sampled
    self.assertNotAllClose([s.theta for s in model.samples], thetas)

  def test_large_n_samples_repeats_few_distinct_samples(self):
    rng = np.random.default_rng(0)
    x = rng.random((50, 2))
    y = np.sin(5 * x[:, 0]) + x[:, 1]
    model = gplib.ObjectiveGP(np.arange(2), num_samples=10, burn_in=5, max_fit_points=30,
                              large_n_samples=3, seed=0).fit(x, y)
    self.assertLen(model.samples, 10)
    self.assertLen({id(s) for s in model.samples}, 3)
    self.assertIs(model.samples[0], model.samples[3])
    small = gplib.ObjectiveGP(np.arange(2), num_samples=10, burn_in=5, max_fit_points=60,
                              seed=0).fit(x, y)
    self.assertLen({id(s) for s in small.samples}, 10)  # below max_fit_points: all distinct

  def test_degenerate_inputs_raise(self):
    model = gplib.ObjectiveGP(np.arange(2))
    with self.assertRaisesRegex(ValueError, "at least 2 finite observations"):
      model.fit(np.zeros((1, 2)), np.zeros(1))
    with self.assertRaisesRegex(ValueError, "at least 2 finite observations"):
      model.fit(np.array([[0.0, np.nan], [1.0, 1.0]]), np.zeros(2))
    with self.assertRaisesRegex(ValueError, r"Expected x of shape \(n, 2\)"):
      model.fit(np.zeros((3, 3)), np.zeros(3))
    with self.assertRaisesRegex(ValueError, "not positive definite"):
      gplib.robust_cholesky(-np.eye(3), 1.0)
    with self.assertRaisesRegex(ValueError, "Expected 'slice' or 'map'"):
      gplib.ObjectiveGP(np.arange(2), mode="hmc")

  def test_noise_prior_learns_small_noise_on_deterministic_data(self):
    # Noise-free smooth function: the sampled noise variances (standardized
    # units) stay far below the signal's variance of 1.
    x, y = _toy(30)
    model = gplib.ObjectiveGP(np.arange(2), num_samples=10, burn_in=60, seed=0).fit(x, y)
    self.assertLess(np.median([s.noise for s in model.samples]), 1e-2)

  def test_noise_prior_still_learns_real_noise(self):
    # Observations with noise of known variance: its standardized value must
    # be recovered within a factor of 3 (the prior's tail does not forbid it).
    rng = np.random.default_rng(1)
    x = rng.random((60, 2))
    f = np.sin(5 * x[:, 0]) + x[:, 1]
    y = f + rng.normal(0.0, 0.3, size=60)
    model = gplib.ObjectiveGP(np.arange(2), num_samples=10, burn_in=80, seed=0).fit(x, y)
    truth = 0.3 ** 2 / np.var(y)
    learned = np.median([s.noise for s in model.samples])
    self.assertBetween(learned, truth / 3.0, truth * 3.0)

  @parameterized.parameters(0.1, 0.01)
  def test_noise_prior_median_scales_with_noise_scale(self, scale):
    # The horseshoe density is a function of scale / noise only, so the
    # prior median of the noise variance is proportional to the scale; the
    # constant, 0.700, is the median of log(1 + 3 / t^2) dt over t > 0, i.e.
    # the root of its closed-form CDF (t log(1 + 3/t^2) + 2 sqrt(3) atan(t / sqrt(3))
    # = pi sqrt(3) / 2), solved here with scipy.
    from scipy import optimize as sopt  # pylint: disable=import-outside-toplevel
    root = sopt.brentq(lambda t: t * np.log1p(3.0 / t ** 2) + 2 * np.sqrt(3.0)
                       * np.arctan(t / np.sqrt(3.0)) - np.pi * np.sqrt(3.0) / 2, 1e-3, 10.0)
    model = gplib.ObjectiveGP(np.arange(2), noise_scale=scale, min_noise=1e-9)
    log_noise = np.linspace(np.log(1e-9), np.log(10.0), 40001)
    theta = lambda u: np.array([0.0, 0.0, 0.0, u, 0.0])
    dens = np.exp([model.log_prior(theta(u)) for u in log_noise])
    cdf = np.cumsum(dens) / np.sum(dens)
    median = np.exp(log_noise[np.searchsorted(cdf, 0.5)])
    self.assertAllClose(median, root * scale, rtol=0.02)

  def test_bad_noise_scale_raises(self):
    with self.assertRaisesRegex(ValueError, "noise_scale"):
      gplib.ObjectiveGP(np.arange(2), noise_scale=0.0)

  def test_duplicate_inputs_fit_thanks_to_noise(self):
    x = np.repeat(np.array([[0.2, 0.3], [0.7, 0.1]]), 5, axis=0)
    y = np.repeat([1.0, 2.0], 5)
    model = gplib.ObjectiveGP(np.arange(2), num_samples=2, burn_in=10).fit(x, y)
    self.assertTrue(np.all(np.isfinite(model.samples[0].alpha)))

  def _skewed(self):
    # A smooth function plus three far outliers (broken networks at 99 %).
    rng = np.random.default_rng(3)
    x = rng.random((30, 2))
    y = 30.0 + 5.0 * x[:, 0] + 2.0 * np.sin(6.0 * x[:, 1])
    y[:3] = 99.0
    return x, y

  def test_output_warping_uses_the_maximum_likelihood_yeo_johnson_exponent(self):
    x, y = self._skewed()
    model = gplib.ObjectiveGP(np.arange(2), num_samples=2, burn_in=5,
                              output_warping="yeo-johnson").fit(x, y)
    t = (y - np.mean(y)) / np.std(y)

    def yeo_johnson(v, lam):  # Yeo and Johnson (2000), eq. 2.1
      pos, neg = v >= 0, v < 0
      out = np.empty_like(v)
      out[pos] = np.log1p(v[pos]) if lam == 0 else ((v[pos] + 1) ** lam - 1) / lam
      out[neg] = (-np.log1p(-v[neg]) if lam == 2
                  else -((1 - v[neg]) ** (2 - lam) - 1) / (2 - lam))
      return out

    def log_likelihood(lam):  # the profile Gaussian log likelihood of the exponent
      return (-0.5 * len(t) * np.log(np.var(yeo_johnson(t, lam)))
              + (lam - 1) * np.sum(np.sign(t) * np.log1p(np.abs(t))))

    grid = np.linspace(-3.0, 3.0, 6001)
    best = grid[np.argmax([log_likelihood(lam) for lam in grid])]
    lam = model.warp[0]
    self.assertAllClose(lam, best, atol=2e-3)
    self.assertLess(lam, 0.0)  # outliers to the right: a compressing exponent
    w = yeo_johnson(t, lam)
    self.assertAllClose(model.standardize(y), (w - w.mean()) / w.std(), atol=1e-9)
    self.assertAllClose(model._y, model.standardize(y), atol=1e-12)

  def test_output_warping_is_increasing_so_pareto_sets_stay(self):
    from search.optimizer import pareto  # pylint: disable=import-outside-toplevel
    x, y = self._skewed()
    model = gplib.ObjectiveGP(np.arange(2), num_samples=2, burn_in=5,
                              output_warping="yeo-johnson").fit(x, y)
    grid = np.linspace(25.0, 120.0, 500)
    self.assertTrue(np.all(np.diff(model.standardize(grid)) > 0))
    other = np.random.default_rng(0).random(30)
    raw = np.stack([y, other], axis=1)
    warped = np.stack([model.standardize(y), other], axis=1)
    self.assertAllEqual(pareto.non_dominated_mask(raw), pareto.non_dominated_mask(warped))

  def test_output_warping_spreads_the_range_outliers_compress(self):
    x, y = self._skewed()
    plain = gplib.ObjectiveGP(np.arange(2), num_samples=2, burn_in=5).fit(x, y)
    warped = gplib.ObjectiveGP(np.arange(2), num_samples=2, burn_in=5,
                               output_warping="yeo-johnson").fit(x, y)
    inliers = y < 99.0
    self.assertGreater(np.ptp(warped.standardize(y[inliers])),
                       1.5 * np.ptp(plain.standardize(y[inliers])))

  @parameterized.parameters(2, 6, 20)
  def test_dimension_scaled_prior_equals_botorch_lengthscale_prior(self, num_groups):
    try:
      import torch  # pylint: disable=import-outside-toplevel
      from botorch.models.utils import gpytorch_modules  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      self.skipTest("needs the bench extra (BoTorch): %s" % e)
    prior = gpytorch_modules.get_covar_module_with_dim_scaled_prior(
        ard_num_dims=num_groups).lengthscale_prior
    model = gplib.ObjectiveGP(np.repeat(np.arange(num_groups), 3),
                              lengthscale_prior="dimension_scaled")
    rng = np.random.default_rng(num_groups)
    base = model._initial_theta()
    self.assertAllClose(np.exp(base[:num_groups]),
                        np.full(num_groups, np.exp(float(prior.loc))), rtol=1e-5)
    for _ in range(5):
      theta = base.copy()
      theta[:num_groups] = rng.uniform(np.log(0.05), np.log(40.0), num_groups)
      log_l = torch.tensor(theta[:num_groups], dtype=torch.float64)
      # BoTorch's prior is a density on l; in log l (the sampler's coordinate)
      # it gains the Jacobian log l.
      reference = float(torch.sum(prior.log_prob(torch.exp(log_l)) + log_l)
                        - torch.sum(prior.log_prob(torch.exp(torch.tensor(
                            base[:num_groups], dtype=torch.float64)))
                                    + torch.tensor(base[:num_groups])))
      self.assertAllClose(model.log_prior(theta) - model.log_prior(base), reference,
                          rtol=1e-6, atol=1e-8)

  def test_dimension_scaled_prior_prefers_longer_lengthscales_than_default(self):
    x, y = _toy(n=25)
    lengths = []
    for prior in gplib.LENGTHSCALE_PRIORS:
      model = gplib.ObjectiveGP(np.arange(2), lengthscale_prior=prior, mode="map").fit(x, y)
      lengths.append(np.exp(model.samples[0].theta[:2]))
    self.assertAllGreater(lengths[1] / lengths[0], 1.0)

  def test_bad_lengthscale_prior_raises(self):
    with self.assertRaisesRegex(ValueError, "lengthscale_prior.*dimension_scaled.*'gamma'"):
      gplib.ObjectiveGP(np.arange(2), lengthscale_prior="gamma")

  def test_bad_output_warping_raises(self):
    with self.assertRaisesRegex(ValueError, "output_warping.*yeo-johnson.*'box'"):
      gplib.ObjectiveGP(np.arange(2), output_warping="box")


if __name__ == "__main__":
  tf.test.main()
