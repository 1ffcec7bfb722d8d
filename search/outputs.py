"""Files a search refreshes after every trial, in its results directory.

* ``results.csv``: one row per trial and precision (``precision`` column:
  a trained cell is exported and measured at each of ``--precisions``; a
  failed trial has one row), objectives and the main metrics, whether the pair
  meets the budgets (``feasible``, ``over_budget``), error text for failed
  trials;
* ``pareto.csv``: the non-dominated feasible (cell, precision) pairs over the
  chosen objectives (the error is the deployed artifact's);
* ``summary.json``: counts, hypervolume after each ``done`` trial (in trial
  order, the first precision's values: what the optimizer models), best value
  per objective with its trial, the budgets and feasibility counts;
* PNG plots: ``pareto_error_time.png``, ``pareto_error_energy.png`` (when energy
  is an objective; every pair, marked by precision, with the front under the
  budgets and the front of all pairs), ``hypervolume.png``.

Hypervolume is computed on the objectives as measured, against a reference
point that is frozen once the search's initial random trials are done:
``search.optimizer.pareto.reference_point`` of those trials (``freeze_reference_point``;
kept in the trial store, recorded in ``summary.json``). Until then it is
recomputed from the ``done`` trials at each refresh. With a frozen point the
curve only rises and stays comparable from one refresh to the next; trials
worse than the point in some objective add nothing. ``search.reports``
recomputes hypervolume with one shared point to compare searches.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shlex
from typing import Any, List, Mapping, Optional, Sequence, TYPE_CHECKING

import numpy as np

from search import budgets as budgets_lib
from search import store as store_lib
from search import trial as trial_lib
from search.optimizer import pareto
from tea_keras import files
from tea_keras import recipes

if TYPE_CHECKING:
  from search import config as config_lib

OBJECTIVE_LABELS = {"error": "validation error", "time": "inference time (s)",
                    "energy": "energy (J)"}
CONTENDED_STYLE: dict[str, Any] = dict(marker="x", s=60, color="C3", linewidths=1.4, zorder=5,
                       label="contended: timed under other load")


def objective_label(objective: str, images: int | None = None) -> str:
  """An axis label with its unit, saying per how many images a time or an
  energy is (the protocol's totals for ``--measure_images`` images)."""
  if objective == "error" or not images:
    return OBJECTIVE_LABELS[objective]
  unit = {"time": "s", "energy": "J"}[objective]
  return "%s (%s per %d images)" % (OBJECTIVE_LABELS[objective].split(" (")[0], unit, images)


def measured_images(trials: Sequence[Mapping[str, Any]]) -> int | None:
  """The image count of the trials' measurements (None when none measured)."""
  counts = {t["metrics"].get("images") for t in trials if t["metrics"].get("images")}
  return counts.pop() if len(counts) == 1 else None
# time_cv: spread of the repeats; contended / other_cpu_share: whether other
# processes kept the CPUs busy while the time was measured (deploy/device/contention.py).
# time_s / energy_j: the protocol's totals for the `images` measured (the
# search's --measure_images); time_per_image_s divides by them.
_METRIC_COLUMNS = ("val_error", "time_s", "energy_j", "images", "time_per_image_s", "time_cv",
                   "contended", "other_cpu_share",
                   "params", "macs", "peak_activation_bytes", "epochs_completed",
                   "train_seconds", "mean_power_w", "idle_power_w", "threshold_w")


_PARETO_EXTRA = ("images", "time_per_image_s", "time_cv", "contended", "params", "macs",
                 "model_bytes")
PRECISION_MARKERS = {"fp32": "o", "fp16": "^", "int8": "s"}


def pairs(trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
          budgets: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
  """One dict per (done trial, precision): ``trial``, ``precision``,
  ``metrics`` (the pair's, over the trial's), ``values`` (objectives, None
  when missing), ``over_budget`` (``budgets.pair_violations`` and the known
  budgets the trial's recorded cost exceeds) and ``feasible``. A precision
  that failed (``search.trial.measure_precisions``) is a pair with no values
  and ``failed`` holding its error."""
  out = []
  for t in trials:
    if t["status"] != "done":
      continue
    per = t["metrics"].get("precisions") or {"fp32": {}}
    for precision, own in per.items():
      if own.get("status") == "failed":
        out.append({"trial": t, "precision": precision, "metrics": {},
                    "values": [None] * len(objectives), "over_budget": [], "feasible": False,
                    "complete": False, "failed": own.get("error") or "failed"})
        continue
      metrics = dict(t["metrics"], **{k: v for k, v in own.items() if v is not None})
      if own:
        metrics.pop("deployed_val_error", None)  # the pair's own val_error counts
      if metrics.get("time_s") is not None and metrics.get("images"):
        metrics["time_per_image_s"] = float(metrics["time_s"]) / int(metrics["images"])
      values = [trial_lib.objective_value(metrics, o) for o in objectives]
      over = known_violations(t["metrics"], budgets or {}) + budgets_lib.pair_violations(
          metrics, budgets or {})
      out.append({"trial": t, "precision": precision, "metrics": metrics, "values": values,
                  "over_budget": over, "feasible": not over,
                  "complete": all(v is not None and np.isfinite(v) for v in values)})
  return out


def known_violations(metrics: Mapping[str, Any], budgets: Mapping[str, float]) -> list[str]:
  """Known budgets a trained trial's recorded params/peak activations exceed."""
  out = []
  for name, key in (("max_params", "params"),
                    ("max_peak_activation_bytes", "peak_activation_bytes")):
    if name in budgets and metrics.get(key) is not None and metrics[key] > budgets[name]:
      out.append(name)
  return out


def pair_front(rows: Sequence[dict[str, Any]], feasible_only: bool = True) -> list[dict[str, Any]]:
  """The non-dominated complete pairs (feasible ones only by default)."""
  rows = [r for r in rows if r["complete"] and (r["feasible"] or not feasible_only)]
  if not rows:
    return []
  y = np.array([r["values"] for r in rows], float)
  mask = pareto.non_dominated_mask(y)
  order = np.lexsort(y[mask].T[::-1])
  return [rows[i] for i in np.flatnonzero(mask)[order]]


def objective_matrix(trials: Sequence[Mapping[str, Any]],
                     objectives: Sequence[str]) -> tuple[list[int], np.ndarray]:
  """``(ids, y)``: the done trials and their (n, m) objective values."""
  ids, rows = [], []
  for t in trials:
    if t["status"] != "done":
      continue
    values = [trial_lib.objective_value(t["metrics"], o) for o in objectives]
    if all(v is not None and np.isfinite(v) for v in values):
      ids.append(t["trial_id"])
      rows.append(values)
  return ids, np.asarray(rows, float).reshape(len(rows), len(objectives))


def hypervolume_curve(y: np.ndarray, ref_point: Any) -> list[float]:
  """Hypervolume of the first k points, for k = 1..n."""
  return [float(pareto.hypervolume(y[:k], ref_point)) for k in range(1, len(y) + 1)]


def retried_text(trial: Mapping[str, Any]) -> str:
  """``attempt 1 on host (node 1a2b3c4d): reason; ...``: a trial's retries
  (``store.TrialStore.requeue``), empty when it was never retried."""
  return "; ".join("attempt %s%s: %s" % (r.get("attempt"), " on %s" % r["node"] if r.get("node")
                                         else "", r.get("reason") or "no reason recorded")
                   for r in trial.get("retries") or [])


def write_results_csv(path: str, trials: Sequence[Mapping[str, Any]],
                      objectives: Sequence[str] = ("error",),
                      budgets: Mapping[str, float] | None = None) -> None:
  """One row per (trial, precision). ``host``: the driver that ran the
  trial; ``train_host``/``train_node``: the machine (and Ray node) that
  trained it; ``measure_host``: the one that measured it; ``retried``: each
  lost attempt that was retried, where and why (``retried_text``)."""
  fields = ["trial_id", "precision", "status", "source", "kind", "genotype", "encoding",
            "attempts", "host", "train_host", "train_node", "measure_host", "retried",
            "wall_seconds"] + list(_METRIC_COLUMNS) + list(_UNTRAINED_COLUMNS) + [
                "model_bytes", "feasible", "over_budget", "error"]
  untrained = untrained_measurements(trials)
  by_trial: dict[int, list[dict[str, Any]]] = {}
  for row in pairs(trials, objectives, budgets):
    by_trial.setdefault(row["trial"]["trial_id"], []).append(row)
  rows = []
  for t in trials:
    wall = (t["finished_at"] - t["started_at"]) if t["finished_at"] and t["started_at"] else None
    base = {"trial_id": t["trial_id"], "status": t["status"], "source": t["source"],
            "kind": t.get("kind") or "", "genotype": t["genotype"], "encoding": " ".join(map(str, t["encoding"])),
            "attempts": t["attempts"], "host": t["host"], "train_host": t.get("train_host"),
            "train_node": t.get("train_node"), "measure_host": t.get("measure_host"),
            "retried": retried_text(t), "wall_seconds": wall,
            "error": (t["error"] or "").splitlines()[0] if t["error"] else ""}
    for pair in by_trial.get(t["trial_id"], [None]):
      metrics = pair["metrics"] if pair else t["metrics"]
      row = dict(base, precision=pair["precision"] if pair else "")
      row.update({k: metrics.get(k) for k in _METRIC_COLUMNS + ("model_bytes",)})
      row["val_error"] = trial_lib.objective_value(metrics, "error")
      if t.get("kind") == "train" and pair:
        row.update(untrained_columns(untrained.get((t["genotype_key"], pair["precision"])),
                                     metrics))
      if pair and pair.get("failed"):
        row.update(status="failed", error=pair["failed"].splitlines()[0])
      elif pair:
        row.update(feasible=pair["feasible"], over_budget=" ".join(pair["over_budget"]))
      rows.append(row)
  _write_csv(path, fields, rows)


# A decoupled search's train evaluation beside its design's measure
# evaluation (search.decoupled): the untrained export's time and energy, and
# how far the trained export's differ (the free check of weight independence).
_UNTRAINED_COLUMNS = ("untrained_trial_id", "untrained_time_s", "untrained_energy_j",
                      "untrained_vs_trained_time_pct")


def untrained_measurements(trials: Sequence[Mapping[str, Any]]
                           ) -> dict[tuple[str, str], dict[str, Any]]:
  """``{(design key, precision): metrics}`` of the done measure evaluations
  (``store.KINDS``), each with its ``trial_id``."""
  out = {}
  for t in trials:
    if t.get("kind") != "measure" or t["status"] != "done":
      continue
    key = store_lib.design_key(t["genotype_key"])
    for precision, own in (t["metrics"].get("precisions") or {"fp32": {}}).items():
      if own.get("status") != "failed":
        out[(key, precision)] = dict(t["metrics"], **{k: v for k, v in own.items()
                                                      if v is not None},
                                     trial_id=t["trial_id"])
  return out


def untrained_columns(untrained: Mapping[str, Any] | None,
                      trained: Mapping[str, Any]) -> dict[str, Any]:
  """results.csv's ``_UNTRAINED_COLUMNS`` of a train evaluation."""
  if not untrained:
    return {}
  time_u, time_t = untrained.get("time_s"), trained.get("time_s")
  return {"untrained_trial_id": untrained["trial_id"], "untrained_time_s": time_u,
          "untrained_energy_j": untrained.get("energy_j"),
          "untrained_vs_trained_time_pct": 100.0 * (float(time_u) - float(time_t)) / float(time_t)
          if time_u is not None and time_t else None}


def write_pareto_csv(path: str, trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                     budgets: Mapping[str, float] | None = None) -> None:
  """The feasible non-dominated (cell, precision) pairs."""
  rows = []
  for pair in pair_front(pairs(trials, objectives, budgets)):
    t, metrics = pair["trial"], pair["metrics"]
    row = {"trial_id": t["trial_id"], "precision": pair["precision"], "genotype": t["genotype"]}
    row.update(dict(zip(objectives, pair["values"])))
    for key in _PARETO_EXTRA:
      row[key] = metrics.get(key)
    row["source"] = t["source"]
    row["model"] = t["artifacts"].get("model")
    row["export"] = metrics.get("export") or t["artifacts"].get("export")
    rows.append(row)
  _write_csv(path, ["trial_id", "precision", "source", "genotype"] + list(objectives)
             + list(_PARETO_EXTRA) + ["model", "export"], rows)


def feasibility_summary(trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                        budgets: Mapping[str, float] | None) -> dict[str, Any]:
  """Counts for ``summary.json``: pairs, feasible pairs, pairs over each budget,
  trained trials over a known budget (always 0 when the search honours them)."""
  rows = [r for r in pairs(trials, objectives, budgets) if not r.get("failed")]
  over: dict[str, int] = {}
  for r in rows:
    for name in r["over_budget"]:
      over[name] = over.get(name, 0) + 1
  trained = [t for t in trials if t["status"] in ("done", "failed") and "params" in t["metrics"]]
  return {"budgets": dict(budgets or {}), "pairs": len(rows),
          "feasible_pairs": sum(r["feasible"] for r in rows), "pairs_over_budget": over,
          "trained_trials": len(trained),
          "trained_over_known_budgets": sum(bool(known_violations(t["metrics"], budgets or {}))
                                            for t in trained),
          "precisions": sorted({r["precision"] for r in rows}),
          "pareto_pairs": [[r["trial"]["trial_id"], r["precision"]]
                           for r in pair_front(rows)]}


def feasible_hypervolume(trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                         budgets: Mapping[str, float] | None, ref_point: Any) -> float:
  """Hypervolume of the feasible (cell, precision) pairs against
  ``ref_point``: what the search found that meets its budgets."""
  y = np.array([r["values"] for r in pairs(trials, objectives, budgets)
                if r["complete"] and r["feasible"]], float).reshape(-1, len(objectives))
  return float(pareto.hypervolume(y, np.asarray(ref_point, float))) if len(y) else 0.0


def freeze_reference_point(store: Any, trials: Sequence[Mapping[str, Any]],
                           objectives: Sequence[str], num_initial: int) -> list[float] | None:
  """The frozen reference point (list), freezing it when the first
  ``num_initial`` trials are all finished; None before that."""
  frozen = store.get_meta("reference_point")
  if frozen is not None:
    return frozen
  # The first num_initial trials (a decoupled search: train evaluations).
  initial = [t for t in trials if t.get("kind") != "measure"][:num_initial]
  if len(initial) < num_initial or any(t["status"] not in ("done", "failed") for t in initial):
    return None
  _, y = objective_matrix(initial, objectives)
  if len(y) == 0:
    return None
  frozen = pareto.reference_point(y).tolist()
  store.set_meta("reference_point", frozen)
  return frozen


def summarize(trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
              ref_point: Any = None) -> dict[str, Any]:
  ids, y = objective_matrix(trials, objectives)
  counts = {s: sum(t["status"] == s for t in trials) for s in ("pending", "running", "done",
                                                                "failed")}
  kinds = {str(t["kind"]) for t in trials if t.get("kind")}
  summary: dict[str, Any]
  summary = {"objectives": list(objectives), "trials": len(trials), "counts": counts,
             "reference_point": None, "hypervolume": [], "hypervolume_trial_ids": ids,
             "final_hypervolume": None, "pareto_size": 0, "best": {}}
  if len(ids):
    ref = pareto.reference_point(y) if ref_point is None else np.asarray(ref_point, float)
    curve = hypervolume_curve(y, ref)
    summary.update(reference_point=ref.tolist(), hypervolume=curve, final_hypervolume=curve[-1],
                   pareto_size=int(pareto.non_dominated_mask(y).sum()))
    for j, o in enumerate(objectives):
      k = int(np.argmin(y[:, j]))
      summary["best"][o] = {"value": float(y[k, j]), "trial_id": int(ids[k])}
  if kinds:  # a decoupled search: its evaluations by kind and status
    summary["kinds"] = {kind: {s: sum(t.get("kind") == kind and t["status"] == s
                                      for t in trials) for s in counts}
                        for kind in sorted(kinds)}
  return summary


def refresh(results_dir: str, trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
            ref_point: Any = None, budgets: Mapping[str, float] | None = None) -> dict[str, Any]:
  """Rewrite every output file of a search; returns the summary dict.
  ``budgets``: ``search.budgets.budgets_of(config)``."""
  write_results_csv(os.path.join(results_dir, "results.csv"), trials, objectives, budgets)
  write_pareto_csv(os.path.join(results_dir, "pareto.csv"), trials, objectives, budgets)
  summary = summarize(trials, objectives, ref_point)
  summary["reference_point_frozen"] = ref_point is not None
  summary["feasibility"] = feasibility_summary(trials, objectives, budgets)
  if budgets and summary["reference_point"] is not None:
    summary["feasibility"]["feasible_hypervolume"] = feasible_hypervolume(
        trials, objectives, budgets, summary["reference_point"])
  _atomic_write(os.path.join(results_dir, "summary.json"), json.dumps(summary, indent=2))
  plot_search(results_dir, trials, objectives, summary, budgets)
  return summary


def plot_search(results_dir: str, trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                summary: Mapping[str, Any], budgets: Mapping[str, float] | None = None) -> None:
  """The error-vs-time/energy fronts (initial trials and the optimizer's
  proposals marked apart, each point labelled with its trial id; with several
  precisions or budgets, every (cell, precision) pair marked by precision and
  the front under the budgets beside the front of all pairs) and the
  hypervolume curve (the optimizer's start and the reference point shown)."""
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  ids, y = objective_matrix(trials, objectives)
  source = {t["trial_id"]: t["source"] for t in trials}
  contended_ids = {t["trial_id"] for t in trials if t["metrics"].get("contended")}
  images = measured_images(trials)
  initial = np.array([source[i] in ("initial", "random") for i in ids], bool)
  contended = np.array([i in contended_ids for i in ids], bool)
  for other in ("time", "energy"):
    if "error" in objectives and other in objectives and len(y):
      rows = pairs(trials, objectives, budgets)
      if budgets or len({r["precision"] for r in rows}) > 1:
        _plot_pairs(results_dir, rows, objectives, other, budgets, images)
        continue
      pair = y[:, [objectives.index(other), objectives.index("error")]]
      fig, ax = plt.subplots(figsize=(6, 4.4))
      draw_front(ax, pair, label="searched", color="C0", all_points=False)
      for mask, marker, name in ((initial, "s", "initial (random)"),
                                 (~initial, "o", "proposed by the optimizer")):
        if mask.any():
          ax.scatter(pair[mask, 0], pair[mask, 1], marker=marker, s=26, facecolor="none",
                     edgecolor="C1" if marker == "s" else "C2", label=name, zorder=4)
      if contended.any():
        ax.scatter(pair[contended, 0], pair[contended, 1], **CONTENDED_STYLE)
      _mark_hardware_only(ax, trials, objectives, other)
      for trial_id, (px, py) in zip(ids, pair):
        ax.annotate("#%d" % trial_id, (px, py), xytext=(3, 3), textcoords="offset points",
                    fontsize=7, color="0.3")
      ax.set_xlabel(objective_label(other, images))
      ax.set_ylabel(OBJECTIVE_LABELS["error"])
      ax.set_title("error vs %s (%d trials)" % (other, len(y)))
      ax.legend(fontsize=8)
      _save(fig, os.path.join(results_dir, "pareto_error_%s.png" % other))
  if summary["hypervolume"]:
    fig, ax = plt.subplots(figsize=(6, 4.4))
    count = np.arange(1, len(summary["hypervolume"]) + 1)
    ax.plot(count, summary["hypervolume"], "o-", ms=3, label="hypervolume")
    started = [k + 1 for k, i in enumerate(summary["hypervolume_trial_ids"])
               if source.get(i) not in ("initial", "random")]
    if started:
      ax.axvline(started[0] - 0.5, color="C2", ls="--", label="optimizer takes over")
    marked = [k for k, i in enumerate(summary["hypervolume_trial_ids"]) if i in contended_ids]
    if marked:
      ax.scatter(count[marked], np.asarray(summary["hypervolume"])[marked], **CONTENDED_STYLE)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume (%s)" % " x ".join(
        "%s%s" % (o, "" if o == "error" or not images else
                  " %s/%d img" % ({"time": "s", "energy": "J"}[o], images)) for o in objectives))
    ref = ", ".join("%s %.4g" % (o, v) for o, v in zip(objectives, summary["reference_point"]))
    ax.set_title("hypervolume vs trials\nreference point: %s%s" % (
        ref, "" if summary.get("reference_point_frozen") else
        " (provisional until the initial trials are done)"), fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, os.path.join(results_dir, "hypervolume.png"))


def _mark_hardware_only(ax: Any, trials: Sequence[Mapping[str, Any]],
                       objectives: Sequence[str], other: str) -> None:
  """A decoupled search's designs measured untrained and not trained (no
  error yet): ticks along the bottom of the error plot at their ``other``."""
  trained = {t["genotype_key"] for t in trials if t.get("kind") == "train"
             and t["status"] == "done"}
  values = [trial_lib.objective_value(t["metrics"], other) for t in trials
            if t.get("kind") == "measure" and t["status"] == "done"
            and store_lib.design_key(t["genotype_key"]) not in trained]
  values = [v for v in values if v is not None]
  if values:
    ax.scatter(values, [0.02] * len(values), marker="|", s=80, color="0.45",
               transform=ax.get_xaxis_transform(), zorder=2,
               label="measured untrained only (%d, no error yet)" % len(values))


def _plot_pairs(results_dir: str, rows: Sequence[dict[str, Any]], objectives: Sequence[str],
                other: str, budgets: Mapping[str, float] | None, images: int | None = None) -> None:
  """pareto_error_<other>.png of (cell, precision) pairs (see plot_search)."""
  # matplotlib: imported only when plotting.
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = [objectives.index(other), objectives.index("error")]
  rows = [r for r in rows if r["complete"]]
  fig, ax = plt.subplots(figsize=(6.4, 4.6))
  xy = lambda rs: np.array([[r["values"][c] for c in cols] for r in rs], float).reshape(-1, 2)
  if rows:
    draw_front(ax, xy(rows), "all pairs (unconstrained)", "0.6", all_points=False)
  feasible = [r for r in rows if r["feasible"]]
  if feasible and budgets:
    draw_front(ax, xy(feasible), "under the budget", "C0", all_points=False)
  for precision in sorted({r["precision"] for r in rows}):
    mine = [r for r in rows if r["precision"] == precision]
    for ok, face in ((True, "C2"), (False, "none")):
      sel = [r for r in mine if r["feasible"] == ok]
      if sel:
        ax.scatter(*xy(sel).T, marker=PRECISION_MARKERS.get(precision, "D"), s=30,  # type: ignore[misc]
                   facecolor=face, edgecolor="C3" if not ok else "k", zorder=4,
                   label="%s%s" % (precision, "" if ok else " (over budget)"))
  contended = [r for r in rows if r["metrics"].get("contended")]
  if contended:
    ax.scatter(*xy(contended).T, **CONTENDED_STYLE)
  for r, (px, py) in zip(rows, xy(rows)):
    ax.annotate("#%d" % r["trial"]["trial_id"], (px, py), xytext=(3, 3),
                textcoords="offset points", fontsize=7, color="0.3")
  ax.set_xlabel(objective_label(other, images))
  ax.set_ylabel(OBJECTIVE_LABELS["error"] + " (deployed artifact)")
  title = "error vs %s: %d (cell, precision) pairs" % (other, len(rows))
  if budgets:
    title += "\nbudget: %s" % budgets_lib.describe(budgets, sorted({r["precision"]
                                                                  for r in rows}))
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  _save(fig, os.path.join(results_dir, "pareto_error_%s.png" % other))


def draw_front(ax: Any, xy: np.ndarray, label: str, color: str, all_points: bool = True) -> None:
  """Scatter 2-D points (x, error) and draw their non-dominated staircase."""
  xy = np.asarray(xy, float)
  if all_points:
    ax.scatter(xy[:, 0], xy[:, 1], s=10, color=color, alpha=0.35)
  front = xy[pareto.non_dominated_mask(xy)]
  front = front[np.argsort(front[:, 0])]
  ax.step(front[:, 0], front[:, 1], where="post", color=color, label="%s front" % label)
  ax.scatter(front[:, 0], front[:, 1], s=22, color=color, edgecolor="k", zorder=3)


def _save(fig: Any, path: str) -> None:
  fig.tight_layout()
  with files.atomic_path(path, keep_suffix=True) as tmp:
    fig.savefig(tmp, dpi=110)
  # matplotlib: imported only when plotting.
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  plt.close(fig)


def _write_csv(path: str, fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
  with files.atomic_path(path) as tmp:
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=fields)
      writer.writeheader()
      writer.writerows(rows)


def _atomic_write(path: str, text: str) -> None:
  files.write_text(path, text)


# -- the front, for people and for Python ------------------------------------------
@dataclasses.dataclass(frozen=True)
class FrontPoint:
  """One non-dominated (cell, precision) pair. ``time_s`` and ``energy_j``
  are the protocol's totals for the search's ``measure_images`` images;
  ``time_per_image_s`` divides by them. None where not measured."""
  trial_id: int
  precision: str
  genotype: str
  error: Optional[float]
  time_s: Optional[float]
  energy_j: Optional[float]
  time_per_image_s: Optional[float]
  contended: bool
  source: str
  model: Optional[str]
  export: Optional[str]


def front_points(trials: Sequence[Mapping[str, Any]],
                 config: config_lib.SearchConfig) -> List[FrontPoint]:
  """The non-dominated feasible (cell, precision) pairs of ``trials``,
  sorted by error."""
  out = []
  for row in pair_front(pairs(trials, config.objectives, budgets_lib.budgets_of(config))):
    t, m = row["trial"], row["metrics"]
    time_s = trial_lib.objective_value(m, "time")
    images = m.get("images") or config.measure_images
    out.append(FrontPoint(
        trial_id=t["trial_id"], precision=row["precision"], genotype=t["genotype"],
        error=trial_lib.objective_value(m, "error"), time_s=time_s,
        energy_j=trial_lib.objective_value(m, "energy"),
        time_per_image_s=None if time_s is None or not images else time_s / images,
        contended=bool(m.get("contended")), source=t["source"],
        model=t["artifacts"].get("model"),
        export=m.get("export") or t["artifacts"].get("export")))
  return sorted(out, key=lambda p: (p.error is None, p.error))


def _cell(value: float | None, spec: str) -> str:
  return "-" if value is None else spec % value


def front_table(front: Sequence[FrontPoint], objectives: Sequence[str], measure_images: int) -> str:
  """The front as a text table: one line per point (see ``FrontPoint``)."""
  header = ["trial", "prec", "error"]
  if "time" in objectives:
    header += ["time (s/%d img)" % measure_images, "ms/img"]
  if "energy" in objectives:
    header += ["energy (J/%d img)" % measure_images]
  header += ["flags", "genotype"]
  rows = []
  for p in front:
    row = ["#%d" % p.trial_id, p.precision, _cell(p.error, "%.4f")]
    if "time" in objectives:
      row += [_cell(p.time_s, "%.4g"), _cell(None if p.time_per_image_s is None
                                              else 1000 * p.time_per_image_s, "%.3g")]
    if "energy" in objectives:
      row += [_cell(p.energy_j, "%.4g")]
    row += ["contended" if p.contended else "", p.genotype]
    rows.append(row)
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header) - 1)]
  lines = []
  for r in [header] + rows:
    lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])
  return "\n".join(lines)


def trade_offs(front: Sequence[FrontPoint]) -> list[tuple[str, FrontPoint]]:
  """The points worth a next step: the lowest error, the cheapest (first
  cost objective) and the knee (closest to the ideal point after scaling
  each objective to [0, 1]), without repeats."""
  if not front:
    return []
  def cost(p: FrontPoint) -> Any:
    return p.time_s if p.time_s is not None else p.energy_j
  picked = [("lowest error", min(front, key=lambda p: p.error))]  # type: ignore[arg-type,return-value]
  costed = [p for p in front if cost(p) is not None]
  if costed:
    picked.append(("cheapest", min(costed, key=cost)))
    y = np.array([[p.error, cost(p)] for p in costed], float)
    span = np.where(np.ptp(y, axis=0) > 0, np.ptp(y, axis=0), 1.0)
    scaled = (y - y.min(axis=0)) / span
    picked.append(("knee", costed[int(np.argmin(np.hypot(scaled[:, 0], scaled[:, 1])))]))
  out, seen = [], set()
  for label, point in picked:
    key = (point.trial_id, point.precision)
    if key not in seen:
      seen.add(key)
      out.append((label, point))
  return out


def next_commands(front: Sequence[FrontPoint], config: config_lib.SearchConfig) -> List[str]:
  """What to run next for the best trade-offs: the full training with the
  paper's final recipe, the export, and the measurement on the target."""
  recipe = recipes.search_recipe(**config.recipe)
  data = "--dataset=%s%s" % (config.dataset, " --data_dir=%s" % shlex.quote(config.data_dir)
                             if config.data_dir else "")
  target = ("--device=remote --runtime=%s --device_url=%s --device_token_file=%s" % (
      config.runtime, config.device_url, config.device_token_file)
            if config.device == "remote" else "--device=%s --runtime=%s --power_source=%s" % (
                config.device, config.runtime, config.power_source))
  lines = []
  for label, p in trade_offs(front):
    model_dir = "final/trial_%04d" % p.trial_id
    lines += [
        "%s: trial #%d (%s), error %s%s" % (
            label, p.trial_id, p.precision, _cell(p.error, "%.4f"),
            "" if p.time_per_image_s is None else ", %.3g ms per image" % (
                1000 * p.time_per_image_s)),
        "  train:   python -m tea_keras.train --flagfile=flags/final_train.cfg --genotype=%s "
        "--num_cells=%d --filters=%d %s --model_dir=%s" % (
            shlex.quote(p.genotype), recipe.num_cells, recipe.filters, data, model_dir),
        "  export:  python -m deploy.export --model_dir=%s --format=onnx --precision=%s" % (
            model_dir, p.precision),
        "  measure: python -m search.reports --figure=table2 --model_dirs=%s --measure_label=%s "
        "%s %s --measure_images=%d --out_dir=%s/report" % (
            model_dir, config.device_kind or config.device, target, data,
            config.measure_images, model_dir)]
  if lines:
    lines.append("(the search trained N=%d, F=%d; the paper trains its final models larger: "
                 "raise --num_cells/--filters for the final training, Table II)"
                 % (recipe.num_cells, recipe.filters))
  return lines
