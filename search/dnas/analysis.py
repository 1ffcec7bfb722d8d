"""``python -m search.dnas.analysis --results_dir=A[,B,...]``: what a DNAS
sweep found, in the terms of its benchmark.

For every size target of the sweeps given: each point (method, lambda_E,
parameters, MACs, measured time per image, deployed error), which of them
are on the target's (error, time) front, and whether the uniform-width
baseline is dominated by a DNAS point or dominates one; the span of the
measured times at the target; the Spearman rank correlation, over every
found network, of its MACs and (a ``cost_model=measured`` sweep) of the
latency table's prediction against its measured time; and the sweep's cost
(wall time of its points, the training seconds among them, and the warm-up,
read from the trial store and the warm-up's training log).

A width search (``python -m search.dnas.widths``: a black-box optimizer
over the same seed's widths, size an objective) may be given among the
directories: each of its networks joins every size target it meets, marked
with its strategy as method, and its cost is reported beside the sweep's
(process CPU seconds per network, where the store recorded them).

Prints a table per target and writes ``dnas_analysis.json`` into the first
results directory.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from absl import flags
from scipy import stats

from deploy import measure as measure_lib
from search import store as store_lib
from search.optimizer import pareto
from tea_keras import errors


def load_points(results_dir: str) -> List[Dict]:
  """The done points of a sweep's trial store, flattened: method, target,
  lambda_E, loss, cost model, params, MACs, time per image (s), error,
  predicted cost, wall and training seconds, the sweep's directory."""
  path = os.path.join(results_dir, "trials.db")
  if not os.path.isfile(path):
    raise errors.invalid_value("results_dir", "a DNAS sweep's directory (with trials.db)",
                               results_dir)
  store = store_lib.TrialStore(path)
  try:
    trials = store.trials(["done"])
  finally:
    store.close()
  out = []
  for t in trials:
    m = t["metrics"]
    if "size_target_fraction" not in m and "widths" not in m:
      raise ValueError("Invalid value for argument `results_dir`. Expected a DNAS sweep's "
                       "or a width search's directory; trial %d of %s is a search's"
                       % (t["trial_id"], results_dir))
    error = m.get("deployed_val_error", m.get("val_error"))
    out.append({
        "dir": results_dir, "trial_id": t["trial_id"], "method": m["method"],
        "size_target": (float(m["size_target_fraction"]) if "size_target_fraction" in m
                        else None),
        "seed_params": int(m["seed_params"]), "widths": m.get("widths"),
        "cpu_seconds": m.get("cpu_seconds"),
        "lambda_energy": m.get("lambda_energy"), "loss": m.get("loss"),
        "cost_model": m.get("cost_model"), "params": int(m["params"]),
        "macs": int(m["macs"]), "time_per_image_s": float(m["time_s"]) / float(m["images"]),
        "error": None if error is None else float(error),
        "predicted_cost": m.get("predicted_cost"), "contended": bool(m.get("contended")),
        "export": (t["artifacts"] or {}).get("export"),
        "train_seconds": float(m.get("train_seconds") or 0.0),
        "wall_seconds": (float(t["finished_at"]) - float(t["started_at"])
                         if t.get("finished_at") and t.get("started_at") else None)})
  return out


def remeasure(points: Sequence[Dict], rounds: int = 3,
              log: Callable[[str], object] = print) -> None:
  """Measure every point's export again, back to back, ``rounds`` times in a
  shuffled order each round, on this machine with its sweep's runtime,
  images and batch (``deploy.measure``, the protocol's fastest of 3
  repeats); each point's ``time_per_image_s`` becomes the fastest round's
  (``sweep_time_per_image_s`` keeps the sweep's). Points measured during
  the sweep at different moments of other load compare badly; measured
  together they compare like with like."""
  configs, images = {}, {}
  for p in points:
    if p["dir"] not in configs:
      with open(os.path.join(p["dir"], "config.json")) as f:
        configs[p["dir"]] = c = json.load(f)
      if c["device"] != "cpu":
        raise errors.invalid_value("remeasure_rounds", "sweeps measured on this machine's CPU",
                                   shown="%s, measured on %s" % (p["dir"], c["device"]))
      key = (c["dataset"], c.get("data_dir"), c["measure_images"], c.get("seed", 0))
      if key not in images:
        images[key] = measure_lib.load_images(c["dataset"], c["measure_images"],
                                              c.get("data_dir"), c.get("seed", 0))[0]
  rng = np.random.default_rng(0)
  best: Dict[int, float] = {}
  for r in range(rounds):
    order = rng.permutation(len(points))
    for k, i in enumerate(order):
      p, c = points[i], configs[points[i]["dir"]]
      x = images[(c["dataset"], c.get("data_dir"), c["measure_images"], c.get("seed", 0))]
      result = measure_lib.measure(p["export"], device="cpu", runtime=c["runtime"],
                                   power_source="none", images=x,
                                   batch_size=c["measure_batch_size"], progress=False,
                                   contention_policy="warn")
      t = result["time_s"] / result["images"]
      best[i] = min(best.get(i, t), t)
      log("remeasure round %d/%d, point %d/%d (#%d): %.4f ms per image%s" % (
          r + 1, rounds, k + 1, len(points), p["trial_id"], 1e3 * t,
          " (contended)" if result.get("contended") else ""))
  for i, p in enumerate(points):
    p["sweep_time_per_image_s"] = p["time_per_image_s"]
    p["time_per_image_s"] = best[i]
    p["remeasured"] = True


def dominates(a: Dict, b: Dict) -> bool:
  """``a`` is no worse in error and time than ``b`` and better in one."""
  ka, kb = (a["error"], a["time_per_image_s"]), (b["error"], b["time_per_image_s"])
  return all(x <= y for x, y in zip(ka, kb)) and ka != kb


def front(points: Sequence[Dict]) -> List[Dict]:
  """The points on the (error, time) front (``search.optimizer.pareto``)."""
  y = np.array([[p["error"], p["time_per_image_s"]] for p in points], float)
  return [p for p, keep in zip(points, pareto.non_dominated_mask(y)) if keep]


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
  """Spearman's rank correlation (scipy), None for fewer than 3 points."""
  if len(x) < 3:
    return None
  return float(stats.spearmanr(x, y).statistic)


def analyze(points: Sequence[Dict]) -> Dict:
  """The figures of the module doc, as a dict."""
  targets = {}
  searched = [p for p in points if p["size_target"] is None]   # width-search networks
  for target in sorted({p["size_target"] for p in points if p["size_target"] is not None},
                       reverse=True):
    mine = [p for p in points if p["size_target"] == target] + [
        p for p in searched if p["params"] <= target * p["seed_params"]]
    dnas = [p for p in mine if p["method"] == "dnas"]
    uniform = [p for p in mine if p["method"] == "uniform"]
    times = [p["time_per_image_s"] for p in mine]
    on_front = {(p["dir"], p["trial_id"]) for p in front(mine)}
    targets[str(target)] = {
        "points": [dict(p, on_front=(p["dir"], p["trial_id"]) in on_front) for p in mine],
        "time_span": max(times) / min(times) if min(times) > 0 else None,
        "dnas_time_span": (max(p["time_per_image_s"] for p in dnas) /
                           min(p["time_per_image_s"] for p in dnas)) if dnas else None,
        "uniform_dominated_by": [p["trial_id"] for u in uniform for p in dnas
                                 if dominates(p, u)],
        "uniform_dominates": [p["trial_id"] for u in uniform for p in dnas if dominates(u, p)],
        "searched_on_front": [p["trial_id"] for p in mine if p["size_target"] is None
                              and (p["dir"], p["trial_id"]) in on_front],
        "searched_dominated_by_dnas": sorted({s["trial_id"] for s in mine
                                              if s["size_target"] is None
                                              for p in dnas if dominates(p, s)}),
        "dnas_dominated_by_searched": sorted({p["trial_id"] for p in dnas for s in mine
                                              if s["size_target"] is None
                                              and dominates(s, p)})}
  found = [p for p in points if p["method"] == "dnas"]
  measured = [p for p in found if p["cost_model"] == "measured" and p["predicted_cost"]]
  return {
      "targets": targets,
      "spearman_macs_vs_time": spearman([p["macs"] for p in points],
                                        [p["time_per_image_s"] for p in points]),
      "spearman_params_vs_time": spearman([p["params"] for p in points],
                                          [p["time_per_image_s"] for p in points]),
      "spearman_table_vs_time": spearman([p["predicted_cost"] for p in measured],
                                         [p["time_per_image_s"] for p in measured]),
      "spearman_macs_vs_time_same_points": spearman(
          [p["macs"] for p in measured], [p["time_per_image_s"] for p in measured]),
      "measured_table_points": len(measured),
      "points": len(points), "contended": sum(p["contended"] for p in points),
      "remeasured": all(p.get("remeasured") for p in points),
      "wall_seconds": sum(p["wall_seconds"] or 0.0 for p in points),
      "train_seconds": sum(p["train_seconds"] for p in points),
      "cost_per_dir": cost_per_dir(points)}


def cost_per_dir(points: Sequence[Dict]) -> Dict[str, Dict]:
  """Per results directory: its methods, points, wall and training seconds,
  and the process CPU seconds its networks recorded (width searches record
  them; None where a point did not)."""
  out: Dict[str, Dict] = {}
  for p in points:
    c = out.setdefault(p["dir"], {"methods": [], "points": 0, "wall_seconds": 0.0,
                                  "train_seconds": 0.0, "cpu_seconds": 0.0})
    if p["method"] not in c["methods"]:
      c["methods"].append(p["method"])
    c["points"] += 1
    c["wall_seconds"] += p["wall_seconds"] or 0.0
    c["train_seconds"] += p["train_seconds"]
    if c["cpu_seconds"] is not None:
      c["cpu_seconds"] = (None if p.get("cpu_seconds") is None
                          else c["cpu_seconds"] + float(p["cpu_seconds"]))
  return out


def format_report(result: Dict) -> str:
  lines = []
  for target, t in result["targets"].items():
    lines.append("size target %s x seed (times span %.2fx, DNAS points %s):" % (
        target, t["time_span"] or float("nan"),
        "%.2fx" % t["dnas_time_span"] if t["dnas_time_span"] else "n/a"))
    lines.append("  %-6s %-8s %-9s %-8s %9s %11s %15s %7s %s" % (
        "trial", "method", "lambda_E", "loss", "params", "MACs", "ms per image", "error",
        "front"))
    for p in sorted(t["points"], key=lambda p: p["time_per_image_s"]):
      lines.append("  #%-5d %-8s %-9s %-8s %9d %11d %15.4f %7.4f %s%s" % (
          p["trial_id"], p["method"], "" if p["lambda_energy"] is None else
          "%g" % p["lambda_energy"], p["loss"] if p["method"] == "dnas" else "", p["params"], p["macs"],
          1e3 * p["time_per_image_s"], p["error"], "*" if p["on_front"] else "",
          " (contended)" if p["contended"] else ""))
    lines.append("  uniform baseline dominated by DNAS points %s; dominates DNAS points %s"
                 % (t["uniform_dominated_by"] or "none", t["uniform_dominates"] or "none"))
    if any(p["size_target"] is None for p in t["points"]):
      lines.append("  width-search networks on the front %s; dominated by DNAS points: %s; "
                   "DNAS points they dominate: %s" % (
                       t["searched_on_front"] or "none",
                       t["searched_dominated_by_dnas"] or "none",
                       t["dnas_dominated_by_searched"] or "none"))
  fmt = lambda v: "n/a" if v is None else "%.3f" % v
  lines.append("Spearman vs measured time: MACs %s, params %s (all %d points); latency table "
               "%s vs MACs %s on its %d points" % (
                   fmt(result["spearman_macs_vs_time"]), fmt(result["spearman_params_vs_time"]),
                   result["points"], fmt(result["spearman_table_vs_time"]),
                   fmt(result["spearman_macs_vs_time_same_points"]),
                   result["measured_table_points"]))
  lines.append("cost: %d points, %.1f min of point wall time (%.1f min training); %d contended "
               "in the sweep%s" % (result["points"], result["wall_seconds"] / 60,
                                   result["train_seconds"] / 60, result["contended"],
                                   "; times re-measured back to back" if result.get(
                                       "remeasured") else ""))
  for d, c in result.get("cost_per_dir", {}).items():
    lines.append("  %s (%s): %d points, %.1f min wall, %.1f min training%s" % (
        d, "/".join(c["methods"]), c["points"], c["wall_seconds"] / 60, c["train_seconds"] / 60,
        "" if c["cpu_seconds"] is None else ", %.1f CPU-min" % (c["cpu_seconds"] / 60)))
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit("error: unexpected arguments %s (flags are --name=value)" % argv[1:])
  dirs = flags.FLAGS.results_dir
  try:
    points = [p for d in dirs for p in load_points(d)]
  except ValueError as e:
    sys.exit("error: %s" % e)
  if not points:
    sys.exit("error: no finished point in %s" % ", ".join(dirs))
  if flags.FLAGS.remeasure_rounds:
    try:
      remeasure(points, flags.FLAGS.remeasure_rounds)
    except ValueError as e:
      sys.exit("error: %s" % e)
  result = analyze(points)
  result["remeasure_rounds"] = flags.FLAGS.remeasure_rounds
  print(format_report(result))
  out = os.path.join(dirs[0], "dnas_analysis.json")
  with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=1, default=float)
  os.replace(out + ".tmp", out)
  print("written: %s" % out)


def define_flags() -> None:
  flags.DEFINE_list("results_dir", None, "DNAS sweep directories (comma-separated).")
  flags.DEFINE_integer("remeasure_rounds", 0, "Measure every point's export again, back to "
                       "back, this many rounds (shuffled), and use the fastest (0: the "
                       "sweep's own times).", lower_bound=0)
  flags.mark_flag_as_required("results_dir")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  define_flags()
  app.run(main)
