"""Adaptive cascades of Pareto models (LEANets, Jayakodi et al., ACM TECS 2020):
the library of ``python -m search.cascades.build`` (``search/cascades/build.py``
says what a run writes); ``build(CascadeOptions(...))`` does the whole run.

Stages are a search's Pareto models ordered by measured cost (at most
``max_stages``), or any trained, measured models (``model_dirs``); each
stage's validation (and test) logits are computed once, then every threshold
vector is evaluated exactly (``search.cascades.thresholds``). For 2-3 stages an
exhaustive grid gives the true error/time(/energy) front in seconds, and that
is all that runs by default; ``compare_strategies`` also lets PESMO, ParEGO
and random search look for it within ``evaluations`` and scores each by its
hypervolume fraction of the grid's front (minutes per strategy). Without an
exact grid (more stages, or a thinned grid) the strategies search the front
themselves. ``measure`` also measures each stage alone (at the batch size and
a tenth of it: its per-call cost) and ``measure_points`` points of the front
on this CPU with ``deploy.measure`` and compares them with the prediction.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from deploy.device import cascade_runner as runner
from deploy.device import devices
from search import config as config_lib
from search.cascades import report as cascade_report
from search.cascades import stages as cascade_stages
from search.cascades import thresholds as cascade_lib
from tea_keras import data
from tea_keras import errors

GRID_MODES = ("auto", "on", "off")
STAGE_COSTS = ("search", "measure")
MAX_GRID_STAGES = 3


@dataclasses.dataclass(frozen=True)
class CascadeOptions:
  """What ``build`` does; see ``define_flags`` for each field."""
  out_dir: str
  results_dir: Optional[str] = None
  model_dirs: Tuple[str, ...] = ()
  measurement_label: Optional[str] = None
  max_stages: int = 3
  stages: Tuple[int, ...] = ()
  confidence: str = "max_softmax"
  logits_runtime: str = "onnxruntime"
  strategies: Tuple[str, ...] = ("pesmo", "parego", "random")
  compare_strategies: bool = False
  evaluations: int = 50
  num_initial: int = 5
  seeds: Tuple[int, ...] = (0,)
  grid: str = "auto"
  grid_max_evaluations: int = 300000
  error_tolerance: float = 0.005
  measure: bool = False
  measure_points: int = 5
  measure_images: Optional[int] = None
  measure_batch_size: Optional[int] = None
  measure_repeats: int = 3
  power_source: str = "auto"
  stage_costs: str = "search"
  dataset: Optional[str] = None
  data_dir: Optional[str] = None
  split_seed: Optional[int] = None

  def __post_init__(self) -> None:
    if bool(self.results_dir) == bool(self.model_dirs):
      raise ValueError("Expected exactly one of --results_dir and --model_dirs. Received "
                       "results_dir=%r model_dirs=%r" % (self.results_dir, self.model_dirs))
    if self.stage_costs not in STAGE_COSTS:
      raise errors.invalid_value("stage_costs", "one of %s" % "|".join(STAGE_COSTS),
                                 self.stage_costs)
    if self.grid not in GRID_MODES:
      raise errors.invalid_value("grid", "one of %s" % "|".join(GRID_MODES), self.grid)


def check_search_dir(results_dir: str) -> None:
  """Refuse a directory that is not a ``python -m search.run`` results dir
  (a config.json of a search and a trials.db), naming what it is instead."""
  path = os.path.join(results_dir, "config.json")
  if not os.path.isdir(results_dir):
    raise ValueError("--results_dir=%s does not exist; expected the --results_dir of a "
                     "python -m search.run." % results_dir)
  what: str | None = "it has no config.json"
  if os.path.exists(path):
    try:
      with open(path) as f:
        raw = json.load(f)
    except ValueError:
      raw = None
    if not isinstance(raw, dict):
      what = "its config.json is not a search's"
    elif "steps_per_epoch" in raw or "model_name" in raw:
      what = ("it is a tea_keras.train model_dir (give such directories, two or more, as "
              "--model_dirs=A,B)")
    else:
      try:
        config_lib.SearchConfig.from_dict(raw)
        what = None if os.path.exists(os.path.join(results_dir, "trials.db")) else (
            "it has no trials.db")
      except (TypeError, ValueError):
        what = "its config.json is not a search's"
  if what:
    raise ValueError("--results_dir=%s is not a search results directory: %s. Expected the "
                     "--results_dir of a python -m search.run." % (results_dir, what))


def load_candidates(options: CascadeOptions
                    ) -> tuple[dict[str, Any], list[cascade_stages.Candidate], list[Any]]:
  """``(settings, candidates, single-model rows)``; settings: dataset,
  data_dir, split_seed, measure_images, measure_batch_size."""
  if options.results_dir:
    check_search_dir(options.results_dir)
    config, candidates, done = cascade_stages.candidates_from_results(
        options.results_dir, list(options.stages))
    settings = {"dataset": config["dataset"], "data_dir": config.get("data_dir"),
                "split_seed": config.get("seed", 0),
                "measure_images": config.get("measure_images"),
                "measure_batch_size": config.get("measure_batch_size")}
    singles = cascade_report.single_model_points(done)
  else:
    settings, candidates = cascade_stages.candidates_from_model_dirs(
        options.model_dirs, options.measurement_label)
    singles = [(c.name, c.val_error, c.time_s_per_image, c.energy_j_per_image)
               for c in candidates]
  for key in ("dataset", "data_dir", "split_seed", "measure_images", "measure_batch_size"):
    if getattr(options, key) is not None:
      settings[key] = getattr(options, key)
  if not settings.get("dataset"):
    raise ValueError("The models do not say which data set they were trained on; expected "
                     "--dataset.")
  return settings, candidates, singles


def choose(candidates: Sequence[cascade_stages.Candidate], options: CascadeOptions,
           log: Callable[[str], object] = print) -> list[cascade_stages.Candidate]:
  """The stages, cheapest first (every given one with --stages/--model_dirs
  up to --max_stages, else a selection of the Pareto models)."""
  cost_key = ("energy_j_per_image" if all(c.energy_j_per_image for c in candidates)
              else "time_s_per_image")
  costs = [getattr(c, cost_key) for c in candidates]
  if (options.stages or options.model_dirs) and len(candidates) <= options.max_stages:
    picked = sorted(range(len(candidates)), key=lambda i: costs[i])
  else:
    picked = cascade_lib.choose_stages([c.val_error for c in candidates], costs,
                                       options.max_stages)
  if len(picked) < 2:
    raise ValueError("Only one model (%s) is on the error/%s front; a cascade needs two "
                     "stages (give --stages or more models)."
                     % (candidates[picked[0]].name, cost_key.split("_")[0]))
  stages = [candidates[i] for i in picked]
  log("stages (cheapest first, by %s): %s" % (cost_key, ", ".join(
      "%s (error %.4f, %.4g)" % (s.name, s.val_error, getattr(s, cost_key)) for s in stages)))
  return stages


def stage_data(stages: Sequence[cascade_stages.Candidate], files: Sequence[str], splits: Any,
               options: CascadeOptions,
               static_batch: int | None = None
               ) -> tuple[cascade_lib.CascadeData, cascade_lib.CascadeData | None]:
  """``(validation CascadeData, test CascadeData or None)`` of the stage files.
  static_batch: the batch of a device compiled for one static batch size,
  where the stage costs were measured (every call then costs a whole batch)."""
  times = [s.time_s_per_image for s in stages]
  energies: Any = [s.energy_j_per_image for s in stages]
  energies = energies if all(e is not None for e in energies) else None
  calls: list[Any] | None
  batch: int | None
  calls, batch = None, None  # the per-call model where every stage was measured for it
  if static_batch:
    calls, batch = cascade_lib.static_batch_calls(times, static_batch), int(static_batch)
  elif all(s.call_time_s is not None for s in stages):
    calls, batch = [s.call_time_s for s in stages], int(stages[0].measurement["batch_size"])
  out: list[cascade_lib.CascadeData | None] = []
  for x, y in ((splits.x_val, splits.y_val), (splits.x_test, splits.y_test)):
    if not len(y):
      out.append(None)
      continue
    logits = cascade_stages.stage_logits(
        [os.path.join(options.out_dir, f) for f in files], data.normalize(x),
        options.logits_runtime, [s.keras_path for s in stages])
    out.append(cascade_lib.from_logits(logits, y, times, energies, options.confidence,
                                       calls, batch))
  return out[0], out[1]  # type: ignore[return-value]  # validation images: always some


def threshold_searches(val: cascade_lib.CascadeData, options: CascadeOptions,
                       log: Callable[[str], object] = print
                       ) -> tuple[dict[str, cascade_lib.Evaluation], list[dict[str, Any]],
                                  np.ndarray, dict[str, Any] | None]:
  """``({label: Evaluation}, rows, reference front y, grid info)``: the grid,
  then the strategies when the grid is not exact or ``compare_strategies``."""
  rows: list[dict[str, Any]]
  grid_info: dict[str, Any] | None
  evaluations, rows, grid_info = {}, [], None
  use_grid = options.grid == "on" or (options.grid == "auto" and
                                      val.num_stages <= MAX_GRID_STAGES)
  if use_grid:
    start = time.perf_counter()
    thresholds, exact = cascade_lib.grid(val, options.grid_max_evaluations)
    evaluations["grid"] = cascade_lib.evaluate(val, thresholds)
    grid_info = {"evaluations": len(thresholds), "exact": exact,
                 "seconds": time.perf_counter() - start}
    log("grid: %d vectors (%s) in %.1f s" % (len(thresholds), "exact" if exact else "thinned",
                                            grid_info["seconds"]))
  runs = [(name, seed) for name in options.strategies for seed in options.seeds]
  if grid_info and grid_info["exact"] and not options.compare_strategies:
    log("strategy comparison skipped: the exact grid is the front (--compare_strategies "
        "also runs %s and scores each against it)" % ", ".join(options.strategies))
    runs = []
  progress = _Progress(len(runs), options.num_initial, log)
  for k, (name, seed) in enumerate(runs):
    progress.start("[%d/%d] %s (seed %d)" % (k + 1, len(runs), name, seed))
    ev, seconds = cascade_lib.search_thresholds(val, name, options.evaluations, seed,
                                                options.num_initial, progress=progress.update)
    evaluations["%s:%d" % (name, seed)] = ev
    rows.append({"strategy": name, "seed": seed, "evaluations": len(ev.error),
                 "seconds": seconds})
    progress.finish(len(ev.error))
  reference = evaluations["grid"] if use_grid else None
  objectives = val.objectives
  if reference is not None:
    ref_y = reference.objective_matrix(objectives)
  else:
    ref_y = np.vstack([e.objective_matrix(objectives) for e in evaluations.values()])
  ref_y = ref_y[cascade_lib.front_mask(ref_y)]
  for row in rows:
    y = evaluations["%s:%d" % (row["strategy"], row["seed"])].objective_matrix(objectives)
    row["hypervolume_fraction"] = cascade_lib.hypervolume_fraction(y, ref_y)
  return evaluations, rows, ref_y, grid_info


class _Progress:
  """Lines ``label: i/n vectors | elapsed, ETA`` of the threshold searches,
  at most one per ``every_s`` seconds and one at the end of each run. The ETA
  extrapolates the current run from its proposals (the ``num_initial``
  uniform vectors cost nothing; later proposals cost more, so it errs low)
  and counts each run still to come as long as the mean run so far."""

  def __init__(self, runs: int, num_initial: int, log: Callable[[str], object],
               every_s: float = 15.0) -> None:
    self.runs, self.num_initial, self.log, self.every_s = runs, num_initial, log, every_s
    self.begin = time.perf_counter()
    self.durations: list[float]
    self.durations, self.label, self.run_start, self.last = [], "", self.begin, self.begin

  def start(self, label: str) -> None:
    self.label, self.run_start = label, time.perf_counter()

  def update(self, done: int, total: int, force: bool = False) -> None:
    """``done`` of this run's ``total`` vectors are evaluated."""
    now = time.perf_counter()
    if not (force or now - self.last >= self.every_s):
      return
    self.last, spent = now, now - self.run_start
    proposals = done - min(self.num_initial, total)
    if done >= total:
      left = 0.0
    elif proposals > 0:
      left = spent / proposals * (total - done)
    else:
      left = None
    later = self.runs - len(self.durations) - 1
    if left is not None and later:
      left += later * float(np.mean(self.durations + [spent + left]))
    self.log("%s: %d/%d vectors | elapsed %s, ETA %s" % (
        self.label, done, total, _hms(now - self.begin), "?" if left is None else _hms(left)))

  def finish(self, total: int) -> None:
    self.update(total, total, force=True)
    self.durations.append(time.perf_counter() - self.run_start)


def _hms(seconds: float) -> str:
  seconds = int(round(seconds))
  return "%dh%02dm%02ds" % (seconds // 3600, seconds % 3600 // 60, seconds % 60) \
      if seconds >= 3600 else "%dm%02ds" % (seconds // 60, seconds % 60)


def write_spec(out_dir: str, stages: Sequence[cascade_stages.Candidate], files: Sequence[str],
               val: cascade_lib.CascadeData, test: cascade_lib.CascadeData | None,
               points: Sequence[dict[str, Any]], settings: dict[str, Any],
               options: CascadeOptions) -> dict[str, Any]:
  spec = {"format": runner.FORMAT_NAME, "version": runner.FORMAT_VERSION,
          "confidence": options.confidence, "objectives": list(val.objectives),
          "dataset": settings["dataset"], "split_seed": settings.get("split_seed"),
          "validation_images": val.num_images,
          "stages": [cascade_stages.stage_record(s, f, float(1 - val.correct[k].mean()))
                     for k, (s, f) in enumerate(zip(stages, files))],
          "points": points}
  for k, record in enumerate(spec["stages"]):
    record["test_error"] = None if test is None else float(1 - test.correct[k].mean())
  with open(os.path.join(out_dir, runner.CASCADE_FILE), "w") as f:
    json.dump(spec, f, indent=2)
  return spec


def build(options: CascadeOptions, log: Callable[[str], object] = print) -> dict[str, Any]:
  """Everything the CLI does (module doc); returns the summary dict. Bad
  inputs are refused before ``out_dir`` is created."""
  settings, candidates, singles = load_candidates(options)
  stages = choose(candidates, options, log)
  os.makedirs(options.out_dir, exist_ok=True)
  with open(os.path.join(options.out_dir, "cascade_config.json"), "w") as f:
    json.dump(dataclasses.asdict(options), f, indent=2)
  splits = data.load(settings["dataset"], settings.get("data_dir"),
                     seed=int(settings.get("split_seed") or 0))
  files = cascade_stages.write_stage_models(stages, options.out_dir,
                                            data.normalize(splits.x_val[:8]))
  static = None  # costs measured by the search on a static-batch device (MYRIAD)
  if options.stage_costs == "measure":
    singles = remeasure_stage_costs(stages, files, options, settings, splits, log)
  elif settings.get("device_kind") in devices.STATIC_BATCH:
    static = int(settings.get("measure_batch_size") or 100)
    log("stage costs: measured on a %s, which runs whole batches: a stage costs a whole batch "
        "of %d per call, however few images reach it" % (settings["device_kind"], static))
  val, test = stage_data(stages, files, splits, options, static)
  evaluations, rows, ref_y, grid_info = threshold_searches(val, options, log)
  points = cascade_lib.front_points(val, evaluations, test)
  spec = write_spec(options.out_dir, stages, files, val, test, points, settings, options)
  cascade_report.plot_fronts(options.out_dir, singles, spec["stages"], points)
  summary = {"stages": spec["stages"], "objectives": list(val.objectives),
             "validation_images": val.num_images, "stage_costs": options.stage_costs,
             "front_points": len(points), "grid": grid_info, "threshold_search": rows,
             "hypervolume_fraction_mean": _means(rows),
             "best_saving": cascade_report.best_saving(
                 points, min(spec["stages"], key=lambda s: s["val_error"]),
                 options.error_tolerance),
             "front_saving": cascade_report.front_saving(points, singles)}
  measured = None
  if options.measure:
    summary["measurement"], measured = measure(options, spec, val, splits, settings, log)
  summary["table"] = cascade_report.points_table(options.out_dir, points, stages, measured)
  _write_rows(os.path.join(options.out_dir, "threshold_search.csv"), rows)
  with open(os.path.join(options.out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def remeasure_stage_costs(stages: Sequence[cascade_stages.Candidate], files: Sequence[str],
                          options: CascadeOptions, settings: dict[str, Any], splits: Any,
                          log: Callable[[str], object] = print) -> list[tuple[Any, ...]]:
  """``--stage_costs=measure``: each stage's cost measured now replaces the
  search's; returns the single-model rows to draw (the stages, as measured now)."""
  images, _, run = measure_settings(options, settings, splits)
  for stage, row in zip(stages, cascade_report.measure_stages(options.out_dir, files, images,
                                                              run, log)):
    stage.time_s_per_image = row["time_s_per_image"]
    stage.call_time_s = row["call_time_s"]
    stage.energy_j_per_image = row["energy_j_per_image"]
    stage.measurement = row["measurement"]
  return [(s.name + " (now)", s.val_error, s.time_s_per_image, s.energy_j_per_image)
          for s in stages]


def measure_settings(options: CascadeOptions, settings: dict[str, Any],
                     splits: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """``(images, their validation indices, deploy.measure.measure settings)``:
  the search's measurement images (repeated if the split is smaller), on this CPU."""
  count = int(settings.get("measure_images") or 500)
  index = np.arange(count) % len(splits.y_val)
  run = {"device": "cpu", "runtime": "onnxruntime", "power_source": options.power_source,
         "batch_size": int(settings.get("measure_batch_size") or 100),
         "repeats": options.measure_repeats}
  return data.normalize(splits.x_val[index]), index, run


def measure(options: CascadeOptions, spec: dict[str, Any], val: cascade_lib.CascadeData,
            splits: Any, settings: dict[str, Any],
            log: Callable[[str], object] = print
            ) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
  """Measure the stages and ``--measure_points`` points on this CPU."""
  images, index, run = measure_settings(options, settings, splits)
  count = len(index)
  indices = cascade_report.measure_indices(spec["points"], options.measure_points)
  load = os.getloadavg()
  stage_rows, measured = cascade_report.measure_points(
      options.out_dir, spec, indices, val, images, index, run, log)
  info = {"settings": run, "images": count, "loadavg_before": list(load),
          "loadavg_after": list(os.getloadavg()), "stages": stage_rows,
          "points": [measured[i] for i in indices]}
  return info, measured


def _means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
  out: dict[str, list[float]] = {}
  for row in rows:
    out.setdefault(row["strategy"], []).append(row["hypervolume_fraction"])
  return {k: float(np.mean(v)) for k, v in out.items()}


def _write_rows(path: str, rows: Sequence[dict[str, Any]]) -> None:
  fields = ["strategy", "seed", "evaluations", "seconds", "hypervolume_fraction"]
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
