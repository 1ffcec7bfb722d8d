"""The front under a budget next to an unconstrained search's (``search.reports --figure=budget``).

What a budget buys (issue 12, item 5): a constrained search (``--max_params``,
``--max_model_bytes``, ``--max_peak_activation_bytes``, ``--max_time_s``,
``--max_energy_j``) spends every training on cells that may ship; an
unconstrained search of the same settings spends some on cells over the
budget. Both are scored against the CONSTRAINED search's budgets::

  python -m search.run --flagfile=flags/constrained_baseline.cfg   # no budget
  python -m search.run --flagfile=flags/constrained.cfg            # the same, with --max_params
  python -m search.reports --figure=budget --results_dir=runs/constrained \\
      --unconstrained_dir=runs/constrained_baseline --out_dir=reports/budget

writes, per objective other than the error, ``budget_fronts_error_<objective>.png``
(the unconstrained search's front of all its pairs, its front of the pairs
that meet the budget, and the constrained search's feasible front; pairs over
the budget hollow), and ``budget_fronts.json``: the budgets, and for each
search its trials, trained trials over a known budget, (cell, precision)
pairs and the feasible ones, and the hypervolume of its feasible front
against one shared reference point (each objective's worst feasible value
over both searches plus 10% of its range, ``search.reports.common.comparison_reference_point``),
so a feasible front that dominates the other has the larger hypervolume.
Pairs are judged as ``search.outputs.pairs`` does: a trained trial's recorded
parameters and peak activations, each pair's artifact bytes and measured
time and energy.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from search import budgets as budgets_lib
from search import outputs
from search.optimizer import pareto
from search.reports import common

SEARCHES = ("constrained", "unconstrained")


def _load(results_dir: str, name: str) -> tuple[dict[str, Any], list[Any]]:
  if not results_dir:
    raise ValueError("--figure=budget needs --%s." % name)
  return common.load_search(results_dir)


def load_pair(constrained_dir: str,
              unconstrained_dir: str) -> tuple[dict[str, Any], list[str], dict[str, list[Any]]]:
  """``(budgets, objectives, {label: trials})`` of the two searches, checked:
  distinct directories, a budget on the constrained one, the same objectives."""
  if os.path.realpath(constrained_dir or "") == os.path.realpath(unconstrained_dir or "."):
    raise ValueError("--results_dir and --unconstrained_dir are the same directory (%s); the "
                     "figure compares two searches." % constrained_dir)
  (c_cfg, c_trials), (u_cfg, u_trials) = (_load(constrained_dir, "results_dir"),
                                          _load(unconstrained_dir, "unconstrained_dir"))
  budgets = {name: c_cfg.get(name) for name in budgets_lib.KNOWN + budgets_lib.MEASURED
             if c_cfg.get(name) is not None}
  if not budgets:
    raise ValueError("%s has no budget (--max_params, --max_model_bytes, "
                     "--max_peak_activation_bytes, --max_time_s or --max_energy_j): pass the "
                     "constrained search as --results_dir." % constrained_dir)
  if list(c_cfg["objectives"]) != list(u_cfg["objectives"]):
    raise ValueError("The searches have different objectives: %s in %s, %s in %s."
                     % (",".join(c_cfg["objectives"]), constrained_dir,
                        ",".join(u_cfg["objectives"]), unconstrained_dir))
  if "error" not in c_cfg["objectives"] or len(c_cfg["objectives"]) < 2:
    raise ValueError("--figure=budget draws error against time or energy; the searches "
                     "optimize %s." % ",".join(c_cfg["objectives"]))
  return budgets, list(c_cfg["objectives"]), {"constrained": c_trials,
                                              "unconstrained": u_trials}


def _hypervolume(rows: Sequence[dict[str, Any]], ref: np.ndarray) -> float:
  y = np.array([r["values"] for r in rows], float).reshape(len(rows), len(ref))
  y = y[np.all(y < ref, axis=1)]
  return float(pareto.hypervolume(y, ref)) if len(y) else 0.0


def compare(constrained_dir: str, unconstrained_dir: str, out_dir: str) -> dict[str, Any]:
  """Draw the figures and write ``budget_fronts.json``; returns its dict."""
  budgets, objectives, runs = load_pair(constrained_dir, unconstrained_dir)
  rows = {label: [r for r in outputs.pairs(trials, objectives, budgets) if r["complete"]]
          for label, trials in runs.items()}
  feasible = np.array([r["values"] for label in SEARCHES for r in rows[label]
                       if r["feasible"]], float)
  if not len(feasible):
    raise ValueError("Neither search has a (cell, precision) pair that meets the budget "
                     "(%s): nothing to compare." % json.dumps(budgets))
  ref = common.comparison_reference_point(feasible)
  data = {"budgets": budgets, "objectives": objectives, "reference_point": ref.tolist(),
          "searches": {}}
  for label, path in zip(SEARCHES, (constrained_dir, unconstrained_dir)):
    summary = outputs.feasibility_summary(runs[label], objectives, budgets)
    ok = [r for r in rows[label] if r["feasible"]]
    data["searches"][label] = {
        "results_dir": path, "trials": len(runs[label]),
        "trained_trials": summary["trained_trials"],
        "trained_over_known_budgets": summary["trained_over_known_budgets"],
        "pairs": len(rows[label]), "feasible_pairs": len(ok),
        "feasible_front": [[r["trial"]["trial_id"], r["precision"]]
                           for r in outputs.pair_front(ok)],
        "feasible_hypervolume": _hypervolume(ok, ref)}
  os.makedirs(out_dir, exist_ok=True)
  for other in [o for o in objectives if o != "error"]:
    _plot(rows, objectives, other, budgets, data, out_dir)
  with open(os.path.join(out_dir, "budget_fronts.json"), "w") as f:
    json.dump(data, f, indent=2)
  return data


def _plot(rows: dict[str, list[dict[str, Any]]], objectives: Sequence[str], other: str,
          budgets: dict[str, Any], data: dict[str, Any], out_dir: str) -> None:
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = [objectives.index(other), objectives.index("error")]
  xy = lambda rs: np.array([[r["values"][c] for c in cols] for r in rs], float).reshape(-1, 2)
  fig, ax = plt.subplots(figsize=(6.6, 4.8))
  unconstrained = rows["unconstrained"]
  if unconstrained:
    outputs.draw_front(ax, xy(unconstrained), "unconstrained search, all pairs", "0.6",
                       all_points=False)
  for label, color, marker in (("unconstrained", "C1", "s"), ("constrained", "C0", "o")):
    ok = [r for r in rows[label] if r["feasible"]]
    over = [r for r in rows[label] if not r["feasible"]]
    if ok:
      outputs.draw_front(ax, xy(ok), "%s search, under the budget" % label, color,
                         all_points=False)
      ax.scatter(*xy(ok).T, marker=marker, s=26, color=color, alpha=0.5, zorder=2)  # type: ignore[misc]
    if over:
      ax.scatter(*xy(over).T, marker=marker, s=26, facecolor="none", edgecolor=color,  # type: ignore[misc]
                 zorder=2, label="%s search, over the budget" % label)
  ax.set_xlabel(outputs.OBJECTIVE_LABELS[other])
  ax.set_ylabel(outputs.OBJECTIVE_LABELS["error"] + " (deployed artifact)")
  hv = ", ".join("%s %.4g" % (label, data["searches"][label]["feasible_hypervolume"])
                 for label in SEARCHES)
  precisions = sorted({r["precision"] for label in SEARCHES for r in rows[label]}) or ["fp32"]
  ax.set_title("budget: %s\nfeasible hypervolume (%s): %s"
               % (budgets_lib.describe(budgets, precisions), ", ".join(objectives), hv),
               fontsize=8)
  ax.legend(fontsize=7)
  outputs._save(fig, os.path.join(out_dir, "budget_fronts_error_%s.png" % other))  # pylint: disable=protected-access


def markdown(data: dict[str, Any]) -> str:
  """The comparison as a Markdown table."""
  lines = ["budget: %s" % json.dumps(data["budgets"], sort_keys=True), "",
           "| search | trials | trained over a known budget | pairs | feasible pairs "
           "| feasible front | feasible hypervolume |", "|---|---|---|---|---|---|---|"]
  for label in SEARCHES:
    s = data["searches"][label]
    lines.append("| %s | %d | %d | %d | %d | %s | %.4g |" % (
        label, s["trials"], s["trained_over_known_budgets"], s["pairs"], s["feasible_pairs"],
        " ".join("#%d %s" % (t, p) for t, p in s["feasible_front"]) or "none",
        s["feasible_hypervolume"]))
  return "\n".join(lines)
