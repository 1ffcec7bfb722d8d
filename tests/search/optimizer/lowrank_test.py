"""Tests for search/optimizer/lowrank.py: DTC against the exact GP, pivoted Cholesky."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import gp as gplib
from search.optimizer import lowrank


def _data(n=40, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n, d))
  return x, np.sin(4 * x[:, 0]) + x[:, 1] ** 2 - 0.5 * x[:, 2], rng.random((7, d))


def _exact_numpy(x, y, xt, lengths, amp, noise, mean):
  """Exact GP posterior in float64 NumPy (Rasmussen and Williams, eq. 2.25-2.26),
  with the Matern-5/2 kernel written out: an independent reference."""
  def k(a, b):
    r = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2 / lengths ** 2).sum(-1), 0))
    return amp * (1 + np.sqrt(5) * r + 5.0 / 3.0 * r ** 2) * np.exp(-np.sqrt(5) * r)
  kxx = k(x, x) + noise * np.eye(x.shape[0])
  ks = k(x, xt)
  mu = mean + ks.T @ np.linalg.solve(kxx, y - mean)
  cov = k(xt, xt) - ks.T @ np.linalg.solve(kxx, ks)
  return mu, cov


class LowRankTest(tf.test.TestCase, parameterized.TestCase):

  def test_dtc_with_every_training_point_inducing_equals_exact_gp(self):
    x, y, xt = _data()
    lengths, amp, noise, mean = np.array([0.4, 0.7, 1.1]), 1.3, 0.02, 0.1
    theta = np.concatenate([np.log(lengths), [np.log(amp), np.log(noise), mean]])
    sample = lowrank.condition_low_rank(theta, lengths, amp, noise, mean, x, y, "matern52",
                                        inducing=x.shape[0], tol=0.0)
    self.assertEqual(sample.z.shape[0], x.shape[0])
    ref_mean, ref_cov = _exact_numpy(x, y, xt, lengths, amp, noise, mean)
    got_mean, got_cov = sample.predict(xt, full_cov=True)
    self.assertAllClose(got_mean, ref_mean, atol=1e-8)
    self.assertAllClose(got_cov, ref_cov, atol=1e-8)
    self.assertAllClose(sample.predict(xt)[1], np.diag(ref_cov), atol=1e-8)

  def test_project_gives_the_posterior_covariance_reduction(self):
    x, y, xt = _data(30)
    lengths = np.array([0.5, 0.5, 0.5])
    sample = lowrank.condition_low_rank(np.zeros(6), lengths, 1.0, 0.05, 0.0, x, y, "rbf",
                                        inducing=12)
    v = sample.project(sample.cross(xt))
    _, cov = sample.predict(xt, full_cov=True)
    zt = xt / lengths
    prior = np.exp(-0.5 * ((zt[:, None] - zt[None]) ** 2).sum(-1))
    self.assertAllClose(prior - v.T @ v, cov, atol=1e-10)

  def test_pivoted_cholesky_takes_the_largest_residual_variance_each_step(self):
    x, _, _ = _data(25, seed=3)
    z = x / 0.3
    chosen = lowrank.pivoted_cholesky(z, 1.0, "rbf", max_rank=6, tol=0.0)
    k = np.exp(-0.5 * ((z[:, None] - z[None]) ** 2).sum(-1))
    # Brute force: the residual variance of every row given the rows chosen so
    # far (Schur complement), argmax each step.
    picked = []
    for _ in range(6):
      if picked:
        kc = k[np.ix_(picked, picked)]
        resid = np.diag(k) - np.einsum("ij,ji->i", k[:, picked],
                                       np.linalg.solve(kc, k[picked, :]))
        resid[picked] = -np.inf
      else:
        resid = np.diag(k).copy()
      picked.append(int(np.argmax(resid)))
    self.assertAllEqual(chosen, picked)

  def test_pivoted_cholesky_stops_when_the_rest_is_in_the_span(self):
    z = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 4, axis=0)  # two distinct rows
    self.assertLen(lowrank.pivoted_cholesky(z, 1.0, "rbf", max_rank=8), 2)

  def test_objective_gp_uses_dtc_above_exact_limit(self):
    x, y, xt = _data(40)
    model = gplib.ObjectiveGP(np.arange(3), num_samples=2, burn_in=5, exact_limit=30,
                              inducing_points=40, seed=0).fit(x, y)
    self.assertIsInstance(model.samples[0], lowrank.LowRankGPSample)
    theta = model.samples[0].theta
    exact = model._condition(theta, x, model._y)  # pylint: disable=protected-access
    # With as many inducing rows as data points DTC is the exact posterior.
    self.assertAllClose(model.samples[0].predict(xt)[0], exact.predict(xt)[0], atol=1e-6)
    self.assertAllClose(model.samples[0].predict(xt)[1], exact.predict(xt)[1], atol=1e-6)
    x_train, y_c = model.samples[0].training_data()
    self.assertAllClose(x_train, x)
    self.assertAllClose(y_c, model._y - model.samples[0].mean)  # pylint: disable=protected-access


  def test_condition_low_rank_agrees_with_the_exact_gp_on_held_out_rows(self):
    # 600 training rows of a smooth 3-D function (unit scale, noise sd 0.05),
    # 300 inducing rows, 200 held-out rows. Tolerances: posterior means
    # within half the noise sd (max) and 0.002 (median); predictive sd
    # sqrt(v + s2), the quantity PESMO's log ratios use, within 5 % (max) and
    # 1 % (median). (The latent sd alone differs more where it is far below
    # the noise: up to 15 % here.) At 150 inducing rows the maxima are 0.051
    # and 23 %: the approximation needs m to grow with the data's complexity.
    rng = np.random.default_rng(4)
    x, xt = rng.random((600, 3)), rng.random((200, 3))
    f = lambda v: np.sin(3 * v[:, 0]) + np.cos(2 * v[:, 1]) * v[:, 2]
    y = f(x) + 0.05 * rng.normal(size=600)
    noise = 0.05 ** 2
    model = gplib.ObjectiveGP(np.arange(3))
    theta = np.array([np.log(0.6), np.log(0.6), np.log(0.8), 0.0, np.log(noise), 0.0])
    exact = model._condition(theta, x, y, strict=True)  # pylint: disable=protected-access
    low = lowrank.condition_low_rank(theta, np.array([0.6, 0.6, 0.8]), 1.0, noise, 0.0,
                                     x, y, "matern52", inducing=300)
    (me, ve), (ml, vl) = exact.predict(xt), low.predict(xt)
    self.assertLess(np.max(np.abs(me - ml)), 0.025)
    self.assertLess(np.median(np.abs(me - ml)), 0.002)
    ratio = np.abs(np.sqrt(vl + noise) / np.sqrt(ve + noise) - 1.0)
    self.assertLess(np.max(ratio), 0.05)
    self.assertLess(np.median(ratio), 0.01)

  @parameterized.named_parameters(
      ("zero_inducing", 0, None, r"Invalid value for argument `inducing`\. Expected a positive "
       r"integer\. Received inducing=0"),
      ("mismatched_targets", 5, np.zeros(3), r"Invalid low-rank GP inputs\. Expected finite x "
       r"of shape \(n, D\) and y of shape \(n,\), n >= 1\. Received \(40, 3\) and \(3,\)"),
      ("nan_target", 5, np.full(40, np.nan), r"Expected finite x"))
  def test_condition_low_rank_refuses_bad_arguments(self, inducing, y, message):
    x, y0, _ = _data()
    with self.assertRaisesRegex(ValueError, message):
      lowrank.condition_low_rank(np.zeros(6), np.ones(3), 1.0, 0.01, 0.0, x,
                                 y0 if y is None else y, "rbf", inducing=inducing)

  def test_objective_gp_refits_when_new_data_do_not_extend_the_old(self):
    # Above max_fit_points the samples are kept and their factors extended
    # only when the new rows extend the old ones; reordered rows fall back to
    # re-drawing the hyperparameters and refactoring.
    x, y, _ = _data(60)
    model = gplib.ObjectiveGP(np.arange(3), num_samples=2, burn_in=5, max_fit_points=40,
                              seed=0).fit(x[:55], y[:55])
    thetas = [s.theta.copy() for s in model.samples]
    order = np.r_[np.arange(1, 56), 0]
    model.fit(x[order], y[order])
    self.assertNotAllClose([s.theta for s in model.samples], thetas)


if __name__ == "__main__":
  tf.test.main()
