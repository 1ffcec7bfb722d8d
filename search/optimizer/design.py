"""Design spaces: continuous and categorical variables in one description.

Native coordinates are what the caller stores and evaluates: a continuous
variable is a float in its bounds, a categorical one an integer in
``[0, cardinality)``. For the TEA-DNN cell (``cell_space``) the native point is
``Genotype.to_vector()``: 20 integers (block inputs with 2..6 values, ops with
8).

What the GP sees (``DesignSpace.encode``): a continuous variable scaled to
[0, 1]; a categorical variable as a one-hot block. Why one-hot: the
categories are unordered (op 3 is not "between" ops 2 and 4), and with a
stationary kernel on one-hot blocks, two points that differ in variable ``v``
are ``sqrt(2)`` apart in that block whatever the two values are. Giving every
variable its own lengthscale (``groups``: the variable each encoded column
belongs to) turns the kernel into a weighted Hamming kernel: the GP can learn
that ops of block 3 matter more than the second input of block 0. Random
features (``search/random_features.py``) apply unchanged to this embedding.

Restricted spaces (budgets, tables). A space may carry a feasibility
constraint and/or a finite candidate set; both return a NEW space (the
original is unchanged) and compose::

  space = cell_space().with_constraint(
      lambda x: params_of(x) <= 3e6, "at most 3M parameters")   # fn: (n, d) -> (n,) bool
  space = space.with_candidates(rows)   # (N, d) native rows; only these may be proposed

``fn`` receives native points as a float (n, d) array and must return a
boolean array of shape (n,) (anything else is a ``ValueError`` naming the
constraint). Every point a strategy proposes is feasible: ``sample`` draws
uniformly from the feasible set (rejection sampling; uniform rows of the
candidate set, without replacement), ``mutate`` and ``neighbours`` return only
feasible rows (so possibly fewer than asked), ``feasible(x)`` is the (n,) mask
and ``candidate_index(x)`` maps rows to indices into ``space.candidates``
(-1 outside). When rejection sampling finds no feasible point within its draw
budget, ``InfeasibleSpaceError`` (a ``ValueError``) is raised naming the
constraint's description; an application can check at once, before any
training, with ``space.has_feasible_point(rng, tries)`` (bool) or
``space.check_feasible(rng, tries)`` (raises that error).

Canonical points. ``with_canonical(fn)`` declares that several native points
are one design (the two branches of a cell block swapped, see
``tea_keras.space.Genotype.canonical``): ``fn`` maps (n, d) native points to
one representative each. ``keys`` (de-duplication) and ``canonical`` (what
the strategies give the GP) then use the representative; ``cell_space()``
sets it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from search.optimizer import errors

CONTINUOUS = "continuous"
CATEGORICAL = "categorical"
# Rejection sampling: uniform draws per requested feasible point, and a floor.
_DRAWS_PER_POINT = 200
_MIN_DRAWS = 20000


class InfeasibleSpaceError(ValueError):
  """No feasible point could be found (or none is left) in a restricted
  ``DesignSpace``; the message names the constraint."""


@dataclasses.dataclass(frozen=True)
class Variable:
  """One design variable.

  ``kind`` is ``"continuous"`` (``bounds=(low, high)``) or ``"categorical"``
  (``cardinality`` values, native values 0..cardinality-1).
  """
  name: str
  kind: str
  bounds: Tuple[float, float] = (0.0, 1.0)
  cardinality: int = 0

  def __post_init__(self) -> None:
    if self.kind == CONTINUOUS:
      low, high = (float(b) for b in self.bounds)
      if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError("Invalid bounds for continuous variable %r. Expected finite "
                         "low < high. Received %r." % (self.name, self.bounds))
      object.__setattr__(self, "bounds", (low, high))
    elif self.kind == CATEGORICAL:
      if int(self.cardinality) != self.cardinality or self.cardinality < 2:
        raise ValueError("Invalid cardinality for categorical variable %r. Expected an "
                         "integer >= 2. Received %r." % (self.name, self.cardinality))
    else:
      raise ValueError("Invalid kind for variable %r. Expected 'continuous' or "
                       "'categorical'. Received %r." % (self.name, self.kind))

  @property
  def width(self) -> int:
    """Number of encoded columns."""
    return int(self.cardinality) if self.kind == CATEGORICAL else 1


class DesignSpace:
  """An ordered list of ``Variable``; points are rows of native coordinates."""

  def __init__(self, variables: Sequence[Variable]) -> None:
    variables = tuple(variables)
    if not variables or not all(isinstance(v, Variable) for v in variables):
      raise errors.invalid_value("variables", "a non-empty sequence of Variable", variables)
    self.variables = variables
    self.dim = len(variables)
    self.categorical = np.array([v.kind == CATEGORICAL for v in variables])
    self.cardinalities = np.array([v.cardinality if v.kind == CATEGORICAL else 0
                                   for v in variables])
    self.lower = np.array([v.bounds[0] if v.kind == CONTINUOUS else 0.0 for v in variables])
    self.upper = np.array([v.bounds[1] if v.kind == CONTINUOUS else v.cardinality - 1.0
                           for v in variables])
    self.groups = np.concatenate([np.full(v.width, i) for i, v in enumerate(variables)])
    self.encoded_dim = int(self.groups.size)
    offsets = np.cumsum([0] + [v.width for v in variables])
    self._offsets = offsets[:-1]
    self.constraint: Optional[Callable[[np.ndarray], np.ndarray]] = None
    self.constraint_description: Optional[str] = None
    self.candidates: Optional[np.ndarray] = None  # (N, d) feasible rows, or None
    self._candidate_lookup: Dict[bytes, int] = {}  # key -> index into candidates
    self._canonical_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None

  @property
  def all_categorical(self) -> bool:
    return bool(np.all(self.categorical))

  @property
  def all_continuous(self) -> bool:
    return not bool(np.any(self.categorical))

  @property
  def restricted(self) -> bool:
    """Whether a constraint or a candidate set limits the proposable points."""
    return self.constraint is not None or self.candidates is not None

  def __repr__(self) -> str:
    extra = ""
    if self.constraint is not None:
      extra += ", constraint %r" % self.constraint_description
    if self.candidates is not None:
      extra += ", %d candidates" % self.candidates.shape[0]
    return "DesignSpace(%d variables, %d categorical%s)" % (
        self.dim, int(self.categorical.sum()), extra)

  # -- restrictions (see the module doc) ------------------------------------
  def with_constraint(self, fn: Callable[[np.ndarray], np.ndarray],
                      description: str) -> "DesignSpace":
    """A copy whose feasible points also satisfy ``fn`` ((n, d) -> (n,) bool)."""
    if not callable(fn):
      raise errors.invalid_value("fn",
                                 "a callable mapping (n, d) native points to an (n,) bool array",
                                 fn)
    if not isinstance(description, str) or not description.strip():
      raise errors.invalid_value("description",
                                 "a non-empty string saying what the constraint requires",
                                 description)
    out = copy.copy(self)
    previous, previous_text = self.constraint, self.constraint_description
    if previous is None:
      out.constraint, out.constraint_description = fn, description
    else:
      out.constraint = lambda x: previous(x) & fn(x)
      out.constraint_description = "%s and %s" % (previous_text, description)
    if out.candidates is not None:
      out._set_candidates(out.candidates[out._constraint_mask(out.candidates)])
    return out

  def with_candidates(self, points: Any) -> "DesignSpace":
    """A copy where only the rows of ``points`` (N, d native, distinct) that are
    feasible may be proposed (intersected with an existing candidate set)."""
    points = self.validate(points, "points")
    keys = self._raw_keys(points)
    if len(set(keys)) != len(keys):
      first = next(i for i, k in enumerate(keys) if keys.index(k) != i)
      raise errors.invalid_value("points", "distinct rows",
                                 shown="row %d equal to row %d (%r)."
                                       % (first, keys.index(keys[first]), points[first].tolist()))
    out = copy.copy(self)
    if self.candidates is not None:
      points = points[self.candidate_index(points) >= 0]
    out._set_candidates(points[out._constraint_mask(points)] if points.shape[0] else points)
    return out

  def with_canonical(self, fn: Callable[[np.ndarray], np.ndarray]) -> "DesignSpace":
    """A copy whose ``keys`` and ``canonical`` map each point to ``fn``'s
    representative ((n, d) -> (n, d) native points of the same designs)."""
    if not callable(fn):
      raise errors.invalid_value("fn",
                                 "a callable mapping (n, d) native points to their "
                                 "canonical (n, d) points", fn)
    out = copy.copy(self)
    out._canonical_fn = fn
    return out

  def canonical(self, x: np.ndarray) -> np.ndarray:
    """(n, d) representatives of the designs ``x`` (``x`` itself by default)."""
    x = np.asarray(x, dtype=float).reshape(-1, self.dim)
    if self._canonical_fn is None or x.shape[0] == 0:
      return x
    return np.asarray(self._canonical_fn(x), dtype=float).reshape(x.shape)

  def _set_candidates(self, points: Any) -> None:
    if points.shape[0] == 0:
      raise InfeasibleSpaceError(
          "No candidate is feasible in %r%s." % (self, "" if self.constraint is None else
                                                 ": none satisfies %r"
                                                 % self.constraint_description))
    self.candidates = np.array(points, dtype=float)
    self.candidates.setflags(write=False)
    self._candidate_lookup = {k: i for i, k in enumerate(self._raw_keys(points))}

  def _constraint_mask(self, x: np.ndarray) -> np.ndarray:
    if self.constraint is None or x.shape[0] == 0:
      return np.ones(x.shape[0], dtype=bool)
    mask = np.asarray(self.constraint(np.array(x, dtype=float)))
    if mask.shape != (x.shape[0],) or mask.dtype != bool:
      raise ValueError("Invalid constraint %r: expected an (n,) bool array for (n, d) points, "
                       "received %s of shape %s." % (self.constraint_description, mask.dtype,
                                                      mask.shape))
    return mask

  def candidate_index(self, x: np.ndarray) -> np.ndarray:
    """(n,) index of each row of ``x`` in ``candidates`` (-1: not a candidate)."""
    if self.candidates is None:
      raise ValueError("Invalid use of `candidate_index`: %r has no candidate set." % (self,))
    return np.array([self._candidate_lookup.get(k, -1) for k in self._raw_keys(x)], dtype=int)

  def feasible(self, x: np.ndarray) -> np.ndarray:
    """(n,) bool: rows of ``x`` (native, in bounds) that may be proposed."""
    x = np.asarray(x, dtype=float).reshape(-1, self.dim)
    if self.candidates is not None:
      return self.candidate_index(x) >= 0  # candidates satisfy the constraint
    return self._constraint_mask(x)

  def has_feasible_point(self, rng: int | np.random.Generator = 0, tries: int = _MIN_DRAWS) -> bool:
    """Whether up to ``tries`` uniform draws find a feasible point (always true
    with a candidate set: an empty one is refused when it is made)."""
    if self.candidates is not None or self.constraint is None:
      return True
    return self._rejection(np.random.default_rng(rng), 1, int(tries)).shape[0] > 0

  def check_feasible(self, rng: int | np.random.Generator = 0, tries: int = _MIN_DRAWS) -> None:
    """Raises ``InfeasibleSpaceError`` unless ``has_feasible_point``."""
    if not self.has_feasible_point(rng, tries):
      raise InfeasibleSpaceError(
          "No point of %r satisfies the constraint %r: none of %d uniform draws did. "
          "Relax the constraint." % (self, self.constraint_description, int(tries)))

  def _rejection(self, rng: np.random.Generator, count: int, max_draws: int) -> np.ndarray:
    """Up to ``count`` feasible uniform points from at most ``max_draws`` draws."""
    found: List[np.ndarray] = []
    drawn = 0
    batch = int(min(max(4 * count, 1024), max_draws))
    while drawn < max_draws and sum(f.shape[0] for f in found) < count:
      x = self._uniform(rng, min(batch, max_draws - drawn))
      drawn += x.shape[0]
      found.append(x[self._constraint_mask(x)])
    return np.vstack(found)[:count] if found else np.zeros((0, self.dim))

  # -- checking -------------------------------------------------------------
  def validate(self, x: Any, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float (n, d) array; raise ``ValueError`` when a row is
    outside the space (wrong width, out of bounds, non-integer category)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
      x = x[None, :]
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise errors.invalid_value(name, "points with %d coordinates" % self.dim,
                                 shown="shape %s." % (x.shape,))
    if not np.all(np.isfinite(x)):
      raise errors.invalid_value(name, "finite coordinates")
    bad = (x < self.lower - 1e-9) | (x > self.upper + 1e-9)
    bad |= self.categorical & (np.round(x) != x)
    if np.any(bad):
      row, col = (int(i) for i in np.argwhere(bad)[0])
      var = self.variables[col]
      expected = ("an integer in [0, %d]" % (var.cardinality - 1) if var.kind == CATEGORICAL
                  else "a value in [%g, %g]" % var.bounds)
      raise ValueError("Invalid value for argument `%s`: row %d, variable %r must be %s. "
                       "Received %r." % (name, row, var.name, expected, x[row, col]))
    return x

  # -- GP inputs ------------------------------------------------------------
  def encode(self, x: np.ndarray) -> np.ndarray:
    """(n, d) native points -> (n, encoded_dim) GP inputs (see module doc) of
    their canonical points (``with_canonical``)."""
    x = self.canonical(self.validate(x))
    out = np.zeros((x.shape[0], self.encoded_dim))
    for i, var in enumerate(self.variables):
      off = self._offsets[i]
      if var.kind == CATEGORICAL:
        out[np.arange(x.shape[0]), off + x[:, i].astype(int)] = 1.0
      else:
        out[:, off] = (x[:, i] - var.bounds[0]) / (var.bounds[1] - var.bounds[0])
    return out

  # -- generating points ----------------------------------------------------
  def sample(self, rng: int | np.random.Generator, count: int,
             min_count: Optional[int] = None) -> np.ndarray:
    """``count`` uniform feasible points (n, d): uniform over the box, over the
    feasible set (rejection sampling) or over the candidate rows (distinct,
    without replacement; at most N). Restricted spaces may return fewer, down
    to ``min_count`` (default ``count``); fewer found raises
    ``InfeasibleSpaceError``."""
    rng = np.random.default_rng(rng)
    count = int(count)
    min_count = count if min_count is None else int(min_count)
    if self.candidates is not None:
      n = self.candidates.shape[0]
      if n < min_count:
        raise InfeasibleSpaceError("Invalid request: %d points from %r, which has only %d "
                                   "feasible candidates." % (min_count, self, n))
      return self.candidates[rng.choice(n, size=min(count, n), replace=False)].copy()
    if self.constraint is None:
      return self._uniform(rng, count)
    out = self._rejection(rng, count, max(_MIN_DRAWS, _DRAWS_PER_POINT * count))
    if out.shape[0] < min_count:
      raise InfeasibleSpaceError(
          "Could not find %d points satisfying the constraint %r in %r: %d of %d uniform "
          "draws did. Relax the constraint." % (min_count, self.constraint_description, self,
                                                out.shape[0],
                                                max(_MIN_DRAWS, _DRAWS_PER_POINT * count)))
    return out

  def _uniform(self, rng: np.random.Generator, count: int) -> np.ndarray:
    u = rng.random((int(count), self.dim))
    cat = np.floor(u * np.maximum(self.cardinalities, 1))
    cont = self.lower + u * (self.upper - self.lower)
    return np.where(self.categorical, cat, cont)

  def mutate(self, x: np.ndarray, rng: np.random.Generator, count: int,
             scale: float = 0.1) -> np.ndarray:
    """``count`` random perturbations of rows of ``x``: each changes 1-2
    categorical values to other values and moves continuous coordinates by a
    Gaussian step of ``scale`` times the range (clipped). A restricted space
    keeps only the feasible ones (so possibly fewer rows)."""
    out = self._mutate(self.validate(x), rng, count, scale)
    return out[self.feasible(out)] if self.restricted else out

  def _mutate(self, x: np.ndarray, rng: np.random.Generator, count: int,
              scale: float) -> np.ndarray:
    rng = np.random.default_rng(rng)
    base = x[rng.integers(x.shape[0], size=int(count))].copy()
    if np.any(self.categorical):
      cat_idx = np.flatnonzero(self.categorical)
      rows = np.arange(base.shape[0])
      first = cat_idx[rng.integers(cat_idx.size, size=rows.size)]
      second = cat_idx[rng.integers(cat_idx.size, size=rows.size)]
      twice = (rng.random(rows.size) < 0.5) & (second != first)
      for r, cols in ((rows, first), (rows[twice], second[twice])):
        card = self.cardinalities[cols]
        shift = 1 + rng.integers(0, card - 1)
        base[r, cols] = (base[r, cols] + shift) % card
    if not self.all_categorical:
      cont = ~self.categorical
      step = rng.normal(size=base.shape) * scale * (self.upper - self.lower)
      base[:, cont] = np.clip(base[:, cont] + step[:, cont], self.lower[cont],
                              self.upper[cont])
    return base

  def neighbours(self, x: np.ndarray) -> np.ndarray:
    """All feasible points one categorical value away from the single point ``x`` (d,)."""
    out = self._neighbours(x)
    return out[self.feasible(out)] if self.restricted and out.shape[0] else out

  def _neighbours(self, x: np.ndarray) -> np.ndarray:
    x = self.validate(x)[0]
    out = []
    for i in np.flatnonzero(self.categorical):
      for value in range(int(self.cardinalities[i])):
        if value != x[i]:
          row = x.copy()
          row[i] = value
          out.append(row)
    return np.array(out).reshape(-1, self.dim)

  def keys(self, x: np.ndarray) -> List[bytes]:
    """Hashable identity of each row's design (categoricals exact, continuous
    to 1e-9 of the range; canonical points, see ``with_canonical``) for
    de-duplication against evaluated and pending points."""
    return self._raw_keys(self.canonical(x))

  def _raw_keys(self, x: np.ndarray) -> List[bytes]:
    x = np.asarray(x, dtype=float).reshape(-1, self.dim)
    scaled = np.where(self.categorical, x,
                      np.round((x - self.lower) / (self.upper - self.lower) * 1e9))
    return [row.tobytes() for row in scaled.astype(np.int64)]


def continuous_space(bounds: Sequence[tuple[float, float]],
                     names: Sequence[str] | None = None) -> DesignSpace:
  """A box: ``bounds`` is a sequence of (low, high) pairs."""
  bounds = list(bounds)
  names = names or ["x%d" % i for i in range(len(bounds))]
  return DesignSpace([Variable(n, CONTINUOUS, bounds=tuple(b)) for n, b in zip(names, bounds)])  # type: ignore[arg-type]
