"""Export and measure: a trained Keras model exported in the artifact format
the target reads and measured on the target (this host's CPU, a local CUDA device
through its device script in a process of its own, or a remote agent).
``export_and_measure`` is what a trial, the reports and the cascades call.

Runtime ``keras`` on a local CUDA device is measured in this process (the
device scripts hold no Keras: ``deploy.device`` imports no TensorFlow)."""

import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, Optional, Tuple
from urllib import parse

import numpy as np

from deploy import agent_client
from deploy import export as export_lib
from deploy import measure as measure_lib
from deploy import quantize
from deploy.device import devices
from deploy.device import image_files

def export_and_measure(model: Any, work_dir: str, config: Any, images: np.ndarray,
                       precision: str = "fp32", calibration_images: Optional[np.ndarray] = None
                       ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Export ``model`` in the artifact format the target reads into ``work_dir/export``
  and measure it on ``config.device`` (locally or through the remote agent).

  ``config``: a ``SearchConfig`` passed through ``search.loop.resolve`` (it
  names the runtime, the artifact format and ONNX opset the target reads).
  ``precision``: fp32, fp16 or int8 (``calibration_images``: normalized
  training images); an fp32 export is ``export/model.<suffix>``, others
  ``export/<precision>/model.<suffix>``.
  Returns ``(metrics, artifacts)``: the measurement's scalar fields (plus
  ``export_max_abs_diff``, ``model_bytes`` and, for TensorRT,
  ``engine_build_s``) and the paths of the export and power trace.
  """
  metrics: Dict[str, Any]
  artifacts: Dict[str, Any]
  metrics, artifacts = {}, {}
  fmt = config.artifact_format or devices.runtime(config.runtime).formats[0]
  # TensorRT builds its engine at `precision` on the device, from the fp32
  # ONNX export (int8: its calibrator on training images, on the device).
  on_device = config.runtime == "tensorrt" and fmt == "onnx"
  sub = () if precision == "fp32" else (precision,)
  out = os.path.join(work_dir, "export", *sub, "model" + devices.FORMATS[fmt].suffix)
  if fmt == "keras":
    if precision != "fp32":
      raise ValueError("runtime=keras measures fp32 only; received precision=%s." % precision)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    model.save(out)
    model_path = out
  else:
    exported = export_lib.export_model(
        model, fmt, out, "fp32" if on_device else precision, check_images=images[:8],
        opset=config.onnx_opset or devices.ONNX_OPSET,
        calibration_images=None if on_device else calibration_images)
    model_path = exported.path
    metrics["export_max_abs_diff"] = exported.max_abs_diff
  artifacts["export"] = model_path
  metrics["model_bytes"] = quantize.artifact_bytes(model_path)
  metrics["weight_bytes"] = quantize.weight_bytes(model_path)
  settings = dict(device=config.device, runtime=config.runtime,
                  power_source=config.power_source, batch_size=config.measure_batch_size,
                  threshold_w=config.power_threshold_w, sample_interval_s=config.sample_interval_s,
                  repeats=config.measure_repeats,
                  contention_policy=getattr(config, "contention_policy", "remeasure"))
  trace_dir = os.path.join(work_dir, "measure", *sub)
  if config.device == devices.REMOTE:
    # Every runtime returns its predictions: the deployed error is the device's.
    settings.update(predictions=True)
    if on_device:
      settings.update(precision=precision)
    measured = _measure_remote(config, model_path, settings, images, trace_dir)
  else:
    options = dict(precision=precision, calibration_images=calibration_images
                   if precision == "int8" else None) if on_device else {}
    if config.device in devices.CUDA_DEVICES and config.runtime != "keras":
      measured = _measure_in_device_process(config, model_path, settings, images, trace_dir,
                                            options)
    else:
      measured = measure_lib.measure(model_path, images=images, progress=False,
                                     trace_dir=trace_dir, runtime_options=options or None,
                                     power_options=getattr(config, "power_options", None),
                                     predictions=config.device != "cpu", **settings)
  host = measured.pop("host", None)
  metrics.update({k: v for k, v in measured.items()
                  if isinstance(v, (int, float, str, bool)) or v is None})
  remote = config.device == devices.REMOTE
  metrics["measure_host"] = (host or _url_host(config.device_url)) if remote else \
      socket.gethostname()
  runtime_info = measured.get("runtime_info") or {}
  for key in ("engine_build_s", "engine_cached"):
    if key in runtime_info:
      metrics[key] = runtime_info[key]
  if on_device and runtime_info.get("engine_bytes"):
    # The engine is the deployed artifact; its weights are not counted apart.
    metrics["model_bytes"], metrics["weight_bytes"] = int(runtime_info["engine_bytes"]), None
  for key in ("trace", "trace_png"):
    if measured.get(key):
      artifacts[key] = measured[key]
  if measured.get("top1") is not None:
    artifacts["device_top1"] = measured["top1"]
  process = measured.get("process")
  if process:  # measured by a device script in a process of its own
    metrics["measure_pid"] = process.get("pid")
    metrics["measure_tensorflow_loaded"] = process.get("tensorflow_imported")
  return metrics, artifacts


def _measure_in_device_process(config: Any, model_path: str, settings: Dict[str, Any],
                                images: np.ndarray, trace_dir: str,
                                options: Dict[str, Any]) -> Dict[str, Any]:
  """Measure on a local CUDA device (GPU, Jetson) in a process of its own, by
  the device script the board would run (``python -m deploy.device.<kind>.measure``),
  which never imports TensorFlow: the trial's process trained with
  TensorFlow, which keeps the GPU memory it took (growth only) and would
  share the GPU with the measured runtime. Returns the script's JSON (with
  ``top1``); a failure raises RuntimeError with the script's last lines."""
  os.makedirs(trace_dir, exist_ok=True)
  data = os.path.join(trace_dir, "images.npy")
  np.save(data, np.ascontiguousarray(images, np.float32))
  cmd = [sys.executable, "-m", "deploy.device.%s.measure" % config.device, "--model=" + model_path,
         "--data=" + data, "--runtime=" + settings["runtime"],
         "--power_source=" + settings["power_source"],
         "--batch_size=%d" % settings["batch_size"], "--repeats=%d" % settings["repeats"],
         "--sample_interval_s=%r" % settings["sample_interval_s"],
         "--contention_policy=" + settings["contention_policy"], "--trace_dir=" + trace_dir,
         "--predictions"]
  if settings["threshold_w"] is not None:
    cmd.append("--threshold_w=%r" % settings["threshold_w"])
  cmd += devices.power_option_arguments(getattr(config, "power_options", None))
  calibration = None
  if options:
    cmd.append("--precision=" + options["precision"])
    if options.get("calibration_images") is not None:
      calibration = os.path.join(trace_dir, "calibration.npy")
      np.save(calibration, np.ascontiguousarray(options["calibration_images"], np.float32))
      cmd.append("--calibration=" + calibration)
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True)
  finally:
    for path in (data, calibration):
      if path and os.path.exists(path):
        os.remove(path)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise RuntimeError("the measurement on the %s (%s) failed with exit status %d: %s"
                       % (config.device, " ".join(cmd[:3]), proc.returncode,
                          " | ".join(proc.stderr.strip().splitlines()[-5:])))
  return json.loads(lines[-1])


def _url_host(url: Optional[str]) -> Optional[str]:
  return parse.urlsplit(url or "").hostname


def _measure_remote(config: Any, model_path: str, settings: Dict[str, Any], images: np.ndarray,
                    trace_dir: Optional[str] = None) -> Dict[str, Any]:
  """The agent's measurement of ``model_path``, its trace files kept in
  ``trace_dir`` (``agent_client.save_traces``). With ``predictions`` asked
  for, its ``top1`` is kept only when the agent measured exactly ``images``
  (this search's validation images: the sha256 of the float32 bytes it
  measured, as its result reports them, equals ours; the handshake checked
  its images already, this catches an agent restarted with others since);
  otherwise it is dropped with a warning and the deployed error falls back
  to Keras' (``deployed_error``, which says so)."""
  with open(config.device_token_file) as f:
    token = f.read().strip()
  client = agent_client.AgentClient(config.device_url, token,
                                    ca_file=getattr(config, "device_ca_file", None))
  # The agent owns its power source and its copy of the validation images.
  remote = {k: v for k, v in settings.items() if k not in ("device", "power_source")}
  measured = client.measure(model_path, num_images=len(images), trace_dir=trace_dir, **remote)
  if measured.get("power_source") != settings["power_source"] and \
      settings["power_source"] not in ("auto", "none"):
    raise ValueError("The agent at %s measures with power source %r, the search asked for %r."
                     % (config.device_url, measured.get("power_source"), settings["power_source"]))
  top1 = measured.get("top1")
  if top1 is not None:
    seen = measured.get("images_sha256")
    if len(top1) != len(images) or (seen and seen != image_files.images_sha256(images)):
      print("warning: the agent at %s measured %d images that are not this search's %d "
            "validation images (sha256 differs); its predictions are not used for the "
            "deployed error. Restart it with --data written by: python -m deploy.measure "
            "--dataset=%s%s --num_images=%d --write_data=images.npy"
            % (config.device_url, len(top1), len(images), config.dataset,
               " --data_dir=%s" % config.data_dir if config.data_dir else "", len(images)))
      measured.pop("top1")
  return measured
