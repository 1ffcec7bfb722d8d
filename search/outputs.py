"""Files a search refreshes after every trial, in its results directory.

* ``results.csv``: one row per trial (every status), objectives and the main
  metrics, error text for failed trials;
* ``pareto.csv``: the non-dominated ``done`` trials over the chosen objectives;
* ``summary.json``: counts, hypervolume after each ``done`` trial (in trial
  order), best value per objective with its trial;
* PNG plots: ``pareto_error_time.png``, ``pareto_error_energy.png`` (when energy
  is an objective), ``hypervolume.png``.

Hypervolume is computed on the objectives as measured, against a reference
point that is frozen once the search's initial random trials are done:
``search.optimizer.pareto.reference_point`` of those trials (``freeze_reference_point``;
kept in the trial store, recorded in ``summary.json``). Until then it is
recomputed from the ``done`` trials at each refresh. With a frozen point the
curve only rises and stays comparable from one refresh to the next; trials
worse than the point in some objective add nothing. ``search.report``
recomputes hypervolume with one shared point to compare searches.
"""

import csv
import json
import os

import numpy as np

from search.optimizer import pareto
from search import trial as trial_lib

OBJECTIVE_LABELS = {"error": "validation error", "time": "inference time (s)",
                    "energy": "energy (J)"}
# time_cv: spread of the repeats; contended / other_cpu_share: whether other
# processes kept the CPUs busy while the time was measured (deploy/contention.py).
_METRIC_COLUMNS = ("val_error", "time_s", "energy_j", "time_cv", "contended", "other_cpu_share",
                   "params", "macs", "peak_activation_bytes", "epochs_completed",
                   "train_seconds", "mean_power_w", "idle_power_w", "threshold_w")


_PARETO_EXTRA = ("time_cv", "contended", "params", "macs")


def objective_matrix(trials, objectives):
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


def hypervolume_curve(y, ref_point):
  """Hypervolume of the first k points, for k = 1..n."""
  return [float(pareto.hypervolume(y[:k], ref_point)) for k in range(1, len(y) + 1)]


def write_results_csv(path, trials):
  fields = ["trial_id", "status", "source", "genotype", "encoding", "attempts", "host",
            "wall_seconds"] + list(_METRIC_COLUMNS) + ["error"]
  rows = []
  for t in trials:
    wall = (t["finished_at"] - t["started_at"]) if t["finished_at"] and t["started_at"] else None
    row = {"trial_id": t["trial_id"], "status": t["status"], "source": t["source"],
           "genotype": t["genotype"], "encoding": " ".join(map(str, t["encoding"])),
           "attempts": t["attempts"], "host": t["host"], "wall_seconds": wall,
           "error": (t["error"] or "").splitlines()[0] if t["error"] else ""}
    row.update({k: t["metrics"].get(k) for k in _METRIC_COLUMNS})
    rows.append(row)
  _write_csv(path, fields, rows)


def write_pareto_csv(path, trials, objectives):
  ids, y = objective_matrix(trials, objectives)
  by_id = {t["trial_id"]: t for t in trials}
  rows = []
  if len(ids):
    mask = pareto.non_dominated_mask(y)
    order = np.lexsort(y[mask].T[::-1])
    for i in np.asarray(ids)[mask][order]:
      t = by_id[int(i)]
      row = {"trial_id": t["trial_id"], "genotype": t["genotype"]}
      row.update({o: trial_lib.objective_value(t["metrics"], o) for o in objectives})
      for key in _PARETO_EXTRA:
        row[key] = t["metrics"].get(key)
      row["source"] = t["source"]
      row["model"] = t["artifacts"].get("model")
      rows.append(row)
  _write_csv(path, ["trial_id", "source", "genotype"] + list(objectives) + list(_PARETO_EXTRA)
             + ["model"], rows)


def freeze_reference_point(store, trials, objectives, num_initial):
  """The frozen reference point (list), freezing it when the first
  ``num_initial`` trials are all finished; None before that."""
  frozen = store.get_meta("reference_point")
  if frozen is not None:
    return frozen
  initial = [t for t in trials if t["trial_id"] <= num_initial]
  if len(initial) < num_initial or any(t["status"] not in ("done", "failed") for t in initial):
    return None
  _, y = objective_matrix(initial, objectives)
  if len(y) == 0:
    return None
  frozen = pareto.reference_point(y).tolist()
  store.set_meta("reference_point", frozen)
  return frozen


def summarize(trials, objectives, ref_point=None):
  ids, y = objective_matrix(trials, objectives)
  counts = {s: sum(t["status"] == s for t in trials) for s in ("pending", "running", "done",
                                                                "failed")}
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
  return summary


def refresh(results_dir, trials, objectives, ref_point=None):
  """Rewrite every output file of a search; returns the summary dict."""
  write_results_csv(os.path.join(results_dir, "results.csv"), trials)
  write_pareto_csv(os.path.join(results_dir, "pareto.csv"), trials, objectives)
  summary = summarize(trials, objectives, ref_point)
  summary["reference_point_frozen"] = ref_point is not None
  _atomic_write(os.path.join(results_dir, "summary.json"), json.dumps(summary, indent=2))
  plot_search(results_dir, trials, objectives, summary)
  return summary


def plot_search(results_dir, trials, objectives, summary):
  """The error-vs-time/energy fronts (initial trials and the optimizer's
  proposals marked apart, each point labelled with its trial id) and the
  hypervolume curve (the optimizer's start and the reference point shown)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  ids, y = objective_matrix(trials, objectives)
  source = {t["trial_id"]: t["source"] for t in trials}
  initial = np.array([source[i] in ("initial", "random") for i in ids], bool)
  for other in ("time", "energy"):
    if "error" in objectives and other in objectives and len(y):
      pair = y[:, [objectives.index(other), objectives.index("error")]]
      fig, ax = plt.subplots(figsize=(6, 4.4))
      draw_front(ax, pair, label="searched", color="C0", all_points=False)
      for mask, marker, name in ((initial, "s", "initial (random)"),
                                 (~initial, "o", "proposed by the optimizer")):
        if mask.any():
          ax.scatter(pair[mask, 0], pair[mask, 1], marker=marker, s=26, facecolor="none",
                     edgecolor="C1" if marker == "s" else "C2", label=name, zorder=4)
      for trial_id, (px, py) in zip(ids, pair):
        ax.annotate("#%d" % trial_id, (px, py), xytext=(3, 3), textcoords="offset points",
                    fontsize=7, color="0.3")
      ax.set_xlabel(OBJECTIVE_LABELS[other])
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
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume (%s)" % ", ".join(objectives))
    ref = ", ".join("%s %.4g" % (o, v) for o, v in zip(objectives, summary["reference_point"]))
    ax.set_title("hypervolume vs trials\nreference point: %s%s" % (
        ref, "" if summary.get("reference_point_frozen") else " (provisional)"), fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, os.path.join(results_dir, "hypervolume.png"))


def draw_front(ax, xy, label, color, all_points=True):
  """Scatter 2-D points (x, error) and draw their non-dominated staircase."""
  xy = np.asarray(xy, float)
  if all_points:
    ax.scatter(xy[:, 0], xy[:, 1], s=10, color=color, alpha=0.35)
  front = xy[pareto.non_dominated_mask(xy)]
  front = front[np.argsort(front[:, 0])]
  ax.step(front[:, 0], front[:, 1], where="post", color=color, label="%s front" % label)
  ax.scatter(front[:, 0], front[:, 1], s=22, color=color, edgecolor="k", zorder=3)


def _save(fig, path):
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  os.replace(tmp, path)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  plt.close(fig)


def _write_csv(path, fields, rows):
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


def _atomic_write(path, text):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
