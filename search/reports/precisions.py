"""Per-precision table of a search's Pareto cells (``search.reports --figure=precisions``).

For each cell on the feasible front of (cell, precision) pairs
(``search.outputs.pair_front``), every precision's deployed error, artifact
bytes, time and energy, and their change against the same cell at fp32:
error delta (percentage points), size, time and energy ratios. Two sources:

* ``runtimes`` empty: the figures recorded during the search (measured at
  different moments; under load, times of two pairs may not compare);
* ``runtimes`` given (``--runtimes=onnxruntime,openvino``): every pair is
  exported, evaluated on the validation split and measured again, now, one
  after the other, on each runtime with the search's own measurement
  settings (``search.trial.measure_precisions``): what the ratios in
  BENCHMARKS.md are made of. OpenVINO int8 is NNCF's, ONNX Runtime's the
  static QDQ quantization (``deploy/quantize.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

from search import budgets as budgets_lib
from search import config as config_lib
from search import loop
from search import outputs
from search import trial as trial_lib
from search.reports import common

COLUMNS = ("trial_id", "runtime", "precision", "val_error", "model_bytes", "weight_bytes",
           "time_s", "energy_j", "contended", "error_delta_pp", "size_ratio",
           "weight_ratio", "time_ratio", "energy_ratio")


def front_cells(trials: Sequence[dict[str, Any]], objectives: Sequence[str],
                budgets: Mapping[str, float] | None, top: int = 3) -> list[int]:
  """Trial ids of the front's cells, in front order, spread over the front
  when there are more than ``top`` (0: all); when the front holds fewer than
  ``top`` cells, the cells of the next non-dominated layers (the front of
  the pairs left, and so on) follow, so that ``top`` cells are reported."""
  rows = outputs.pairs(trials, objectives, budgets)
  ids: list[int] = []
  layer = 0
  while rows and (layer == 0 or len(ids) < top):
    front = outputs.pair_front(rows)
    if not front:
      break
    new: list[int] = []
    for row in front:
      if row["trial"]["trial_id"] not in ids + new:
        new.append(row["trial"]["trial_id"])
    if layer == 0 and top and len(new) > top:
      picks = sorted({int(round(i * (len(new) - 1) / (top - 1))) for i in range(top)}) \
          if top > 1 else [0]
      new = [new[i] for i in picks]
    ids += new[:max(top - len(ids), 0)] if top and layer else new
    rows = [r for r in rows if r not in front]
    layer += 1
  return ids


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Fill the delta and ratio columns of ``rows`` against the fp32 row of
  the same (trial, runtime)."""
  base = {(r["trial_id"], r["runtime"]): r for r in rows if r["precision"] == "fp32"}
  for r in rows:
    ref = base.get((r["trial_id"], r["runtime"]))
    if ref is None:
      continue
    if r["val_error"] is not None and ref["val_error"] is not None:
      r["error_delta_pp"] = 100.0 * (r["val_error"] - ref["val_error"])
    for key, col in (("model_bytes", "size_ratio"), ("weight_bytes", "weight_ratio"),
                     ("time_s", "time_ratio"),
                     ("energy_j", "energy_ratio")):
      if r.get(key) and ref.get(key):
        r[col] = float(r[key]) / float(ref[key])
  return rows


def recorded_rows(trials: Sequence[dict[str, Any]], ids: Sequence[int],
                  runtime: str) -> list[dict[str, Any]]:
  out = []
  by_id = {t["trial_id"]: t for t in trials}
  for trial_id in ids:
    per = by_id[trial_id]["metrics"].get("precisions") or {}
    for precision, pair in per.items():
      out.append(dict({k: pair.get(k) for k in COLUMNS if k in pair}, trial_id=trial_id,
                      runtime=runtime, precision=precision))
  return out


def remeasured_rows(config: config_lib.SearchConfig, trials: Sequence[dict[str, Any]],
                    ids: Sequence[int], runtimes: Sequence[str], out_dir: str,
                    log: Callable[[str], object] = print) -> list[dict[str, Any]]:
  """Export, evaluate and measure every (cell, precision) of ``ids`` now on
  each of ``runtimes`` (``config``: the search's SearchConfig)."""
  from tea_keras import network  # pylint: disable=g-import-not-at-top  (Keras)
  by_id = {t["trial_id"]: t for t in trials}
  out = []
  for runtime in runtimes:
    settings = loop.resolve(dataclasses.replace(
        config, runtime=runtime, device_kind=None, artifact_format=None, onnx_opset=None), log)
    splits = trial_lib.load_splits(settings)
    for trial_id in ids:
      model = network.load_model(by_id[trial_id]["artifacts"]["model"])
      work = os.path.join(out_dir, runtime, "%04d" % trial_id)
      pairs, _, _ = trial_lib.measure_precisions(model, work, settings, splits)
      for precision, pair in pairs.items():
        out.append(dict({k: pair.get(k) for k in COLUMNS if k in pair}, trial_id=trial_id,
                        runtime=runtime, precision=precision))
        if pair.get("status") == "failed":
          log("#%d %s %s: failed: %s" % (trial_id, runtime, precision, pair["error"]))
          continue
        log("#%d %s %s: error %.4f, %d bytes, time %.4g s" % (
            trial_id, runtime, precision, pair["val_error"], pair["model_bytes"],
            pair["time_s"] or float("nan")))
  return out


def precision_table(results_dir: str, out_dir: str, runtimes: Sequence[str] = (), top: int = 3,
                    log: Callable[[str], object] = print) -> str:
  """Write ``precision_table.csv`` and return its Markdown (module doc)."""
  config_dict, trials = common.load_search(results_dir)
  config = config_lib.SearchConfig.from_dict(config_dict)
  budgets = budgets_lib.budgets_of(config)
  ids = front_cells(trials, config.objectives, budgets, top)
  if not ids:
    raise ValueError("%s has no feasible (cell, precision) pair on its front yet." % results_dir)
  os.makedirs(out_dir, exist_ok=True)
  rows = remeasured_rows(config, trials, ids, runtimes, out_dir, log) if runtimes else \
      recorded_rows(trials, ids, "%s (in search)" % config.runtime)
  rows = add_ratios(rows)
  with open(os.path.join(out_dir, "precision_table.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows([{k: r.get(k) for k in COLUMNS} for r in rows])
  return markdown(rows)


def _fmt(value: float | None, spec: str = "%.4g") -> str:
  return "-" if value is None else spec % value


def markdown(rows: Sequence[dict[str, Any]]) -> str:
  lines = ["| trial | runtime | precision | val error | file bytes | weight bytes | time (s) | "
           "energy (J) | error delta (pp) | size ratio | weight ratio | time ratio | "
           "energy ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append("| #%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        r["trial_id"], r["runtime"], r["precision"], _fmt(r.get("val_error")),
        _fmt(r.get("model_bytes"), "%d"), _fmt(r.get("weight_bytes"), "%d"),
        _fmt(r.get("time_s")), _fmt(r.get("energy_j")),
        _fmt(r.get("error_delta_pp"), "%+.2f"), _fmt(r.get("size_ratio"), "%.3f"),
        _fmt(r.get("weight_ratio"), "%.3f"), _fmt(r.get("time_ratio"), "%.3f"),
        _fmt(r.get("energy_ratio"), "%.3f")))
  return "\n".join(lines) + "\n"
