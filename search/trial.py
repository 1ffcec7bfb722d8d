"""One trial: train a genotype, export it, measure it on the target device.

``evaluate_trial(spec)`` runs in a worker (a local process or a Ray task); it
takes and returns plain JSON-able dicts so that any executor can carry them:

  spec   = {"trial_id", "genotype", "trial_dir", "config": SearchConfig as dict,
            optional "attempt", "node": {"hostname", "node_id", "ip"} (a Ray
            task's node, ``search.executors``), "storage_nonce"}
  result = {"trial_id", "status": "done"|"failed", "metrics": {...},
            "artifacts": {...}, "error": str|None, "retryable": bool,
            "where": {"train_host", "train_node", "measure_host"}}

Where it runs: once the results dir is known to be shared, the trial writes
``trial_dir/worker.json`` (its attempt, host, Ray node id and PID), so that
the driver (and a person) can tell on which node an attempt runs before it
ends, and name that node when the attempt is lost with it. The result's
``where`` names the host and node that trained the trial and the host that
measured it (a remote agent's, which returns the measurement's traces with
its answer: they are kept under ``trial_dir/measure``).

A decoupled search's ``spec["kind"] == "measure"`` evaluation
(``--evaluation=decoupled``, ``search.decoupled``) trains nothing: it builds
the cell network, draws its constant tensors at random, exports and measures
it (time and energy; ``build_start_time``..``measure_end_time``); its
``train`` evaluations are trials as above.

With several trials in flight on a local device, training holds the device
lock shared and measurement exclusive (``search.device_lock``): no trial is
measured while another trains or measures; the wall-clock windows are kept
(``train_start_time``..``measure_end_time``, and ``measure_lock_wait_s``).

Objectives are what was measured: ``error`` is the validation error after
search-time training of the deployed artifact (``deployed_val_error``: the
export run by its runtime on the whole validation split, after conversion),
``time`` the measured inference time of
``measure_images`` validation images (``time_s``), ``energy`` the measured
energy over the working span (``energy_j``). With several
``precisions`` the cell is exported, evaluated and measured at each (int8
calibrated on ``calibration_images`` training images, ``deploy.quantize``):
``metrics["precisions"][p]`` holds each pair's error, time, energy and
artifact bytes; the top-level figures are the first precision's. A trial that diverges or fails
to export or measure comes back ``failed`` with its error text; an
unreachable remote device is marked ``retryable``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import traceback
from typing import Any, Mapping, Sequence

import numpy as np

from deploy import export as export_lib
from deploy import pipeline
from deploy.device import devices
from search import config as config_lib
from search import device_lock
from tea_keras import data
from tea_keras import files
from tea_keras import recipes
from tea_keras import space

_SPLITS_CACHE: dict[Any, Any] = {}


def load_splits(config: config_lib.SearchConfig) -> Any:
  """The data set's splits for ``config`` (training images cut to
  ``train_images``), loaded once per process."""
  key = (config.dataset, config.data_dir, config.seed, config.train_images)
  if key not in _SPLITS_CACHE:
    splits = data.load(config.dataset, data_dir=config.data_dir, seed=config.seed)
    if config.train_images:
      splits = dataclasses.replace(splits, x_train=splits.x_train[:config.train_images],
                                   y_train=splits.y_train[:config.train_images])
    _SPLITS_CACHE[key] = splits
  return _SPLITS_CACHE[key]


def evaluate_trial(spec: dict[str, Any]) -> dict[str, Any]:
  """Evaluate one trial (see module doc); never raises for a trial's own failure."""
  config = config_lib.SearchConfig.from_dict(spec["config"])
  result = {"trial_id": spec["trial_id"], "status": "failed", "metrics": {}, "artifacts": {},
            "error": None, "retryable": False}
  lock = device_lock.for_config(config)
  node = dict(spec.get("node") or {"hostname": socket.gethostname()})
  result["where"] = {"train_host": node.get("hostname"), "train_node": node.get("node_id")}
  measure_only = spec.get("kind") == "measure"
  if spec.get("kind"):
    result["kind"] = spec["kind"]
  try:
    _check_shared_storage(spec)
    _announce_worker(spec, node)
    if measure_only:
      _measure_untrained(spec, config, result, lock)
    else:
      _train_and_measure(spec, config, result, lock)
  except ConnectionError as e:  # deploy's DeviceUnreachableError derives from it
    result.update(error="device unreachable: %s" % e, retryable=True)
  except Exception as e:  # pylint: disable=broad-except
    result["error"] = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=4))
  if result["metrics"].get("measure_host"):
    result["where"]["measure_host"] = result["metrics"]["measure_host"]
  if result["error"] is None:
    wanted = [o for o in config.objectives if o != "error"] if measure_only else \
        config.objectives
    missing = [o for o in wanted if objective_value(result["metrics"], o) is None]
    if missing:
      result["error"] = "objective(s) %s were not measured" % ", ".join(missing)
    else:
      result["status"] = "done"
  return result


def _train_and_measure(spec: dict[str, Any], config: config_lib.SearchConfig,
                       result: dict[str, Any], lock: device_lock.DeviceLock | None) -> None:
  """A coupled trial, or a decoupled search's train evaluation: train, then
  export and measure the trained network (module doc)."""
  metrics = result["metrics"]
  with device_lock.training(lock):
    metrics["train_start_time"] = time.time()
    _train(spec, config, result)
    metrics["train_end_time"] = time.time()
  if result["error"] is None and {"time", "energy"} & set(config.objectives):
    with device_lock.measuring(lock) as waited:
      metrics.update(measure_lock_wait_s=waited, measure_start_time=time.time())
      _measure(spec, config, result)
      metrics["measure_end_time"] = time.time()


def _measure_untrained(spec: dict[str, Any], config: config_lib.SearchConfig,
                       result: dict[str, Any], lock: device_lock.DeviceLock | None) -> None:
  """A decoupled search's measure evaluation: the cell network built with
  its constant tensors drawn at random (``export.randomize_constant_weights``:
  Keras' zero biases would be folded away by the export, a smaller graph
  than the trained one's), exported and measured at each precision (time,
  energy; no error). Building holds the local device shared, measuring
  exclusive, as a trial's training and measurement do."""
  import keras  # pylint: disable=g-import-not-at-top  (TensorFlow/Keras: in the worker only)
  from tea_keras import profiling  # pylint: disable=g-import-not-at-top
  from tea_keras import training  # pylint: disable=g-import-not-at-top
  metrics = result["metrics"]
  with device_lock.training(lock):
    metrics["build_start_time"] = time.time()
    keras.backend.clear_session()
    recipe = recipes.search_recipe(**config.recipe)
    splits = load_splits(config)
    model = training.build_cell_network(
        space.Genotype.parse(spec["genotype"]), recipe, recipe.num_cells, recipe.filters,
        seed=config.seed + spec["trial_id"], num_classes=getattr(splits, "num_classes", None))
    metrics["randomized_tensors"] = export_lib.randomize_constant_weights(
        model, config.seed + spec["trial_id"])
    cost = profiling.profile_model(model)
    metrics.update(params=int(model.count_params()), macs=cost["flops"],
                   peak_activation_bytes=cost["peak_activation_bytes"], untrained=True)
    metrics["build_end_time"] = time.time()
  with device_lock.measuring(lock) as waited:
    metrics.update(measure_lock_wait_s=waited, measure_start_time=time.time())
    pairs, first_metrics, first_artifacts = measure_precisions(
        model, spec["trial_dir"], config, splits, evaluate=False)
    metrics["precisions"] = pairs
    metrics["measure_end_time"] = time.time()
  if first_metrics is None:
    result["error"] = "precision %s failed: %s" % (config.precisions[0],
                                                   pairs[config.precisions[0]]["error"])
    return
  for key, value in first_metrics.items():
    metrics["measure_" + key if key in metrics else key] = value
  result["artifacts"].update(first_artifacts or {})
  metrics["measure_wall_seconds"] = metrics["measure_end_time"] - metrics["measure_start_time"]


WORKER_FILE = "worker.json"


def _announce_worker(spec: Mapping[str, Any], node: dict[str, Any]) -> None:
  """Write ``trial_dir/worker.json``: which attempt runs where (module doc)."""
  os.makedirs(spec["trial_dir"], exist_ok=True)
  path = os.path.join(spec["trial_dir"], WORKER_FILE)
  files.write_json(path, dict(node, trial_id=spec["trial_id"], attempt=spec.get("attempt"),
                              pid=os.getpid(), started_at=time.time()))


def read_worker(trial_dir: str) -> dict[str, Any] | None:
  """The last ``worker.json`` of ``trial_dir`` (None when absent or unreadable)."""
  try:
    with open(os.path.join(trial_dir, WORKER_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _check_shared_storage(spec: Mapping[str, Any]) -> None:
  """A Ray task on another machine must write into the search's results dir:
  the driver left a nonce there (``spec["storage_nonce"]``)."""
  nonce = spec.get("storage_nonce")
  if not nonce:
    return
  path = os.path.join(spec["config"]["results_dir"], ".storage_check")
  try:
    with open(path) as f:
      seen = f.read().strip()
  except OSError:
    seen = None
  if seen != nonce:
    raise RuntimeError("--results_dir=%s is not shared with %s (no matching %s there): with "
                       "Ray on several machines the results directory must be on storage "
                       "every node mounts at the same path (NFS, a cluster file system)."
                       % (spec["config"]["results_dir"], socket.gethostname(), path))


# What each (cell, precision) pair keeps of its export and measurement.
PAIR_KEYS = ("val_error", "time_s", "energy_j", "time_cv", "contended", "other_cpu_share",
             "model_bytes", "weight_bytes", "export_max_abs_diff", "mean_power_w", "engine_build_s",
             "val_error_source")


def objective_value(metrics: Mapping[str, Any], objective: str) -> float | None:
  """The measured value of ``objective`` in a trial's metrics (None if absent):
  the deployed artifact's error where it was measured, else Keras'. Also
  reads one pair's entry of ``metrics["precisions"]``."""
  key = {"error": "val_error", "time": "time_s", "energy": "energy_j"}[objective]
  value = metrics.get("deployed_val_error") if objective == "error" else None
  value = metrics.get(key) if value is None else value
  return None if value is None else float(value)


def _train(spec: dict[str, Any], config: config_lib.SearchConfig, result: dict[str, Any]) -> Any:
  # TensorFlow/Keras: imported by the trial that trains, never by the driver.
  import keras  # pylint: disable=g-import-not-at-top
  from tea_keras import training  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  recipe = recipes.search_recipe(**config.recipe)
  model_dir = os.path.join(spec["trial_dir"], "model")
  start = time.time()
  trained = training.train_genotype(
      space.Genotype.parse(spec["genotype"]), recipe, load_splits(config), model_dir,
      num_cells=recipe.num_cells, filters=recipe.filters, verbose=1,
      seed=config.seed + spec["trial_id"], log_label="trial #%d" % spec["trial_id"])
  result["metrics"].update({k: v for k, v in trained.metrics.items()
                            if isinstance(v, (int, float, str, bool)) or v is None})
  result["metrics"]["train_wall_seconds"] = time.time() - start
  from tea_keras import profiling  # pylint: disable=g-import-not-at-top  (TensorFlow)
  cost = profiling.profile_model(trained.model)  # static: batch 1, float32
  result["metrics"].update(macs=cost["flops"], peak_activation_bytes=cost["peak_activation_bytes"])
  result["artifacts"]["model_dir"] = model_dir
  result["artifacts"]["model"] = os.path.join(model_dir, "model.keras")
  if trained.diverged or trained.error:
    reason = trained.error or "non-finite loss"
    result["error"] = reason if reason.startswith("training diverged") else \
        "training diverged: %s" % (reason[len("diverged: "):] if reason.startswith("diverged: ")
                                   else reason)
  spec["_model"] = trained.model


def _measure(spec: dict[str, Any], config: config_lib.SearchConfig, result: dict[str, Any]) -> None:
  start = time.time()
  pairs, first_metrics, first_artifacts = measure_precisions(
      spec.pop("_model"), spec["trial_dir"], config, load_splits(config))
  result["metrics"]["precisions"] = pairs
  if first_metrics is None:  # the first precision, the one the optimizer models, failed
    result["error"] = "precision %s failed: %s" % (
        config.precisions[0], pairs[config.precisions[0]]["error"])
    return
  first_metrics["deployed_val_error"] = first_metrics.pop("val_error")
  for key, value in first_metrics.items():  # never overwrite a training figure
    result["metrics"]["measure_" + key if key in result["metrics"] else key] = value
  result["artifacts"].update(first_artifacts)
  result["metrics"]["measure_wall_seconds"] = time.time() - start


def measure_precisions(model: Any, work_dir: str, config: config_lib.SearchConfig, splits: Any,
                       precisions: Sequence[str] | None = None, evaluate: bool = True
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None,
                                  dict[str, Any] | None]:
  """Export, evaluate (``deployed_error``) and measure ``model`` at each of
  ``precisions`` (default ``config.precisions``), int8 calibrated on the first
  ``config.calibration_images`` TRAINING images. Returns ``(pairs, metrics,
  artifacts)``: ``{precision: PAIR_KEYS + export}`` and the first precision's
  full metrics and artifacts (None when it failed).

  A precision that fails (its export, conversion or measurement) is recorded
  as a failed pair, ``{"status": "failed", "error": ...}``, and the others
  are still measured: one int8 conversion the device refuses does not throw
  away the fp32 pair. An unreachable device (``ConnectionError``) is not a
  pair's fault: it propagates, and the trial is retried. ``evaluate=False``
  (an untrained network's time and energy): no error is computed."""
  images = data.normalize(splits.x_val[:config.measure_images])
  precisions = tuple(precisions or getattr(config, "precisions", None) or ("fp32",))
  calibration = data.normalize(splits.x_train[:getattr(config, "calibration_images", 200)]) \
      if "int8" in precisions else None
  pairs: dict[str, dict[str, Any]] = {}
  first = None
  for index, precision in enumerate(precisions):
    try:
      metrics, artifacts = pipeline.export_and_measure(model, work_dir, config, images,
                                              precision=precision,
                                              calibration_images=calibration)
      top1 = artifacts.pop("device_top1", None)
      if evaluate:
        metrics["val_error"], metrics["val_error_source"] = deployed_error(
            model, artifacts["export"], splits, config, precision, top1)
    except ConnectionError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (recorded as the pair's failure)
      pairs[precision] = {"status": "failed", "error": "%s: %s" % (type(e).__name__, e)}
      continue
    pairs[precision] = {k: metrics.get(k) for k in PAIR_KEYS}
    pairs[precision].update(status="done", export=artifacts["export"])
    if index == 0:
      first = (metrics, artifacts)
  return pairs, first[0] if first else None, first[1] if first else None


def deployed_error(model: Any, path: str, splits: Any, config: config_lib.SearchConfig,
                   precision: str = "fp32",
                   device_top1: np.ndarray | None = None) -> tuple[float, str]:
  """``(error, source)``: the top-1 error of the deployed artifact and where
  it was computed (the pair's ``val_error_source``).

  * on the device that measured it, whenever that device is not this host's
    CPU (a remote agent, a local GPU, Jetson or MYRIAD): the predictions it
    returned for the images it measured (``device_top1``: the first
    ``measure_images`` validation images, which the handshake checked are
    this search's), so the numerics are the device's own (TensorRT's engine,
    ONNX Runtime's CUDA kernels, MYRIAD's FP16);
  * on this host's CPU (``device=cpu``): the artifact run by its runtime on
    the whole validation split;
  * otherwise (a device that returned no predictions) Keras' error, and
    ``source`` says so.
  """
  labels = np.asarray(splits.y_val).ravel()
  if device_top1 is not None:
    top1 = np.asarray(device_top1, int).ravel()
    return (float(np.mean(top1 != labels[:top1.size])),
            "device (%s %s on %s, %d images)" % (config.runtime, precision,
                                                 config.device_kind or config.device, top1.size))
  images = data.normalize(splits.x_val)
  fmt = devices.format_of_path(path)
  if config.device == "cpu" and fmt in ("onnx", "openvino"):
    name, logits = export_lib.run_artifact(fmt, path, images, config.measure_batch_size)
    return (float(np.mean(np.argmax(logits, axis=1) != labels)),
            "%s %s on this host's CPU (%d images)" % (name, precision, len(labels)))
  logits = export_lib.keras_logits(model, images)
  return (float(np.mean(np.argmax(logits, axis=1) != labels)),
          "keras (the device returned no predictions)")
