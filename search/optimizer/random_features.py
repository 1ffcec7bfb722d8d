"""Approximate GP posterior samples through random Fourier features.

PESMO (Hernandez-Lobato et al., ICML 2016, section 3.1, following PES,
Hernandez-Lobato et al., NIPS 2014, appendix A) needs functions drawn from the
GP posterior that can be evaluated anywhere, to find their Pareto sets. With
Bochner's theorem a stationary kernel ``k(r) = amp * E_w[cos(w^T r)]``
(Rahimi & Recht 2007), so ``phi(z) = sqrt(2 amp / M) cos(W z + b)`` with rows
of ``W`` drawn from the spectral density and ``b ~ U[0, 2 pi]`` gives
``phi(z)^T phi(z') ~= k(z, z')``. A posterior sample is then Bayesian linear
regression on ``phi``: ``f(x) = mean + phi(x)^T w`` with
``w ~ N(A^-1 Phi^T y, noise A^-1)``, ``A = Phi^T Phi + noise I``.

Spectral densities (inputs already divided by their lengthscales):
squared exponential -> ``w ~ N(0, I)``; Matern-nu -> multivariate Student-t
with ``2 nu`` degrees of freedom, ``w = g * sqrt(2 nu / u)``, ``g ~ N(0, I)``,
``u ~ chi2(2 nu)`` (nu = 5/2 here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from search.optimizer import errors


def spectral_frequencies(kernel: str, num_features: int, dim: int,
                         rng: np.random.Generator) -> np.ndarray:
  """(M, D) frequencies drawn from the kernel's normalized spectral density."""
  g = rng.normal(size=(num_features, dim))
  if kernel == "rbf":
    return g
  if kernel == "matern52":
    u = rng.chisquare(5.0, size=(num_features, 1))
    return g * np.sqrt(5.0 / u)
  raise errors.invalid_value("kernel", "'matern52' or 'rbf'", kernel)


class RandomFeatures:
  """``phi(x)`` for one hyperparameter sample.

  Args:
    lengthscales: (D,) per encoded column.
    amplitude: kernel amplitude.
    kernel: "matern52" or "rbf".
    num_features: M.
  """

  def __init__(self, lengthscales: np.ndarray, amplitude: float, kernel: str, num_features: int,
               rng: np.random.Generator) -> None:
    lengthscales = np.asarray(lengthscales, dtype=float)
    self.w = spectral_frequencies(kernel, int(num_features), lengthscales.size, rng) / lengthscales
    self.b = rng.uniform(0.0, 2 * np.pi, size=int(num_features))
    self.scale = np.sqrt(2.0 * amplitude / num_features)

  def __call__(self, x_encoded: np.ndarray) -> np.ndarray:
    """(c, D) encoded points -> (c, M) features."""
    out = x_encoded @ self.w.T   # in place: the values of scale * cos(x w^T + b)
    out += self.b
    np.cos(out, out=out)
    out *= self.scale
    return out


def posterior_weights(phi: np.ndarray, y_centered: np.ndarray, noise: float,
                      rng: np.random.Generator) -> np.ndarray:
  """One draw of the (M,) weights of Bayesian linear regression on ``phi``
  (n, M) with targets ``y_centered`` (n,), prior N(0, I) and noise variance
  ``noise``: w ~ N(A^-1 Phi^T y, noise A^-1), A = Phi^T Phi + noise I.

  When n < M the draw uses the equivalent pathwise (Matheron) update
  ``w = w0 + Phi^T (Phi Phi^T + noise I)^-1 (y - Phi w0 - e)``, w0 ~ N(0, I),
  e ~ N(0, noise I), which costs O(n^2 M) instead of O(M^3).
  """
  n, m = phi.shape
  if n < m:
    w0 = rng.normal(size=m)
    e = np.sqrt(noise) * rng.normal(size=n)
    gram = phi @ phi.T + noise * np.eye(n)
    chol = linalg.cholesky(gram + 1e-10 * np.trace(gram) / n * np.eye(n), lower=True,
                           check_finite=False)
    return w0 + phi.T @ linalg.cho_solve((chol, True), y_centered - phi @ w0 - e,
                                         check_finite=False)
  a = phi.T @ phi + noise * np.eye(m)
  chol = linalg.cholesky(a + 1e-10 * np.trace(a) / m * np.eye(m), lower=True,
                         check_finite=False)
  mean = linalg.cho_solve((chol, True), phi.T @ y_centered, check_finite=False)
  eps = rng.normal(size=m)
  return mean + np.sqrt(noise) * linalg.solve_triangular(chol.T, eps, lower=False,
                                                         check_finite=False)


class SampledFunction:
  """A GP posterior sample ``f(x) = mean + phi(x)^T w`` (standardized units)."""

  def __init__(self, sample: Any, num_features: int, rng: np.random.Generator) -> None:
    self.features = RandomFeatures(sample.lengthscales, sample.amplitude, sample.kernel,
                                   num_features, rng)
    x_train, y_centered = sample.training_data()  # every training point, centred
    phi = self.features(x_train)
    self.mean = sample.mean
    self.w = posterior_weights(phi, y_centered, sample.noise, rng)

  def __call__(self, x_encoded: np.ndarray) -> np.ndarray:
    """(c, D) -> (c,) values."""
    return self.mean + self.features(x_encoded) @ self.w


class ProductGrid:
  """Exact values of random-feature functions on many rows at once, when the
  rows' encodings split into two column blocks with few distinct sub-rows
  each (categorical tables, e.g. NAS-Bench-201's 5^6 cells: 125 x 125).

  With theta = z_A W_A^T + b + z_B W_B^T, the angle-addition identity
  cos(a + c) = cos a cos c - sin a sin c turns
  sum_m w_m cos(theta_m) over all (u, v) pairs of distinct sub-rows into two
  (|U_A|, M) x (M, |U_B|) matrix products, so the M cosines are taken on
  |U_A| + |U_B| sub-rows instead of on all N rows; each row's value is then
  read at its (u, v) entry. ``split``: the first encoded column of block B
  (a variable boundary), chosen to minimize |U_A| |U_B|.

  Args:
    z: (N, D) encoded rows.
    groups: (D,) the variable of each encoded column (``DesignSpace.groups``).
  """

  def __init__(self, z: np.ndarray, groups: np.ndarray) -> None:
    z = np.asarray(z, dtype=float)
    groups = np.asarray(groups)
    self.num_rows = z.shape[0]
    best = None
    for split in np.flatnonzero(np.diff(groups) != 0) + 1:
      ua, ia = _unique_rows(z[:, :split])
      ub, ib = _unique_rows(z[:, split:])
      cells = ua.shape[0] * ub.shape[0]
      # Cost in multiply-adds: the two products, plus ~20 per cosine or sine taken.
      cost = 2 * cells + 40 * (ua.shape[0] + ub.shape[0])
      if best is None or cost < best[0]:
        best = (cost, cells, split, ua, ia, ub, ib)
    self.cells = best[1] if best else None
    if best:
      _, _, self.split, self.sub_a, self.index_a, self.sub_b, self.index_b = best

  def worthwhile(self, factor: float = 2.0) -> bool:
    """Whether the grid has at most ``factor`` x N cells (else evaluate rows directly)."""
    return self.cells is not None and self.cells <= factor * self.num_rows

  def values(self, function: SampledFunction) -> np.ndarray:
    """(N,) ``function`` at the rows (as ``function(z)``, to rounding)."""
    feats = function.features
    ws = feats.scale * function.w                                  # (M,)
    a = self.sub_a @ feats.w[:, :self.split].T + feats.b           # (|U_A|, M)
    c = self.sub_b @ feats.w[:, self.split:].T                     # (|U_B|, M)
    grid = (np.cos(a) * ws) @ np.cos(c).T - (np.sin(a) * ws) @ np.sin(c).T
    return function.mean + grid[self.index_a, self.index_b]


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(distinct rows of ``a``, (N,) index of each row among them)."""
  a = np.ascontiguousarray(a)
  keys = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
  _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
  return a[first], inverse.ravel()
