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

Screening (``target``, default ``"screen"``). PESMO's terms measure
information about the Pareto SET, wherever it is learnt; a network counts
for its user (and for the benchmarks' score) only once every objective of
it is known. Divided by cost alone (``target="pareto_set"``, the paper's
PESMO_dec with Spearmint's cost division), a cheap group wins every time: on
the NAS-Bench-201 x Pi 5 table at cost ratio 30 the best hardware term
(0.4-0.8 nats) and the best error term (0.3-0.7 nats) are alike, so a
training would need 30 times the information of a hardware measurement, and
345 of 345 proposals measured hardware (BENCHMARKS.md, "Costed table
benchmark"); weighting each term by the probability that the design is in
a sampled Pareto set did not change that (77 of 77). With ``"screen"`` the
costly group decides WHERE: the design with the largest value per cost of
the costliest group (its term computed by PESMO's EP, which sees every
group's observations), and at that design the cheapest group not yet known
or pending is measured first: a hardware measurement gates each training,
and a design whose hardware shows it dominated loses its training value
before the training is paid for. A design whose cheap group is pending
waits for it. Where a proposal may measure the costly group only
(``allowed``, a search's free training slot), it trains the best screened
design (cheap groups known), or the best design when none is screened.

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

from typing import Any, Callable, List

import numpy as np

from search.optimizer import base, errors
from search.optimizer.base import Timer, exhaustive
from search.optimizer.design import DesignSpace
from search.optimizer.gp import ObjectiveGP
from search.optimizer.hvkg import DecoupledHVKGStrategy
from search.optimizer.objective_groups import (  # noqa: F401 (re-exported)
    DecoupledStrategy, DurationModel, ObjectiveGroups, Proposal, merge_group_observations)
from search.optimizer.pareto import non_dominated_mask
from search.optimizer.pesmo import EXHAUSTIVE_LIMIT, PESMOAcquisition, PESMOStrategy


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


# What the decoupled acquisition values (``DecoupledPESMOStrategy``'s
# ``target`` option; module doc, "Completion").
TARGETS = ("screen", "pareto_set")


class DecoupledPESMOStrategy(DecoupledStrategy):
  """PESMO with decoupled evaluations (module doc). Options: PESMO's
  (``pesmo.PESMOStrategy``: GP, Pareto-sampling and maximization options,
  ``reference_point`` and ``pareto_in_reference``), except the trust
  regions and ``objective_bounds`` (not supported here: refused)."""

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return tuple(n for n in PESMOStrategy.option_names()
                 if n not in ("trust_region", "trust_region_length", "trust_region_weights",
                              "objective_bounds")) + ("target",)

  def __init__(self, space: DesignSpace, groups: ObjectiveGroups, seed: int = 0,
               **options: Any) -> None:
    super().__init__(space, groups, seed, **options)
    if options.get("target", TARGETS[0]) not in TARGETS:
      raise errors.invalid_option("target", "one of %s" % ", ".join(TARGETS),
                                  options["target"])
    self.pesmo = PESMOStrategy(space, groups.num_objectives, seed, trust_region=False,
                               **{k: v for k, v in options.items() if k != "target"})
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

  def _screen(self, values: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
              known: np.ndarray, pending: List[np.ndarray], excluded: List[set],
              anchors: np.ndarray, maximize: Callable[..., tuple[np.ndarray, int, float]]
              ) -> tuple[np.ndarray, int, float]:
    """``target="screen"`` (module doc, "Screening"): the design whose
    costliest group has the largest value per cost, and at it the cheapest
    group not yet known or pending."""
    costs = self.group_costs(x[:1] if x.shape[0] else np.zeros((1, self.space.dim)))[0]
    lead = int(np.argmax(costs))
    # a design whose cheaper groups are pending waits for them (the gate)
    gated = set(excluded[lead])
    for g in range(self.groups.num_groups):
      if g != lead and pending[g].shape[0]:
        gated |= set(self.space.keys(pending[g]))
    if lead not in self._allowed:
      # only cheap groups may be measured now: designs where one of them is left
      gated |= {k for k in (self.space.keys(x) if x.shape[0] else [])
                if all(k in excluded[g] for g in self._allowed)}
    only = [gated if g == lead else set() for g in range(self.groups.num_groups)]
    # Only the costly group may be measured now (a search's free training
    # slot): the screened designs (every cheaper group known) when there is
    # one, else any design (a search measures its trained export anyway).
    cheap = [g for g in range(self.groups.num_groups) if g != lead]
    keys = self.space.keys(x) if x.shape[0] else []
    screened = {k for k, row in zip(keys, known) if row[cheap].all() and k not in gated}
    restrict = self._allowed == [lead] and bool(screened)

    def lead_values(c: np.ndarray) -> np.ndarray:
      out = np.full((c.shape[0], self.groups.num_groups), -np.inf)
      out[:, lead] = self._unmasked(values, c)[:, lead]
      if restrict:
        out[[k not in screened for k in self.space.keys(c)], lead] = -np.inf
      return out
    point, _, value = maximize(lead_values, anchors, only)
    key = self.space.keys(point[None])[0]
    order = np.argsort(self.group_costs(point[None])[0], kind="stable")
    group = next(int(g) for g in order if key not in excluded[g] and g in self._allowed)
    return point, group, value

  def _unmasked(self, values: Callable[[np.ndarray], np.ndarray], c: np.ndarray) -> np.ndarray:
    """``values(c)`` with every group allowed (the lead group's value
    still picks the design when only a cheap group may be measured)."""
    allowed, self._allowed = self._allowed, list(range(self.groups.num_groups))
    try:
      return values(c)
    finally:
      self._allowed = allowed

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

      def maximize(fn: Callable[[np.ndarray], np.ndarray], anchors: np.ndarray,
                   skip: List[set]) -> tuple[np.ndarray, int, float]:
        return maximize_groups(
            fn, self.space, self.rng, anchors, skip,
            pool_size=self.options.get("acq_pool", 500), refine=self.options.get("refine", 3),
            exhaustive_limit=self.options.get("exhaustive_limit", EXHAUSTIVE_LIMIT))

      full = known.all(1)
      anchors = [x[full][non_dominated_mask(y[full])] if full.any() else x[:0]]
      anchors += list(acq.pareto_sets)
      if self.options.get("target", TARGETS[0]) == "screen":
        # designs with a cheap group known and the costly one not are candidates
        # too: all of them up to half the pool, else a random half-pool of them
        # (each scored point costs the EP's candidate factors: at 2,000 such
        # designs scoring all of them tripled the proposal's time)
        partial = x[~full]
        limit = max(self.options.get("acq_pool", 500) // 2, 1)
        if partial.shape[0] > limit:
          partial = partial[self.rng.choice(partial.shape[0], limit, replace=False)]
        anchors.append(partial)
        point, group, value = self._screen(values, x, known, pending, excluded,
                                           np.vstack(anchors), maximize)
      else:
        point, group, value = maximize(values, np.vstack(anchors), excluded)
    self.timings = {"fit_seconds": fit_timer.seconds, "acquisition_seconds": acq_timer.seconds}
    return Proposal(point, group, value)


# Decoupled strategies by name: ``DecoupledStrategy`` subclasses (the base
# class lives in ``objective_groups`` so that strategies in other modules,
# e.g. ``hvkg``, can register here without an import cycle).
DECOUPLED_STRATEGIES = {"pesmo": DecoupledPESMOStrategy, "qhvkg": DecoupledHVKGStrategy}


def make_decoupled_strategy(name: str, space: DesignSpace, groups: ObjectiveGroups, seed: int = 0,
                            **options: Any) -> DecoupledStrategy:
  """A decoupled strategy by ``name`` (one of ``DECOUPLED_STRATEGIES``)."""
  if name not in DECOUPLED_STRATEGIES:
    raise ValueError("Invalid value for argument `name`. Expected one of %s. Received "
                     "name=%r" % (", ".join(sorted(DECOUPLED_STRATEGIES)), name))
  return DECOUPLED_STRATEGIES[name](space, groups, seed, **options)


def check_decoupled_available(name: str) -> None:
  """Raises an ``ImportError`` naming what to install when decoupled strategy
  ``name`` needs an optional package that does not import (``qhvkg``:
  BoTorch); cheap enough to call before any work."""
  check = getattr(DECOUPLED_STRATEGIES.get(name), "check_available", None)
  if check is not None:
    check()
