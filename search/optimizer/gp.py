"""Gaussian-process models of one objective, hyperparameters integrated out.

One ``ObjectiveGP`` per objective (objectives are modelled independently, as
in PESMO, Hernandez-Lobato et al. 2016, section 2). Outputs are optionally
log-transformed (strictly positive objectives such as time and energy) and
then standardized. The kernel is a stationary Matern-5/2 (default, as
Spearmint) or squared-exponential kernel on the design space's encoded
inputs, with one lengthscale per design VARIABLE (``groups`` maps encoded
columns to variables, so a one-hot block shares one lengthscale), an
amplitude, a constant mean and a learned Gaussian noise variance.

Hyperparameters ``theta = [log l_1..l_G, log amplitude, log noise, mean]``
are integrated over Spearmint-style: slice sampling (Neal 2003, random
direction with step-out and shrinkage) of the log posterior, keeping
``num_samples`` samples every ``thin`` steps. The first fit burns the chain in
(``burn_in`` steps) on a random subset of at most 128 observations, where a
likelihood costs a fraction of a full one, then takes ``warm_burn_in`` steps
on all data; later fits continue the chain from its last state (warm start),
as Spearmint does between iterations. ``mode="map"`` instead maximizes the
log posterior with L-BFGS-B (numerical gradients) from ``map_restarts``
starting points and keeps one sample. Priors: log l ~ N(0, 1.5^2) on
[log 0.02, log 50] (or the dimension-scaled prior, ``lengthscale_prior``); log amplitude ~ N(0, 1) on [log 0.01, log 100] (outputs
are standardized); noise variance has a horseshoe prior of scale
``noise_scale`` (0.1, Spearmint's; p(s2) ~ log(1 + 3 (scale / s2)^2)) with
floor ``min_noise``; mean ~ N(0, 1). In the log-noise coordinate the slice
sampler moves in, the 0.1 horseshoe has its mode at 0.09 and 5/50/95%
quantiles 2.6e-3 / 0.07 / 0.99; BoTorch 0.18's default, LogNormal(-4, 1)
with floor 1e-4, has 2.5e-3 / 0.018 / 0.094. A scale of 0.01 (quantiles
2.6e-4 / 7e-3 / 0.11) was tried on DTLZ2 (PESMO, 5 seeds) and was worse:
median log10 HV gap -0.260 against -0.312 (BENCHMARKS.md, "Optimizer"), so
the default stays 0.1.

Why not GPy's ``GPRegression``: speed, not expressiveness. GPy shares one
lengthscale across a one-hot block with a product of per-block kernels over
``active_dims`` (for the RBF kernel that product is exactly the kernel here:
its log likelihood on the cell space matched ours to 1e-6), but a likelihood
evaluation through its parameter framework (which also recomputes gradients
on every parameter change) cost 121 ms CPU with that 20-factor product
against 2.7 ms here (n = 400, cell space, one BLAS thread, load ~10; 28 ms
against 4.9 ms with GPy's single ARD kernel of 120 free lengthscales in an
earlier measurement), which matters when slice sampling three GPs at n = 400
inside a 10 s budget. (For Matern-5/2 a product of per-block kernels is a
different kernel from the Matern of the summed distance used here.) The model here is the same exact GP;
``tests/search/gp_test.py`` checks its likelihood and predictions against
GPy's on the same hyperparameters.

Numerics: Cholesky with jitter retries (1e-8 .. 1e-2 times the amplitude);
a clear ``ValueError`` when inputs are degenerate (NaN, fewer than two
points, mismatched shapes) or the covariance stays singular.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
from scipy import linalg, optimize, stats

from search.optimizer import errors
from search.optimizer import kernels
from search.optimizer import lowrank
from search.optimizer.kernels import (  # noqa: F401 (re-exported)
    kernel_from_sqdist, robust_cholesky, scaled_sqdist)

_LOG_L_BOUNDS = (np.log(0.02), np.log(50.0))
_LOG_AMP_BOUNDS = (np.log(1e-2), np.log(1e2))
_HORSESHOE_SCALE = 0.1
LENGTHSCALE_PRIORS = ("lognormal", "dimension_scaled")
OUTPUT_WARPINGS = ("none", "yeo-johnson")
# Yeo-Johnson exponents beyond these make the transform numerically flat or
# explosive at the far ends of standardized data.
WARP_LAMBDA_BOUNDS = (-3.0, 3.0)


@dataclasses.dataclass
class GPSample:
  """One hyperparameter sample conditioned on the data (standardized units).

  ``z``: (n, D) training inputs divided by lengthscales; ``chol``: (n, n)
  lower Cholesky factor of K + noise I; ``alpha``: (n,) (K + noise I)^-1 (y - mean).
  """
  theta: np.ndarray
  lengthscales: np.ndarray  # (D,) per encoded column
  amplitude: float
  noise: float
  mean: float
  z: np.ndarray
  chol: np.ndarray
  alpha: np.ndarray
  kernel: str

  def cross(self, x_encoded: np.ndarray) -> np.ndarray:
    """(n, c) prior covariance between training and encoded points (c, D)."""
    return kernel_from_sqdist(scaled_sqdist(self.z, x_encoded / self.lengthscales),
                              self.amplitude, self.kernel)

  def project(self, ks: np.ndarray) -> np.ndarray:
    """(n, c) v = L^-1 ks, so that the posterior covariance is k - v^T v
    (``lowrank.LowRankGPSample`` has the same method with m basis points)."""
    return linalg.solve_triangular(self.chol, ks, lower=True, check_finite=False)

  def training_data(self) -> tuple[np.ndarray, np.ndarray]:
    """(x_train (n, D) encoded, y_centered (n,) = (K + noise I) alpha)."""
    return self.z * self.lengthscales, self.chol @ (self.chol.T @ self.alpha)

  def predict(self, x_encoded: np.ndarray, full_cov: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of the latent f at (c, D) points: mean (c,), variance (c,) or
    covariance (c, c) when ``full_cov`` (``kernels.predict``)."""
    return kernels.predict(self, x_encoded, full_cov)


class ObjectiveGP:
  """GP of one objective with sampled (or MAP) hyperparameters.

  Args:
    groups: (D,) int, the design variable of each encoded column.
    kernel: "matern52" or "rbf".
    mode: "slice" (sampling) or "map".
    num_samples, burn_in, thin: slice-sampling schedule; ``burn_in`` applies
      to the first fit, later fits continue the chain with ``warm_burn_in``.
    log_transform: model log(y) (requires y > 0).
    min_noise: floor of the noise variance in standardized units.
    noise_scale: scale of the horseshoe prior on the noise variance
      (standardized units; see the module docstring for its quantiles).
    output_warping: "none" or "yeo-johnson": after the log transform and
      standardization, a Yeo-Johnson power transform (Yeo and Johnson 2000)
      whose exponent is the maximum-likelihood one for the observed values
      (``scipy.stats.yeojohnson_normmax``, clipped to ``WARP_LAMBDA_BOUNDS``),
      then standardized again; re-fitted with each ``fit``. HEBO's output
      transform (Cowen-Rivers et al. 2022, JAIR). It is strictly
      increasing, so it keeps every Pareto set (dominance compares each
      objective's order only) while a few far outliers (broken networks at
      99 % error) stop compressing the range the front lies in.
    lengthscale_prior: "lognormal" (default: log l ~ N(0, 1.5^2), initial
      log l = 0 with one-hot groups, log 0.3 without) or "dimension_scaled"
      (Hvarfner, Hellsten and Nardi 2024, "Vanilla Bayesian optimization
      performs great in high dimensions", ICML; BoTorch's default since
      0.12): log l ~ N(sqrt(2) + log(G) / 2, 3) over the G lengthscales,
      the chain started at its mean. Both are truncated to [log 0.02, log 50].
    max_fit_points: above this many observations the hyperparameter chain
      (or MAP search) runs on a random subset of this size, redrawn at each
      hyperparameter refresh (each likelihood then costs
      O(max_fit_points^3), not O(n^3)); the samples are still conditioned
      on every observation.
    refresh_growth: above ``max_fit_points`` observations, the
      hyperparameter samples are kept until the data have grown by this
      fraction since they were drawn; meanwhile a ``fit`` whose data extend
      the previous fit's (the same rows first) extends each sample's
      Cholesky factor by the new rows (``extend_cholesky``, O(n^2) per new
      row instead of O(n^3)). Up to ``max_fit_points`` observations every
      fit re-samples, as Spearmint does.
    large_n_samples: above ``max_fit_points`` observations, only this many
      of the ``num_samples`` hyperparameter samples (evenly spaced along the
      chain) are conditioned, and ``samples`` repeats them cyclically (the
      same objects), so a caller that pairs samples by index (PESMO: one
      Pareto set per index) still gets ``num_samples`` entries while the
      O(n^2)-per-candidate work is done once per distinct sample
      (``pesmo._candidate_moments`` caches by sample). With thousands of
      observations the hyperparameter posterior is narrow (the measured
      spread is in BENCHMARKS.md, "Decoupled evaluation").
    exact_limit, inducing_points: above ``exact_limit`` observations each
      sample is conditioned by the low-rank DTC posterior on at most
      ``inducing_points`` inducing rows (``search/optimizer/lowrank.py``;
      O(n m^2) instead of O(n^3), O(m^2) per prediction instead of O(n^2)).
      Up to ``exact_limit`` the GP is exact, as before.
  """

  def __init__(self, groups: np.ndarray, kernel: str = "matern52", mode: str = "slice",
               num_samples: int = 10, burn_in: int = 60, warm_burn_in: int = 2,
               thin: int = 1, map_restarts: int = 3, log_transform: bool = False,
               min_noise: float = 1e-6, noise_scale: float = _HORSESHOE_SCALE,
               output_warping: str = "none", lengthscale_prior: str = "lognormal",
               max_fit_points: int = 500, refresh_growth: float = 0.1,
               exact_limit: int = 3000, inducing_points: int = 1000,
               large_n_samples: int = 3, seed: int = 0):
    if mode not in ("slice", "map"):
      raise errors.invalid_value("mode", "'slice' or 'map'", mode)
    kernel_from_sqdist(np.zeros(1), 1.0, kernel)  # validates `kernel`
    if not float(noise_scale) > 0:
      raise errors.invalid_value("noise_scale", "a positive number", noise_scale)
    if int(num_samples) < 1:
      raise errors.invalid_value("num_samples", ">= 1", num_samples)
    if output_warping not in OUTPUT_WARPINGS:
      raise errors.invalid_value("output_warping", "one of %s" % ", ".join(OUTPUT_WARPINGS),
                                 output_warping)
    if lengthscale_prior not in LENGTHSCALE_PRIORS:
      raise ValueError("Invalid value for argument `lengthscale_prior`. Expected one of %s. "
                       "Received lengthscale_prior=%r" % (", ".join(LENGTHSCALE_PRIORS),
                                                          lengthscale_prior))
    for name, value, low in (("max_fit_points", max_fit_points, 2),
                             ("exact_limit", exact_limit, 2),
                             ("inducing_points", inducing_points, 2),
                             ("large_n_samples", large_n_samples, 1)):
      if int(value) != value or value < low:
        raise ValueError("Invalid value for argument `%s`. Expected an integer >= %d. "
                         "Received %s=%r" % (name, low, name, value))
    self.large_n_samples = int(large_n_samples)
    if not float(refresh_growth) >= 0:
      raise ValueError("Invalid value for argument `refresh_growth`. Expected a number >= 0. "
                       "Received refresh_growth=%r" % (refresh_growth,))
    self.refresh_growth, self._refreshed_at = float(refresh_growth), 0
    self.max_fit_points, self.exact_limit = int(max_fit_points), int(exact_limit)
    self.inducing_points = int(inducing_points)
    self.lengthscale_prior = lengthscale_prior
    self.output_warping = output_warping
    # (lambda, shift, scale) of the fitted Yeo-Johnson transform
    self.warp: Optional[Tuple[float, float, float]] = None
    self.groups = np.asarray(groups, dtype=int)
    self.num_groups = int(self.groups.max()) + 1
    self.kernel, self.mode = kernel, mode
    self.num_samples, self.burn_in, self.warm_burn_in = int(num_samples), burn_in, warm_burn_in
    self.thin, self.map_restarts = max(1, int(thin)), map_restarts
    self.log_transform, self.min_noise = log_transform, min_noise
    self.noise_scale = float(noise_scale)
    self.rng = np.random.default_rng(seed)
    self.samples: List[GPSample] = []
    self._state: Optional[np.ndarray] = None
    self.y_shift, self.y_scale = 0.0, 1.0

  # -- transforms -----------------------------------------------------------
  def standardize(self, y: np.ndarray) -> np.ndarray:
    """Raw objective values -> the GP's standardized units (after ``fit``)."""
    y = np.asarray(y, dtype=float)
    if self.log_transform:
      if np.any(y <= 0):
        raise ValueError("Invalid objective values: log_transform needs y > 0. "
                         "Received min %g." % np.min(y))
      y = np.log(y)
    t = (y - self.y_shift) / self.y_scale
    if self.warp is None:
      return t
    lam, shift, scale = self.warp
    return (stats.yeojohnson(t, lmbda=lam) - shift) / scale

  def _fit_warp(self, t: np.ndarray) -> np.ndarray:
    """Fits the output warping to standardized values ``t``; returns them warped."""
    self.warp = None
    if self.output_warping == "none" or np.ptp(t) < 1e-12:
      return t
    with np.errstate(all="ignore"):
      lam = float(stats.yeojohnson_normmax(t))
    lam = float(np.clip(lam if np.isfinite(lam) else 1.0, *WARP_LAMBDA_BOUNDS))
    w = stats.yeojohnson(t, lmbda=lam)
    scale = float(np.std(w)) if np.std(w) > 1e-12 else 1.0
    self.warp = (lam, float(np.mean(w)), scale)
    return (w - self.warp[1]) / scale

  def _check(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float).ravel()
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != self.groups.size:
      raise ValueError("Invalid GP inputs. Expected x of shape (n, %d) and y of shape "
                       "(n,). Received %s and %s." % (self.groups.size, x.shape, y.shape))
    if x.shape[0] < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
      raise ValueError("Invalid GP inputs. Expected at least 2 finite observations "
                       "(drop failed trials). Received n=%d." % x.shape[0])
    return x, y

  # -- hyperparameters ------------------------------------------------------
  def _unpack(self, theta: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    g = self.num_groups
    return np.exp(theta[:g]), float(np.exp(theta[g])), float(np.exp(theta[g + 1])), float(theta[g + 2])

  def log_prior(self, theta: np.ndarray) -> float:
    g = self.num_groups
    log_l, log_amp, log_noise, mean = theta[:g], theta[g], theta[g + 1], theta[g + 2]
    if (np.any(log_l < _LOG_L_BOUNDS[0]) or np.any(log_l > _LOG_L_BOUNDS[1]) or
        not _LOG_AMP_BOUNDS[0] <= log_amp <= _LOG_AMP_BOUNDS[1] or
        log_noise < np.log(self.min_noise) or log_noise > np.log(10.0)):
      return -np.inf
    noise = np.exp(log_noise)
    horseshoe = np.log(np.log1p(3.0 * (self.noise_scale / noise) ** 2)) + log_noise
    loc, scale = self._lengthscale_loc_scale()
    return float(-0.5 * np.sum((log_l - loc) ** 2) / scale ** 2 - 0.5 * log_amp ** 2
                 - 0.5 * mean ** 2 + horseshoe)

  def _lengthscale_loc_scale(self) -> tuple[float, float]:
    """(mean, sd) of the Gaussian prior on each log lengthscale."""
    if self.lengthscale_prior == "dimension_scaled":
      return np.sqrt(2.0) + 0.5 * np.log(self.num_groups), np.sqrt(3.0)
    return 0.0, 1.5

  def _condition(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                 strict: bool = False) -> Optional[GPSample]:
    lengths, amp, noise, mean = self._unpack(theta)
    col_l = lengths[self.groups]
    z = x / col_l
    k = kernel_from_sqdist(scaled_sqdist(z, z), amp, self.kernel)
    k[np.diag_indices_from(k)] += noise
    try:
      chol = robust_cholesky(k, amp)
    except ValueError:
      if strict:
        raise
      return None
    alpha = linalg.cho_solve((chol, True), y - mean, check_finite=False)
    return GPSample(theta.copy(), col_l, amp, noise, mean, z, chol, alpha, self.kernel)

  def log_posterior(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Log marginal likelihood (Rasmussen & Williams eq. 2.30) + log prior."""
    lp = self.log_prior(theta)
    if not np.isfinite(lp):
      return -np.inf
    s = self._condition(theta, x, y)
    if s is None:
      return -np.inf
    r = y - s.mean
    return float(-0.5 * r @ s.alpha - np.sum(np.log(np.diag(s.chol)))
                 - 0.5 * y.size * np.log(2 * np.pi) + lp)

  def _initial_theta(self) -> np.ndarray:
    g = self.num_groups
    if self.lengthscale_prior == "dimension_scaled":
      start = float(np.clip(self._lengthscale_loc_scale()[0], *_LOG_L_BOUNDS))
    else:
      start = np.log(1.0 if self.groups.size > g else 0.3)
    return np.concatenate([np.full(g, start), [0.0, np.log(1e-2), 0.0]])

  # -- fitting --------------------------------------------------------------
  def fit(self, x_encoded: Any, y: Any) -> "ObjectiveGP":
    """Fit to (n, D) encoded inputs and (n,) raw objective values."""
    x, y = self._check(x_encoded, y)
    if self.log_transform and np.any(y <= 0):
      raise ValueError("Invalid objective values: log_transform needs y > 0. "
                       "Received min %g." % np.min(y))
    t = np.log(y) if self.log_transform else y
    self.y_shift = float(np.mean(t))
    self.y_scale = float(np.std(t)) if np.std(t) > 1e-12 else 1.0
    ys = self._fit_warp((t - self.y_shift) / self.y_scale)
    extended = self._extended(x, ys)
    self._x, self._y = x, ys
    if extended is not None:
      self.samples = extended
      return self
    self._refreshed_at = x.shape[0]
    xf, yf = x, ys
    if x.shape[0] > self.max_fit_points:
      sub = np.sort(self.rng.permutation(x.shape[0])[:self.max_fit_points])
      xf, yf = x[sub], ys[sub]
    logp = lambda th: self.log_posterior(th, xf, yf)
    if self.mode == "map":
      thetas = [self._map(logp)]
    else:
      thetas = self._slice_chain(logp, xf, yf)
    if x.shape[0] > self.max_fit_points and len(thetas) > self.large_n_samples:
      # Few distinct hyperparameter samples, each repeated (class doc).
      keep = np.linspace(0, len(thetas) - 1, self.large_n_samples).round().astype(int)
      distinct = [self._posterior(thetas[i], x, ys) for i in keep]
      self.samples = [distinct[j % len(distinct)] for j in range(len(thetas))]
      self.samples = [s for s in self.samples if s is not None]
    else:
      self.samples = [s for s in (self._posterior(th, x, ys) for th in thetas)
                      if s is not None]
    if not self.samples:
      self.samples = [self._posterior(self._initial_theta(), x, ys, strict=True)]
    return self

  def _extended(self, x: np.ndarray, ys: np.ndarray) -> list[GPSample] | None:
    """The current samples conditioned on (n, D) ``x`` by extending their
    factors (``refresh_growth``), or None when they must be re-drawn: few
    observations, no previous fit, data that do not extend it, low-rank
    samples, or a Schur complement that is not positive definite."""
    if (x.shape[0] <= self.max_fit_points or not self.samples
        or x.shape[0] > self.exact_limit
        or x.shape[0] > (1.0 + self.refresh_growth) * self._refreshed_at
        or self._x.shape[0] > x.shape[0] or self._x.shape[1] != x.shape[1]
        or not np.array_equal(self._x, x[:self._x.shape[0]])):
      return None
    done = {}  # repeated samples (``large_n_samples``) are extended once
    for sample in self.samples:
      if not isinstance(sample, GPSample):
        return None
      if id(sample) not in done:
        try:
          done[id(sample)] = extend_cholesky(sample, x[self._x.shape[0]:], ys)
        except linalg.LinAlgError:
          return None
    return [done[id(sample)] for sample in self.samples]

  def _posterior(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                 strict: bool = False) -> Any:
    """The sample conditioned on all (n, D) ``x``: exact up to
    ``exact_limit`` points, the low-rank DTC posterior above."""
    if x.shape[0] <= self.exact_limit:
      return self._condition(theta, x, y, strict)
    lengths, amp, noise, mean = self._unpack(theta)
    try:
      return lowrank.condition_low_rank(theta, lengths[self.groups], amp, noise, mean, x, y,
                                        self.kernel, self.inducing_points)
    except ValueError:
      if strict:
        raise
      return None

  def _map(self, logp: Callable[[np.ndarray], float]) -> np.ndarray:
    g = self.num_groups
    bounds = ([_LOG_L_BOUNDS] * g + [_LOG_AMP_BOUNDS, (np.log(self.min_noise), np.log(10.0)),
                                      (-3.0, 3.0)])
    best, best_val = self._initial_theta(), logp(self._initial_theta())
    starts = [best] + [self._initial_theta() + self.rng.normal(size=g + 3) * 0.7
                       for _ in range(self.map_restarts - 1)]
    for start in starts:
      start = np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])
      res = optimize.minimize(lambda th: -logp(th) if np.isfinite(logp(th)) else 1e10,
                              start, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": 60})
      if -res.fun > best_val:
        best, best_val = res.x, -res.fun
    self._state = best
    return best

  def _slice_chain(self, logp: Callable[[np.ndarray], float], x: np.ndarray,
                   y: np.ndarray) -> List[np.ndarray]:
    theta = self._state
    if theta is None:
      # Cold start: burn in on a random subset of at most 128 points (cheap
      # likelihoods), then continue on all data like a warm start.
      theta = self._initial_theta()
      sub = self.rng.permutation(x.shape[0])[:128]
      logp_sub = lambda th: self.log_posterior(th, x[sub], y[sub])
      current = logp_sub(theta)
      for _ in range(self.burn_in):
        theta, current = slice_step(logp_sub, theta, current, self.rng)
    current = logp(theta)
    if not np.isfinite(current):
      theta = self._initial_theta()
      current = logp(theta)
    steps = self.warm_burn_in
    kept = []
    for step in range(steps + self.num_samples * self.thin):
      theta, current = slice_step(logp, theta, current, self.rng)
      if step >= steps and (step - steps + 1) % self.thin == 0:
        kept.append(theta.copy())
    self._state = theta
    return kept

  def refit_with(self, x_extra: np.ndarray, y_extra_std: np.ndarray) -> "ObjectiveGP":
    """A copy conditioned on extra points with standardized values (pending
    fantasies), keeping the current hyperparameter samples. Exact samples
    are extended (``extend_cholesky``, O(n^2 k)), each distinct one once;
    a refactorization when that fails or the sample is low-rank."""
    x = np.vstack([self._x, x_extra])
    y = np.concatenate([self._y, y_extra_std])
    out = ObjectiveGP.__new__(ObjectiveGP)
    out.__dict__.update(self.__dict__)
    out._x, out._y = x, y
    done = {}
    for s in self.samples:
      if id(s) in done:
        continue
      try:
        if not (isinstance(s, GPSample) and x.shape[0] <= self.exact_limit):
          raise linalg.LinAlgError("not an exact sample")
        done[id(s)] = extend_cholesky(s, np.asarray(x_extra, dtype=float), y)
      except linalg.LinAlgError:
        done[id(s)] = self._posterior(s.theta, x, y, strict=True)
    out.samples = [done[id(s)] for s in self.samples]
    return out


def extend_cholesky(sample: GPSample, x_new: np.ndarray, y_all: np.ndarray) -> GPSample:
  """``sample`` (exact, n training points) conditioned on n + k points: its
  inputs then the (k, D) encoded ``x_new``, with (n + k,) standardized
  targets ``y_all`` (all of them: standardization may have moved).

  Block Cholesky (Golub and Van Loan, "Matrix Computations", 4th ed.,
  section 4.2.9): with L L^T = K_nn + s2 I, B = L^-1 K_nk and
  S S^T = K_kk + s2 I - B^T B, the factor of the grown matrix is
  [[L, 0], [B^T, S]]; O(n^2 k) instead of O((n + k)^3). Raises
  ``LinAlgError`` when S S^T is not positive definite (a new row nearly
  repeats an old one): refit then. The result equals a fresh
  ``ObjectiveGP._condition`` with the same hyperparameters to rounding
  (``tests/search/optimizer/gp_test.py``)."""
  z_new = x_new / sample.lengthscales
  b = linalg.solve_triangular(sample.chol, kernel_from_sqdist(
      scaled_sqdist(sample.z, z_new), sample.amplitude, sample.kernel), lower=True,
                              check_finite=False)
  schur = kernel_from_sqdist(scaled_sqdist(z_new, z_new), sample.amplitude, sample.kernel)
  schur[np.diag_indices_from(schur)] += sample.noise
  s = linalg.cholesky(schur - b.T @ b, lower=True, check_finite=False)
  n, k = sample.chol.shape[0], z_new.shape[0]
  chol = np.zeros((n + k, n + k))
  chol[:n, :n], chol[n:, :n], chol[n:, n:] = sample.chol, b.T, s
  alpha = linalg.cho_solve((chol, True), np.asarray(y_all) - sample.mean, check_finite=False)
  return dataclasses.replace(sample, z=np.vstack([sample.z, z_new]), chol=chol, alpha=alpha)


def slice_step(logp: Callable[[np.ndarray], float], theta: np.ndarray, current: float,
               rng: np.random.Generator, width: float = 1.0,
               max_steps: int = 8) -> tuple[np.ndarray, float]:
  """One random-direction slice-sampling step (Neal 2003, section 4 and 5.1).

  Draws a level under ``current = logp(theta)``, steps out along a random unit
  direction by ``width`` until both ends are below the level (at most
  ``max_steps`` each way), then shrinks the bracket until a point above the
  level is drawn. Returns ``(theta_new, logp(theta_new))``.
  """
  direction = rng.normal(size=theta.shape)
  direction /= np.linalg.norm(direction)
  level = current + np.log(rng.random())
  lower = -width * rng.random()
  upper = lower + width
  for _ in range(max_steps):
    if logp(theta + lower * direction) <= level:
      break
    lower -= width
  for _ in range(max_steps):
    if logp(theta + upper * direction) <= level:
      break
    upper += width
  for _ in range(50):
    t = lower + (upper - lower) * rng.random()
    proposal = theta + t * direction
    value = logp(proposal)
    if value > level:
      return proposal, value
    if t < 0:
      lower = t
    else:
      upper = t
  return theta, current
