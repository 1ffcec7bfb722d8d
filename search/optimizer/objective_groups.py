"""Objective groups for decoupled evaluation: what is measured together, at what cost.

``ObjectiveGroups``: a partition of the K objectives into G groups measured
together (e.g. ``error`` and ``latency_ms+energy_mj``), each with a fixed
cost or none (then predicted). ``DurationModel``: a group's cost predicted
from its recorded durations, as Spearmint's scale-duration option (J. Snoek,
H. Larochelle, R. P. Adams, "Practical Bayesian Optimization of Machine
Learning Algorithms", NeurIPS 2012, section 3.2: a GP on log duration, the
acquisition divided by exp of its posterior mean). ``merge_group_observations``:
one row per design (NaN where a group is not measured) from per-group
observations, which may cover different designs and different numbers of
them. ``Proposal``: what a decoupled strategy returns
(``search/optimizer/decoupled.py``).

Array shapes: x (n, d) native points; y (n, K) raw objective values, NaN
where not measured; durations (n, G) seconds, NaN where not recorded.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from search.optimizer.base import new_random_points
from search.optimizer.design import DesignSpace
from search.optimizer.gp import ObjectiveGP


@dataclasses.dataclass(frozen=True)
class ObjectiveGroups:
  """Objectives measured together, and what one measurement of each costs.

  ``names``: one per group (``"latency_ms+energy_mj"``); ``members``: the
  objective indices of each group, every objective in exactly one;
  ``costs``: one positive cost per group, or None (predicted from recorded
  durations, ``DurationModel``); ``num_objectives``: K.
  """
  names: Tuple[str, ...]
  members: Tuple[Tuple[int, ...], ...]
  costs: Optional[Tuple[float, ...]]
  num_objectives: int

  def __post_init__(self) -> None:
    flat = [k for m in self.members for k in m]
    twice = sorted({k for k in flat if flat.count(k) > 1})
    missing = [k for k in range(self.num_objectives) if k not in flat]
    unknown = sorted({k for k in flat if not 0 <= k < self.num_objectives})
    if twice or missing or unknown or len(self.names) != len(self.members) or not all(
        self.members):
      raise ValueError(
          "Invalid value for argument `groups`. Expected every objective 0..%d in exactly one "
          "non-empty group, one name per group; objectives in two groups: %s, in none: %s, "
          "unknown: %s. Received groups=%r (names %r)." % (
              self.num_objectives - 1, twice or "none", missing or "none", unknown or "none",
              self.members, self.names))
    if self.costs is not None and (len(self.costs) != len(self.members) or not all(
        np.isfinite(c) and c > 0 for c in self.costs)):
      raise ValueError("Invalid value for argument `costs`. Expected %d positive finite "
                       "numbers (one per group) or None (predicted from recorded "
                       "durations). Received costs=%r." % (len(self.members), self.costs))

  @classmethod
  def parse(cls, spec: str | Sequence[str], objective_names: Sequence[str]) -> "ObjectiveGroups":
    """``"error=30,latency_ms+energy_mj=1"`` (a string or its comma-split
    list): groups of objectives joined by ``+``, each with ``=COST`` (all
    groups) or none (``"error,latency_ms+energy_mj"``: costs None, predicted
    from recorded durations); every objective in exactly one group."""
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    objective_names = list(objective_names)
    names: list[str] = []
    members: list[tuple[int, ...]] = []
    costs: list[float | None] = []
    for entry in entries:
      name, sep, value = str(entry).strip().partition("=")
      parts = [p.strip() for p in name.split("+")]
      unknown = [p for p in parts if p not in objective_names]
      if unknown:
        raise ValueError("Invalid value for argument `groups`. Expected objectives among %s "
                         "joined by '+'; unknown %s. Received groups=%r." % (
                             ", ".join(objective_names), unknown, spec))
      names.append("+".join(parts))
      members.append(tuple(objective_names.index(p) for p in parts))
      costs.append(_parse_cost(value, spec) if sep else None)
    if any(c is None for c in costs) and not all(c is None for c in costs):
      raise ValueError("Invalid value for argument `groups`. Expected a cost (=COST) for every "
                       "group or for none. Received groups=%r." % (spec,))
    for k in range(len(objective_names)):
      holders = [n for n, m in zip(names, members) if k in m]
      if len(holders) != 1:
        raise ValueError("Invalid value for argument `groups`. Expected every objective in "
                         "exactly one group; %r is in %s. Received groups=%r." % (
                             objective_names[k], holders or "none", spec))
    return cls(tuple(names), tuple(members),
               None if costs[0] is None else tuple(costs),  # type: ignore[arg-type]  # all set
               len(objective_names))

  def index(self, group: int | str) -> int:
    """The index of ``group`` (an index or a name); ``ValueError`` when unknown."""
    if isinstance(group, str) and group in self.names:
      return self.names.index(group)
    if not isinstance(group, str) and int(group) == group and 0 <= group < self.num_groups:
      return int(group)
    raise ValueError("Invalid value for argument `group`. Expected one of %s (or 0..%d). "
                     "Received group=%r." % (", ".join(self.names), self.num_groups - 1, group))

  @property
  def num_groups(self) -> int:
    return len(self.members)

  def coupled_cost(self) -> float:
    """What one coupled evaluation (every group) costs: the sum."""
    return float(sum(self.costs))  # type: ignore[arg-type]  # costs given

  def known(self, y: Any) -> np.ndarray:
    """(n, G) bools: group g known at row i. ``ValueError`` for a row where a
    group is known in part (a group is measured as a whole)."""
    finite = np.isfinite(np.asarray(y, dtype=float).reshape(-1, self.num_objectives))
    out = np.zeros((finite.shape[0], self.num_groups), dtype=bool)
    for g, m in enumerate(self.members):
      part = finite[:, list(m)]
      if np.any(part.any(1) & ~part.all(1)):
        row = int(np.argmax(part.any(1) & ~part.all(1)))
        raise ValueError("Invalid value for argument `observed_y`: row %d knows part of group "
                         "%r. Expected its objectives all known or all NaN." % (row,
                                                                               self.names[g]))
      out[:, g] = part.all(1)
    return out


def _parse_cost(value: str, spec: Any) -> float:
  try:
    cost = float(value)
  except ValueError:
    cost = np.nan
  if not (np.isfinite(cost) and cost > 0):
    raise ValueError("Invalid value for argument `groups`. Expected each group's cost (=COST) "
                     "a positive number. Received groups=%r." % (spec,))
  return cost


@dataclasses.dataclass(frozen=True)
class Proposal:
  """The next evaluation: measure group ``group`` at ``point``;
  ``value``: the acquisition per unit cost there (NaN when uniform)."""
  point: np.ndarray
  group: int
  value: float = float("nan")


class DurationModel:
  """Predicted cost of one group at candidate points from its recorded
  durations, as Spearmint's scale-duration option (Snoek et al. 2012,
  section 3.2): a GP on log durations (``ObjectiveGP`` with
  ``log_transform``, slice-sampled hyperparameters, warm-started between
  fits, the chain run on at most ``max_fit_points`` rows); the prediction is
  exp of the posterior mean of log duration averaged over the samples (the
  median of the log-normal predictive). With fewer than 3 recorded durations,
  or all equal, their median (1 with none). Durations must be positive; NaN where not
  recorded.
  """

  def __init__(self, space: DesignSpace, seed: int = 0, num_samples: int = 3,
               max_fit_points: int = 200) -> None:
    self.space = space
    self.gp = ObjectiveGP(space.groups, log_transform=True, num_samples=num_samples,
                          burn_in=20, max_fit_points=max_fit_points, seed=seed)
    self.constant = 1.0
    self.fitted = False

  def fit(self, x: Any, durations: Any) -> "DurationModel":
    """(n, d) native points and (n,) durations (NaN: not recorded)."""
    d = np.asarray(durations, dtype=float).ravel()
    ok = np.isfinite(d)
    if np.any(d[ok] <= 0):
      raise ValueError("Invalid value for argument `durations`. Expected positive seconds "
                       "(NaN where not recorded). Received min %g." % np.min(d[ok]))
    self.fitted = int(ok.sum()) >= 3 and np.ptp(d[ok]) > 0  # else the constant
    if ok.any():
      self.constant = float(np.median(d[ok]))
    if self.fitted:
      self.gp.fit(self.space.encode(np.asarray(x)[ok]), d[ok])
    return self

  def __call__(self, x: Any) -> np.ndarray:
    """(C,) predicted durations at native (C, d) points."""
    x = np.asarray(x, dtype=float).reshape(-1, self.space.dim)
    if not self.fitted:
      return np.full(x.shape[0], self.constant)
    z = self.space.encode(x)
    mean = np.mean([s.predict(z)[0] for s in self.gp.samples], axis=0)
    return np.exp(self.gp.y_shift + self.gp.y_scale * mean)


def merge_group_observations(space: DesignSpace, groups: "ObjectiveGroups", per_group: Any,
                             durations: Any = None
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One row per design from per-group observations.

  Args:
    per_group: G pairs (x_g (n_g, d) native, y_g (n_g, |group g|) raw), or a
      dict {group name: pair}; groups may be measured on different designs
      and different numbers of them.
    durations: optional G arrays (n_g,) of recorded seconds (or a dict).
  Returns:
    (x (n, d), y (n, K) NaN where not measured, d (n, G) NaN where not
    recorded): ``DecoupledStrategy.propose``'s inputs.
  """
  per_group = _per_group(groups, per_group, "per_group")
  durations = _per_group(groups, durations, "durations")
  rows: dict[Any, int] = {}
  xs: list[np.ndarray] = []
  y: list[np.ndarray] = []
  d: list[np.ndarray] = []
  for g, item in enumerate(per_group):
    if item is None:
      continue
    xg = space.validate(np.asarray(item[0], dtype=float).reshape(-1, space.dim), "per_group")
    yg = np.asarray(item[1], dtype=float).reshape(xg.shape[0], len(groups.members[g]))
    dg = (np.full(xg.shape[0], np.nan) if durations[g] is None
          else np.asarray(durations[g], dtype=float).reshape(xg.shape[0]))
    for key, row, values, sec in zip(space.keys(xg), xg, yg, dg):
      if key not in rows:
        rows[key] = len(xs)
        xs.append(row)
        y.append(np.full(groups.num_objectives, np.nan))
        d.append(np.full(groups.num_groups, np.nan))
      y[rows[key]][list(groups.members[g])] = values
      d[rows[key]][g] = sec
  x = np.array(xs).reshape(-1, space.dim)
  return (x, np.array(y).reshape(-1, groups.num_objectives),
          np.array(d).reshape(-1, groups.num_groups))


def _per_group(groups: ObjectiveGroups, value: Any, name: str) -> list[Any]:
  """A list of G entries from None, a sequence of G or a dict by group name."""
  if value is None:
    return [None] * groups.num_groups
  if isinstance(value, dict):
    out = [None] * groups.num_groups
    for key, item in value.items():
      if key not in groups.names:
        raise ValueError("Invalid value for argument `%s`. Expected keys among the group "
                         "names %s. Received %s keys=%r." % (name, list(groups.names), name,
                                                             sorted(value)))
      out[groups.names.index(key)] = item
    return out
  value = list(value)
  if len(value) != groups.num_groups:
    raise ValueError("Invalid value for argument `%s`. Expected %d entries (one per group "
                     "%s) or a dict by group name. Received %d entries." % (
                         name, groups.num_groups, list(groups.names), len(value)))
  return value


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

  def _allowed_groups(self, allowed: Any) -> list[int]:
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
