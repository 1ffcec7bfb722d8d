"""Trust regions for maximizing an acquisition in continuous spaces.

Global maximization of an information-based acquisition such as PESMO in a
box keeps choosing the corners of the box: that is where the GP posterior
variance is largest, and with few observations in d >= 5 the sampled functions
are nearly linear along weakly-learned dimensions, so their Pareto sets (and
the entropy they remove) sit on the boundary. On DTLZ2 (d=6) this spends
every evaluation on corners whose objectives lie outside the reference box.

The remedy used here is the one of TuRBO (Eriksson et al., "Scalable Global
Optimization via Local Bayesian Optimization", NeurIPS 2019) and, for several
objectives, MORBO (Daulton et al., "Multi-Objective Bayesian Optimization over
High-Dimensional Search Spaces", UAI 2022): the acquisition is maximized only
inside boxes centred on the observed non-dominated points. The model and the
acquisition are unchanged; only the set it is maximized over is.

Each box has side ``length * w_i`` along dimension i (in units of the
variable's range), where ``w`` are the GP lengthscales divided by their
geometric mean (TuRBO, section 2), clipped to the domain. ``length`` starts
at ``initial_length`` (0.8), doubles after ``success_tolerance`` (3)
consecutive successes (a new observation that no earlier one dominates), up
to ``max_length`` (1.6, i.e. the whole box for unit weights), halves after
``failure_tolerance`` (max(4, d)) consecutive failures, and is reset to
``initial_length`` when it falls below ``min_length`` (2^-7).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from search.optimizer import errors
from search.optimizer.design import DesignSpace
from search.optimizer.pareto import hypervolume, non_dominated_mask


def hypervolume_contributions(y: np.ndarray, ref_point: Any) -> np.ndarray:
  """(n,) exclusive hypervolume of each row of ``y`` w.r.t. ``ref_point``
  (zero for dominated rows and rows outside the reference box)."""
  y = np.asarray(y, dtype=float)
  total = hypervolume(y, ref_point)
  out = np.zeros(y.shape[0])
  for i in np.flatnonzero(non_dominated_mask(y) & np.all(y < np.asarray(ref_point), axis=1)):
    out[i] = total - hypervolume(np.delete(y, i, axis=0), ref_point)
  return out


def centers(x: np.ndarray, y: np.ndarray, ref_point: Any = None) -> np.ndarray:
  """Trust-region centres: with ``ref_point``, the observed points that
  contribute hypervolume (MORBO's choice); otherwise, or when none does,
  the observed non-dominated points."""
  if ref_point is not None:
    contributing = hypervolume_contributions(y, ref_point) > 0
    if np.any(contributing):
      return x[contributing]
  return x[non_dominated_mask(y)]


class TrustRegion:
  """Adaptive trust-region length over a continuous ``DesignSpace``.

  Args:
    space: an all-continuous ``DesignSpace``.
    initial_length, min_length, max_length, success_tolerance,
    failure_tolerance: see the module doc (``failure_tolerance`` None means
      max(4, d)).
  """

  def __init__(self, space: DesignSpace, initial_length: float = 0.8, min_length: float = 2.0 ** -7,
               max_length: float = 1.6, success_tolerance: int = 3,
               failure_tolerance: int | None = None) -> None:
    if not space.all_continuous:
      raise errors.invalid_value("space", "an all-continuous space for a trust region", space)
    if not 0 < min_length <= initial_length <= max_length:
      raise ValueError("Invalid trust-region lengths. Expected 0 < min_length <= "
                       "initial_length <= max_length. Received %r, %r, %r."
                       % (min_length, initial_length, max_length))
    self.space = space
    self.initial_length, self.min_length, self.max_length = (initial_length, min_length,
                                                             max_length)
    self.success_tolerance = int(success_tolerance)
    self.failure_tolerance = int(failure_tolerance or max(4, space.dim))
    self.length = initial_length
    self.successes = self.failures = 0
    self.restarts = 0
    self._seen = None  # observations already accounted for

  def update(self, y: np.ndarray, ref_point: Any = None) -> None:
    """Accounts for observations appended to ``y`` (n, K) since the last call.
    A new row is a success when it increases the hypervolume w.r.t.
    ``ref_point`` or, without one, when no earlier row dominates or equals it."""
    y = np.asarray(y, dtype=float)
    if self._seen is None:
      self._seen = y.shape[0]
      return
    for i in range(self._seen, y.shape[0]):
      earlier = y[:i]
      if ref_point is not None:
        dominated = hypervolume(y[:i + 1], ref_point) <= hypervolume(earlier, ref_point)
      else:
        dominated = np.any(np.all(earlier <= y[i], axis=1))
      if dominated:
        self.successes, self.failures = 0, self.failures + 1
      else:
        self.successes, self.failures = self.successes + 1, 0
      if self.successes >= self.success_tolerance:
        self.length, self.successes = min(2.0 * self.length, self.max_length), 0
      elif self.failures >= self.failure_tolerance:
        self.length, self.failures = self.length / 2.0, 0
      if self.length < self.min_length:
        self.length = self.initial_length
        self.restarts += 1
    self._seen = y.shape[0]

  def boxes(self, centers: np.ndarray,
            lengthscales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper), each (C, d) native bounds of the box around each centre.

    ``lengthscales``: (d,) GP lengthscales in units of each variable's range
    (None: a cube)."""
    centers = np.asarray(centers, dtype=float).reshape(-1, self.space.dim)
    span = self.space.upper - self.space.lower
    if lengthscales is None:
      weights = np.ones(self.space.dim)
    else:
      ls = np.asarray(lengthscales, dtype=float)
      weights = ls / math.exp(np.mean(np.log(ls)))
    half = 0.5 * self.length * weights * span
    lower = np.maximum(centers - half, self.space.lower)
    upper = np.minimum(centers + half, self.space.upper)
    return lower, upper

  def candidates(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, count: int,
                 lengthscales: np.ndarray | None = None,
                 ref_point: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` uniform points spread over the boxes of the ``centers`` of
    (x, y), plus the box bounds for each point (``(points, lower, upper)``,
    each (count, d))."""
    mid = centers(x, y, ref_point)
    lower, upper = self.boxes(mid, lengthscales)
    which = rng.integers(mid.shape[0], size=int(count))
    u = rng.random((int(count), self.space.dim))
    points = lower[which] + u * (upper[which] - lower[which])
    return points, lower[which], upper[which]

  def contains(self, points: np.ndarray, x: np.ndarray, y: np.ndarray,
               lengthscales: np.ndarray | None = None, ref_point: Any = None) -> np.ndarray:
    """(P,) bool: points inside the box of at least one of the ``centers``."""
    lower, upper = self.boxes(centers(x, y, ref_point), lengthscales)
    points = np.asarray(points, dtype=float).reshape(-1, self.space.dim)
    inside = ((points[:, None, :] >= lower[None] - 1e-12) &
              (points[:, None, :] <= upper[None] + 1e-12))
    return np.any(np.all(inside, axis=-1), axis=1)

  def state(self) -> dict:
    return {"length": self.length, "successes": self.successes, "failures": self.failures,
            "restarts": self.restarts}
