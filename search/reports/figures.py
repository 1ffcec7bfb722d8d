"""Redraw the paper's figures and Table II from results directories.

Fig. 5 (BO vs random search, Pareto curves after 100/200/300/400 samples)::

  python -m search.reports --figure=fig5 --pesmo_dir=runs/paper_movidius \\
      --random_dir=runs/paper_random_movidius --out_dir=reports/fig5

writes ``fig5_error_time.png`` (and ``fig5_error_energy.png`` when both
searches measured energy), ``fig5_hypervolume.png`` and ``fig5.json``
(hypervolume of each search after each checkpoint, one shared reference
point: ``comparison_reference_point``). ``--checkpoints`` defaults to the paper's
100,200,300,400 for searches of 400 trials, else to quarters of the shorter search;
given counts beyond it are clipped (with a notice) and duplicates dropped.

The front measured again, back to back with the search's own settings (times
measured while other processes were busy are flagged ``contended`` in
``results.csv``; this puts the front on one footing)::

  python -m search.reports --figure=remeasure --results_dir=runs/quickstart

writes ``runs/quickstart/remeasure/remeasured_front.csv`` (``--out_dir`` elsewhere) (time and energy then and now, both contention
flags, the ratio). Fig. 5 prints a notice when a search's times include
contended measurements. Every measurement made here (remeasure, precisions
with ``--runtimes``, Table II with ``--measure_label``) holds the local
device's machine-wide lock exclusive (``search.device_lock``): no search on
this machine trains, proposes or measures on that device meanwhile.

Per-precision table of a search's Pareto cells (error delta, size, time and
energy ratios against fp32; ``search.reports.precisions``), from the search's
records, or measured again now on each of ``--runtimes``::

  python -m search.reports --figure=precisions --results_dir=runs/constrained \
      --runtimes=onnxruntime,openvino --top=3 --out_dir=reports/constrained

The front under a budget next to an unconstrained search of the same
settings (``search.reports.budget``)::

  python -m search.reports --figure=budget --results_dir=runs/constrained \
      --unconstrained_dir=runs/constrained_baseline --out_dir=reports/budget

Table II (final training of chosen models, DenseNet-40 as the baseline)::

  python -m tea_keras.train --flagfile=flags/final_train.cfg --genotype=... \\
      --num_cells=2 --filters=24 --model_dir=final/n2f24
  python -m search.reports --figure=table2 --model_dirs=final/n2f24,final/densenet40 \\
      --measure_label=cpu --device=cpu --runtime=onnxruntime --out_dir=reports

Each ``--model_dirs`` entry is a training directory (``metrics.json``,
``model.keras``). With ``--measure_label`` the models are exported and
measured on ``--device`` now and the result is kept in
``<model_dir>/measurements/<label>.json``; the table gathers every label
measured so far, so running the command once per device (``--device=remote``
for a board behind the agent) fills one column pair per device.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from deploy import pipeline
from search import config as config_lib
from search import device_lock
from search import loop
from search import outputs
from search.optimizer import pareto
from search.reports import cross_device_lib
from search.reports.common import comparison_reference_point, load_search
from tea_keras import data as data_lib

# -- Fig. 5 -----------------------------------------------------------------------
def first_k(trials: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
  """The first ``k`` finished trials (done or failed), in trial order."""
  finished = [t for t in trials if t["status"] in ("done", "failed")]
  return finished[:k]


PAPER_CHECKPOINTS = (100, 200, 300, 400)


def choose_checkpoints(sizes: Sequence[int], requested: Sequence[int] | None = None,
                       log: Callable[[str], object] = print) -> list[int]:
  """Sample counts of the Fig. 5 panels: ``requested`` clipped to the runs'
  size (duplicates dropped, with a notice), else the paper's when both runs
  have 400 trials, else quarters of the shorter run."""
  n = min(sizes)
  if n < 1:
    raise ValueError("A search has no finished trial to draw.")
  if requested is None:
    if n >= PAPER_CHECKPOINTS[-1]:
      return list(PAPER_CHECKPOINTS)
    return sorted(set(max(1, -(-n * q // 4)) for q in (1, 2, 3, 4)))
  if any(c < 1 for c in requested):
    raise ValueError("--checkpoints=%s: expected positive sample counts." % requested)
  chosen = sorted(set(min(c, n) for c in requested))
  if chosen != sorted(requested):
    log("notice: --checkpoints=%s clipped to the %d finished trials of the shorter run: %s"
        % (",".join(map(str, requested)), n, ",".join(map(str, chosen))))
  return chosen


def fig5(pesmo_dir: str, random_dir: str, checkpoints: Sequence[int] | None, out_dir: str,
         log: Callable[[str], object] = print) -> dict[str, Any]:
  """Draw Fig. 5; returns the figures' data (also written to fig5.json)."""
  if os.path.realpath(pesmo_dir) == os.path.realpath(random_dir):
    raise ValueError("--pesmo_dir and --random_dir are the same directory (%s); Fig. 5 compares "
                     "two searches." % pesmo_dir)
  runs = {"PESMO": load_search(pesmo_dir), "random": load_search(random_dir)}
  checkpoints = choose_checkpoints([len(first_k(t, 10 ** 9)) for _, t in runs.values()],
                                   checkpoints, log)
  notice = contention_notice(runs)
  if notice:
    log(notice)
  objectives = [o for o in ("error", "time", "energy")
                if all(o in cfg["objectives"] for cfg, _ in runs.values())]
  if "error" not in objectives or len(objectives) < 2:
    raise ValueError("The two searches share no error-vs-time/energy objectives: %s."
                     % objectives)
  all_y = np.vstack([outputs.objective_matrix(t, objectives)[1] for _, t in runs.values()])
  ref = comparison_reference_point(all_y)
  data = {"objectives": objectives, "reference_point": ref.tolist(), "checkpoints": {},
          "contention_notice": notice}
  for label, (_, trials) in runs.items():
    _, y = outputs.objective_matrix(first_k(trials, 10 ** 9), objectives)
    data.setdefault("hypervolume", {})[label] = outputs.hypervolume_curve(y, ref)
  os.makedirs(out_dir, exist_ok=True)
  for other in [o for o in ("time", "energy") if o in objectives]:
    _fig5_fronts(runs, objectives, other, checkpoints, ref, data, out_dir)
  _fig5_hypervolume(data, out_dir)
  with open(os.path.join(out_dir, "fig5.json"), "w") as f:
    json.dump(data, f, indent=2)
  return data


def _fig5_fronts(runs: Mapping[str, Any], objectives: Sequence[str], other: str,
                 checkpoints: Sequence[int], ref: np.ndarray, data: dict[str, Any],
                 out_dir: str) -> None:
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = [objectives.index(other), objectives.index("error")]
  fig, axes = plt.subplots(1, len(checkpoints), figsize=(4 * len(checkpoints), 3.6),
                           squeeze=False, sharey=True)
  for ax, k in zip(axes[0], checkpoints):
    for color, (label, (_, trials)) in zip(("C3", "C0"), runs.items()):
      subset = first_k(trials, k)
      _, y = outputs.objective_matrix(subset, objectives)
      data["checkpoints"].setdefault(str(k), {})[label] = {
          "trials": len(subset), "hypervolume": float(pareto.hypervolume(y, ref)) if len(y) else 0.0}
      if len(y):
        outputs.draw_front(ax, y[:, cols], "%s (%d)" % (label, len(subset)), color,
                           all_points=False)
    ax.set_title("after %d samples" % k)
    ax.set_xlabel(outputs.OBJECTIVE_LABELS[other])
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel(outputs.OBJECTIVE_LABELS["error"])
  fig.suptitle("Fig. 5: PESMO vs random search, error vs %s" % other)
  outputs._save(fig, os.path.join(out_dir, "fig5_error_%s.png" % other))  # pylint: disable=protected-access


def _fig5_hypervolume(data: dict[str, Any], out_dir: str) -> None:
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for color, (label, curve) in zip(("C3", "C0"), data["hypervolume"].items()):
    ax.plot(np.arange(1, len(curve) + 1), curve, color=color, label=label)
  ax.set_xlabel("completed trials")
  ax.set_ylabel("hypervolume (shared reference point)")
  ax.legend()
  outputs._save(fig, os.path.join(out_dir, "fig5_hypervolume.png"))  # pylint: disable=protected-access


# -- the front measured again ------------------------------------------------------
def remeasure_front(results_dir: str, out_dir: str, log: Callable[[str], object] = print) -> str:
  """Measure the Pareto models of ``results_dir`` again, one after the other,
  with the search's own settings (its target is asked again first), so that
  the front's times compare like with like; writes ``remeasured_front.csv``
  and returns it as a Markdown table."""
  config_dict, _ = load_search(results_dir)
  config = config_lib.SearchConfig.from_dict(config_dict)
  config = loop.resolve(dataclasses.replace(config, device_kind=None, artifact_format=None,
                                            onnx_opset=None), log)
  os.makedirs(out_dir, exist_ok=True)
  rows = cross_device_lib.remeasure(results_dir, config, out_dir, log)
  for row in rows:
    old, new = row["source_time_s"], row["time_s"]
    row["time_ratio"] = new / old if old and new else None
  path = os.path.join(out_dir, "remeasured_front.csv")
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial_id"])
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| trial | time in search (s) | contended then | time now (s) | contended now | "
           "now / then |", "|---|---|---|---|---|---|"]
  lines += ["| #%d | %s | %s | %s | %s | %s |" % (
      r["trial_id"], _num(r["source_time_s"]), r["source_contended"], _num(r["time_s"]),
      r["contended"], _num(r["time_ratio"])) for r in rows]
  return "\n".join(lines) + "\n" + path + "\n"


def contention_notice(runs: Mapping[str, Any]) -> str | None:
  """A notice naming the searches whose measured times include contended ones."""
  parts = []
  for label, (_, trials) in runs.items():
    count = sum(bool(t["metrics"].get("contended")) for t in trials if t["status"] == "done")
    if count:
      parts.append("%s: %d of %d" % (label, count, sum(t["status"] == "done" for t in trials)))
  if not parts:
    return None
  return ("notice: this comparison mixes contended measurements (other processes kept the CPUs "
          "busy while they were timed; %s). Re-measure the fronts with --figure=remeasure on a "
          "quiet machine before reading the time axis." % "; ".join(parts))


# -- Table II ---------------------------------------------------------------------
def measure_model_dir(model_dir: str, label: str,
                      settings: config_lib.SearchConfig) -> dict[str, Any]:
  """Export and measure ``<model_dir>/model.keras``; keep the JSON under
  ``<model_dir>/measurements/<label>.json`` and return it."""
  from tea_keras import network  # pylint: disable=g-import-not-at-top  (Keras)
  model = network.load_model(os.path.join(model_dir, "model.keras"))
  splits = data_lib.load(settings.dataset, data_dir=settings.data_dir)
  images = data_lib.normalize(splits.x_val[:settings.measure_images])
  work = os.path.join(model_dir, "measurements", label)
  with device_lock.measuring(device_lock.for_config(settings)):  # no search works meanwhile
    metrics, artifacts = pipeline.export_and_measure(model, work, settings, images)
  metrics.update(artifacts=artifacts)
  with open(work + ".json", "w") as f:
    json.dump(metrics, f, indent=2)
  return metrics


def table2(model_dirs: Sequence[str], names: Sequence[str] | None = None) -> str:
  """The Markdown Table II of the models in ``model_dirs``; rows are named by
  ``names`` (one per model dir), else DenseNet-40 or the cell's genotype."""
  if names and len(names) != len(model_dirs):
    raise ValueError("--labels names %d models, --model_dirs %d; expected one label per model "
                     "dir." % (len(names), len(model_dirs)))
  rows, labels = [], []
  for d in model_dirs:
    with open(os.path.join(d, "metrics.json")) as f:
      metrics = json.load(f)
    with open(os.path.join(d, "config.json")) as f:
      config = json.load(f)
    mdir = os.path.join(d, "measurements")
    found = {}
    if os.path.isdir(mdir):
      for name in sorted(os.listdir(mdir)):
        if name.endswith(".json"):
          with open(os.path.join(mdir, name)) as f:
            found[name[:-5]] = json.load(f)
    labels += [l for l in found if l not in labels]
    rows.append((d, metrics, config, found))
  head = ["model", "N", "F", "params", "test error (%)"]
  for l in labels:
    head += ["%s time (s)" % l, "%s energy (J)" % l]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for k, (d, metrics, config, found) in enumerate(rows):
    model = config.get("model") or config.get("genotype") or os.path.basename(d)
    name = names[k] if names else ("DenseNet-40" if "densenet" in str(model) else str(model))
    err = metrics.get("test_error")
    cells = [name, str(config.get("num_cells", "-")), str(config.get("filters", "-")),
             "%.2fM" % (metrics["params"] / 1e6), "-" if err is None else "%.2f" % (100 * err)]
    for l in labels:
      m = found.get(l, {})
      cells += [_num(m.get("time_s")), _num(m.get("energy_j"))]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
  return "n/a" if value is None else "%.4g" % value


def table2_settings(out_dir: str, device: str, runtime: str, power_source: str,
                    power_threshold_w: float | None, dataset: str, data_dir: str | None,
                    measure_images: int, device_url: str | None = None,
                    device_token_file: str | None = None,
                    log: Callable[[str], object] = print) -> config_lib.SearchConfig:
  """The measurement settings of Table II, checked against the target first
  (``search.loop.resolve``: what it can run, which power source reads)."""
  config = config_lib.SearchConfig(
      results_dir=out_dir, objectives=("error", "time"), device=device, runtime=runtime,
      power_source=power_source, power_threshold_w=power_threshold_w, dataset=dataset,
      data_dir=data_dir, measure_images=measure_images, device_url=device_url,
      device_token_file=device_token_file)
  return loop.resolve(config, log)


def dnas_beside_search(dnas_dir: str, search_dir: str, out_dir: str) -> dict[str, Any]:
  """``dnas_vs_search.png`` and ``.json``: error against time per image of a
  DNAS sweep's networks (by size target, the uniform baselines marked) and
  of a search's trials (PESMO's, say), each with its (error, time) front.
  Both are measured with the protocol; their measurements compare when they
  ran on the same target with the same images (checked: device, runtime,
  dataset). Returns the figure's data."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy; Agg backend)
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  dnas_config, dnas_trials = load_search(dnas_dir)
  search_config, search_trials = load_search(search_dir)
  if "dnas" not in dnas_config:
    raise ValueError("--results_dir=%s is not a DNAS sweep (python -m search.dnas)." % dnas_dir)
  if "dnas" in search_config:
    raise ValueError("--pesmo_dir=%s is a DNAS sweep, not a search." % search_dir)
  differ = [k for k in ("device", "runtime", "dataset") if dnas_config.get(k) != search_config.get(k)]
  if differ:
    raise ValueError("The sweep and the search were measured differently (%s differ): their "
                     "times do not compare." % ", ".join(differ))

  def points(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in trials:
      m = t["metrics"]
      if t["status"] != "done" or m.get("time_s") is None or not m.get("images"):
        continue
      error = m.get("deployed_val_error", m.get("val_error"))
      if error is None:
        continue
      out.append({"trial_id": t["trial_id"], "time_per_image_s": m["time_s"] / m["images"],
                  "error": float(error), "size_target": m.get("size_target_fraction"),
                  "method": m.get("method"), "params": m.get("params"),
                  "contended": bool(m.get("contended"))})
    return out

  series = {"dnas": points(dnas_trials), "search": points(search_trials)}
  for name, pts in series.items():
    if not pts:
      raise ValueError("No finished trial with a measured time and error in the %s (%s)."
                       % (name, dnas_dir if name == "dnas" else search_dir))
    y = np.array([[p["error"], p["time_per_image_s"]] for p in pts])
    for p, keep in zip(pts, pareto.non_dominated_mask(y)):
      p["on_front"] = bool(keep)
  fig, ax = plt.subplots(figsize=(6.4, 4.6))
  s = series["search"]
  ax.scatter([p["time_per_image_s"] * 1e3 for p in s], [p["error"] for p in s], s=18,
             color="0.6", label="%s search (%s)" % (search_config.get("strategy", ""),
                                                    os.path.basename(search_dir.rstrip("/"))))
  front = sorted((p for p in s if p["on_front"]), key=lambda p: p["time_per_image_s"])
  ax.step([p["time_per_image_s"] * 1e3 for p in front], [p["error"] for p in front],
          where="post", color="0.4")
  targets = sorted({p["size_target"] for p in series["dnas"]}, reverse=True)
  for k, target in enumerate(targets):
    mine = [p for p in series["dnas"] if p["size_target"] == target]
    color = "C%d" % k
    for method, marker in (("dnas", "o"), ("uniform", "s")):
      pts = [p for p in mine if p["method"] == method]
      if pts:
        ax.scatter([p["time_per_image_s"] * 1e3 for p in pts], [p["error"] for p in pts],
                   marker=marker, s=40, color=color, zorder=4,
                   label="%s, size <= %g x seed" % ("DNAS" if method == "dnas"
                                                    else "uniform width", target))
  ax.set_xlabel("time per image (ms), %s on %s" % (dnas_config.get("runtime"),
                                                  dnas_config.get("device")))
  ax.set_ylabel("validation error")
  ax.set_title("DNAS sweep beside a search (each point: one trained network)", fontsize=9)
  ax.legend(fontsize=7)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "dnas_vs_search.png")
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  data = {"dnas_dir": dnas_dir, "search_dir": search_dir, "png": path, **series}
  with open(os.path.join(out_dir, "dnas_vs_search.json"), "w") as f:
    json.dump(data, f, indent=1)
  return data


def default_out_dir(figure: str, results_dir: str | None = None) -> str:
  """Where a figure goes without --out_dir: a search's own figures stay in
  its results dir, comparisons across searches go under reports/."""
  if figure in ("remeasure", "precisions", "budget", "dnas") and results_dir:
    return os.path.join(results_dir, figure)
  return os.path.join("reports", figure)
