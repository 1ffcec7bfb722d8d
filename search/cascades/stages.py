"""The stages of a cascade: candidate models, their ONNX files, their logits.

Candidates come from a search (``candidates_from_results``: the Pareto trials
of its results directory, each with the measurement the search made) or from
trained model directories (``candidates_from_model_dirs``: ``model.keras``,
``metrics.json`` and a measurement JSON). ``write_stage_models`` copies (or
exports) each chosen stage to ``<out_dir>/stages/stage<k>.onnx``; the
validation logits are then computed once from exactly those files
(``stage_logits``: ONNX Runtime, or Keras on ``model.keras``).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
from typing import Any, Optional, Sequence

import numpy as np

from deploy import export
from deploy.device import devices
from deploy.device import runtimes
from search.reports import common
from search.reports import cross_device_lib
from tea_keras import errors

STAGES_DIR = "stages"


@dataclasses.dataclass
class Candidate:
  """One trained, measured model. Costs are per image of its measurement."""
  name: str
  keras_path: str
  onnx_path: Optional[str]
  val_error: float
  time_s_per_image: float
  energy_j_per_image: Optional[float]
  measurement: dict
  trial_id: Optional[int] = None
  genotype: Optional[str] = None
  # seconds per call (search.cascades.thresholds.per_call_cost) when measured at two batch sizes
  call_time_s: Optional[float] = None


def _per_image(value: float | None, images: float | None) -> float | None:
  return None if value is None or not images else float(value) / float(images)


_MEASUREMENT_KEYS = ("time_s", "energy_j", "images", "batch_size", "device", "runtime",
                     "power_source", "other_cpu_share", "contended", "time_cv")


def candidate(name: str, keras_path: str, onnx_path: str | None, val_error: float,
              measurement: dict[str, Any], trial_id: int | None = None,
              genotype: str | None = None) -> Candidate:
  """A ``Candidate`` from a measurement dict (``time_s``, ``images``, ...)."""
  images = measurement.get("images")
  if measurement.get("time_s") is None or not images:
    raise ValueError("%s: expected a measurement with time_s and images; found %s."
                     % (name, sorted(k for k in measurement if k in _MEASUREMENT_KEYS)))
  return Candidate(
      name=name, keras_path=keras_path, onnx_path=onnx_path, val_error=float(val_error),
      time_s_per_image=_per_image(measurement["time_s"], images),  # type: ignore[arg-type]
      energy_j_per_image=_per_image(measurement.get("energy_j"), images),
      measurement={k: measurement.get(k) for k in _MEASUREMENT_KEYS},
      trial_id=trial_id, genotype=genotype)


def _resolve(path: str, results_dir: str) -> str:
  """A recorded artifact path, also when the search ran from another directory."""
  if not path or os.path.exists(path):
    return path
  marker = os.sep + "trials" + os.sep
  if marker in os.sep + path:
    tail = (os.sep + path).split(marker, 1)[1]
    moved = os.path.join(results_dir, "trials", tail)
    if os.path.exists(moved):
      return moved
  return path


def candidates_from_results(results_dir: str,
                            trial_ids: Sequence[int] | None = None
                            ) -> tuple[dict[str, Any], list[Candidate], list[Any]]:
  """``(config dict, candidates, all done trials)`` of a search: its Pareto
  trials, or the done trials ``trial_ids``."""
  config, trials = common.load_search(results_dir)
  done = [t for t in trials if t["status"] == "done"]
  if trial_ids:
    by_id = {t["trial_id"]: t for t in done}
    missing = [i for i in trial_ids if i not in by_id]
    if missing:
      raise ValueError("Invalid value for argument `stages`: trials %s are not done trials of "
                       "%s. Expected ids among %s." % (missing, results_dir, sorted(by_id)))
    chosen = [by_id[i] for i in trial_ids]
  else:
    chosen = cross_device_lib.pareto_trials(trials, config["objectives"])
  out = []
  for t in chosen:
    m, a = t["metrics"], t["artifacts"]
    export = _resolve(a.get("export"), results_dir)
    out.append(candidate(
        "trial #%d" % t["trial_id"], _resolve(a.get("model"), results_dir),
        export if export and export.endswith(".onnx") else None, m["val_error"], m,
        trial_id=t["trial_id"], genotype=t["genotype"]))
  if not out:
    raise ValueError("%s has no done trial with every objective measured." % results_dir)
  return config, out, done


def find_measurement(model_dir: str, label: str | None = None) -> tuple[str, dict[str, Any]]:
  """The measurement JSON of a model directory: ``measurements/<label>.json``
  (``search.reports --figure=table2 --measure_label``; the only one when
  ``label`` is None), ``measurement.json``, or a search trial's
  ``../measure/result.json``."""
  if label:
    paths = [os.path.join(model_dir, "measurements", label + ".json")]
  else:
    paths = sorted(glob.glob(os.path.join(model_dir, "measurements", "*.json")))
    if len(paths) > 1:
      raise ValueError("%s holds measurements %s; expected --measurement_label to choose."
                       % (model_dir, [os.path.basename(p)[:-5] for p in paths]))
    paths += [os.path.join(model_dir, "measurement.json"),
              os.path.join(os.path.dirname(os.path.abspath(model_dir)), "measure",
                           "result.json")]
  for path in paths:
    if os.path.isfile(path):
      with open(path) as f:
        return path, json.load(f)
  raise ValueError("No measurement for %s: expected one of %s (measure it with python -m "
                   "search.reports --figure=table2 --measure_label=L --model_dirs=%s)."
                   % (model_dir, paths, model_dir))


def candidates_from_model_dirs(model_dirs: Sequence[str],
                               label: str | None = None) -> tuple[dict[str, Any], list[Candidate]]:
  """``(data settings dict, candidates)`` of trained model directories."""
  settings: dict[str, Any]
  out, settings = [], {}
  for d in model_dirs:
    keras_path = os.path.join(d, "model.keras")
    metrics_path = os.path.join(d, "metrics.json")
    if not (os.path.isfile(keras_path) and os.path.isfile(metrics_path)):
      raise ValueError("Invalid value for argument `model_dirs`: %s. Expected a training "
                       "directory with model.keras and metrics.json." % d)
    with open(metrics_path) as f:
      metrics = json.load(f)
    config = {}
    if os.path.isfile(os.path.join(d, "config.json")):
      with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    _, measured = find_measurement(d, label)
    export = (measured.get("artifacts") or {}).get("export")
    out.append(candidate(os.path.basename(os.path.normpath(d)), keras_path,
                         export if export and export.endswith(".onnx") and
                         os.path.isfile(export) else None, metrics["val_error"], measured,
                         genotype=config.get("genotype")))
    settings.setdefault("dataset", config.get("dataset"))
    settings.setdefault("split_seed", config.get("split_seed", 0))
  return settings, out


def write_stage_models(stages: Sequence[Candidate], out_dir: str,
                       check_images: np.ndarray) -> list[str]:
  """Copy each stage's ONNX (or export it from ``model.keras``) to
  ``<out_dir>/stages/stage<k>.onnx``; returns the paths relative to ``out_dir``."""
  os.makedirs(os.path.join(out_dir, STAGES_DIR), exist_ok=True)
  files = []
  for k, stage in enumerate(stages, 1):
    rel = os.path.join(STAGES_DIR, "stage%d.onnx" % k)
    dest = os.path.join(out_dir, rel)
    if stage.onnx_path:
      shutil.copyfile(stage.onnx_path, dest)
    else:
      from tea_keras import network  # pylint: disable=g-import-not-at-top  (Keras)
      export.export_model(network.load_model(stage.keras_path), "onnx", dest,
                          check_images=check_images[:8], opset=devices.ONNX_OPSET)
    files.append(rel)
  return files


def stage_logits(paths: Sequence[str], images: np.ndarray, runtime: str = "onnxruntime",
                 keras_paths: Sequence[str] | None = None,
                 batch_size: int = 256) -> list[np.ndarray]:
  """(N, classes) float32 logits of each stage on ``images``: ONNX Runtime on
  ``paths``, or Keras on ``keras_paths`` (``runtime="keras"``)."""
  images = np.ascontiguousarray(images, np.float32)
  out = []
  if runtime == "keras":
    from tea_keras import network  # pylint: disable=g-import-not-at-top  (Keras)
    for path in keras_paths:  # type: ignore[union-attr]
      model = network.load_model(path)
      out.append(np.asarray(model.predict(images, batch_size=batch_size, verbose=0),
                            np.float32))
    return out
  if runtime != "onnxruntime":
    raise errors.invalid_value("runtime", "onnxruntime or keras", runtime)
  for path in paths:
    rt = runtimes.create("onnxruntime", path, "cpu")
    try:
      out.append(np.concatenate([np.asarray(rt.predict(images[i:i + batch_size]), np.float32)
                                 for i in range(0, len(images), batch_size)]))
    finally:
      rt.close()
  return out


def stage_record(stage: Candidate, file: str, logits_error: float) -> dict[str, Any]:
  """The ``cascade.json`` entry of one stage."""
  return {"file": file, "name": stage.name, "trial_id": stage.trial_id,
          "genotype": stage.genotype, "val_error": logits_error,
          "recorded_val_error": stage.val_error,
          "time_s_per_image": stage.time_s_per_image,
          "energy_j_per_image": stage.energy_j_per_image, "call_time_s": stage.call_time_s,
          "measured": stage.measurement}
