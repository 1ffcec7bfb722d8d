"""Low-rank GP posteriors for objectives observed thousands of times.

References:
  M. Seeger, C. K. I. Williams, N. D. Lawrence. "Fast Forward Selection to
  Speed Up Sparse Gaussian Process Regression", AISTATS 2003 (the
  deterministic training conditional, DTC, also called projected process).
  J. Quinonero-Candela, C. E. Rasmussen. "A Unifying View of Sparse
  Approximate Gaussian Process Regression", JMLR 6, 2005, section 5 (DTC:
  eq. 20 mean, eq. 21 variance).
  C. K. I. Williams, C. E. Rasmussen. "Gaussian Processes for Machine
  Learning", MIT Press 2006, section 8.3.4 (projected process).
  H. Harbrecht, M. Peters, R. Schneider. "On the low-rank approximation by
  the pivoted Cholesky decomposition", Applied Numerical Mathematics 62, 2012
  (greedy choice of the inducing rows).

Why. Decoupled evaluation (``search/optimizer/decoupled.py``) measures time
and energy on untrained exports in seconds, so their GPs see thousands of
points. An exact GP then costs O(n^3) per hyperparameter sample to condition
and O(n^2) per candidate to predict (n = 2,000, 10 samples, 2 objectives,
~1,200 candidates per proposal: ~1e11 flops, a minute on one core).

The approximation. With m inducing inputs Z (a subset of the training inputs
X, chosen by ``pivoted_cholesky``), K_mm = k(Z, Z), K_mn = k(Z, X),
noise variance s2, prior mean mu, and

  L_m = chol(K_mm),  Phi = L_m^-1 K_mn (m, n),  Phi Phi^T = U diag(lam) U^T,

DTC's posterior of the latent f is (Quinonero-Candela and Rasmussen eq. 20-21,
rewritten with the whitened Phi):

  mean(x)     = mu + k_m(x)^T alpha,  alpha = L_m^-T U diag(1/(lam + s2)) U^T Phi (y - mu)
  cov(x, x')  = k(x, x') - v(x)^T v(x'),  v(x) = W k_m(x),
  W           = diag(sqrt(lam / (lam + s2))) U^T L_m^-1              (m, m)

(K_mm^-1 - (K_mm + K_mn K_nm / s2)^-1 = L_m^-T U diag(lam/(lam+s2)) U^T L_m^-1.)
The prior variance k(x, x) is kept exactly (unlike SoR, DTC is not
over-confident far from Z). When Z = X the formulas are the exact GP's
(``tests/search/optimizer/lowrank_test.py`` checks this against
``gp.GPSample`` to 1e-8). Costs: O(n m^2) to condition, O(m^2) per candidate.

``LowRankGPSample`` has the interface PESMO uses of ``gp.GPSample``:
``cross(x)`` (prior covariances with the m basis points), ``project(ks)``
(the whitened v), ``alpha``, ``predict``, ``training_data``; the random-
feature posterior samples (``random_features.SampledFunction``) still see
every training point.

Numerical failure modes: K_mm is factored with the jitter retries of
``gp.robust_cholesky``; eigenvalues of Phi Phi^T below 0 (rounding) are
clipped to 0; pivoted Cholesky stops early when the largest residual
variance falls below ``tol`` x the prior variance (the remaining rows are
then within rounding of the span of Z, and m is smaller than asked).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import linalg

from search.optimizer import kernels
from search.optimizer.kernels import kernel_from_sqdist, robust_cholesky, scaled_sqdist


def pivoted_cholesky(z_scaled: np.ndarray, amplitude: float, kernel: str, max_rank: int,
                     tol: float = 1e-6) -> np.ndarray:
  """Indices (r,) of the rows of ``z_scaled`` (n, D) (inputs divided by their
  lengthscales) chosen by greedy pivoted Cholesky of the kernel matrix
  (Harbrecht et al. 2012, algorithm 1): each step takes the row of largest
  residual variance. r <= ``max_rank``; fewer when the largest residual falls
  below ``tol`` x ``amplitude``. O(n r^2) time, O(n r) memory."""
  n = z_scaled.shape[0]
  rank = min(int(max_rank), n)
  diag = np.full(n, float(amplitude))
  factor = np.zeros((rank, n))
  chosen = []
  for j in range(rank):
    pivot = int(np.argmax(diag))
    if diag[pivot] <= tol * amplitude:
      break
    chosen.append(pivot)
    col = kernel_from_sqdist(scaled_sqdist(z_scaled[pivot:pivot + 1], z_scaled), amplitude,
                             kernel)[0]
    row = (col - factor[:j, pivot] @ factor[:j]) / np.sqrt(diag[pivot])
    factor[j] = row
    diag = np.maximum(diag - row * row, 0.0)
    diag[chosen] = 0.0
  return np.array(chosen, dtype=int)


@dataclasses.dataclass
class LowRankGPSample:
  """One hyperparameter sample's DTC posterior (module doc), standardized units.

  ``z``: (m, D) inducing inputs divided by lengthscales; ``whiten``: (m, m)
  W; ``alpha``: (m,); ``x_train`` (n, D) encoded and ``y_centered`` (n,)
  (y - mean): the training data, kept for random-feature samples.
  """
  theta: np.ndarray
  lengthscales: np.ndarray
  amplitude: float
  noise: float
  mean: float
  z: np.ndarray
  whiten: np.ndarray
  alpha: np.ndarray
  kernel: str
  x_train: np.ndarray
  y_centered: np.ndarray

  def cross(self, x_encoded: np.ndarray) -> np.ndarray:
    """(m, c) prior covariance between the inducing and (c, D) encoded points."""
    return kernel_from_sqdist(scaled_sqdist(self.z, x_encoded / self.lengthscales),
                              self.amplitude, self.kernel)

  def project(self, ks: np.ndarray) -> np.ndarray:
    """(m, c) v with posterior cov = k - v^T v, from ``cross`` values (m, c)."""
    return self.whiten @ ks

  def training_data(self) -> tuple[np.ndarray, np.ndarray]:
    """(x_train (n, D) encoded, y_centered (n,))."""
    return self.x_train, self.y_centered

  def predict(self, x_encoded: np.ndarray, full_cov: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of f at (c, D) points: mean (c,), variance (c,) or
    covariance (c, c) when ``full_cov`` (``kernels.predict``, as ``GPSample.predict``)."""
    return kernels.predict(self, x_encoded, full_cov)


def condition_low_rank(theta: np.ndarray, lengthscales: np.ndarray, amplitude: float,
                       noise: float, mean: float, x: np.ndarray, y: np.ndarray, kernel: str,
                       inducing: int, tol: float = 1e-6) -> LowRankGPSample:
  """DTC posterior (module doc) of one hyperparameter sample on (n, D)
  encoded inputs ``x`` and (n,) standardized targets ``y``, with at most
  ``inducing`` inducing rows chosen by ``pivoted_cholesky``.

  Args:
    theta: the sample's packed hyperparameters (kept for warm starts).
    lengthscales: (D,) per encoded column; amplitude, noise (variances), mean.

  Raises ``ValueError`` naming the argument for a non-positive ``inducing``
  or non-finite / mismatched inputs, and (``gp.robust_cholesky``) when K_mm
  stays singular with jitter; ``ObjectiveGP`` then drops that sample (or
  re-raises when asked to be strict).
  """
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  if int(inducing) != inducing or inducing < 1:
    raise ValueError("Invalid value for argument `inducing`. Expected a positive integer. "
                     "Received inducing=%r" % (inducing,))
  if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] < 1 or not (
      np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError("Invalid low-rank GP inputs. Expected finite x of shape (n, D) and y of "
                     "shape (n,), n >= 1. Received %s and %s." % (x.shape, y.shape))
  zs = x / lengthscales
  index = pivoted_cholesky(zs, amplitude, kernel, inducing, tol)
  zm = zs[index]
  l_m = robust_cholesky(kernel_from_sqdist(scaled_sqdist(zm, zm), amplitude, kernel), amplitude)
  k_mn = kernel_from_sqdist(scaled_sqdist(zm, zs), amplitude, kernel)
  phi = linalg.solve_triangular(l_m, k_mn, lower=True, check_finite=False)   # (m, n)
  lam, u = linalg.eigh(phi @ phi.T)
  lam = np.maximum(lam, 0.0)
  resid = y - mean
  coef = u @ ((u.T @ (phi @ resid)) / (lam + noise))
  alpha = linalg.solve_triangular(l_m.T, coef, lower=False, check_finite=False)
  l_inv = linalg.solve_triangular(l_m, np.eye(l_m.shape[0]), lower=True, check_finite=False)
  whiten = (np.sqrt(lam / (lam + noise))[:, None] * u.T) @ l_inv
  return LowRankGPSample(np.array(theta, dtype=float).copy(), lengthscales, float(amplitude),
                         float(noise), float(mean), zm, whiten, alpha, kernel, x, resid)
