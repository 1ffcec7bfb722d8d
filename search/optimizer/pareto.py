"""Pareto utilities: non-dominated sorting, hypervolume, reference points.

All objectives are MINIMIZED. A point ``a`` dominates ``b`` when
``a <= b`` in every objective and ``a < b`` in at least one; equal rows do not
dominate each other, so duplicates of a non-dominated row are all kept.

Non-dominated sorting is pymoo's ``NonDominatedSorting`` (a direct
comparison for small sets). Hypervolume is pymoo's exact indicator (``pymoo.indicators.hv.HV``): the
Lebesgue measure of the region dominated by ``y`` and bounded above by
``ref_point``. Rows that do not strictly dominate the reference point
contribute nothing.
"""

from typing import Any

import numpy as np

from search.optimizer import errors


def _as_objectives(y: Any, name: str = "y") -> np.ndarray:
  y = np.asarray(y, dtype=float)
  if y.ndim != 2 or y.shape[1] < 1:
    raise errors.invalid_value(name, "a 2-D array (n points, m objectives)",
                               shown="shape %s." % (y.shape,))
  if not np.all(np.isfinite(y)):
    raise errors.invalid_value(name,
                               "finite objective values; drop NaN/inf rows (failed trials) first")
  return y


def non_dominated_mask(y: np.ndarray) -> np.ndarray:
  """Rows of ``y`` that no other row dominates (minimization).

  Args:
    y: (n, m) objective values.

  Returns:
    (n,) bool mask.
  """
  y = _as_objectives(y)
  n = y.shape[0]
  mask = np.ones(n, dtype=bool)
  if n > 64:
    # pymoo: slow to import, needed only on this path.
    from pymoo.util.nds.non_dominated_sorting import (  # pylint: disable=import-outside-toplevel
        NonDominatedSorting)
    mask[:] = False
    mask[NonDominatedSorting().do(y, only_non_dominated_front=True)] = True
    return mask
  # Small sets: direct O(n^2 m) comparison (pymoo's call overhead dominates).
  for start in range(0, n, 256):
    block = y[start:start + 256]
    le = np.all(y[None, :, :] <= block[:, None, :], axis=2)
    lt = np.any(y[None, :, :] < block[:, None, :], axis=2)
    mask[start:start + 256] = ~np.any(le & lt, axis=1)
  return mask


def hypervolume(y: np.ndarray, ref_point: np.ndarray) -> float:
  """Dominated hypervolume of ``y`` (n, m) w.r.t. ``ref_point`` (m,)."""
  y = _as_objectives(y)
  ref = np.asarray(ref_point, dtype=float).ravel()
  if ref.shape != (y.shape[1],) or not np.all(np.isfinite(ref)):
    raise errors.invalid_value("ref_point", "%d finite values (one per objective)" % (y.shape[1],),
                               ref_point)
  inside = np.all(y < ref, axis=1)
  if not np.any(inside):
    return 0.0
  # pymoo: slow to import, needed only on this path.
  from pymoo.indicators.hv import HV  # pylint: disable=import-outside-toplevel
  front = y[inside][non_dominated_mask(y[inside])]
  return float(HV(ref_point=ref)(front))


def reference_point(y: np.ndarray, margin: float = 0.1) -> np.ndarray:
  """Reference point for hypervolume when none is given by the problem.

  Rule: the nadir of the non-dominated rows (their per-objective maximum)
  plus ``margin`` times the front's range in that objective, so the extreme
  Pareto points still contribute volume. An objective whose front range is
  zero uses ``margin * max(|nadir|, 1)``. Compare hypervolumes only when they
  use the same reference point (fix it once, e.g. from the union of all runs).

  Args:
    y: (n, m) objective values.
    margin: non-negative fraction of the range.

  Returns:
    (m,) reference point.
  """
  y = _as_objectives(y)
  if not np.isfinite(margin) or margin < 0:
    raise errors.invalid_value("margin", "a non-negative number", margin)
  front = y[non_dominated_mask(y)]
  nadir, ideal = front.max(axis=0), front.min(axis=0)
  span = nadir - ideal
  span = np.where(span > 0, span, np.maximum(np.abs(nadir), 1.0))
  return nadir + margin * span


def log_hv_gap(y: np.ndarray, ref_point: np.ndarray, max_hypervolume: float) -> float:
  """``log10(max_hypervolume - HV(y))``, the benchmark's figure of merit.

  The gap is floored at 1e-12 so a run that reaches the optimum reads -12.
  """
  gap = float(max_hypervolume) - hypervolume(y, ref_point)
  return float(np.log10(max(gap, 1e-12)))
