"""Tabular problems: a CSV of already-evaluated designs as a benchmark.

  python -m search.benchmarks.benchmark --problem=table --table=FILE.csv \\
      --variables=e1_0,e2_0,e2_1,e3_0,e3_1,e3_2 \\
      --objectives=error,latency_ms,energy_mj --log_objectives=latency_ms,energy_mj

The table holds one row per design: one column per design variable (any
values, read as categories: each distinct value of a column is one category,
so a column becomes a categorical variable with that many values) and one
numeric column per objective (all MINIMIZED). Other columns are ignored.

* The design space is the product of the variables' categories restricted to
  the table's rows (``DesignSpace.with_candidates``): strategies may only
  propose rows of the table, each at most once. Row ``i`` is the ``i``-th
  data row of the file (0-based, the header not counted); the benchmark's
  JSON lists, per seed, the row indices evaluated in order.
* Score (``score``): the hypervolume fraction of the table's true Pareto
  front, in the MODELLED space (``log`` of the ``log_objectives``): with
  ``T`` that transform and the reference point ``r`` = each transformed
  objective's median over the whole table,
  ``HV(T(y), r) / HV(T(Y_table), r)``; only points that dominate ``r``
  count. 1.0 means the whole front (in the region better than the median)
  was found.
* ``ref_point`` (raw units, given to strategies that use one) is the same
  median: ``T`` is monotone, so it is ``T^-1(r)`` (the median of an odd
  count is a table value).

Refused before any work, each with the column and row: a missing file or
column, a variable listed twice or also as an objective, a column with a
single value (it would be a variable with one category: drop it), an
objective that is empty or not a finite number, a non-positive value of a
``log_objectives`` column, fewer than 2 rows, and two rows with the same
values of all variables (the table must hold one row per design: aggregate
repeated measurements, e.g. by their median, before benchmarking; averaging
silently would hide what they are).
"""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

import numpy as np

from search.optimizer.design import CATEGORICAL, DesignSpace, Variable
from search.optimizer.pareto import hypervolume, non_dominated_mask
from tea_keras import errors


def _names(value: Any, argument: str) -> list[str]:
  if isinstance(value, str):
    value = [v for v in value.split(",") if v]
  value = [str(v).strip() for v in (value or ())]
  if len(set(value)) != len(value):
    raise errors.invalid_value(argument, "distinct column names",
                               shown="%s." % ",".join(value))
  return value


def _read_rows(path: str, columns: Sequence[str]) -> list[list[str]]:
  if not os.path.isfile(path):
    raise errors.invalid_value("table", "a CSV file", shown="%r (no such file)." % (path,))
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
      raise ValueError("Invalid table %r: no column %s. Expected some of: %s."
                       % (path, ", ".join(repr(c) for c in missing), ", ".join(header)))
    rows = [[(row.get(c) or "").strip() for c in columns] for row in reader]
  if len(rows) < 2:
    raise ValueError("Invalid table %r: expected at least 2 data rows, received %d."
                     % (path, len(rows)))
  return rows


def _categories(path: str, name: str, values: Sequence[str]) -> tuple[np.ndarray, list[Any]]:
  """(codes (n,), levels): numeric levels in numeric order, else string order."""
  if any(v == "" for v in values):
    raise ValueError("Invalid table %r: column %r is empty in row %d (data rows from 0)."
                     % (path, name, values.index("")))
  levels = sorted(set(values))
  try:
    levels = sorted(levels, key=float)
  except ValueError:
    pass
  if len(levels) < 2:
    raise ValueError("Invalid table %r: variable column %r has a single value (%r). "
                     "Expected at least 2 distinct values; drop the column."
                     % (path, name, levels[0]))
  index = {v: i for i, v in enumerate(levels)}
  return np.array([index[v] for v in values], dtype=float), levels


def _numbers(path: str, name: str, values: Sequence[str], positive: bool) -> np.ndarray:
  out = np.empty(len(values))
  for i, v in enumerate(values):
    try:
      out[i] = float(v)
    except ValueError:
      out[i] = np.nan
    if not np.isfinite(out[i]):
      raise ValueError("Invalid table %r: objective column %r must hold finite numbers; "
                       "row %d (data rows from 0) holds %r." % (path, name, i, v))
    if positive and out[i] <= 0:
      raise ValueError("Invalid table %r: column %r is in `log_objectives`, so it must be "
                       "strictly positive; row %d holds %r." % (path, name, i, v))
  return out


def _refuse_duplicates(path: str, variables: Sequence[str], x: np.ndarray) -> None:
  _, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
  inverse = np.asarray(inverse).ravel()
  repeated = np.flatnonzero(first[inverse] != np.arange(x.shape[0]))
  if repeated.size:
    row = int(repeated[0])
    raise ValueError(
        "Invalid table %r: rows %d and %d (data rows from 0) have the same values of the "
        "variables %s. Expected one row per design: aggregate repeated measurements "
        "(e.g. their median) first." % (path, int(first[inverse[row]]), row,
                                       ",".join(variables)))


class Table:
  """A loaded, checked table (see the module doc).

  Attributes: ``x`` (N, d) category codes, ``y`` (N, m) raw objectives,
  ``levels`` (per variable, the category values in code order),
  ``log_objectives`` (m bools), ``reference`` (m,) median in the modelled
  space, ``front`` (F, m) the true front in the modelled space,
  ``max_hypervolume`` its hypervolume.
  """

  def __init__(self, path: str, variables: Sequence[str], objectives: Sequence[str],
               log_objectives: Sequence[str] = ()) -> None:
    variables = _names(variables, "variables")
    objectives = _names(objectives, "objectives")
    logs = _names(log_objectives, "log_objectives")
    if not variables or not objectives:
      raise ValueError("Invalid arguments: expected at least one of `variables` and of "
                       "`objectives`. Received variables=%r, objectives=%r."
                       % (variables, objectives))
    both = sorted(set(variables) & set(objectives))
    if both:
      raise ValueError("Invalid arguments: column(s) %s listed both as variable and "
                       "objective." % ", ".join(both))
    unknown = [c for c in logs if c not in objectives]
    if unknown:
      raise ValueError("Invalid value for argument `log_objectives`: %s not among the "
                       "objectives (%s)." % (", ".join(unknown), ",".join(objectives)))
    rows = _read_rows(path, variables + objectives)
    columns = list(zip(*rows))
    coded = [_categories(path, name, list(columns[i])) for i, name in enumerate(variables)]
    self.path, self.variables, self.objectives = path, variables, objectives
    self.x = np.stack([c for c, _ in coded], axis=1)
    self.levels = [levels for _, levels in coded]
    self.log_objectives = tuple(name in logs for name in objectives)
    self.y = np.stack([_numbers(path, name, list(columns[len(variables) + k]),
                                self.log_objectives[k])
                       for k, name in enumerate(objectives)], axis=1)
    _refuse_duplicates(path, variables, self.x)
    modelled = self.transform(self.y)
    self.reference = np.median(modelled, axis=0)
    self.front = modelled[non_dominated_mask(modelled)]
    self.max_hypervolume = hypervolume(self.front, self.reference)
    if not self.max_hypervolume > 0:
      raise ValueError("Invalid table %r: no row dominates the per-objective median %s, so "
                       "the hypervolume score is undefined." % (path, self.reference))
    self.space = DesignSpace([Variable(name, CATEGORICAL, cardinality=len(levels))
                              for name, levels in zip(variables, self.levels)]
                             ).with_candidates(self.x)

  def transform(self, y: Any) -> np.ndarray:
    """Raw (n, m) objectives -> the modelled space (log where ``log_objectives``)."""
    y = np.asarray(y, dtype=float).reshape(-1, len(self.objectives))
    return np.where(self.log_objectives, np.log(np.where(self.log_objectives, y, 1.0)), y)

  @property
  def ref_point(self) -> np.ndarray:
    """The reference point in raw units."""
    return np.where(self.log_objectives, np.exp(self.reference), self.reference)

  def rows(self, x: Any) -> np.ndarray:
    """(n,) table row of each native point; ``ValueError`` for a non-row."""
    index = self.space.candidate_index(x)
    if np.any(index < 0):
      bad = np.asarray(x, dtype=float).reshape(-1, self.x.shape[1])[int(np.argmax(index < 0))]
      raise ValueError("Invalid point %r: not a row of the table %r." % (bad.tolist(),
                                                                          self.path))
    return index

  def evaluate(self, x: np.ndarray) -> np.ndarray:
    """(n, d) native points (rows of the table) -> (n, m) raw objectives."""
    return self.y[self.rows(x)]

  def score(self, y: Any) -> float:
    """Hypervolume fraction of the true front (module doc) of raw (n, m) ``y``."""
    return hypervolume(self.transform(y), self.reference) / self.max_hypervolume

  def describe(self) -> dict:
    return {"path": self.path, "variables": self.variables, "objectives": self.objectives,
            "log_objectives": [o for o, l in zip(self.objectives, self.log_objectives) if l],
            "num_rows": int(self.x.shape[0]), "front_size": int(self.front.shape[0]),
            "reference_point": [float(r) for r in self.ref_point],
            "max_hypervolume_modelled": float(self.max_hypervolume)}
