"""Expectation propagation for PESMO's conditional predictive distribution.

References:
  D. Hernandez-Lobato, J. M. Hernandez-Lobato, A. Shah, R. P. Adams.
  "Predictive Entropy Search for Multi-objective Bayesian Optimization",
  ICML 2016 (PESMO), section 3 and supplementary material sections 1-2.
  T. Minka, "Expectation Propagation for approximate Bayesian inference",
  UAI 2001 (moment-matching updates).

Conditioning on "X* = {x*_1..x*_P} is the Pareto set" is approximated, as in
PESMO eq. (7)-(8) and Spearmint's PESM, by the factors

  Omega(a, x*_i) = 1 - prod_k Theta(f_k(x*_i) - f_k(a))      (a does not dominate x*_i)

for every a in X* (a != x*_i) and for the candidate a = x; Theta is the step
function, objectives are minimized. Each factor depends on the objective
DIFFERENCES d_k = f_k(x*_i) - f_k(a) only, so its EP site is a product over k
of one-dimensional Gaussians in d_k (the rank-one 2x2 sites of the paper's
supplement): ``exp(-tau_k d_k^2 / 2 + nu_k d_k)``.

Training phase (``run_pareto_ep``): parallel EP over the P(P-1) Pareto-Pareto
factors on the joint Gaussian of f_k(X*), k = 1..K. Damping: sites move by a
fraction ``damping`` (start 0.5) of their update; when an update leaves a
posterior precision not positive definite, or produces non-finite values, it
is rejected and damping halved. Convergence: the largest absolute change of
any site parameter below ``tol``. Fallback: after ``max_iter`` iterations or
when damping falls below 1e-3, the last accepted sites are kept (the prior,
tau = nu = 0, is always a valid state). Sites whose cavity variance is not
positive are left unchanged in that iteration.

Test phase (``candidate_variances``): the candidate factors Omega(x, x*_i) are
updated once, in parallel from the Pareto-EP posterior (as in PES, where the
test factors are not iterated), and the resulting predictive variance of
f_k(x) is computed exactly from the (P+1)-dimensional joint by a Woodbury
identity. Negative test-site precisions are clipped to zero: such a factor
would increase the variance of one candidate, which makes the entropy
reduction negative and is an EP artefact; clipping keeps the acquisition
non-negative.
"""

import numpy as np
from scipy import special

_MIN_LOG_Z = np.log(1e-12)


def nondominance_tilted_moments(mean: np.ndarray, var: np.ndarray):
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


def site_update(cav_mean, cav_var, new_mean, new_var):
  """Site natural parameters that turn the cavity into the tilted moments:
  tau = 1/new_var - 1/cav_var, nu = new_mean/new_var - cav_mean/cav_var."""
  return 1.0 / new_var - 1.0 / cav_var, new_mean / new_var - cav_mean / cav_var


def site_precision(tau: np.ndarray, nu: np.ndarray):
  """Gaussian natural parameters over f(X*) contributed by pairwise difference sites.

  Args:
    tau, nu: (K, P, P) site parameters of d_kij = f_k(x*_i) - f_k(x*_j)
      (diagonal ignored).

  Returns:
    precision (K, P, P) = sum_ij tau_ij (e_i - e_j)(e_i - e_j)^T and
    shift (K, P) = sum_ij nu_ij (e_i - e_j).
  """
  t = tau.copy()
  n = nu.copy()
  idx = np.arange(t.shape[-1])
  t[:, idx, idx] = 0.0
  n[:, idx, idx] = 0.0
  degree = t.sum(-1) + t.sum(-2)
  precision = -t - np.swapaxes(t, -1, -2)
  precision[:, idx, idx] += degree
  return precision, n.sum(-1) - n.sum(-2)


def pareto_posterior(prior_mean, prior_cov, tau, nu):
  """q(f(X*)) from the GP posterior N(prior_mean (K,P), prior_cov (K,P,P)) times
  the sites, without inverting the prior covariance (it is near singular when
  Pareto points are close): with Lambda, eta from ``site_precision``,
  V = Sigma (I + Lambda Sigma)^-1 and m = mu + V (eta - Lambda mu).
  Returns mean (K,P), cov (K,P,P); raises LinAlgError if V is not PD."""
  p = prior_mean.shape[-1]
  lam, eta = site_precision(tau, nu)
  system = np.eye(p) + lam @ prior_cov                       # (K, P, P)
  cov = np.swapaxes(np.linalg.solve(np.swapaxes(system, -1, -2), prior_cov), -1, -2)
  cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
  np.linalg.cholesky(cov + 1e-12 * np.eye(p))  # raises LinAlgError when not PD
  resid = eta - np.einsum("kij,kj->ki", lam, prior_mean)
  mean = prior_mean + np.einsum("kij,kj->ki", cov, resid)
  return mean, cov


def difference_marginals(mean, cov):
  """Marginals of d_ij = f(x*_i) - f(x*_j): mean (K,P,P), var (K,P,P)."""
  diag = np.einsum("kii->ki", cov)
  d_mean = mean[:, :, None] - mean[:, None, :]
  d_var = diag[:, :, None] + diag[:, None, :] - 2.0 * cov
  return d_mean, d_var


def _ep_iteration(prior_mean, prior_cov, mean, cov, tau, nu):
  """Proposed (undamped) sites from one parallel sweep; (K,P,P) each."""
  d_mean, d_var = difference_marginals(mean, cov)
  d_var = np.maximum(d_var, 1e-12)
  cav_tau = 1.0 / d_var - tau
  cav_nu = d_mean / d_var - nu
  ok = cav_tau > 1e-12
  cav_var = np.where(ok, 1.0 / np.where(ok, cav_tau, 1.0), 1.0)
  cav_mean = cav_nu * cav_var
  # Factors couple the K objectives: moments over axis K, for pair (i, j).
  cm = np.moveaxis(cav_mean, 0, -1)
  cv = np.moveaxis(cav_var, 0, -1)
  new_mean, new_var, _ = nondominance_tilted_moments(cm, cv)
  t_new, n_new = site_update(cm, cv, new_mean, new_var)
  t_new, n_new = np.moveaxis(t_new, -1, 0), np.moveaxis(n_new, -1, 0)
  pair_ok = np.all(ok, axis=0, keepdims=True) & np.isfinite(t_new) & np.isfinite(n_new)
  idx = np.arange(tau.shape[-1])
  pair_ok[:, idx, idx] = False
  return np.where(pair_ok, t_new, tau), np.where(pair_ok, n_new, nu)


def run_pareto_ep(prior_mean, prior_cov, max_iter: int = 50, tol: float = 1e-4,
                  damping: float = 0.5):
  """EP on the Pareto-Pareto factors (module doc: damping, convergence, fallback).

  Args:
    prior_mean: (K, P) GP posterior mean of f_k at the Pareto points.
    prior_cov: (K, P, P) GP posterior covariance.

  Returns:
    dict with mean (K,P), cov (K,P,P), tau, nu (K,P,P), iterations, converged.
  """
  k, p = prior_mean.shape
  tau, nu = np.zeros((k, p, p)), np.zeros((k, p, p))
  mean, cov = pareto_posterior(prior_mean, prior_cov, tau, nu)
  converged, it = p < 2, 0
  while not converged and it < max_iter and damping >= 1e-3:
    it += 1
    t_new, n_new = _ep_iteration(prior_mean, prior_cov, mean, cov, tau, nu)
    t_try = tau + damping * (t_new - tau)
    n_try = nu + damping * (n_new - nu)
    try:
      m_try, c_try = pareto_posterior(prior_mean, prior_cov, t_try, n_try)
      if not (np.all(np.isfinite(m_try)) and np.all(np.isfinite(c_try))):
        raise np.linalg.LinAlgError("non-finite EP posterior")
    except np.linalg.LinAlgError:
      damping *= 0.5
      continue
    change = max(np.max(np.abs(t_try - tau)), np.max(np.abs(n_try - nu)))
    tau, nu, mean, cov = t_try, n_try, m_try, c_try
    converged = change < tol
  return {"mean": mean, "cov": cov, "tau": tau, "nu": nu, "iterations": it,
          "converged": bool(converged)}


def candidate_variances(pareto_mean, pareto_cov, cand_mean, cand_var, cand_cross):
  """Variance of f_k(x) given the Pareto set, for C candidates (test phase).

  Args:
    pareto_mean: (K, P), pareto_cov: (K, P, P): the Pareto-EP posterior q.
    cand_mean: (K, C), cand_var: (K, C): marginals of f_k(x) under q.
    cand_cross: (K, C, P): cov(f_k(x), f_k(x*_i)) under q.

  Returns:
    (K, C) conditional variances (before adding observation noise).
  """
  diag = np.einsum("kii->ki", pareto_cov)                       # (K, P)
  # d_i = f(x*_i) - f(x): marginals under q.
  d_mean = pareto_mean[:, None, :] - cand_mean[:, :, None]      # (K, C, P)
  d_var = diag[:, None, :] + cand_var[:, :, None] - 2.0 * cand_cross
  d_var = np.maximum(d_var, 1e-12)
  cm, cv = np.moveaxis(d_mean, 0, -1), np.moveaxis(d_var, 0, -1)  # (C, P, K)
  new_mean, new_var, _ = nondominance_tilted_moments(cm, cv)
  tau, _ = site_update(cm, cv, new_mean, new_var)
  tau = np.where(np.isfinite(tau), np.maximum(tau, 0.0), 0.0)
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
  return np.clip(var_new, 1e-12, cand_var)
