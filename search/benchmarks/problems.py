"""Benchmark problems (all objectives minimized), standard definitions.

========== === === ========================== ============== ===========
name       d   m   domain                     reference      max HV
========== === === ========================== ============== ===========
branin_currin 2 2  [0, 1]^2                   (18, 6)        59.36011874867746
zdt1       6   2   [0, 1]^6                   (11, 11)       120 + 2/3
zdt2       6   2   [0, 1]^6                   (11, 11)       120 + 1/3
dtlz2      6   3   [0, 1]^6                   (1.1,1.1,1.1)  1.331 - pi/6
cell_synthetic 20 3 TEA-DNN cell encoding     see below      unknown
table      any any rows of a CSV              median         true front
========== === === ========================== ============== ===========

BraninCurrin: Belakaria et al. 2019 (as BoTorch's ``BraninCurrin``): Branin
rescaled to [0,1]^2 and the Currin exponential function. ZDT2: Zitzler, Deb,
Thiele 2000. DTLZ2: Deb, Thiele, Laumanns, Zitzler 2002. The maximum
hypervolumes are those of the true Pareto fronts (ZDT2: 121 - 2/3; DTLZ2: the
box minus the positive octant of the unit ball, 1.331 - pi/6).

``cell_synthetic``: a seeded stand-in for (error, time, energy) of a TEA-DNN
cell, defined on the real 20-variable encoding (``search.cellspace.cell_space``).
Each op has a cost and a capacity; time grows with the ops' costs and the
depth of the block graph, energy with cost plus memory traffic of every
branch, error falls with capacity (saturating). Seeded random main effects
per (position, value) and pairwise interaction tables between positions of
DIFFERENT blocks perturb all three, so the objectives are neither separable
nor trivially aligned. It is evaluated on the canonical cell (the two
branches of each block in ``Genotype.key()`` order), since a real cell's
metrics do not depend on the order of a block's branches. Its reference point is the per-objective maximum over
2,000 uniform cells drawn with the problem seed (fixed for all runs); its
optimum is unknown, so the benchmark reports hypervolume, not a gap.

``table``: any CSV of evaluated designs (``search.benchmarks.table``), e.g.
the HW-NAS-Bench-360 slice of NAS-Bench-201 on a Raspberry Pi 5; scored by
the hypervolume fraction of the table's true front.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from search.benchmarks.table import Table
from search.cellspace import cell_space
from search.optimizer.design import DesignSpace, continuous_space
from tea_keras import errors
from search.optimizer.pareto import hypervolume, log_hv_gap


@dataclasses.dataclass
class Problem:
  """``evaluate``: (n, d) native points -> (n, m) objectives."""
  name: str
  space: DesignSpace
  num_objectives: int
  evaluate: Callable[[np.ndarray], np.ndarray]
  ref_point: np.ndarray
  max_hypervolume: Optional[float]
  num_initial: int
  # Objectives the benchmark models in log space by default (the GP rule for
  # strictly positive objectives): Branin (0.4 to 308) and Currin (1.6 to 14)
  # are positive by construction; ZDT2 and DTLZ2 objectives reach 0.
  # cell_synthetic's (error, time, energy) are positive, but its published
  # figures were measured without the transform, so it stays off there.
  log_objectives: Optional[Tuple[bool, ...]] = None
  # The figure of merit ``benchmark.quality`` reports (``metric`` names it):
  # None means log10 hypervolume gap when ``max_hypervolume`` is known, else
  # hypervolume. Tabular problems: the hypervolume fraction.
  score: Optional[Callable[[np.ndarray], float]] = None
  metric: Optional[str] = None
  # Tabular problems: the ``search.benchmarks.table.Table`` (row indices etc.).
  table: Optional[Any] = None

  def __post_init__(self) -> None:
    if self.metric is None:
      self.metric = "hypervolume" if self.max_hypervolume is None else "log_hv_gap"


def branin_currin(x: np.ndarray) -> np.ndarray:
  x = np.atleast_2d(x)
  u, v = 15.0 * x[:, 0] - 5.0, 15.0 * x[:, 1]
  branin = ((v - 5.1 / (4 * np.pi ** 2) * u ** 2 + 5.0 / np.pi * u - 6.0) ** 2
            + 10.0 * (1.0 - 1.0 / (8 * np.pi)) * np.cos(u) + 10.0)
  a, b = x[:, 0], x[:, 1]
  with np.errstate(divide="ignore"):
    factor = 1.0 - np.exp(-1.0 / (2.0 * b))
  currin = factor * ((2300 * a ** 3 + 1900 * a ** 2 + 2092 * a + 60)
                     / (100 * a ** 3 + 500 * a ** 2 + 4 * a + 20))
  return np.stack([branin, currin], axis=1)


def zdt1(x: np.ndarray) -> np.ndarray:
  """ZDT1 (Zitzler, Deb, Thiele 2000): convex front f2 = 1 - sqrt(f1)."""
  x = np.atleast_2d(x)
  f1 = x[:, 0]
  g = 1.0 + 9.0 / (x.shape[1] - 1) * np.sum(x[:, 1:], axis=1)
  return np.stack([f1, g * (1.0 - np.sqrt(f1 / g))], axis=1)


def zdt2(x: np.ndarray) -> np.ndarray:
  x = np.atleast_2d(x)
  f1 = x[:, 0]
  g = 1.0 + 9.0 / (x.shape[1] - 1) * np.sum(x[:, 1:], axis=1)
  return np.stack([f1, g * (1.0 - (f1 / g) ** 2)], axis=1)


def dtlz2(x: np.ndarray, num_objectives: int = 3) -> np.ndarray:
  x = np.atleast_2d(x)
  m = num_objectives
  g = np.sum((x[:, m - 1:] - 0.5) ** 2, axis=1)
  angles = x[:, :m - 1] * np.pi / 2
  out = []
  for i in range(m):
    f = 1.0 + g
    f = f * np.prod(np.cos(angles[:, :m - 1 - i]), axis=1)
    if i > 0:
      f = f * np.sin(angles[:, m - 1 - i])
    out.append(f)
  return np.stack(out, axis=1)


# Op order of tea_keras.space.OPS: max3x3, identity, sep3x3, conv3x3, sep5x5,
# conv5x5, sep7x7, conv7x7.
_OP_COST = np.array([0.15, 0.02, 0.45, 1.0, 0.7, 2.6, 1.0, 5.0])
_OP_CAPACITY = np.array([0.3, 0.0, 1.0, 1.3, 1.4, 1.8, 1.7, 2.1])
_OP_MEMORY = np.array([0.6, 0.3, 0.8, 0.6, 0.9, 0.7, 1.0, 0.8])


class CellSynthetic:
  """Callable (n, 20) cell encodings -> (n, 3) (error, time, energy)."""

  def __init__(self, seed: int = 0, num_pairs: int = 24) -> None:
    rng = np.random.default_rng(seed)
    self.cards = cell_space().cardinalities
    self.main = [rng.normal(0.0, 1.0, size=(3, c)) for c in self.cards]
    pairs: list[Any] = []
    while len(pairs) < num_pairs:
      i, j = sorted(rng.choice(len(self.cards), size=2, replace=False))
      if i // 4 != j // 4 and (i, j) not in [p[:2] for p in pairs]:
        pairs.append((i, j, rng.normal(0.0, 1.0, size=(3, self.cards[i], self.cards[j]))))
    self.pairs = pairs

  def _depth(self, x: np.ndarray) -> np.ndarray:
    depth = np.zeros((x.shape[0], 5))
    for b in range(5):
      ins = x[:, 4 * b:4 * b + 2].astype(int)
      prev = np.where(ins >= 2, np.take_along_axis(
          np.hstack([np.zeros((x.shape[0], 2)), depth]), ins, axis=1), 0.0)
      depth[:, b] = 1.0 + prev.max(axis=1)
    return depth.max(axis=1)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x)).astype(int)
    ops = x[:, [i for i in range(20) if i % 4 >= 2]]
    cost, cap, mem = _OP_COST[ops].sum(1), _OP_CAPACITY[ops].sum(1), _OP_MEMORY[ops].sum(1)
    depth = self._depth(x)
    inter = np.zeros((x.shape[0], 3))
    for pos, table in enumerate(self.main):
      inter += 0.04 * table[:, x[:, pos]].T
    for i, j, table in self.pairs:
      inter += 0.08 * table[:, x[:, i], x[:, j]].T
    logit = 1.2 - 0.22 * cap - 0.08 * depth + inter[:, 0]
    error = 0.05 + 0.9 / (1.0 + np.exp(-logit))
    time = 1e-3 * cost * (1.0 + 0.15 * depth) * np.exp(inter[:, 1])
    energy = 1e-2 * (cost + 0.5 * mem) * (1.0 + 0.1 * depth) * np.exp(inter[:, 2])
    return np.stack([error, time, energy], axis=1)


def table_problem(table: str | Table, variables: Sequence[str], objectives: Sequence[str],
                  log_objectives: Sequence[str] = (), num_initial: int = 10,
                  name: str = "table") -> Problem:
  """A tabular problem (``search.benchmarks.table``): ``table`` is a CSV path
  (or a loaded ``Table``); ``num_initial`` uniform rows start each run."""
  if not isinstance(table, Table):
    table = Table(table, variables, objectives, log_objectives)
  return Problem(name, table.space, len(table.objectives), table.evaluate, table.ref_point,
                 None, int(num_initial), table.log_objectives, score=table.score,
                 metric="hypervolume_fraction", table=table)


def make_problem(name: str, problem_seed: int = 0, **kwargs: Any) -> Problem:
  """One of ``branin_currin``, ``zdt1``, ``zdt2``, ``dtlz2``,
  ``cell_synthetic`` or ``table`` (``kwargs``: ``table_problem``'s)."""
  if name == "table":
    return table_problem(**kwargs)
  if kwargs:
    raise ValueError("Invalid arguments for problem %r: %s (only `table` takes any)."
                     % (name, ", ".join(sorted(kwargs))))
  if name == "branin_currin":
    return Problem(name, continuous_space([(0.0, 1.0)] * 2), 2, branin_currin,
                   np.array([18.0, 6.0]), 59.36011874867746, 6, (True, True))
  if name == "zdt1":  # max HV: 121 - int_0^1 (1 - sqrt(t)) dt = 120 + 2/3
    return Problem(name, continuous_space([(0.0, 1.0)] * 6), 2, zdt1,
                   np.array([11.0, 11.0]), 120.0 + 2.0 / 3.0, 14)
  if name == "zdt2":
    return Problem(name, continuous_space([(0.0, 1.0)] * 6), 2, zdt2,
                   np.array([11.0, 11.0]), 121.0 - 2.0 / 3.0, 14)
  if name == "dtlz2":
    return Problem(name, continuous_space([(0.0, 1.0)] * 6), 3, dtlz2,
                   np.array([1.1, 1.1, 1.1]), 1.331 - np.pi / 6.0, 14)
  if name == "cell_synthetic":
    space = cell_space()
    raw = CellSynthetic(problem_seed)
    fn = lambda x: raw(space.canonical(x))  # a cell's metrics ignore branch order
    ref = fn(space.sample(np.random.default_rng(problem_seed + 12345), 2000)).max(axis=0)
    return Problem(name, space, 3, fn, ref, None, 10)
  raise errors.invalid_value("problem",
                             "one of branin_currin, zdt1, zdt2, dtlz2, cell_synthetic, table", name)


def initial_design(problem: Problem, seed: int) -> np.ndarray:
  """``problem.num_initial`` points: scrambled Sobol in (unrestricted) boxes,
  uniform feasible points otherwise (distinct rows of a candidate set)."""
  if problem.space.all_continuous and not problem.space.restricted:
    from scipy.stats import qmc  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():  # 2(d+1) is not a power of 2; that is intended
      warnings.simplefilter("ignore", UserWarning)
      u = qmc.Sobol(problem.space.dim, scramble=True, seed=seed).random(problem.num_initial)
    return problem.space.lower + u * (problem.space.upper - problem.space.lower)
  return problem.space.sample(np.random.default_rng(seed), problem.num_initial)


def quality(problem: Problem, y: np.ndarray) -> float:
  """The figure of merit ``problem.metric`` of raw objectives ``y`` (n, m)."""
  if problem.score is not None:
    return float(problem.score(y))
  if problem.max_hypervolume is None:
    return hypervolume(y, problem.ref_point)
  return log_hv_gap(y, problem.ref_point, problem.max_hypervolume)
