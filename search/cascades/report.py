"""The report of a cascade: fronts plot, points table, savings, measurements.

* ``cascade_fronts.png`` / ``.csv``: the single models (every measured trial,
  their front drawn) and the cascade front, error vs time (and vs energy when
  measured), costs per image;
* ``cascade_points.csv`` / ``.md``: each point of the front: thresholds,
  fraction of images answered by each stage, predicted error and cost,
  held-out (test) error, and with ``--measure`` the cost measured now;
* ``best_saving``: the largest cost saving of a point whose error is within
  ``tolerance`` of the best single model's (negative: none is cheaper);
  ``front_saving``: the largest against the single-model front at equal or
  lower error;
* ``summary_lines``: the console's summary, saying the same in words.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from deploy import measure as measure_lib
from search import outputs
from search.cascades import thresholds as cascade_lib

COSTS = (("time", "time_s_per_image", "time per image (s)"),
         ("energy", "energy_j_per_image", "energy per image (J)"))
# Each stage is also measured at batch_size // SMALL_BATCH_DIVISOR: its per-call cost.
SMALL_BATCH_DIVISOR = 10
# Errors this close are equal (a search records float32 errors, the cascade float64).
_SAME_ERROR = 1e-6


def single_model_points(trials: Sequence[Mapping[str, Any]]
                        ) -> list[tuple[str, float, float | None, float | None]]:
  """(name, error, time/image, energy/image) of every measured done trial."""
  rows = []
  for t in trials:
    m = t["metrics"]
    if m.get("val_error") is None or m.get("time_s") is None or not m.get("images"):
      continue
    energy = m.get("energy_j")
    rows.append(("trial #%d" % t["trial_id"], float(m["val_error"]),
                 m["time_s"] / m["images"], None if energy is None else energy / m["images"]))
  return rows


def plot_fronts(out_dir: str, singles: Sequence[tuple[Any, ...]], stages: Sequence[dict[str, Any]],
                points: Sequence[dict[str, Any]]) -> None:
  """Write ``cascade_fronts.png`` (one panel per measured cost) and its CSV."""
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [(name, key, label) for name, key, label in COSTS
            if all(p[key] is not None for p in points)]
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
  for ax, (name, key, label) in zip(axes[0], panels):
    col = {"time": 2, "energy": 3}[name]
    single = np.array([[r[col], r[1]] for r in singles if r[col] is not None], float)
    if len(single):
      outputs.draw_front(ax, single, "single-model", "C0")
    cascade = np.array([[p[key], p["error"]] for p in points], float)
    outputs.draw_front(ax, cascade, "cascade", "C3", all_points=False)
    for k, s in enumerate(stages, 1):
      ax.annotate("stage %d" % k, (s[key], s["val_error"]), xytext=(4, -10),
                  textcoords="offset points", fontsize=7)
    ax.set_xlabel(label)
    ax.set_ylabel("validation error")
    ax.set_title("error vs %s: %d stages, %d front points" % (name, len(stages), len(points)),
                 fontsize=9)
    ax.legend(fontsize=8)
  path = os.path.join(out_dir, "cascade_fronts.png")
  outputs._save(fig, path)  # pylint: disable=protected-access
  rows = [{"kind": "single", "name": r[0], "error": r[1], "time_s_per_image": r[2],
           "energy_j_per_image": r[3], "thresholds": ""} for r in singles]
  rows += [{"kind": "cascade", "name": "point %d" % i, "error": p["error"],
            "time_s_per_image": p["time_s_per_image"],
            "energy_j_per_image": p["energy_j_per_image"],
            "thresholds": " ".join("%.6g" % t for t in p["thresholds"])}
           for i, p in enumerate(points)]
  _write_csv(os.path.join(out_dir, "cascade_fronts.csv"), list(rows[0]), rows)


def best_saving(points: Sequence[dict[str, Any]], best_single: Mapping[str, Any],
                tolerance: float = 0.005) -> dict[str, Any]:
  """The largest saving of time and of energy (fractions of the best single
  model's) among points with error <= best model's error + ``tolerance``.

  best_single: dict with ``val_error``, ``time_s_per_image``,
  ``energy_j_per_image`` (the most accurate stage). Returns
  ``{"time": {...}, "energy": {...}}`` with the point index and its numbers.
  """
  out = {"tolerance": tolerance, "best_single_error": best_single["val_error"]}
  bound = best_single["val_error"] + tolerance
  for name, key, _ in COSTS:
    base = best_single.get(key)
    ok = [i for i, p in enumerate(points) if p["error"] <= bound + _SAME_ERROR and
          p.get(key) is not None]
    if base is None or not ok:
      out[name] = None
      continue
    i = min(ok, key=lambda k: points[k][key])
    out[name] = {"point": i, "saving": 1.0 - points[i][key] / base, "error": points[i]["error"],
                 "cost": points[i][key], "best_single_cost": base}
  return out


def front_saving(points: Sequence[dict[str, Any]],
                 singles: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
  """The largest saving of a point against the single-model front at equal
  or lower error: ``1 - cost(point) / cost(cheapest single model with error
  <= the point's)``, per cost. singles: rows of ``single_model_points``.
  Returns ``{"time": {...} or None, "energy": ...}`` (None: no point has a
  single model that accurate to compare with)."""
  out = {}
  for name, key, _ in COSTS:
    col = {"time": 2, "energy": 3}[name]
    best = None
    for i, p in enumerate(points):
      rivals = [r for r in singles if r[1] <= p["error"] + _SAME_ERROR and r[col] is not None]
      if p.get(key) is None or not rivals:
        continue
      rival = min(rivals, key=lambda r: r[col])
      saving = 1.0 - p[key] / rival[col]
      if best is None or saving > best["saving"]:
        best = {"point": i, "saving": saving, "error": p["error"], "cost": p[key],
                "single": rival[0], "single_error": rival[1], "single_cost": rival[col]}
    out[name] = best
  return out


def summary_lines(summary: Mapping[str, Any], out_dir: str) -> list[str]:
  """The console's account of a cascade build: how its front was found,
  what it saves per image and against what, and where the details are."""
  stages = summary["stages"]
  grid, rows = summary.get("grid"), summary.get("threshold_search") or []
  found = "%d points" % summary["front_points"]
  if grid and grid["exact"]:
    found += (" of the exact error/cost front: all {:,} threshold vectors evaluated "
              "({:.1f} s)".format(grid["evaluations"], grid["seconds"]))
  elif grid:
    found += " from a thinned grid of {:,} threshold vectors".format(grid["evaluations"])
  if rows:
    found += "; threshold searches, each scored by the share of the %s front's hypervolume " \
        "it reached (1 = all): %s" % ("grid's" if grid else "joint", ", ".join(
            "%s %.3f" % kv for kv in sorted(summary["hypervolume_fraction_mean"].items())))
  lines = ["cascade front: " + found]
  lines.append("savings per image, costs predicted from each stage's measured cost %s on "
               "the %d validation images:" % (
                   "as the search measured it" if summary.get("stage_costs") == "search"
                   else "measured now", summary["validation_images"]))
  best_single = min(stages, key=lambda s: s["val_error"])
  for name, key, _ in COSTS:
    best, front = summary["best_saving"].get(name), summary["front_saving"].get(name)
    if best is None and front is None:
      continue
    lines += ["  " + line for line in _saving_lines(name, key, best, front, best_single,
                                                    summary["best_saving"]["tolerance"])]
  lines.append("details: %s (every point: thresholds, share of images each stage answers, "
               "errors, costs), cascade_fronts.png, summary.json" % os.path.join(
                   out_dir, "cascade_points.md"))
  lines.append("run it: python -m deploy.device.run_cascade --cascade=%s --data=images.npy "
               "--max_time_per_image_s=..." % out_dir)
  return lines


def _saving_lines(name: str, key: str, best: Mapping[str, Any] | None,
                  front: Mapping[str, Any] | None, best_single: Mapping[str, Any],
                  tolerance: float) -> list[str]:
  """What ``best_saving`` and ``front_saving`` of one cost mean, in words."""
  unit = {"time": "ms", "energy": "mJ"}[name]

  def cost(value: float) -> str:
    return "%.3f %s" % (1e3 * value, unit)

  out = []
  if best is not None:
    text = ("%s, as accurate as the most accurate stage (%s, error %s, %s per image): the "
            "cheapest point within %.1f percentage points of its error (point %d, error %s) costs %s: "
            % (name, best_single["name"], _pct(best_single["val_error"]),
               cost(best["best_single_cost"]), 100 * tolerance, best["point"],
               _pct(best["error"]), cost(best["cost"])))
    if best["saving"] > 0:
      out.append(text + "%.1f%% less." % (100 * best["saving"]))
    else:
      out.append(text + "%.1f%% MORE: no saving at that accuracy, since nearly every image "
                 "must reach the last stage and pays for the stages before it too."
                 % (-100 * best["saving"]))
  if front is not None:
    text = ("%s, anywhere on the front: point %d (error %s, %s per image) against %s, the "
            "cheapest single model at least as accurate (error %s, %s): "
            % (name, front["point"], _pct(front["error"]), cost(front["cost"]),
               front["single"], _pct(front["single_error"]), cost(front["single_cost"])))
    if front["saving"] > 0:
      out.append(text + "%.1f%% less." % (100 * front["saving"]))
    else:
      out.append(text + "no point is cheaper than such a single model (%.1f%%)."
                 % (100 * front["saving"]))
  return out


def points_table(out_dir: str, points: Sequence[dict[str, Any]], stages: Sequence[Any],
                 measured: Mapping[int, dict[str, Any]] | None = None) -> str:
  """Write ``cascade_points.csv`` and ``.md``; returns the Markdown text.
  measured: ``{point index: row from measure_points}``."""
  measured = measured or {}
  rows: list[dict[str, Any]] = []
  for i, p in enumerate(points):
    row: dict[str, Any] = {"point": i, "thresholds": " ".join("%.4f" % t for t in p["thresholds"])}
    for k, f in enumerate(p["exit_fractions"], 1):
      row["exit_stage%d" % k] = f
    row.update(error=p["error"], test_error=p.get("test_error"),
               time_s_per_image=p["time_s_per_image"],
               energy_j_per_image=p["energy_j_per_image"],
               found_by=" ".join(p.get("found_by", ())))
    m = measured.get(i) or {}
    for key in ("measured_time_s_per_image", "predicted_time_s_per_image_measured_images",
                "predicted_now_time_s_per_image", "measured_over_predicted",
                "measured_over_predicted_now", "measured_min_time_s_per_image",
                "predicted_now_min_time_s_per_image", "min_over_predicted_min",
                "measured_energy_j_per_image", "other_cpu_share"):
      row[key] = m.get(key)
    rows.append(row)
  _write_csv(os.path.join(out_dir, "cascade_points.csv"), list(rows[0]), rows)
  head = (["#", "thresholds"] + ["exit %d" % k for k in range(1, len(stages) + 1)] +
          ["val error", "test error", "time/img (ms)", "energy/img (mJ)"])
  if measured:
    head += ["measured time/img (ms)", "measured / predicted", "measured / predicted (stages now)",
             "fastest / predicted (fastest stages now)", "others' CPU share"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row, p in zip(rows, points):
    cells = [str(row["point"]), row["thresholds"] or "-"]
    cells += ["%.1f%%" % (100 * f) for f in p["exit_fractions"]]
    cells += ["%.2f%%" % (100 * p["error"]), _pct(p.get("test_error")),
              _milli(p["time_s_per_image"]), _milli(p["energy_j_per_image"])]
    if measured:
      cells += [_milli(row["measured_time_s_per_image"]), _num(row["measured_over_predicted"]),
                _num(row["measured_over_predicted_now"]), _num(row["min_over_predicted_min"]),
                _num(row["other_cpu_share"])]
    lines.append("| " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  with open(os.path.join(out_dir, "cascade_points.md"), "w") as f:
    f.write(text)
  return text


def measure_indices(points: Sequence[dict[str, Any]], count: int) -> list[int]:
  """``count`` points spread evenly along the front by time (both ends kept)."""
  if count <= 0 or not points:
    return []
  order = sorted(range(len(points)), key=lambda i: points[i]["time_s_per_image"])
  picks = np.unique(np.round(np.linspace(0, len(order) - 1, min(count, len(order)))))
  return [order[int(k)] for k in picks]


def stage_runtime_options(runtime: str) -> dict[str, Any]:
  """The runtime options the cascade runner gives its stages
  (``deploy.device.cascade_runner``: ONNX Runtime without thread spinning), so that a
  stage measured alone is measured as it runs in the cascade."""
  return {"allow_spinning": False} if runtime == "onnxruntime" else {}


def small_batch_size(batch_size: int) -> int:
  """The second batch size each stage is measured at (``per_call_cost``)."""
  return max(1, int(batch_size) // SMALL_BATCH_DIVISOR)


def measure_stages(cascade_dir: str, files: Sequence[str], images: np.ndarray,
                   settings: dict[str, Any],
                   log: Callable[[str], object] = print) -> list[dict[str, Any]]:
  """Measure each stage file alone with ``deploy.measure`` now, with the
  runner's stage options (``stage_runtime_options``), at the batch size of
  ``settings`` and at ``small_batch_size`` of it; one row per stage: per-image
  time and energy, the per-call time (``cascade_lib.per_call_cost``, from the
  medians; ``min_call_time_s`` from the fastest repeats), contention, and the
  measurement's fields."""
  options = stage_runtime_options(settings["runtime"])
  big, small = int(settings["batch_size"]), small_batch_size(settings["batch_size"])
  rows = []
  for k, file in enumerate(files, 1):
    path = os.path.join(cascade_dir, file)
    r = measure_lib.measure(path, images=images, progress=False, runtime_options=options,
                            **settings)
    s = measure_lib.measure(path, images=images, progress=False, runtime_options=options,
                            **dict(settings, batch_size=small))
    per, per_s = r["time_s"] / r["images"], s["time_s"] / s["images"]
    mins = [x["time_s_stats"]["min"] / x["images"] for x in (r, s)]
    rows.append({"stage": k, "time_s_per_image": per, "min_time_s_per_image": mins[0],
                 "small_batch_size": small, "small_batch_time_s_per_image": per_s,
                 "call_time_s": cascade_lib.per_call_cost(per, per_s, big, small),
                 "min_call_time_s": cascade_lib.per_call_cost(mins[0], mins[1], big, small),
                 "energy_j_per_image": _div(r["energy_j"], r["images"]),
                 "other_cpu_share": r.get("other_cpu_share"), "time_cv": r.get("time_cv"),
                 "measurement": {key: r.get(key) for key in (
                     "time_s", "energy_j", "images", "batch_size", "device", "runtime",
                     "power_source", "other_cpu_share", "contended", "time_cv")}})
    rows[-1]["measurement"].update(runtime_options=options, small_batch_size=small,
                                   small_batch_time_s=s["time_s"])
    log("stage %d alone: %.3f ms/image at batch %d, %.3f at batch %d: %.3f ms per call "
        "(other processes' CPU share %s, %s)"
        % (k, 1e3 * per, big, 1e3 * per_s, small, 1e3 * rows[-1]["call_time_s"],
           r.get("other_cpu_share"), s.get("other_cpu_share")))
  return rows


def measure_points(cascade_dir: str, spec: dict[str, Any], indices: Sequence[int],
                   data: cascade_lib.CascadeData, images: np.ndarray, image_index: np.ndarray,
                   settings: dict[str, Any],
                   log: Callable[[str], object] = print
                   ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
  """Measure each stage alone and the cascade at each point of ``indices``
  with ``deploy.measure`` now; returns ``(stage rows, {index: row})``.

  data: the ``CascadeData`` of the validation images; ``images`` were drawn
  from them at ``image_index``, so each point's cost is also predicted on
  exactly the measured images, from the stage costs of ``spec`` and from
  the stage costs measured now. settings: keyword arguments of
  ``deploy.measure.measure`` (device, runtime, power_source, batch_size,
  repeats).
  """
  stage_rows = measure_stages(cascade_dir, [s["file"] for s in spec["stages"]], images,
                              settings, log)
  subset = data.subset(image_index)
  now = [dataclasses.replace(subset, time_s=[s[key] for s in stage_rows],  # type: ignore[arg-type]
                             call_time_s=[s[call] for s in stage_rows],  # type: ignore[arg-type]
                             batch_size=int(settings["batch_size"]))
         for key, call in (("time_s_per_image", "call_time_s"),
                           ("min_time_s_per_image", "min_call_time_s"))]
  out = {}
  for i in indices:
    r = measure_lib.measure(cascade_dir, images=images, progress=False,
                            runtime_options={"point": i}, **settings)
    t = [spec["points"][i]["thresholds"]]
    out[i] = _point_row(i, r, *[cascade_lib.evaluate(d, t) for d in [subset] + now])
    out[i]["predicted_now_per_image_model_time_s_per_image"] = float(
        np.asarray(out[i]["reach_fractions_predicted"]) @ now[0].time_s)  # the model without call costs
    log("point %d: measured %.3f ms/image, predicted %.3f (the cascade's stage costs) / %.3f "
        "(stage costs now); fastest repeat %.3f vs %.3f predicted from the stages' fastest; "
        "other processes' CPU share %s"
        % (i, 1e3 * out[i]["measured_time_s_per_image"],
           1e3 * out[i]["predicted_time_s_per_image_measured_images"],
           1e3 * out[i]["predicted_now_time_s_per_image"],
           1e3 * out[i]["measured_min_time_s_per_image"],
           1e3 * out[i]["predicted_now_min_time_s_per_image"], r.get("other_cpu_share")))
  return stage_rows, out


def _point_row(index: int, result: Mapping[str, Any], ev: cascade_lib.Evaluation,
               ev_now: cascade_lib.Evaluation,
               ev_now_min: cascade_lib.Evaluation) -> dict[str, Any]:
  """One measured point: median and fastest repeat per image against the
  predictions on the measured images from the cascade's stage costs
  (``ev``), the stages' medians measured now and their fastest repeats
  (with their per-call costs)."""
  images = result["images"]
  measured = result["time_s"] / images
  fastest = result["time_s_stats"]["min"] / images
  predicted, predicted_now = float(ev.time_s[0]), float(ev_now.time_s[0])
  predicted_min = float(ev_now_min.time_s[0])
  return {"point": index, "measured_time_s_per_image": measured,
          "measured_min_time_s_per_image": fastest,
          "measured_energy_j_per_image": _div(result["energy_j"], images),
          "predicted_time_s_per_image_measured_images": predicted,
          "predicted_now_time_s_per_image": predicted_now,
          "predicted_now_min_time_s_per_image": predicted_min,
          "measured_over_predicted": measured / predicted,
          "measured_over_predicted_now": measured / predicted_now,
          "min_over_predicted_min": fastest / predicted_min,
          "other_cpu_share": result.get("other_cpu_share"),
          "contended": result.get("contended"), "time_cv": result.get("time_cv"),
          "loadavg_at_start": result.get("loadavg_at_start"),
          "reach_fractions_measured": result["runtime_info"]["cascade"]["reach_fractions"],
          "reach_fractions_predicted": [float(x) for x in ev.reach[0]]}


def _div(a: float | None, b: float | None) -> float | None:
  return None if a is None or not b else a / b


def _pct(v: float | None) -> str:
  return "-" if v is None else "%.2f%%" % (100 * v)


def _milli(v: float | None) -> str:
  return "-" if v is None else "%.3f" % (1e3 * v)


def _num(v: float | None) -> str:
  return "-" if v is None else "%.3f" % v


def _write_csv(path: str, fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
