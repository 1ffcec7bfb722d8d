"""Measure inference time and energy of a model from the host.

Library: ``measure(model_path, device=..., runtime=..., power_source=...,
images=...)`` returns the result dict of the protocol (``deploy.device.session``):
``time_s``, ``energy_j`` (None without a power instrument), ``images``,
``batch_size``, ``mean_power_w``, ``idle_power_w``, ``samples``,
``threshold_w``, ``power_source``, ``runtime``, ``device``, ``trace`` and
more (repeat statistics, warnings, host-clock time, counter cross-check).

CLI::

  python -m deploy.measure --device=cpu --runtime=onnxruntime --power_source=none \\
      --model=model.onnx --dataset=cifar10_sample --num_images=5000 --batch_size=100

prints a short summary (model, runtime, device, images, time and energy per
``--num_images`` and per image, time source, contention), the warnings on
stderr, one line each; ``--json`` prints the whole result dict as JSON
instead, ``--out=FILE`` writes it to FILE. ``--model`` may be a cascade directory
(``python -m search.cascades.build``; ``deploy.device.cascade_runner``) or its zip
(``deploy.device.cascade_runner.pack``, as the agent receives it): its point is chosen by
``--cascade_point`` or a budget (``--max_energy_per_image_j``,
``--max_time_per_image_s``, ``--max_error``), each stage runs on ``--runtime``.
``--write_data=images.npy`` instead writes
the normalized images for a device script (``deploy/<device>/measure.py``).
TensorRT builds its engine at ``--precision`` (fp32, fp16, int8); int8
calibrates on the first ``--calibration_images`` (200) TRAINING images of
``--dataset``; ``--write_calibration=calib.npy`` writes those for a board's
``--calibration`` (device scripts, agent) and exits::

  python -m deploy.measure --device=gpu --runtime=tensorrt --precision=int8 \\
      --model=model.onnx --dataset=cifar10_sample
Images are the validation split (the paper measures on 5,000 validation
images); when the data set has fewer than ``--num_images`` they are
repeated and the result says so (``images_repeated_from``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import zipfile
from typing import Any, Iterator, Sequence

import numpy as np
from absl import app
from absl import flags

from deploy import keras_runtime  # noqa: F401  (registers the host-side "keras" runtime)
from deploy.device import cascade_runner
from deploy.device import contention
from deploy.device import device_main
from deploy.device import devices
from deploy.device import protocol
from deploy.device import session
from deploy.device import tensorrt_build
from deploy.device.power import base as power_base
from tea_keras import console
from tea_keras import data
from tea_keras import errors


def measure(model_path: str, *, device: str, runtime: str, power_source: str, images: np.ndarray,
            batch_size: int = 100, threshold_w: float | None = None,
            sample_interval_s: float = protocol.DEFAULT_SAMPLE_INTERVAL_S,
            repeats: int = session.DEFAULT_REPEATS,
            warmup_batches: int = session.DEFAULT_WARMUP_BATCHES, trace_dir: str | None = None,
            idle_s: float | None = None, power_options: dict[str, Any] | None = None,
            runtime_options: dict[str, Any] | None = None, progress: bool = True,
            contention_policy: str = contention.DEFAULT_POLICY,
            predictions: bool = False) -> dict[str, Any]:
  """Measure ``model_path`` with the protocol; returns the result dict.

  images: float32 normalized NHWC (``tea_keras.data.normalize``).
  power_options / runtime_options: keyword arguments of the power source
  (``rail``, ``device_index``, ``csv_path``, ``port``, ``root``) and of the
  runtime (``intra_op_threads``, ``inference_precision``...).
  predictions: after the measurement, one untimed pass; the result's
  ``top1`` is the runtime's argmax per image (``session.predict_top1``).
  """
  with _unzipped_cascade(model_path) as path:
    rt = device_main.build_runtime(device, runtime, path, batch_size,
                                   **(runtime_options or {}))
    try:
      with device_main.build_power(power_source, device, **(power_options or {})) as power:
        result = session.run_measurement(
            rt, power, images, device, batch_size=batch_size, threshold_w=threshold_w,
            sample_interval_s=sample_interval_s, repeats=repeats,
            warmup_batches=warmup_batches, idle_s=idle_s, trace_dir=trace_dir,
            progress=device_main.progress_printer if progress else None,
            contention_policy=contention_policy)
      if predictions:
        result["top1"] = session.predict_top1(rt, images, batch_size)
    finally:
      rt.close()
  result["model"] = model_path
  return result


def is_cascade_zip(path: str) -> bool:
  """Whether ``path`` is a zip holding a cascade (``deploy.device.cascade_runner.pack``)."""
  if not (str(path).endswith(".zip") and zipfile.is_zipfile(path)):
    return False
  with zipfile.ZipFile(path) as z:
    return cascade_runner.CASCADE_FILE in z.namelist()


@contextlib.contextmanager
def _unzipped_cascade(model_path: str) -> Iterator[str]:
  """``model_path``, or for a cascade zip its contents unpacked (checked as
  the agent checks an upload) into a temporary directory, removed after."""
  if not is_cascade_zip(model_path):
    yield model_path
    return
  directory = tempfile.mkdtemp(prefix="tea-cascade-")
  try:
    yield cascade_runner.unpack(model_path, directory)
  finally:
    shutil.rmtree(directory, ignore_errors=True)


def load_images(dataset: str, num_images: int, data_dir: str | None = None,
                split_seed: int = 0) -> tuple[np.ndarray, int | None]:
  """(normalized float32 validation images, note) for ``dataset``, split as
  a search with ``--seed=split_seed`` splits it."""
  if num_images < 1:
    raise errors.invalid_value("num_images", "a positive integer", num_images)
  x = data.load(dataset, data_dir, seed=split_seed).x_val
  available = len(x)
  if num_images > available:
    x = np.concatenate([x] * (-(-num_images // available)))
  return data.normalize(x[:num_images]), (available if num_images > available else None)


def load_calibration_images(dataset: str, num_images: int, data_dir: str | None = None,
                            split_seed: int = 0) -> np.ndarray:
  """The first ``num_images`` TRAINING images of ``dataset``, normalized
  (``tea_keras.data.normalize``), float32 NHWC: TensorRT int8 calibration."""
  if num_images < 1:
    raise errors.invalid_value("calibration_images", "a positive integer", num_images)
  x = data.load(dataset, data_dir, seed=split_seed).x_train[:num_images]
  return np.ascontiguousarray(data.normalize(x), np.float32)


# -- CLI: flags are defined only when run as a program (see deploy.export) ----
FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_enum("device", "cpu", list(devices.DEVICES), "Target device.")
  flags.DEFINE_enum("runtime", "onnxruntime", list(devices.RUNTIMES), "Inference runtime.")
  flags.DEFINE_enum("power_source", "none", [devices.AUTO] + list(devices.POWER_SOURCES),
                    "Power instrument (auto: RAPL or none).")
  flags.DEFINE_string("model", None, "Model file (.onnx, .xml, .engine, .keras) or a "
                      "cascade directory (python -m search.cascades.build).")
  flags.DEFINE_integer("cascade_point", None, "Cascade: the point (index in cascade.json) "
                       "to run.", lower_bound=0)
  flags.DEFINE_float("max_energy_per_image_j", None, "Cascade: pick the lowest-error point "
                     "within this energy per image (J).")
  flags.DEFINE_float("max_time_per_image_s", None, "Cascade: pick the lowest-error point "
                     "within this time per image (s).")
  flags.DEFINE_float("max_error", None, "Cascade: pick the cheapest point within this error.")
  flags.DEFINE_enum("dataset", "cifar10_sample", list(data.NAMES), "Images: the validation "
                    "split of this data set, normalized as the search does.")
  flags.DEFINE_string("data_dir", None, "cifar10: folder with cifar-10-batches-py; folder "
                      "(required): your image folder, as given to search.run.")
  flags.DEFINE_integer("num_images", 5000, "Images per run (paper: 5000).", lower_bound=1)
  flags.DEFINE_integer("split_seed", 0, "Seed of the train/validation split: the search's "
                       "--seed, so that --write_data writes the search's own validation images.",
                       lower_bound=0)
  flags.DEFINE_integer("batch_size", 100, "Batch size (paper: 100).", lower_bound=1)
  flags.DEFINE_float("threshold_w", None, "Working/idle threshold (default: paper's "
                     "per-device value; automatic on CPU).")
  flags.DEFINE_float("sample_interval_s", protocol.DEFAULT_SAMPLE_INTERVAL_S,
                     "Power sampling interval (paper: 0.02 s).")
  flags.DEFINE_integer("repeats", session.DEFAULT_REPEATS, "Measured repeats (median "
                       "reported).", lower_bound=1)
  flags.DEFINE_integer("warmup_batches", session.DEFAULT_WARMUP_BATCHES,
                       "Unmeasured batches before the repeats.", lower_bound=0)
  flags.DEFINE_float("idle_s", None, "Idle padding before/after each run (default 1 s, "
                     "3x the source's averaging window; 0 without power).")
  flags.DEFINE_string("trace_dir", None, "Write trace CSVs, trace.png and result.json here.")
  flags.DEFINE_string("rail", None, "ina3221 rail label(s), comma-separated.")
  flags.DEFINE_string("power_root", None, "ina3221/rapl: root of the sysfs tree (default /).")
  flags.DEFINE_integer("gpu_index", None, "nvml GPU index.")
  flags.DEFINE_string("usb_csv", None, "usb_meter: timestamped CSV log of the meter.")
  flags.DEFINE_string("usb_port", None, "usb_meter: serial port of the meter.")
  flags.DEFINE_string("write_data", None, "Write the normalized images to this .npy for "
                      "a device script and exit.")
  flags.DEFINE_enum("precision", "fp32", list(tensorrt_build.PRECISIONS),
                    "runtime=tensorrt: precision of the engine built from ONNX on the device "
                    "(int8: calibrated on --calibration_images training images).")
  flags.DEFINE_integer("calibration_images", 200, "TensorRT int8: calibrate on the first N "
                       "training images of --dataset (normalized).", lower_bound=1)
  flags.DEFINE_string("write_calibration", None, "Write the --calibration_images training "
                      "images (normalized float32 NHWC) to this .npy for a board's "
                      "--calibration and exit.")
  flags.DEFINE_enum("contention_policy", contention.DEFAULT_POLICY,
                    list(contention.POLICIES), "When other processes keep the CPUs busy during a timed repeat: "
                    "re-measure it (then flag), only flag it, or refuse (deploy/device/contention.py).")
  flags.DEFINE_bool("json", False, "Print the full result as one JSON object instead of the "
                    "summary.")
  flags.DEFINE_string("out", None, "Also write the full result as JSON to this file.")


def _tensorrt_options(fv: Any) -> dict[str, Any]:
  """The TensorRT runtime's precision (and int8 calibration images), from the
  parsed flags ``fv``."""
  if fv.runtime != "tensorrt":
    if fv.precision != "fp32":
      raise app.UsageError("--precision=%s applies to --runtime=tensorrt; other runtimes "
                           "run the artifact as given (deploy.quantize)." % fv.precision)
    return {}
  out = {"precision": fv.precision}
  if fv.precision == "int8":
    out["calibration_images"] = load_calibration_images(
        fv.dataset, fv.calibration_images, fv.data_dir, fv.split_seed)
  return out


def summary_lines(result: dict[str, Any]) -> list[str]:
  """A few lines a person reads: what was measured, time and energy per
  ``images`` and per image, the time source and the contention."""
  n = result["images"]
  info = result.get("runtime_info") or {}
  runtime = "%s on %s" % (result["runtime"], result["device"])
  if info.get("precision"):
    runtime += " at %s" % info["precision"]
  lines = [("model", result["model"]), ("runtime", runtime)]
  point = info.get("cascade")
  if point:
    lines.append(("cascade", "point %s, thresholds %s" % (
        point.get("point"), " ".join("%.4g" % t for t in point.get("thresholds", ())))))
  source = "%d of %s's validation images" % (n, result.get("dataset") or "the data set")
  if result.get("images_repeated_from"):
    source += " (the split's %d, repeated)" % result["images_repeated_from"]
  lines.append(("images", "%s, batch %d, median of %d repeats"
                % (source, result["batch_size"], result["repeats"])))
  lines.append(("time", "%.4g s per %d images, %.4g ms per image (time source: %s)"
                % (result["time_s"], n, 1e3 * result["time_s"] / n,
                   str(result.get("time_source")).replace("_", " "))))
  if result.get("energy_j") is None:
    lines.append(("energy", "not measured (power source: %s)" % result["power_source"]))
  else:
    power = "" if result.get("mean_power_w") is None else "; mean power %.3g W" % (
        result["mean_power_w"])
    if power and result.get("idle_power_w") is not None:
      power += " (idle %.3g W)" % result["idle_power_w"]
    lines.append(("energy", "%.4g J per %d images, %.4g mJ per image (%s)%s"
                  % (result["energy_j"], n, 1e3 * result["energy_j"] / n,
                     result["power_source"], power)))
  lines.append(("contention", _contention(result)))
  return ["%-11s %s" % pair for pair in lines]


def _contention(result: dict[str, Any]) -> str:
  share = result.get("other_cpu_share")
  if share is None:
    return "unknown (no /proc/stat)"
  text = "other processes used up to %.0f%% of the CPUs while timing (limit %.0f%%)" % (
      100 * share, 100 * result.get("contention_threshold", contention.DEFAULT_THRESHOLD))
  if result.get("contended"):
    return text + ": contended, not comparable with a quiet measurement"
  return text + ": quiet"


def _report(result: dict[str, Any], fv: Any) -> None:
  """Print the summary (or ``--json``), write ``--out``; warnings to stderr
  (``fv``: the parsed flags)."""
  if fv.out:
    with open(fv.out, "w") as f:
      json.dump(result, f, indent=2, sort_keys=True)
  if fv.json:
    json.dump(result, sys.stdout, sort_keys=True)
    print()
  else:
    print("\n".join(summary_lines(result)))
    print("%-11s %s" % ("full result", fv.out if fv.out else
                        "not kept (--json prints it, --out=FILE writes it)"))
  sys.stdout.flush()
  for warning in result.get("warnings") or ():
    sys.stderr.write("deploy.measure: warning: %s\n" % " ".join(str(warning).split()))


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  try:
    if FLAGS.write_calibration:
      calib = load_calibration_images(FLAGS.dataset, FLAGS.calibration_images, FLAGS.data_dir,
                                      FLAGS.split_seed)
      np.save(FLAGS.write_calibration, calib)
      print(json.dumps({"calibration": FLAGS.write_calibration, "images": len(calib),
                        "split": "train", "dataset": FLAGS.dataset}))
      return
    images, repeated = load_images(FLAGS.dataset, FLAGS.num_images, FLAGS.data_dir,
                                   FLAGS.split_seed)
  except ValueError as e:  # tea_keras.data.DataError included: a bad data set, one line
    sys.exit("deploy.measure: error: %s" % e)
  if FLAGS.write_data:
    np.save(FLAGS.write_data, images)
    print(json.dumps({"data": FLAGS.write_data, "images": len(images),
                      "images_repeated_from": repeated}))
    return
  if not FLAGS.model:
    raise app.UsageError("--model is required (or --write_data).")
  picks = {"point": FLAGS.cascade_point, "max_energy_per_image_j": FLAGS.max_energy_per_image_j,
           "max_time_per_image_s": FLAGS.max_time_per_image_s, "max_error": FLAGS.max_error}
  picks = {k: v for k, v in picks.items() if v is not None}
  if picks and not (cascade_runner.is_cascade(FLAGS.model) or is_cascade_zip(FLAGS.model)):
    raise app.UsageError("--cascade_point, --max_energy_per_image_j, --max_time_per_image_s "
                         "and --max_error apply to a cascade directory; --model=%s is not one."
                         % FLAGS.model)
  picks.update(_tensorrt_options(FLAGS))
  try:
    result = measure(FLAGS.model, device=FLAGS.device, runtime=FLAGS.runtime,
                     power_source=FLAGS.power_source, images=images,
                     batch_size=FLAGS.batch_size, threshold_w=FLAGS.threshold_w,
                     sample_interval_s=FLAGS.sample_interval_s, repeats=FLAGS.repeats,
                     warmup_batches=FLAGS.warmup_batches, trace_dir=FLAGS.trace_dir,
                     idle_s=FLAGS.idle_s, contention_policy=FLAGS.contention_policy,
                     power_options=devices.power_options_from(FLAGS, [FLAGS.power_source]),
                     runtime_options=picks)
  except (ImportError, ValueError, power_base.PowerSourceError) as e:
    sys.stderr.write("deploy.measure: %s: %s\n" % (type(e).__name__, e))
    sys.exit(1)
  result["dataset"] = FLAGS.dataset
  result["images_repeated_from"] = repeated
  _report(result, FLAGS)


if __name__ == "__main__":
  define_flags()
  app.run(main)
