"""Expectation propagation for PESMO's conditional predictive distribution.

References:
  D. Hernandez-Lobato, J. M. Hernandez-Lobato, A. Shah, R. P. Adams.
  "Predictive Entropy Search for Multi-objective Bayesian Optimization",
  ICML 2016 (PESMO), section 3 (eq. 7-9) and supplementary material
  sections 1-2.
  E. Garrido-Merchan, D. Hernandez-Lobato. "Predictive Entropy Search for
  Multi-objective Bayesian Optimization with Constraints", Neurocomputing
  361, 2019, appendix (the EP updates BoTorch's
  ``qMultiObjectivePredictiveEntropySearch`` follows).
  T. Minka, "Expectation Propagation for approximate Bayesian inference",
  UAI 2001 (moment-matching updates, damping).

The model. Conditioning on "X* = {x*_1..x*_P} is the Pareto set" is
approximated (PESMO eq. 7-8) by the factors

  Omega(a, x*_i) = 1 - prod_k Theta(f_k(x*_i) - f_k(a))      (a does not dominate x*_i)

for every point a of a finite set standing in for the whole space: the
OBSERVED (and pending) inputs, the other Pareto points and the candidate x.
Theta is the step function; objectives are minimized. This is the factor
graph of Spearmint's PESM (HIPS/Spearmint,
``predictive_entropy_search_multiobjective.py``: EP over the Pareto set
followed by the observed inputs, observation-Pareto and Pareto-Pareto
factors) and of BoTorch's PES (``augmented_X`` = training inputs + Pareto
set). The observations' latent values f(x_n) enter through the GP posterior
(the noisy y_n are already conditioned on), so a Pareto point may not be
dominated by what the observations' latent values are.

Each factor depends on the objective DIFFERENCES d_k = f_k(x*_i) - f_k(a)
only, so its EP site is a product over k of one-dimensional Gaussians in d_k:
``exp(-tau_k d_k^2 / 2 + nu_k d_k)``. Spearmint and BoTorch store 2x2 sites on
(f_k(a), f_k(x*_i)); the moment-matched 2x2 site of a factor of the
difference is rank one along (1, -1), so the two parametrizations hold the
same approximation.

Joint layout used by every function below: N = M + P points, the M observed
(and pending) inputs first, then the P Pareto points (joint index M + i is
Pareto point i). Sites are (K, P, N) arrays: entry [k, i, a] is the site of
Omega(a, x*_i) in objective k; the self-pairs a = M + i are masked out
(``pair_mask``).

Training phase (``run_ep``): parallel EP over all P(N-1) factors on the
(K, N, N) joint GP posterior. ``select_observed`` first keeps the observed
points whose factors can matter (module-level approximation, below).
Damping: sites move by a fraction ``damping`` of their update, 0.5 x 0.99^t
at iteration t (Spearmint's schedule); when an update leaves the posterior
covariance not positive definite, or produces non-finite values, the step
is halved within that iteration until it is accepted (Spearmint's inner loop;
BoTorch halves too, but keeps the smaller damping for the later iterations,
which on the 400-point cell problem left EP crawling at 1/8-1/32 for 100
iterations). Convergence:
the largest change of any entry of the posterior mean and covariance below
``tol`` times the largest entry (BoTorch's relative criterion and default,
1e-2), after at least 3 iterations, or ``max_iter`` = 50 iterations. On the
400-point cell problem (60 observed + 30 Pareto points) EP then stops after
~40 iterations; at 1e-3 it drifted on for 100 (changes ~4e-3 per iteration).

Failure modes, and what happens:
  * non-convergence (oscillating sites; typical when a Pareto point is much
    worse than an observation, the factor's normalizer 1 - prod Phi tends to
    0): after ``max_iter`` iterations, or when no step of at least 1e-3 is
    accepted, the last accepted sites are kept and ``converged`` is False.
    The prior (tau = nu = 0) is always an accepted state.
  * non-PSD updates: a damped update whose covariance fails Cholesky is
    rejected and the step halved, as above.
  * negative site precisions: the non-domination factor is not log-concave,
    so tau < 0 is legitimate EP and is kept in the training phase as long as
    the joint stays positive definite (as BoTorch; Spearmint zeroes them).
    In the test phase (``candidate_variances``) a negative precision would
    increase the candidate's variance, which makes the entropy reduction
    negative; it is clipped to 0 there.
  * non-positive cavity variances: those sites are left unchanged in that
    iteration. Difference variances are floored at 1e-9 of the sum of the two
    marginal variances (Spearmint shrinks the covariance until the ratio is
    at least 1e-6): nearly coincident points otherwise give 0/0.
  * log normalizers below log(1e-12) are clamped (a Pareto point dominated
    with probability ~1: the sample's Pareto set is far from the model's).

Approximation of ``select_observed``: an observed point whose latent value
dominates no Pareto point with prior probability above ``threshold``
contributes factors ~1; dropping it from the joint is exact for the GP part
(the GP posterior already conditions on its observation) and only drops
factors whose log normalizers are above log(1 - threshold). At most
``max_observed`` points (the most likely dominators) are kept, which bounds
the O(K N^3) cost of each iteration at 400 observations.

Test phase (``candidate_variances``): the candidate factors Omega(x, x*_i)
are updated once, in parallel, from the training-phase posterior (as in PES,
where the test factors are not iterated), and the predictive variance of
f_k(x) is computed exactly from the (P+1)-dimensional marginal by a Woodbury
identity. BoTorch computes the candidate sites from the GP predictive
(cavity = GP posterior, not the EP posterior) and then keeps only the
Pareto-Pareto sites of its training phase; the two agree when there is a
single Pareto point and the observations' factors are inactive, which is the
setting of the cross-check in ``tests/search/optimizer/ep_test.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg, special

from search.optimizer import errors

_MIN_LOG_Z = np.log(1e-12)


def nondominance_tilted_moments(mean: np.ndarray,
                                var: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Moments of N(d; mean, var) * (1 - prod_k Phi(d_k >= 0)), PESMO supp. eq. (S.7)-(S.9).

  Args:
    mean, var: (..., K) Gaussian cavity marginals of the differences d_k,
      independent across k.

  Returns:
    new_mean, new_var: (..., K) moments of the tilted distribution;
    log_z: (...,) log normalizer. Non-finite entries mark failed updates.
  """
  sd = np.sqrt(var)
  alpha = mean / sd
  log_cdf = special.log_ndtr(alpha)                        # log Phi(alpha_k)
  log_prod = np.sum(log_cdf, axis=-1, keepdims=True)       # log prod_k Phi
  log_z = np.log(-np.expm1(np.minimum(log_prod, -1e-300)))  # log(1 - prod)
  log_z = np.maximum(log_z, _MIN_LOG_Z)
  log_pdf = -0.5 * alpha ** 2 - 0.5 * np.log(2 * np.pi)
  # ratio_k = prod_{l != k} Phi_l * phi_k / Z
  ratio = np.exp(log_prod - log_cdf + log_pdf - log_z)
  grad_m = -ratio / sd                                     # d log Z / d mean_k
  grad_v = ratio * alpha / (2.0 * var)                     # d log Z / d var_k
  new_mean = mean + var * grad_m
  new_var = var - var ** 2 * (grad_m ** 2 - 2.0 * grad_v)
  return new_mean, new_var, log_z[..., 0]


def site_update(cav_mean: np.ndarray, cav_var: np.ndarray, new_mean: np.ndarray,
                new_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Site natural parameters that turn the cavity into the tilted moments:
  tau = 1/new_var - 1/cav_var, nu = new_mean/new_var - cav_mean/cav_var."""
  return 1.0 / new_var - 1.0 / cav_var, new_mean / new_var - cav_mean / cav_var


def pair_mask(num_observed: int, num_pareto: int) -> np.ndarray:
  """(P, N) bool: True where factor Omega(z_a, x*_i) exists (a != M + i)."""
  mask = np.ones((num_pareto, num_observed + num_pareto), dtype=bool)
  idx = np.arange(num_pareto)
  mask[idx, num_observed + idx] = False
  return mask


def site_precision(tau: np.ndarray, nu: np.ndarray,
                   num_observed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian natural parameters over the joint f(Z) contributed by the sites.

  Args:
    tau, nu: (K, P, N) site parameters of d_kia = f_k(x*_i) - f_k(z_a)
      (masked pairs ignored).
    num_observed: M, so that Pareto point i is joint index M + i.

  Returns:
    precision (K, N, N) = sum_ia tau_ia (e_{M+i} - e_a)(e_{M+i} - e_a)^T and
    shift (K, N) = sum_ia nu_ia (e_{M+i} - e_a).
  """
  k, p, n = tau.shape
  mask = pair_mask(num_observed, p)
  t = np.zeros((k, n, n))
  s = np.zeros((k, n, n))
  t[:, num_observed:, :] = np.where(mask, tau, 0.0)
  s[:, num_observed:, :] = np.where(mask, nu, 0.0)
  idx = np.arange(n)
  degree = t.sum(-1) + t.sum(-2)
  precision = -t - np.swapaxes(t, -1, -2)
  precision[:, idx, idx] += degree
  return precision, s.sum(-1) - s.sum(-2)


def joint_posterior(prior_mean: np.ndarray, prior_cov: np.ndarray, tau: np.ndarray, nu: np.ndarray,
                    num_observed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """q(f(Z)) from the GP posterior N(prior_mean (K,N), prior_cov (K,N,N))
  times the sites (K,P,N), without inverting the prior covariance (it is near
  singular when points are close): with Lambda, eta from ``site_precision``,
  V = Sigma (I + Lambda Sigma)^-1 and m = mu + V (eta - Lambda mu).
  Returns mean (K,N), cov (K,N,N); raises LinAlgError if V is not PD."""
  n = prior_mean.shape[-1]
  lam, eta = site_precision(tau, nu, num_observed)
  system = np.eye(n) + lam @ prior_cov                       # (K, N, N)
  cov = np.swapaxes(np.linalg.solve(np.swapaxes(system, -1, -2), prior_cov), -1, -2)
  cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
  np.linalg.cholesky(cov + 1e-12 * np.eye(n))  # raises LinAlgError when not PD
  resid = eta - np.einsum("kij,kj->ki", lam, prior_mean)
  mean = prior_mean + np.einsum("kij,kj->ki", cov, resid)
  return mean, cov


def difference_marginals(mean: np.ndarray, cov: np.ndarray,
                         num_observed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Marginals of d_ia = f(x*_i) - f(z_a): mean (K,P,N), var (K,P,N), the
  variance floored at 1e-9 of v_i + v_a (module doc, failure modes)."""
  m = num_observed
  diag = np.einsum("kii->ki", cov)                             # (K, N)
  d_mean = mean[:, m:, None] - mean[:, None, :]
  total = diag[:, m:, None] + diag[:, None, :]
  d_var = total - 2.0 * cov[:, m:, :]
  return d_mean, np.maximum(d_var, np.maximum(1e-9 * total, 1e-300))


def ep_sweep(mean: np.ndarray, cov: np.ndarray, tau: np.ndarray, nu: np.ndarray,
             num_observed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Proposed (undamped) sites (K,P,N) from one parallel sweep over all
  factors, given the current posterior mean (K,N) and cov (K,N,N)."""
  d_mean, d_var = difference_marginals(mean, cov, num_observed)
  cav_tau = 1.0 / d_var - tau
  cav_nu = d_mean / d_var - nu
  ok = cav_tau > 1e-12
  cav_var = np.where(ok, 1.0 / np.where(ok, cav_tau, 1.0), 1.0)
  cav_mean = cav_nu * cav_var
  # Factors couple the K objectives: moments over axis K, for pair (i, a).
  cm = np.moveaxis(cav_mean, 0, -1)
  cv = np.moveaxis(cav_var, 0, -1)
  new_mean, new_var, _ = nondominance_tilted_moments(cm, cv)
  t_new, n_new = site_update(cm, cv, new_mean, new_var)
  t_new, n_new = np.moveaxis(t_new, -1, 0), np.moveaxis(n_new, -1, 0)
  pair_ok = (np.all(ok, axis=0, keepdims=True) & np.isfinite(t_new) & np.isfinite(n_new)
             & pair_mask(num_observed, tau.shape[1])[None])
  return np.where(pair_ok, t_new, tau), np.where(pair_ok, n_new, nu)


def run_ep(prior_mean: np.ndarray, prior_cov: np.ndarray, num_observed: int = 0, max_iter: int = 50,
           tol: float = 1e-2, damping: float = 0.5) -> dict[str, Any]:
  """EP on all the factors of the joint (module doc: damping, convergence, fallback).

  Args:
    prior_mean: (K, N) GP posterior mean of f_k at the M observed points
      followed by the P Pareto points.
    prior_cov: (K, N, N) GP posterior covariance (with jitter).
    num_observed: M (0: the Pareto-Pareto factors only).

  Returns:
    dict with mean (K,N), cov (K,N,N), tau, nu (K,P,N), num_observed,
    iterations, converged.
  """
  k, n = prior_mean.shape
  p = n - num_observed
  if p < 1:
    raise errors.invalid_value("num_observed",
                               "fewer than the %d joint points (the Pareto points come last)"
                               % (n,), shown="%d." % (num_observed,))
  tau, nu = np.zeros((k, p, n)), np.zeros((k, p, n))
  mean, cov = joint_posterior(prior_mean, prior_cov, tau, nu, num_observed)
  converged, it = n < 2, 0
  while not converged and it < max_iter:
    it += 1
    t_new, n_new = ep_sweep(mean, cov, tau, nu, num_observed)
    step = _damped_step(prior_mean, prior_cov, tau, nu, t_new, n_new, num_observed,
                        damping * 0.99 ** (it - 1))
    if step is None:
      break  # no damping >= 1e-3 keeps the joint positive definite
    t_try, n_try, m_try, c_try = step
    change = max(np.max(np.abs(m_try - mean)) / max(np.max(np.abs(mean)), 1e-12),
                 np.max(np.abs(c_try - cov)) / max(np.max(np.abs(cov)), 1e-12))
    tau, nu, mean, cov = t_try, n_try, m_try, c_try
    converged = change < tol and it >= 3
  return {"mean": mean, "cov": cov, "tau": tau, "nu": nu, "num_observed": num_observed,
          "iterations": it, "converged": bool(converged)}


def _damped_step(prior_mean: np.ndarray, prior_cov: np.ndarray, tau: np.ndarray, nu: np.ndarray,
                 t_new: np.ndarray, n_new: np.ndarray, num_observed: int,
                 damping: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
  """Sites moved by ``damping`` towards the proposal, halving the step (this
  iteration only, as Spearmint's inner loop) until the joint is positive
  definite and finite. Returns (tau, nu, mean, cov) or None below 1e-3."""
  while damping >= 1e-3:
    t_try = tau + damping * (t_new - tau)
    n_try = nu + damping * (n_new - nu)
    try:
      m_try, c_try = joint_posterior(prior_mean, prior_cov, t_try, n_try, num_observed)
      if np.all(np.isfinite(m_try)) and np.all(np.isfinite(c_try)):
        return t_try, n_try, m_try, c_try
    except np.linalg.LinAlgError:
      pass
    damping *= 0.5
  return None


def select_observed(obs_mean: np.ndarray, obs_var: np.ndarray, pareto_mean: np.ndarray,
                    pareto_var: np.ndarray, threshold: float = 1e-4,
                    max_observed: int = 60) -> np.ndarray:
  """Indices of the observed points kept in the EP joint (module doc).

  Args:
    obs_mean, obs_var: (K, n) GP posterior marginals at the observed points
      (an upper bound on the variance is fine: the noise variance).
    pareto_mean, pareto_var: (K, P) marginals at the Pareto points.
    threshold: keep a point when, with independent marginals, it dominates
      some Pareto point with probability above this.
    max_observed: at most this many (the most probable dominators).

  Returns:
    (m,) sorted int indices into the n observed points.
  """
  d_mean = pareto_mean[:, :, None] - obs_mean[:, None, :]          # (K, P, n)
  d_sd = np.sqrt(pareto_var[:, :, None] + obs_var[:, None, :])
  log_p = np.sum(special.log_ndtr(d_mean / d_sd), axis=0)        # log P(obs dominates)
  best = np.max(log_p, axis=0)                                   # (n,)
  keep = np.flatnonzero(best > np.log(max(threshold, 1e-300)))
  if threshold <= 0.0:
    keep = np.arange(best.size)
  if keep.size > max_observed:
    keep = keep[np.argsort(-best[keep])[:max_observed]]
  return np.sort(keep)


def candidate_marginals(result: dict[str, Any], prior_mean: np.ndarray, prior_chol: np.ndarray,
                        cand_mean: np.ndarray, cand_var: np.ndarray,
                        cand_cross: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Marginals under q of f_k at C candidates, from their GP posterior moments.

  q(f(x), f(Z)) = p(f(x) | f(Z)) q(f(Z)) (the sites touch f(Z) only), so with
  A = Sigma^-1 c: mean_q = m + A^T (m_ep - mu), var_q = v - c^T A + A^T V A.

  Args:
    result: ``run_ep``'s dict (mean (K,N), cov (K,N,N), num_observed M).
    prior_mean: (K, N) and prior_chol: (K, N, N) lower Cholesky factors of
      the GP posterior over the joint that ``run_ep`` started from.
    cand_mean, cand_var: (K, C) GP posterior marginals of f_k(x).
    cand_cross: (K, C, N) GP posterior cov(f_k(x), f_k(z_a)).

  Returns:
    mean_q (K,C), var_q (K,C), cross_q (K,C,P) (covariances with the Pareto
    points, the last P joint points).
  """
  m = result["num_observed"]
  mean_q, var_q = np.zeros_like(cand_mean), np.zeros_like(cand_var)
  cross_q = np.zeros(cand_cross.shape[:2] + (cand_cross.shape[2] - m,))
  for k in range(cand_mean.shape[0]):
    a = linalg.cho_solve((prior_chol[k], True), cand_cross[k].T, check_finite=False)  # (N,C)
    av = a.T @ result["cov"][k]                                             # (C, N)
    mean_q[k] = cand_mean[k] + a.T @ (result["mean"][k] - prior_mean[k])
    var_q[k] = np.maximum(cand_var[k] - np.sum(cand_cross[k] * a.T, 1)
                          + np.sum(av * a.T, 1), 1e-12)
    cross_q[k] = av[:, m:]
  return mean_q, var_q, cross_q


def candidate_variances(pareto_mean: np.ndarray, pareto_cov: np.ndarray, cand_mean: np.ndarray,
                        cand_var: np.ndarray, cand_cross: np.ndarray,
                        clip_negative: bool = True) -> np.ndarray:
  """Variance of f_k(x) given the Pareto set, for C candidates (test phase).

  Args:
    pareto_mean: (K, P), pareto_cov: (K, P, P): the EP posterior q restricted
      to the Pareto points.
    cand_mean: (K, C), cand_var: (K, C): marginals of f_k(x) under q.
    cand_cross: (K, C, P): cov(f_k(x), f_k(x*_i)) under q.
    clip_negative: clip negative candidate-site precisions to 0 and the
      result to [1e-12, cand_var] (Spearmint zeroes negative sites; BoTorch
      keeps them, then a variance can grow and a gain be negative).

  Returns:
    (K, C) conditional variances (before adding observation noise).
  """
  diag = np.einsum("kii->ki", pareto_cov)                       # (K, P)
  # d_i = f(x*_i) - f(x): marginals under q.
  d_mean = pareto_mean[:, None, :] - cand_mean[:, :, None]      # (K, C, P)
  total = diag[:, None, :] + cand_var[:, :, None]
  d_var = np.maximum(total - 2.0 * cand_cross, np.maximum(1e-9 * total, 1e-300))
  cm, cv = np.moveaxis(d_mean, 0, -1), np.moveaxis(d_var, 0, -1)  # (C, P, K)
  new_mean, new_var, _ = nondominance_tilted_moments(cm, cv)
  tau, _ = site_update(cm, cv, new_mean, new_var)
  tau = np.where(np.isfinite(tau), np.maximum(tau, 0.0) if clip_negative else tau, 0.0)
  tau = np.moveaxis(tau, -1, 0)                                  # (K, C, P)
  # cov(d_i, f(x)) and cov(d_i, d_j).
  c0 = cand_cross - cand_var[:, :, None]                         # (K, C, P)
  s = (pareto_cov[:, None, :, :] - cand_cross[:, :, :, None] - cand_cross[:, :, None, :]
       + cand_var[:, :, None, None])                             # (K, C, P, P)
  # Woodbury: var_new = var - c0^T (I + T S)^-1 T c0.
  p = pareto_mean.shape[-1]
  system = np.eye(p) + tau[..., :, None] * s
  rhs = (tau * c0)[..., None]
  sol = np.linalg.solve(system, rhs)[..., 0]
  var_new = cand_var - np.sum(c0 * sol, axis=-1)
  if not clip_negative:
    return np.maximum(var_new, 1e-12)
  return np.clip(var_new, 1e-12, cand_var)
