"""Proposal strategies behind one interface: PESMO, ParEGO (GPyOpt), random.

``Strategy.propose(observed_x, observed_y, pending_x)`` returns the next point
in the space's native coordinates. Objectives are MINIMIZED; rows of failed
trials (NaN) must not be passed. A proposal is never equal to (the same
design as) an observed or pending point, and in a restricted space (a
constraint or a candidate set, ``search.optimizer.design``) it is always
feasible: every strategy searches the feasible set only, and ``propose``
replaces anything else by a uniform feasible point. Keep one instance per search: GP hyperparameter chains are
warm-started from the previous call. ``timings`` holds the last call's
``fit_seconds`` and ``acquisition_seconds``.

Pending points (trials running on other workers): PESMO conditions its GPs on
fantasized values (each pending point observed at the GP posterior mean, the
"kriging believer"), which shrinks the predictive variance, hence the
information gain, around them; ParEGO adds them to GPyOpt's data at the
mean scalarized value (constant liar, CL-mean), which collapses expected
improvement around them, and passes them as ``pending_X`` so GPyOpt's
de-duplication skips them; all strategies exclude them.
"""

from __future__ import annotations

import abc
import time
from typing import Any, Callable

import numpy as np
from scipy import optimize

from search.optimizer import errors
from search.optimizer.design import DesignSpace, InfeasibleSpaceError
from search.optimizer.pareto import non_dominated_mask


def _as_points(space: DesignSpace, x: Any, name: str) -> np.ndarray:
  if x is None:
    return np.zeros((0, space.dim))
  x = np.asarray(x, dtype=float)
  if x.size == 0:
    return np.zeros((0, space.dim))
  return space.validate(x, name)


class Strategy(abc.ABC):
  """Base class; see module doc for the contract of ``propose``."""

  def __init__(self, space: DesignSpace, num_objectives: int, seed: int = 0,
               **options: Any) -> None:
    if not isinstance(space, DesignSpace):
      raise errors.invalid_value("space", "a DesignSpace", space)
    if int(num_objectives) != num_objectives or num_objectives < 1:
      raise errors.invalid_value("num_objectives", "a positive integer", num_objectives)
    self.space, self.num_objectives = space, int(num_objectives)
    self.rng = np.random.default_rng(seed)
    self.seed = seed
    self.timings = {"fit_seconds": 0.0, "acquisition_seconds": 0.0}
    unknown = set(options) - set(self.option_names())
    if unknown:
      raise ValueError("Unknown options %s for strategy %s. Expected some of %s."
                       % (sorted(unknown), type(self).__name__, sorted(self.option_names())))
    self.options = options

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return ()

  def propose(self, observed_x: Any, observed_y: Any, pending_x: Any = None) -> np.ndarray:
    x = _as_points(self.space, observed_x, "observed_x")
    y = np.asarray(observed_y, dtype=float).reshape(x.shape[0], -1) if x.shape[0] else \
        np.zeros((0, self.num_objectives))
    if y.shape[1] != self.num_objectives or not np.all(np.isfinite(y)):
      raise errors.invalid_value("observed_y",
                                 "finite values of shape (%d, %d) (drop failed trials)"
                                 % (x.shape[0], self.num_objectives),
                                 shown="shape %s." % (np.shape(observed_y),))
    pending = _as_points(self.space, pending_x, "pending_x")
    self.timings = {"fit_seconds": 0.0, "acquisition_seconds": 0.0}
    point = np.asarray(self._propose(x, y, pending), dtype=float).reshape(self.space.dim)
    excluded = set(self.space.keys(np.vstack([x, pending])))
    if self.space.keys(point)[0] in excluded or not self.space.feasible(point)[0]:
      point = new_random_points(self.space, self.rng, excluded, 1)[0]
    return point

  @abc.abstractmethod
  def _propose(self, x: np.ndarray, y: np.ndarray, pending: np.ndarray) -> np.ndarray:
    """(d,) point; may return an excluded point, ``propose`` then replaces it."""


def new_random_points(space: DesignSpace, rng: np.random.Generator, excluded: set[bytes],
                      count: int, tries: int = 100) -> np.ndarray:
  """``count`` uniform feasible points whose keys are not in ``excluded`` (a
  set); raises ``InfeasibleSpaceError`` (a ``ValueError``) when none is left."""
  if space.candidates is not None:
    left = remaining_candidates(space, excluded)
    if left.shape[0] < count:
      raise InfeasibleSpaceError("Could not find %d unevaluated points in %r: only %d "
                                 "candidates left, the space is exhausted."
                                 % (count, space, left.shape[0]))
    return left[rng.choice(left.shape[0], size=count, replace=False)]
  out, keys = [], set(excluded)
  for _ in range(tries):
    batch = space.sample(rng, 4 * count, min_count=1)
    for row, key in zip(batch, space.keys(batch)):
      if key not in keys:
        keys.add(key)
        out.append(row)
        if len(out) == count:
          return np.array(out)
  raise InfeasibleSpaceError("Could not find %d unevaluated points in %r: the space looks "
                             "exhausted." % (count, space))


def remaining_candidates(space: DesignSpace, excluded: set[bytes]) -> np.ndarray:
  """Rows of ``space.candidates`` whose design keys are not in ``excluded``."""
  assert space.candidates is not None
  keys = space.keys(space.candidates)
  return space.candidates[np.array([k not in excluded for k in keys], dtype=bool)]


def exhaustive(space: DesignSpace, limit: int) -> bool:
  """Whether the candidate set is small enough to score every row."""
  return space.candidates is not None and space.candidates.shape[0] <= limit


def argmax_over(acq: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                chunk: int = 2048) -> tuple[int, float]:
  """(index, value) of the largest ``acq`` over the rows of ``x``, in chunks."""
  values = np.concatenate([acq(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
  best = int(np.argmax(values))
  return best, values[best]


def maximize_acquisition(acq: Callable[[np.ndarray], np.ndarray], space: DesignSpace,
                         rng: np.random.Generator, anchors: np.ndarray, excluded: set[bytes],
                         pool_size: int = 1000, refine: int = 3,
                         exhaustive_limit: int = 20000) -> np.ndarray:
  """Argmax of ``acq`` ((C, d) native -> (C,)) over feasible points not in
  ``excluded``.

  A candidate set of at most ``exhaustive_limit`` rows is scored whole (in
  chunks). Otherwise candidates are ``pool_size`` uniform feasible points plus
  mutations of ``anchors`` (e.g. observed non-dominated points and sampled
  Pareto points); the ``refine`` best are refined: categorical spaces by hill
  climbing over all feasible one-value neighbours, continuous ones by bounded
  Powell search (kept only when feasible).
  """
  if exhaustive(space, exhaustive_limit):
    left = remaining_candidates(space, excluded)
    if left.shape[0] == 0:
      return new_random_points(space, rng, excluded, 1)[0]  # raises: exhausted
    return left[argmax_over(acq, left)[0]]
  anchors = np.asarray(anchors, dtype=float).reshape(-1, space.dim)
  parts = [space.sample(rng, pool_size, min_count=1)]
  if anchors.shape[0]:
    anchors = anchors[space.feasible(anchors)] if space.restricted else anchors
  if anchors.shape[0]:
    parts += [anchors, space.mutate(anchors, rng, pool_size // 2),
              space.mutate(anchors, rng, pool_size // 4, scale=0.02)]
  pool = _filter(space, np.vstack(parts), excluded)
  values = acq(pool)
  order = np.argsort(-values)[:refine]
  best_x, best_v = pool[order[0]], values[order[0]]
  for i in order:
    x, v = _refine(acq, space, pool[i], values[i], excluded)
    if v > best_v:
      best_x, best_v = x, v
  return best_x


def _filter(space: DesignSpace, x: np.ndarray, excluded: set[bytes]) -> np.ndarray:
  keys = space.keys(x)
  seen, rows = set(excluded), []
  for row, key in zip(x, keys):
    if key not in seen:
      seen.add(key)
      rows.append(row)
  if not rows:
    return new_random_points(space, np.random.default_rng(len(excluded)), excluded, 1)
  return np.array(rows)


def _refine(acq: Callable[[np.ndarray], np.ndarray], space: DesignSpace, x: np.ndarray,
            value: float, excluded: set[bytes], climbs: int = 2) -> tuple[np.ndarray, float]:
  if space.all_continuous:
    res = optimize.minimize(lambda p: -acq(np.clip(p, space.lower, space.upper)[None])[0],
                            x, method="Powell", bounds=list(zip(space.lower, space.upper)),
                            options={"maxfev": 80, "xtol": 1e-3})
    cand = np.clip(res.x, space.lower, space.upper)
    if -res.fun > value and space.keys(cand)[0] not in excluded and space.feasible(cand)[0]:
      return cand, -res.fun
    return x, value
  for _ in range(climbs):
    neigh: Any = space.neighbours(x)
    if not space.all_categorical:
      neigh = np.vstack([neigh, space.mutate(x, np.random.default_rng(0), 32, scale=0.02)])
    neigh = [r for r, k in zip(neigh, space.keys(neigh)) if k not in excluded]
    if not neigh:
      break
    neigh = np.array(neigh)
    vals = acq(neigh)
    if vals.max() <= value:
      break
    x, value = neigh[np.argmax(vals)], vals.max()
  return x, value


def observed_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Native points of the non-dominated observations (anchors for mutation)."""
  if x.shape[0] == 0:
    return x
  return x[non_dominated_mask(y)]


class Timer:
  """``with Timer() as t: ...; t.seconds``."""

  def __enter__(self) -> Timer:
    self.start = time.perf_counter()
    return self

  def __exit__(self, *exc: object) -> None:
    self.seconds = time.perf_counter() - self.start
