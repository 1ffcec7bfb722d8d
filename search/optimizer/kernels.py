"""Stationary kernels and a jittered Cholesky, shared by ``gp.py`` and ``lowrank.py``.

Kernels of squared scaled distances r2 = |x - x'|^2 / l^2 (inputs already
divided by their lengthscales): Matern-5/2,
amp (1 + sqrt(5) r + 5/3 r^2) exp(-sqrt(5) r), and the squared exponential,
amp exp(-r2 / 2) (Rasmussen and Williams 2006, eq. 4.17 and 4.9).
``robust_cholesky`` adds jitter 1e-8..1e-2 x a scale until the factor
exists, and raises a ``ValueError`` saying the inputs are probably
degenerate when even 1e-2 fails.
"""

from typing import Any

import numpy as np
from scipy import linalg


def kernel_from_sqdist(r2: np.ndarray, amplitude: float, kind: str) -> np.ndarray:
  """Stationary kernel value from squared scaled distances ``r2`` (any shape)."""
  # In place, in the order of the textbook expressions
  # amp * (1 + s5r + 5/3 r2) * exp(-s5r) and amp * exp(-r2 / 2), so the values
  # are the same to the bit with 3 (n, m) temporaries instead of 9: these
  # arrays are 2,000 x 500 in a decoupled proposal, and memory-bound.
  if kind == "matern52":
    r2 = np.asarray(r2, dtype=float)
    s5r = np.maximum(r2, 0.0, out=np.empty_like(r2))
    np.sqrt(s5r, out=s5r)
    s5r *= np.sqrt(5.0)
    out = s5r + 1.0
    out += 5.0 / 3.0 * r2
    out *= amplitude
    np.negative(s5r, out=s5r)
    np.exp(s5r, out=s5r)
    out *= s5r
    return out
  if kind == "rbf":
    r2 = np.asarray(r2, dtype=float)
    out = np.multiply(r2, -0.5, out=np.empty_like(r2))
    np.exp(out, out=out)
    out *= amplitude
    return out
  raise ValueError("Invalid value for argument `kernel`. Expected 'matern52' or 'rbf'. "
                   "Received kernel=%r" % (kind,))


def scaled_sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Squared Euclidean distances between rows of (n, D) ``a`` and (m, D) ``b``
  that are already divided by their lengthscales; (n, m)."""
  d = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :]
  d -= (2.0 * a) @ b.T   # in place: the same values as (... - 2.0 * a @ b.T)
  return np.maximum(d, 0.0, out=d)


def robust_cholesky(k: np.ndarray, scale: float) -> np.ndarray:
  """Lower Cholesky factor of ``k``, adding jitter 1e-8..1e-2 * ``scale``."""
  for jitter in (0.0, 1e-8, 1e-6, 1e-4, 1e-2):
    try:
      return linalg.cholesky(k + jitter * scale * np.eye(k.shape[0]), lower=True,
                             check_finite=False)
    except linalg.LinAlgError:
      continue
  raise ValueError("GP covariance is not positive definite even with jitter 1e-2 x "
                   "amplitude; the inputs are probably degenerate (n=%d)." % k.shape[0])


def predict(sample: Any, x_encoded: np.ndarray,
            full_cov: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Posterior of the latent f of a conditioned GP sample (exact
  ``gp.GPSample`` or low-rank ``lowrank.LowRankGPSample``: both give
  ``cross`` K(train, x), ``project`` v = L^-1 K(train, x), ``mean``,
  ``alpha``, ``lengthscales``, ``amplitude``, ``kernel``) at (c, D) points:
  mean (c,), variance (c,) or covariance (c, c) when ``full_cov``."""
  ks = sample.cross(x_encoded)
  mean = sample.mean + ks.T @ sample.alpha
  v = sample.project(ks)
  if full_cov:
    zs = x_encoded / sample.lengthscales
    kss = kernel_from_sqdist(scaled_sqdist(zs, zs), sample.amplitude, sample.kernel)
    return mean, kss - v.T @ v
  return mean, np.maximum(sample.amplitude - np.sum(v * v, 0), 1e-12)
