"""Pareto sets of sampled objectives: PESMO's step 2.

References:
  D. Hernandez-Lobato, J. M. Hernandez-Lobato, A. Shah, R. P. Adams.
  "Predictive Entropy Search for Multi-objective Bayesian Optimization",
  ICML 2016, section 3.1: one approximate posterior sample of every objective
  (random features, ``search/optimizer/random_features.py``) per GP
  hyperparameter sample, and the Pareto set of the sampled functions.

``sample_functions`` draws the samples; ``sample_pareto_set`` finds their
Pareto set on a finite candidate set (exactly), with pymoo's NSGA-II
(continuous spaces) or a pool plus Hamming-neighbourhood local search
(categorical spaces). Array shapes are in each function's docstring. Moved
out of ``pesmo.py`` unchanged (issue 33), which re-exports these names.
"""

from __future__ import annotations

import weakref
from typing import Any, List, Sequence

import numpy as np
from scipy import sparse

from search.optimizer import feasibility
from search.optimizer.base import exhaustive
from search.optimizer.design import DesignSpace
from search.optimizer.pareto import non_dominated_mask
from search.optimizer.random_features import ProductGrid, SampledFunction

# Candidate sets up to this size give each sampled function's exact Pareto
# set (every row evaluated; product-structured tables through
# ``random_features.ProductGrid``: ~0.05 s per sample at the 15,625-row table
# against ~0.5 s row by row).
PARETO_EXHAUSTIVE_LIMIT = 20000
_GRIDS: weakref.WeakKeyDictionary[DesignSpace, ProductGrid] = weakref.WeakKeyDictionary()


def sample_functions(gps: Sequence[Any], sample_index: int, num_features: int,
                     rng: np.random.Generator) -> List[SampledFunction]:
  """One random-feature posterior sample per objective (hyperparameter sample
  ``sample_index`` of each GP)."""
  return [SampledFunction(gp.samples[sample_index % len(gp.samples)], num_features, rng)
          for gp in gps]


def _evaluate(functions: Sequence[SampledFunction], space: DesignSpace, x: np.ndarray
              ) -> np.ndarray:
  """(C, K) values of the sampled functions at native (C, d) points. One-hot
  encodings go through a sparse matrix: the feature projection then costs
  O(d M) per point instead of O(D M)."""
  z = space.encode(x)
  if not space.all_continuous:
    z = sparse.csr_matrix(z)
  return np.stack([f(z) for f in functions], axis=1)


def _evaluate_candidates(functions: Sequence[SampledFunction], space: DesignSpace
                         ) -> np.ndarray:
  """(N, K) values of the sampled functions on every row of ``space.candidates``:
  through the space's ``ProductGrid`` (built once per space) when its rows
  have few distinct halves, else row by row."""
  grid = _GRIDS.get(space)
  if grid is None:
    grid = _GRIDS[space] = ProductGrid(
        space.encode(space.candidates), space.groups)  # type: ignore[arg-type]  # exhaustive: set
  if grid.worthwhile():
    return np.stack([grid.values(f) for f in functions], axis=1)
  rows: np.ndarray = space.candidates  # type: ignore[assignment]  # exhaustive: set
  return np.vstack([_evaluate(functions, space, rows[i:i + 4096])
                    for i in range(0, rows.shape[0], 4096)])


def _within(x: np.ndarray, y: np.ndarray, bounds: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray]:
  """The rows whose sampled values meet ``bounds`` (all rows when None)."""
  if bounds is None:
    return x, y
  keep = feasibility.feasible_mask(y, bounds)
  return x[keep], y[keep]


def _local_search(functions: Sequence[SampledFunction], space: DesignSpace,
                  front_x: np.ndarray, front_y: np.ndarray, rng: np.random.Generator,
                  rounds: int, points: int, bounds: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Add the best (feasible) one-value changes of front points to the front,
  ``rounds`` times (with ``bounds``: only changes whose sampled values meet them)."""
  for _ in range(rounds):
    chosen = rng.choice(front_x.shape[0], size=min(points, front_x.shape[0]), replace=False)
    neigh = np.vstack([space.neighbours(front_x[i]) for i in chosen])
    if neigh.shape[0] == 0:
      break
    neigh, neigh_y = _within(neigh, _evaluate(functions, space, neigh), bounds)
    xs = np.vstack([front_x, neigh])
    ys = np.vstack([front_y, neigh_y])
    keep = non_dominated_mask(ys)
    front_x, front_y = xs[keep], ys[keep]
  return front_x, front_y


def _nsga2_front(functions: Sequence[SampledFunction], space: DesignSpace, seeds: np.ndarray,
                 rng: np.random.Generator, pop_size: int = 40, generations: int = 15,
                 bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Pareto set of the sampled functions on a box: pymoo's NSGA-II started
  from the non-dominated points of a 1,000-point uniform pool and ``seeds``
  (so few generations suffice; pymoo's per-generation overhead dominates the
  cost of evaluating random-feature functions). With ``bounds`` (modelled
  units), NSGA-II's constraint handling gets ``f_k - b_k <= 0`` and only
  points meeting them are returned."""
  bounded = [] if bounds is None else list(np.flatnonzero(np.isfinite(bounds)))
  from pymoo.algorithms.moo.nsga2 import NSGA2  # pylint: disable=import-outside-toplevel
  from pymoo.core.problem import Problem  # pylint: disable=import-outside-toplevel
  from pymoo.optimize import minimize  # pylint: disable=import-outside-toplevel

  class _Sampled(Problem):
    def __init__(self) -> None:
      super().__init__(n_var=space.dim, n_obj=len(functions), n_ieq_constr=len(bounded),
                       xl=space.lower, xu=space.upper)

    def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
      out["F"] = _evaluate(functions, space, x)
      if bounded:
        out["G"] = out["F"][:, bounded] - np.asarray(bounds)[bounded]

  pool = np.vstack([seeds, space.sample(rng, 1000, min_count=1)])
  pool, pool_y = _within(pool, _evaluate(functions, space, pool), bounds)
  front = pool[non_dominated_mask(pool_y)] if pool.shape[0] else pool
  front = front[rng.permutation(front.shape[0])[:pop_size]]
  init = np.vstack([front, space.sample(rng, pop_size, min_count=1)])
  init = init[np.arange(pop_size) % init.shape[0]]
  res = minimize(_Sampled(), NSGA2(pop_size=pop_size, sampling=init),
                 ("n_gen", generations), seed=int(rng.integers(2 ** 31)), verbose=False)
  found = np.zeros((0, space.dim)) if res.X is None else np.atleast_2d(res.X)
  x = np.vstack([found, front])  # res.X is None when no point met the bounds
  if space.restricted:  # NSGA-II searched the box: keep its feasible points
    x = x[space.feasible(x)]
  x, y = _within(x, _evaluate(functions, space, x), bounds)
  if x.shape[0] == 0:
    return x, y
  keep = non_dominated_mask(y)
  return x[keep], y[keep]


def sample_pareto_set(functions: Sequence[SampledFunction], space: DesignSpace,
                      observed_x: np.ndarray, rng: np.random.Generator, pool_size: int = 500,
                      max_pareto: int = 30, local_rounds: int = 2,
                      local_points: int = 4,
                      exhaustive_limit: int = PARETO_EXHAUSTIVE_LIMIT,
                      bounds: np.ndarray | None = None) -> np.ndarray:
  """Native (P, d) Pareto set of the sampled ``functions`` over the feasible
  set, P <= ``max_pareto``. ``bounds``: optional (K,) upper bounds in the GPs'
  modelled units (+inf: none; ``feasibility.model_bounds``): the Pareto set
  of the draw restricted to the points where the sampled functions meet
  them (PESMOC's feasible Pareto set; empty when no point of the draw does).

  A candidate set of at most ``exhaustive_limit`` rows is evaluated whole
  (the exact Pareto set of the draw); otherwise a pool plus local search
  (categorical) or NSGA-II (continuous). Evaluated points (``observed_x``)
  are candidates (the sampled front often passes near them) but are removed
  from the returned set.
  """
  observed_x = np.asarray(observed_x, dtype=float).reshape(-1, space.dim)
  if space.restricted and observed_x.shape[0]:
    observed_feasible = observed_x[space.feasible(observed_x)]
  else:
    observed_feasible = observed_x
  if exhaustive(space, exhaustive_limit):
    pool: Any = space.candidates  # the rows, then a list or array of them in the branches
    pool, pool_y = _within(pool, _evaluate_candidates(functions, space), bounds)
    front_x = pool[non_dominated_mask(pool_y)] if pool.shape[0] else pool
  elif space.all_continuous:
    seeds = observed_feasible
    if seeds.shape[0]:
      seeds = seeds[non_dominated_mask(_evaluate(functions, space, seeds))]
    front_x, front_y = _nsga2_front(functions, space, seeds, rng, bounds=bounds)
  else:
    pool = [space.sample(rng, pool_size, min_count=1), observed_feasible]
    if observed_feasible.shape[0]:
      pool.append(space.mutate(observed_feasible, rng, pool_size // 2))
    pool = np.vstack(pool)
    pool, pool_y = _within(pool, _evaluate(functions, space, pool), bounds)
    if pool.shape[0]:
      keep = non_dominated_mask(pool_y)
      front_x, front_y = _local_search(functions, space, pool[keep], pool_y[keep], rng,
                                       local_rounds, local_points, bounds)
    else:
      front_x = pool
  seen = set(space.keys(observed_x))
  unique: set[Any] = set()
  out: Any = []  # the rows, then their (P, d) array
  for key, row in zip(space.keys(front_x), front_x):
    if key not in seen and key not in unique:
      unique.add(key)
      out.append(row)
  out = np.array(out).reshape(-1, space.dim)
  if out.shape[0] > max_pareto:
    out = out[rng.choice(out.shape[0], size=max_pareto, replace=False)]
  return out
