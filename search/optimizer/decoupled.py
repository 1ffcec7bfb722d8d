"""Decoupled evaluation: each evaluation measures one GROUP of objectives.

References:
  D. Hernandez-Lobato, J. M. Hernandez-Lobato, A. Shah, R. P. Adams.
  "Predictive Entropy Search for Multi-objective Bayesian Optimization",
  ICML 2016: the acquisition is a sum over objectives of per-objective
  entropy reductions (eq. 10, ``pesmo.PESMOAcquisition.per_objective``), so
  each objective (or group of objectives) can be chosen separately; the
  paper's PESMO_dec evaluates the objective with the largest term.
  J. Snoek, H. Larochelle, R. P. Adams. "Practical Bayesian Optimization of
  Machine Learning Algorithms", NeurIPS 2012, section 3.2 (expected
  improvement per second: the acquisition divided by the predicted duration,
  a GP on log durations); Spearmint's PESM chooser does the same per task
  group (its scale-duration option).

Why. In hardware-aware NAS a network's inference time and energy do not
depend on its trained weights: they can be measured on an untrained export in
seconds, while its error needs a training. A coupled strategy pays a training
for every hardware measurement; a decoupled one decides, for each next
evaluation, whether to measure a candidate's hardware or to train it.

Model (what changes against coupled PESMO, ``pesmo.py``):
  * objectives come in GROUPS measured together (``ObjectiveGroups``, e.g.
    ``error`` and ``latency_ms+energy_mj``), each with a cost;
  * observations are (n, K) with NaN where an objective is not known (a
    group is known or unknown as a whole); each objective's GP is fitted on
    the rows where that objective is known (pending evaluations of a group
    are fantasized at the GP mean for that group's objectives only);
  * the acquisition of group g at x is the sum of its objectives' terms,
    alpha_g(x) = sum_{k in g} alpha_k(x), divided by the group's cost c_g(x)
    (given, or predicted from recorded durations: exp of a GP's posterior
    mean of log duration, ``DurationModel``), and the proposal is the
    (x, g) with the largest alpha_g(x) / c_g(x) among the pairs where g is
    neither known nor pending at x;
  * the sampled Pareto sets and EP are PESMO's: the EP joint holds the
    points where any objective is known or pending (``_SampleState``'s
    ``known`` mask), and a sampled Pareto set excludes only the points whose
    every objective is known or pending (a point with its time known and its
    error unknown may be Pareto optimal in a sample, and it is the point to
    train next).

Array shapes: ``observed_x`` (n, d) native, one row per design;
``observed_y`` (n, K) raw with NaN; ``pending`` G arrays (m_g, d) or a dict
by group name; ``durations`` (n, G) seconds with NaN. Returned:
``Proposal(point (d,), group int, value float)``. Per-group observations
(different designs, different counts) become these arrays through
``objective_groups.merge_group_observations``.

Scale. Cheap measurements give the hardware GPs thousands of rows while the
error GP has a hundred. ``gp.ObjectiveGP`` then (above ``max_fit_points``)
samples hyperparameters on a subset, keeps them until the data grow by
``refresh_growth`` and meanwhile extends each sample's Cholesky factor by
the new rows (``gp.extend_cholesky``; rows reach each GP in the order they
were first seen, ``_rows``), conditions only ``large_n_samples`` distinct
samples, and above ``exact_limit`` uses the low-rank DTC posterior
(``lowrank.py``). One proposal at 2,000 hardware and 100 error observations
on the 20-variable cell space: BENCHMARKS.md, "Decoupled PESMO"
(``python -m search.benchmarks.decoupled_timing``).

Numerical notes: the per-group values are PESMO's (clipped at 0); a group
whose value is 0 everywhere ties, and the cheapest group wins ties only
through the division. Until every objective has 2 observations the proposal
is uniform (a random point for the group with the fewest observations, on a
row where the other groups are known when there is one).
"""

from __future__ import annotations

import abc
from typing import Any, Callable, List

import numpy as np

from search.optimizer import base
from search.optimizer.base import Timer, exhaustive, new_random_points
from search.optimizer.design import DesignSpace
from search.optimizer.gp import ObjectiveGP
from search.optimizer.objective_groups import (  # noqa: F401 (re-exported)
    DurationModel, ObjectiveGroups, Proposal, _per_group, merge_group_observations)
from search.optimizer.pareto import non_dominated_mask
from search.optimizer.pesmo import EXHAUSTIVE_LIMIT, PESMOAcquisition, PESMOStrategy


class DecoupledStrategy(abc.ABC):
  """Base of decoupled strategies: ``propose(observed_x, observed_y,
  pending, durations)`` returns a ``Proposal`` (module doc: shapes). A
  proposal's (point, group) is never known or pending, and the point is
  feasible. ``timings`` holds the last call's ``fit_seconds`` and
  ``acquisition_seconds``."""

  def __init__(self, space: DesignSpace, groups: ObjectiveGroups, seed: int = 0,
               **options: Any) -> None:
    if not isinstance(groups, ObjectiveGroups):
      raise ValueError("Invalid value for argument `groups`. Expected an ObjectiveGroups. "
                       "Received %r." % (groups,))
    unknown = set(options) - set(self.option_names())
    if unknown:
      raise ValueError("Unknown options %s for strategy %s. Expected some of %s."
                       % (sorted(unknown), type(self).__name__, sorted(self.option_names())))
    self.space, self.groups, self.seed, self.options = space, groups, seed, options
    self.rng = np.random.default_rng(seed)
    self.timings = {"fit_seconds": 0.0, "acquisition_seconds": 0.0}
    self._allowed = list(range(groups.num_groups))
    self._durations = [DurationModel(space, seed * 1000 + 500 + g)
                       for g in range(groups.num_groups)]

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return ()

  def propose(self, observed_x: Any, observed_y: Any, pending: Any = None,
              durations: Any = None, allowed: Any = None) -> Proposal:
    """The next (point, group) to measure.

    Args:
      observed_x: (n, d) native points, one row per design.
      observed_y: (n, K) raw objective values, NaN where not measured (a
        group known as a whole or not at all); ``merge_group_observations``
        builds both from per-group observations.
      pending: None, G arrays (m_g, d) of points where group g is being
        measured, or a dict {group name: (m_g, d)}.
      durations: (n, G) recorded seconds, NaN where not recorded; required
        when the groups have no fixed costs (``DurationModel``).
      allowed: None (every group) or the groups (indices or names) the
        proposal may measure: a search whose measurement slot is busy asks
        for a training, and the other way round (``search.decoupled``).
    """
    x, y, known, pending = self._check(observed_x, observed_y, pending)
    self._allowed = self._allowed_groups(allowed)
    if self.groups.costs is None:
      d = np.asarray([] if durations is None else durations, dtype=float)
      if d.shape != (x.shape[0], self.groups.num_groups):
        raise ValueError("Invalid value for argument `durations`. Expected (%d, %d) recorded "
                         "seconds (NaN where not recorded): the groups have no fixed costs. "
                         "Received shape %s." % (x.shape[0], self.groups.num_groups,
                                                 None if durations is None else d.shape))
    self.timings = {"fit_seconds": 0.0, "acquisition_seconds": 0.0}
    excluded = self.excluded(x, known, pending)
    if self.groups.costs is None:
      for g, model in enumerate(self._durations):
        model.fit(x, d[:, g])
    counts = [int(known[:, g].sum()) for g in range(self.groups.num_groups)]
    if min(counts) < 2:
      return self._uniform(x, known, excluded,
                           min(self._allowed, key=lambda g: (counts[g], g)))
    out = self._propose(x, y, known, pending, excluded)
    if self.space.keys(out.point)[0] in excluded[out.group] or not self.space.feasible(
        out.point)[0]:
      return self._uniform(x, known, excluded, out.group)
    return out

  def _allowed_groups(self, allowed: Any) -> List[int]:
    if allowed is None:
      return list(range(self.groups.num_groups))
    out = sorted({self.groups.index(g) for g in allowed})
    if not out:
      raise ValueError("Invalid value for argument `allowed`. Expected None or at least one "
                       "group among %s. Received allowed=%r." % (list(self.groups.names),
                                                                 allowed))
    return out

  def mask_disallowed(self, values: np.ndarray) -> np.ndarray:
    """(C, G) acquisition values with the groups not ``allowed`` in the
    last ``propose`` set to -inf (never chosen)."""
    out = np.array(values, dtype=float)
    for g in range(self.groups.num_groups):
      if g not in self._allowed:
        out[:, g] = -np.inf
    return out

  def group_costs(self, x: Any) -> np.ndarray:
    """(C, G) cost of each group at native (C, d) points."""
    x = np.asarray(x, dtype=float).reshape(-1, self.space.dim)
    if self.groups.costs is not None:
      return np.tile(np.asarray(self.groups.costs, dtype=float), (x.shape[0], 1))
    return np.stack([m(x) for m in self._durations], axis=1)

  def excluded(self, x: np.ndarray, known: np.ndarray,
               pending: List[np.ndarray]) -> List[set]:
    """Per group, the keys of the points where it is known or pending."""
    keys = self.space.keys(x) if x.shape[0] else []
    out = []
    for g in range(self.groups.num_groups):
      done = {k for k, ok in zip(keys, known[:, g]) if ok}
      if pending[g].shape[0]:
        done |= set(self.space.keys(pending[g]))
      out.append(done)
    return out

  def _uniform(self, x: np.ndarray, known: np.ndarray, excluded: List[set],
               group: int) -> Proposal:
    """A uniform point for ``group``: a row where the other groups are known
    (completing it) when one is left, else any point not excluded."""
    keys = self.space.keys(x) if x.shape[0] else []
    others = np.delete(known, group, axis=1).all(1) if known.shape[1] > 1 else np.ones(
        known.shape[0], bool)
    rows = [i for i, k in enumerate(keys) if others[i] and k not in excluded[group]]  # type: ignore[index]  # a (n,) mask
    if rows:
      return Proposal(x[rows[int(self.rng.integers(len(rows)))]].copy(), group)
    return Proposal(new_random_points(self.space, self.rng, excluded[group], 1)[0], group)

  def _check(self, observed_x: Any, observed_y: Any, pending: Any
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, List[np.ndarray]]:
    x = np.zeros((0, self.space.dim)) if observed_x is None or np.size(observed_x) == 0 \
        else self.space.validate(np.asarray(observed_x, dtype=float), "observed_x")
    y = np.asarray(observed_y, dtype=float).reshape(x.shape[0], -1) if x.shape[0] else \
        np.zeros((0, self.groups.num_objectives))
    if y.shape[1] != self.groups.num_objectives or np.any(np.isinf(y)):
      raise ValueError("Invalid value for argument `observed_y`. Expected shape (%d, %d), "
                       "NaN where not measured. Received shape %s." % (
                           x.shape[0], self.groups.num_objectives, np.shape(observed_y)))
    if x.shape[0] and len(set(self.space.keys(x))) != x.shape[0]:
      raise ValueError("Invalid value for argument `observed_x`. Expected one row per design "
                       "(merge the groups measured at one design into one row).")
    known = self.groups.known(y)
    pending = _per_group(self.groups, pending, "pending")
    pending = [np.zeros((0, self.space.dim)) if p is None or np.size(p) == 0
               else self.space.validate(np.asarray(p, dtype=float), "pending") for p in pending]
    return x, y, known, pending

  @abc.abstractmethod
  def _propose(self, x: np.ndarray, y: np.ndarray, known: np.ndarray,
               pending: List[np.ndarray], excluded: List[set]) -> Proposal:
    """The proposal once every group has at least 2 observations."""


def _group_pool(space: DesignSpace, rng: np.random.Generator, anchors: Any, everywhere: set,
                pool_size: int, exhaustive_limit: int) -> np.ndarray:
  """(C, d) points to score: every remaining candidate of a small candidate
  set, else uniform points, the feasible ``anchors`` and their mutations;
  none whose key is in ``everywhere`` (known or pending for every group)."""
  if exhaustive(space, exhaustive_limit):
    return base.remaining_candidates(space, everywhere)
  anchors = np.asarray(anchors, dtype=float).reshape(-1, space.dim)
  if anchors.shape[0] and space.restricted:
    anchors = anchors[space.feasible(anchors)]
  parts = [space.sample(rng, pool_size, min_count=1), anchors]
  if anchors.shape[0]:
    parts += [space.mutate(anchors, rng, pool_size // 2),
              space.mutate(anchors, rng, pool_size // 4, scale=0.02)]
  return base._filter(space, np.vstack(parts), everywhere)  # pylint: disable=protected-access


def maximize_groups(values: Callable[[np.ndarray], np.ndarray], space: DesignSpace,
                    rng: np.random.Generator, anchors: Any, excluded: List[set],
                    pool_size: int = 500, refine: int = 3,
                    exhaustive_limit: int = EXHAUSTIVE_LIMIT) -> tuple[np.ndarray, int, float]:
  """(point, group, value) maximizing ``values`` ((C, d) native -> (C, G))
  over the (x, g) pairs with x's key not in ``excluded[g]``.

  As ``base.maximize_acquisition``: a candidate set of at most
  ``exhaustive_limit`` rows is scored whole; otherwise ``pool_size``
  uniform points, the ``anchors`` and their mutations are scored once, and
  the ``refine`` best (x, g) pairs of the pool are hill-climbed
  (categorical) or Powell-refined (continuous) on their group's values.
  Values are cached by design key: a group's value at x needs every
  objective's moments there (PESMO's candidate factors couple the
  objectives), so all groups come from one evaluation."""
  cache: dict[bytes, np.ndarray] = {}

  def cached(x: np.ndarray) -> np.ndarray:
    keys = space.keys(x)
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
      for i, row in zip(todo, values(x[todo])):
        cache[keys[i]] = row
    return np.array([cache[k] for k in keys])

  everywhere = set.intersection(*[set(e) for e in excluded]) if excluded else set()
  pool = _group_pool(space, rng, anchors, everywhere, pool_size, exhaustive_limit)
  if pool.shape[0] == 0:
    raise base.InfeasibleSpaceError("No point is left to evaluate for any group in %r."
                                    % (space,))
  scores = cached(pool)
  keys = space.keys(pool)
  for g, done in enumerate(excluded):
    scores[:, g] = np.where([k in done for k in keys], -np.inf, scores[:, g])
  flat = np.argsort(-scores, axis=None)[:1 if exhaustive(space, exhaustive_limit) else refine]
  best: tuple[np.ndarray | None, int, float] = (None, -1, -np.inf)
  for i, g in zip(*np.unravel_index(flat, scores.shape)):
    point, value = pool[i], scores[i, g]
    if not np.isfinite(value):
      continue
    if not exhaustive(space, exhaustive_limit):
      point, value = base._refine(lambda z, g=g: cached(z)[:, g], space, point, value,  # type: ignore[misc]  # g bound by default  # pylint: disable=protected-access
                                  excluded[g])
    if value > best[2]:
      best = (np.asarray(point, dtype=float), int(g), float(value))
  if best[0] is None:
    raise base.InfeasibleSpaceError("No point is left to evaluate for any group in %r."
                                    % (space,))
  return best  # type: ignore[return-value]  # best[0] set (checked above)


class DecoupledPESMOStrategy(DecoupledStrategy):
  """PESMO with decoupled evaluations (module doc). Options: PESMO's
  (``pesmo.PESMOStrategy``: GP, Pareto-sampling and maximization options,
  ``reference_point`` and ``pareto_in_reference``), except the trust
  regions and ``objective_bounds`` (not supported here: refused)."""

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return tuple(n for n in PESMOStrategy.option_names()
                 if n not in ("trust_region", "trust_region_length", "trust_region_weights",
                              "objective_bounds"))

  def __init__(self, space: DesignSpace, groups: ObjectiveGroups, seed: int = 0,
               **options: Any) -> None:
    super().__init__(space, groups, seed, **options)
    self.pesmo = PESMOStrategy(space, groups.num_objectives, seed, trust_region=False,
                               **options)
    self.pesmo.rng = self.rng
    self.last_acquisition: PESMOAcquisition | None = None
    self._order: dict[int, dict[bytes, int]] = {}

  def fit(self, x: np.ndarray, y: np.ndarray, known: np.ndarray,
          pending: List[np.ndarray]) -> list[ObjectiveGP]:
    """Each objective's GP on its known rows, then conditioned on the
    group's pending points at its posterior mean (kriging believer). Rows
    reach each GP in the order the objective became known (``_rows``), so
    that a GP with many observations extends its Cholesky factors instead of
    refactoring them (``gp.ObjectiveGP``'s ``refresh_growth``)."""
    z = self.space.encode(x)
    keys = self.space.keys(x)
    gps: list[ObjectiveGP] = []
    self.train_rows: list[np.ndarray] = []
    for k, (gp, known_k) in enumerate(zip(self.pesmo.gps, self._objective_known(known).T)):
      rows = self._rows(k, keys, known_k)
      self.train_rows.append(rows)
      gps.append(gp.fit(z[rows], y[rows, k]))
    for g, members in enumerate(self.groups.members):
      if pending[g].shape[0]:
        zp = self.space.encode(pending[g])
        for k in members:
          gps[k] = gps[k].refit_with(zp, np.mean([s.predict(zp)[0] for s in gps[k].samples],
                                                 axis=0))
    return gps

  def _rows(self, k: int, keys: List[bytes], known_k: np.ndarray) -> np.ndarray:
    """Indices of the rows where objective k is known: those seen by earlier
    calls first, in the order they were first seen, then the new ones."""
    order = self._order.setdefault(k, {})
    where = {key: i for i, (key, ok) in enumerate(zip(keys, known_k)) if ok}
    for key in where:
      if key not in order:
        order[key] = len(order)
    return np.array([where[key] for key in sorted(where, key=order.__getitem__)], dtype=int)

  def _objective_known(self, known: np.ndarray) -> np.ndarray:
    """(n, K) bools from the (n, G) group mask."""
    out = np.zeros((known.shape[0], self.groups.num_objectives), dtype=bool)
    for g, members in enumerate(self.groups.members):
      out[:, list(members)] = known[:, g:g + 1]
    return out

  def _joint_points(self, x: np.ndarray, known: np.ndarray, pending: List[np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The EP's observed points (any objective known or pending, one row per
    design) and their (K, N) known-or-pending mask."""
    rows = {k: i for i, k in enumerate(self.space.keys(x))}
    points = [r for r in x]
    mask = [r for r in self._objective_known(known)]
    for g, members in enumerate(self.groups.members):
      for row, key in zip(pending[g], self.space.keys(pending[g]) if pending[g].shape[0] else []):
        if key not in rows:
          rows[key] = len(points)
          points.append(row)
          mask.append(np.zeros(self.groups.num_objectives, dtype=bool))
        mask[rows[key]][list(members)] = True
    return np.array(points).reshape(-1, self.space.dim), np.array(mask).T

  def _propose(self, x: np.ndarray, y: np.ndarray, known: np.ndarray,
               pending: List[np.ndarray], excluded: List[set]) -> Proposal:
    with Timer() as fit_timer:
      gps = self.fit(x, y, known, pending)
    with Timer() as acq_timer:
      points, mask = self._joint_points(x, known, pending)
      complete = points[mask.all(0)]
      acq = PESMOAcquisition(gps, self.space, points, self.rng, known=mask,
                             train_index=self.train_rows,
                             pareto_sets=self.pesmo._pareto_sets(gps, complete))  # pylint: disable=protected-access
      self.last_acquisition = acq

      def values(c: np.ndarray) -> np.ndarray:
        per = acq.per_objective(c)
        sums = np.stack([per[:, list(m)].sum(1) for m in self.groups.members], axis=1)
        return self.mask_disallowed(sums / self.group_costs(c))

      full = known.all(1)
      anchors = [x[full][non_dominated_mask(y[full])] if full.any() else x[:0]]
      anchors += list(acq.pareto_sets)
      point, group, value = maximize_groups(
          values, self.space, self.rng, np.vstack(anchors), excluded,
          pool_size=self.options.get("acq_pool", 500), refine=self.options.get("refine", 3),
          exhaustive_limit=self.options.get("exhaustive_limit", EXHAUSTIVE_LIMIT))
    self.timings = {"fit_seconds": fit_timer.seconds, "acquisition_seconds": acq_timer.seconds}
    return Proposal(point, group, value)


# Other decoupled strategies (e.g. a BoTorch one in ``search.benchmarks``)
# register here: a ``DecoupledStrategy`` subclass by name.
DECOUPLED_STRATEGIES = {"pesmo": DecoupledPESMOStrategy}


def make_decoupled_strategy(name: str, space: DesignSpace, groups: ObjectiveGroups, seed: int = 0,
                            **options: Any) -> DecoupledStrategy:
  """A decoupled strategy by ``name`` (one of ``DECOUPLED_STRATEGIES``)."""
  if name not in DECOUPLED_STRATEGIES:
    raise ValueError("Invalid value for argument `name`. Expected one of %s. Received "
                     "name=%r" % (", ".join(sorted(DECOUPLED_STRATEGIES)), name))
  return DECOUPLED_STRATEGIES[name](space, groups, seed, **options)
