"""Deployment budgets of a search, checked on a genotype before any training.

Known budgets (issue 12; Scheidegger et al., "Constrained deep neural network
architecture search for IoT devices accounting for hardware calibration",
NeurIPS 2019, search under a memory budget):

* ``max_params``: ``model.count_params()`` of the search's network;
* ``max_peak_activation_bytes``: RAM for activations at batch 1, float32
  (``tea_keras.profiling``'s liveness count);
* ``max_model_bytes``: the deployed artifact's bytes on disk at its precision.
  Before training it is estimated as ``params * bytes_per_weight`` of the
  precision (``deploy.device.devices.PRECISIONS``: 4, 2, 1; a lower bound: the
  artifact adds the graph and, for int8, scales); a cell is trained when one
  of ``--precisions`` may fit. After export every (cell, precision) pair is
  checked on its artifact's real size (``pair_violations``): a pair over the
  budget is kept and shown, marked infeasible, and left off the feasible front.

All three come from ``tea_keras.cost.genotype_cost`` (exact, tested against
the built model and the weights of its ONNX export), computed from the
genotype in microseconds without TensorFlow, so the constraint runs on every
candidate the optimizer looks at (``constraint``), and on many uniform cells to
refuse at once a budget that leaves no cell (``check_space``). They count the
network that is built, trained and exported: its live cells only (a cell that
never reads ``prev`` leaves every other cell dead; ``tea_keras.space``, "Dead
cells").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from deploy.device import devices
from tea_keras import cost
from tea_keras import space

KNOWN = ("max_params", "max_model_bytes", "max_peak_activation_bytes")
MEASURED = ("max_time_s", "max_energy_j")
_METRIC_OF = {"max_time_s": "time_s", "max_energy_j": "energy_j"}
CHECK_DRAWS = 2000


class InfeasibleBudgetError(ValueError):
  """No cell of the search space satisfies the budgets."""


def budgets_of(config: Any) -> dict[str, Any]:
  """``{name: value}`` of the budgets set in ``config`` (a SearchConfig)."""
  return {name: getattr(config, name) for name in KNOWN + MEASURED
          if getattr(config, name, None) is not None}


def has_known(config: Any) -> bool:
  return any(getattr(config, name, None) is not None for name in KNOWN)


@functools.lru_cache(maxsize=200000)
def _cost(vector: tuple[int, ...], num_cells: int, filters: int, concat: Any,
          num_classes: int = 10) -> dict[str, int]:
  genotype = space.Genotype.from_vector(list(vector))
  if concat != genotype.concat:
    genotype = dataclasses.replace(genotype, concat=concat)
  return cost.genotype_cost(genotype, num_cells, filters, num_classes=num_classes)


@functools.lru_cache(maxsize=200000)
def _params(vector: tuple[int, ...], num_cells: int, filters: int, num_classes: int = 10) -> int:
  return cost.genotype_params(space.Genotype.from_vector(list(vector)), num_cells, filters,
                              num_classes=num_classes)


def cell_cost(genotype: space.Genotype, num_cells: int, filters: int,
              num_classes: int = 10) -> dict[str, int]:
  """``{"params", "peak_activation_bytes"}`` of ``genotype`` (cached)."""
  return dict(_cost(tuple(genotype.to_vector()), int(num_cells), int(filters),
                    genotype.concat, int(num_classes)))


def estimated_model_bytes(params: int, precision: str) -> int:
  return int(params) * devices.PRECISIONS[precision].bytes_per_weight


def violations(cost_values: Mapping[str, int], budgets: Mapping[str, float],
               precisions: Sequence[str]) -> list[str]:
  """Names of the known budgets a cell of ``cost_values`` exceeds."""
  out = []
  if "max_params" in budgets and cost_values["params"] > budgets["max_params"]:
    out.append("max_params")
  if ("max_peak_activation_bytes" in budgets
      and cost_values["peak_activation_bytes"] > budgets["max_peak_activation_bytes"]):
    out.append("max_peak_activation_bytes")
  if "max_model_bytes" in budgets and min(
      estimated_model_bytes(cost_values["params"], p) for p in precisions) > \
      budgets["max_model_bytes"]:
    out.append("max_model_bytes")
  return out


def describe(budgets: Mapping[str, float], precisions: Sequence[str]) -> str:
  """``params <= 300000, model_bytes <= 1e6 (at the smallest of fp32,int8)``."""
  parts = []
  for name in KNOWN + MEASURED:
    if name in budgets:
      note = " (at the smallest of %s)" % ",".join(precisions) \
          if name == "max_model_bytes" else ""
      parts.append("%s <= %s%s" % (name[4:], _num(budgets[name]), note))
  return ", ".join(parts)


def _num(value: float) -> str:
  return "%d" % value if float(value).is_integer() else "%g" % value


def constraint(budgets: Mapping[str, float], num_cells: int, filters: int,
               precisions: Sequence[str],
               num_classes: int = 10) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
  """``(fn, description)`` for ``DesignSpace.with_constraint``: ``fn`` maps
  (n, d) cell vectors to the (n,) mask of cells within the known budgets
  (of a network with ``num_classes`` outputs)."""
  known = {k: v for k, v in budgets.items() if k in KNOWN}

  needs_peak = "max_peak_activation_bytes" in known

  def one(row: np.ndarray) -> bool:
    vector = tuple(int(v) for v in np.rint(row))
    # The closed form first (what the optimizer's thousands of candidates
    # need); the op-list liveness count only for a cell within the others.
    values = {"params": _params(vector, num_cells, filters, num_classes),
              "peak_activation_bytes": 0}
    if violations(values, known, precisions):
      return False
    if needs_peak:
      values = dict(_cost(vector, num_cells, filters, "unused", num_classes))
    return not violations(values, known, precisions)

  def fn(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float).reshape(len(x), -1)
    return np.array([one(row) for row in x], dtype=bool)
  return fn, describe(known, precisions)


def check_space(budgets: Mapping[str, float], num_cells: int, filters: int,
                precisions: Sequence[str], seed: int = 0, num_classes: int = 10) -> float:
  """See ``_check_space``; memoized (``config.validate`` calls it each time)."""
  return _check_space(tuple(sorted(budgets.items())), int(num_cells), int(filters),
                      tuple(precisions), int(seed), int(num_classes))


def smallest_cell() -> space.Genotype:
  """The cell whose network has the fewest parameters, MACs and activations:
  every op a max-pool, the blocks a chain from ``prev_prev`` (one output block;
  only every other cell live, each projecting one input)."""
  return space.Genotype.parse("; ".join(
      "max3x3(%s)+max3x3(%s)" % ((space.input_name(b + 1 if b else 0),) * 2)
      for b in range(space.NUM_BLOCKS)))


@functools.lru_cache(maxsize=64)
def _check_space(budget_items: tuple[tuple[str, float], ...], num_cells: int, filters: int,
                 precisions: tuple[str, ...], seed: int, num_classes: int = 10) -> float:
  """Refuse (``InfeasibleBudgetError``) known budgets that no cell meets:
  the smallest cell of the space (``smallest_cell``) and ``CHECK_DRAWS``
  uniform cells are tried. Returns the fraction of the uniform cells that
  meet them."""
  known = {k: v for k, v in budget_items if k in KNOWN}
  if not known:
    return 1.0
  smallest = smallest_cell()
  small_cost = cell_cost(smallest, num_cells, filters, num_classes)
  fn, text = constraint(known, num_cells, filters, precisions, num_classes)
  cells = space.sample_many(np.random.default_rng(seed), CHECK_DRAWS)
  x = np.array([g.to_vector() for g in cells], float)
  fraction = float(np.mean(fn(x)))
  if fraction == 0 and violations(small_cost, known, precisions):
    raise InfeasibleBudgetError(
        "No cell of the search space meets the budget (%s): the smallest cell (every op "
        "max3x3, a chain of blocks from prev_prev) has %d parameters and %d peak activation "
        "bytes at --num_cells=%d --filters=%d, and none of %d random cells fits. Relax the budget "
        "or shrink the network (--num_cells, --filters)."
        % (text, small_cost["params"], small_cost["peak_activation_bytes"], num_cells,
           filters, CHECK_DRAWS))
  return fraction


def pair_violations(metrics: Mapping[str, Any], budgets: Mapping[str, float]) -> list[str]:
  """Budgets a measured (cell, precision) pair exceeds: the artifact's bytes
  (``model_bytes``) and the measured budgets (``time_s``, ``energy_j``)."""
  out = []
  if "max_model_bytes" in budgets and metrics.get("model_bytes") is not None and \
      metrics["model_bytes"] > budgets["max_model_bytes"]:
    out.append("max_model_bytes")
  for name in MEASURED:
    value = metrics.get(_METRIC_OF[name])
    if name in budgets and value is not None and value > budgets[name]:
      out.append(name)
  return out
