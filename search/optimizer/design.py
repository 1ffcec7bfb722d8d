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
"""

import dataclasses
from typing import List, Sequence, Tuple

import numpy as np

CONTINUOUS = "continuous"
CATEGORICAL = "categorical"


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

  def __post_init__(self):
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

  def __init__(self, variables: Sequence[Variable]):
    variables = tuple(variables)
    if not variables or not all(isinstance(v, Variable) for v in variables):
      raise ValueError("Invalid value for argument `variables`. Expected a non-empty "
                       "sequence of Variable. Received %r." % (variables,))
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

  @property
  def all_categorical(self) -> bool:
    return bool(np.all(self.categorical))

  @property
  def all_continuous(self) -> bool:
    return not bool(np.any(self.categorical))

  def __repr__(self):
    return "DesignSpace(%d variables, %d categorical)" % (self.dim, int(self.categorical.sum()))

  # -- checking -------------------------------------------------------------
  def validate(self, x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float (n, d) array; raise ``ValueError`` when a row is
    outside the space (wrong width, out of bounds, non-integer category)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
      x = x[None, :]
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError("Invalid value for argument `%s`. Expected points with %d "
                       "coordinates. Received shape %s." % (name, self.dim, x.shape))
    if not np.all(np.isfinite(x)):
      raise ValueError("Invalid value for argument `%s`. Expected finite coordinates."
                       % name)
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
  def encode(self, x) -> np.ndarray:
    """(n, d) native points -> (n, encoded_dim) GP inputs (see module doc)."""
    x = self.validate(x)
    out = np.zeros((x.shape[0], self.encoded_dim))
    for i, var in enumerate(self.variables):
      off = self._offsets[i]
      if var.kind == CATEGORICAL:
        out[np.arange(x.shape[0]), off + x[:, i].astype(int)] = 1.0
      else:
        out[:, off] = (x[:, i] - var.bounds[0]) / (var.bounds[1] - var.bounds[0])
    return out

  # -- generating points ----------------------------------------------------
  def sample(self, rng, count: int) -> np.ndarray:
    """``count`` uniform points (n, d)."""
    rng = np.random.default_rng(rng)
    u = rng.random((int(count), self.dim))
    cat = np.floor(u * np.maximum(self.cardinalities, 1))
    cont = self.lower + u * (self.upper - self.lower)
    return np.where(self.categorical, cat, cont)

  def mutate(self, x, rng, count: int, scale: float = 0.1) -> np.ndarray:
    """``count`` random perturbations of rows of ``x``: each changes 1-2
    categorical values to other values and moves continuous coordinates by a
    Gaussian step of ``scale`` times the range (clipped)."""
    x = self.validate(x)
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

  def neighbours(self, x) -> np.ndarray:
    """All points one categorical value away from the single point ``x`` (d,)."""
    x = self.validate(x)[0]
    out = []
    for i in np.flatnonzero(self.categorical):
      for value in range(int(self.cardinalities[i])):
        if value != x[i]:
          row = x.copy()
          row[i] = value
          out.append(row)
    return np.array(out).reshape(-1, self.dim)

  def keys(self, x) -> List[bytes]:
    """Hashable identity of each row (categoricals exact, continuous to 1e-9 of
    the range) for de-duplication against evaluated and pending points."""
    x = np.asarray(x, dtype=float).reshape(-1, self.dim)
    scaled = np.where(self.categorical, x,
                      np.round((x - self.lower) / (self.upper - self.lower) * 1e9))
    return [row.tobytes() for row in scaled.astype(np.int64)]


def continuous_space(bounds, names=None) -> DesignSpace:
  """A box: ``bounds`` is a sequence of (low, high) pairs."""
  bounds = list(bounds)
  names = names or ["x%d" % i for i in range(len(bounds))]
  return DesignSpace([Variable(n, CONTINUOUS, bounds=tuple(b)) for n, b in zip(names, bounds)])


def cell_space(num_blocks: int = 5) -> DesignSpace:
  """The TEA-DNN cell encoding: ``4 * num_blocks`` categorical variables with
  ``tea_keras.space.cardinalities(num_blocks)`` values, named like
  ``b0.input1``; native points are ``Genotype.to_vector()``."""
  from tea_keras import space  # pylint: disable=import-outside-toplevel
  if int(num_blocks) != num_blocks or num_blocks < 1:
    raise ValueError("Invalid value for argument `num_blocks`. Expected a positive "
                     "integer. Received num_blocks=%r" % (num_blocks,))
  cards = space.cardinalities(int(num_blocks))
  names = ["b%d.%s" % (i // 4, space.FIELDS[i % 4]) for i in range(len(cards))]
  return DesignSpace([Variable(n, CATEGORICAL, cardinality=c) for n, c in zip(names, cards)])
