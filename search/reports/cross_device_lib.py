"""Cross-device evaluation (paper Figs. 6-9), the library of
``python -m search.reports.cross_device`` (``search/reports/cross_device.py``).

``evaluate`` re-measures the Pareto-optimal models of one search
(``source_dir``) on the device of another search (``target_dir``, whose
config.json gives the device, runtime, power source and measurement settings;
``device_url`` and ``device_token_file`` may be given again for a remote
target), and plots them against the target search's own Pareto front.

Writes ``cross_device.csv`` (each re-measured model: its error from training,
its time and energy on the target) and ``cross_error_time.png`` /
``cross_error_energy.png``. Measurement JSONs and traces are kept under
``<out_dir>/models/<trial_id>/``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from deploy import pipeline
from search import config as config_lib
from search import device_lock
from search import loop
from search import outputs
from search.optimizer import pareto
from search.reports import common
from tea_keras import data


def pareto_trials(trials: Sequence[Any], objectives: Sequence[str]) -> list[Any]:
  ids, y = outputs.objective_matrix(trials, objectives)
  if not len(ids):
    return []
  keep = set(np.asarray(ids)[pareto.non_dominated_mask(y)].tolist())
  return [t for t in trials if t["trial_id"] in keep]


def remeasure(source_dir: str, target_config: config_lib.SearchConfig, out_dir: str,
              log: Callable[[str], object] = print) -> list[dict[str, Any]]:
  """Measure the source's Pareto models with ``target_config``; returns rows.
  Each model is exported and measured holding the local device's lock
  exclusive (``search.device_lock``), as a search's trial is: no search on
  this machine trains, proposes or measures meanwhile."""
  from tea_keras import network  # pylint: disable=g-import-not-at-top  (Keras)
  source_config, trials = common.load_search(source_dir)
  models = pareto_trials(trials, source_config["objectives"])
  splits = data.load(target_config.dataset, data_dir=target_config.data_dir)
  images = data.normalize(splits.x_val[:target_config.measure_images])
  rows = []
  for i, t in enumerate(models):
    log("[%d/%d] re-measuring trial #%d on %s" % (i + 1, len(models), t["trial_id"],
                                                    target_config.device))
    model = network.load_model(t["artifacts"]["model"])
    work = os.path.join(out_dir, "models", "%04d" % t["trial_id"])
    with device_lock.measuring(device_lock.for_config(target_config)):
      metrics, _ = pipeline.export_and_measure(model, work, target_config, images)
    with open(os.path.join(work, "measurement.json"), "w") as f:
      json.dump(metrics, f, indent=2)
    rows.append({"trial_id": t["trial_id"], "genotype": t["genotype"],
                 "error": t["metrics"].get("val_error"), "time_s": metrics.get("time_s"),
                 "energy_j": metrics.get("energy_j"),
                 "contended": metrics.get("contended"),
                 "other_cpu_share": metrics.get("other_cpu_share"),
                 "source_time_s": t["metrics"].get("time_s"),
                 "source_energy_j": t["metrics"].get("energy_j"),
                 "source_contended": t["metrics"].get("contended")})
  return rows


def plot(rows: Sequence[dict[str, Any]], target_trials: Sequence[dict[str, Any]],
         target_objectives: Sequence[str], out_dir: str, source_name: str,
         target_name: str) -> None:
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  for other, key in (("time", "time_s"), ("energy", "energy_j")):
    if other not in target_objectives or not rows or any(r[key] is None for r in rows):
      continue
    fig, ax = plt.subplots(figsize=(5.5, 4))
    _, y = outputs.objective_matrix(target_trials, target_objectives)
    if len(y):
      cols = [target_objectives.index(other), target_objectives.index("error")]
      outputs.draw_front(ax, y[:, cols], "%s (own search)" % target_name, "C0")
    xy = np.array([[r[key], r["error"]] for r in rows], float)
    ax.scatter(xy[:, 0], xy[:, 1], marker="^", s=40, color="C3",
               label="%s Pareto models" % source_name, zorder=4)
    ax.set_xlabel("%s on %s" % (outputs.OBJECTIVE_LABELS[other], target_name))
    ax.set_ylabel(outputs.OBJECTIVE_LABELS["error"])
    ax.legend(fontsize=8)
    outputs._save(fig, os.path.join(out_dir, "cross_error_%s.png" % other))  # pylint: disable=protected-access


def target_config(target_dir: str, device_url: Optional[str] = None,
                  device_token_file: Optional[str] = None) -> Tuple[config_lib.SearchConfig,
                                                                    List[Any]]:
  """(config, trials) of the target search, the agent address and token file
  replaced where given, and the target asked again what it reads (its
  device kind, artifact format and ONNX opset) before anything is
  re-measured."""
  target_dict, target_trials = common.load_search(target_dir)
  target = config_lib.SearchConfig.from_dict(target_dict)
  overrides: Dict[str, Any] = {k: v for k, v in (("device_url", device_url),
                                 ("device_token_file", device_token_file)) if v}
  target = loop.resolve(dataclasses.replace(target, device_kind=None, artifact_format=None,
                                            onnx_opset=None, **overrides))
  return target, target_trials


def write_csv(rows: List[Dict], path: str) -> None:
  """The re-measured models, one row each (a header alone without rows)."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial_id"])
    writer.writeheader()
    writer.writerows(rows)


def evaluate(source_dir: str, target_dir: str, out_dir: str, device_url: Optional[str] = None,
             device_token_file: Optional[str] = None,
             log: Callable[[str], object] = print) -> Tuple[List[Dict], str]:
  """Re-measures ``source_dir``'s Pareto models on ``target_dir``'s device and
  writes the CSV and plots into ``out_dir``; returns (rows, the CSV's path).
  ValueError or FileNotFoundError when a directory is not a search's."""
  target, target_trials = target_config(target_dir, device_url, device_token_file)
  os.makedirs(out_dir, exist_ok=True)
  rows = remeasure(source_dir, target, out_dir, log=log)
  path = os.path.join(out_dir, "cross_device.csv")
  write_csv(rows, path)
  plot(rows, target_trials, list(target.objectives), out_dir,
       os.path.basename(os.path.normpath(source_dir)),
       os.path.basename(os.path.normpath(target_dir)))
  return rows, path
