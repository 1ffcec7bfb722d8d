"""What every device script shares: per-device defaults, building the
runtime and the power source, the command line, printing one JSON object.

Run on the device with its own Python (3.6+), numpy and its runtime, from a
copy of the ``deploy`` package, e.g.::

  python3 -m deploy.device.jetson.measure --model=model.engine --data=images.npy

``--data``: a ``.npy`` (or ``.npz`` with an ``images`` array) of float32
NHWC images already normalized on the host (``python -m deploy.measure
--write_data=images.npy``), so the device needs no TensorFlow.
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Sequence

from . import capabilities
from . import cascade_runner
from . import contention
from . import devices
from . import image_files
from . import power as power_lib
from . import protocol
from . import runtimes
from . import session
from . import tensorrt_build


def build_runtime(device: str, runtime: str, model_path: str, batch_size: int,
                  **options: Any) -> runtimes.base.Runtime:
  """A loaded runtime for ``device``: MYRIAD gets a static batch, TensorRT
  builds its engine from ONNX for batches up to ``batch_size``."""
  devices.check_runtime(device, runtime)
  if device in devices.STATIC_BATCH and runtime == "openvino":
    options.setdefault("static_batch", batch_size)
  if runtime == "tensorrt":
    options.setdefault("max_batch_size", batch_size)
  if cascade_runner.is_cascade(model_path):
    return cascade_runner.CascadeRuntime(model_path, device, runtime=runtime, **options)
  return runtimes.create(runtime, model_path, device, **options)


def resolve_power(device: str, power_source: str, **options: Any) -> str:
  """The concrete power source for ``power_source`` on ``device``: ``auto``
  = the device kind's first readable source (``deploy.device.devices``), else none."""
  if power_source != devices.AUTO:
    return power_source
  answer = capabilities.probe_power(device, power_source, options)
  return answer["name"] if answer["readable"] else "none"


def build_power(power_source: str, device: str = "cpu",
                **options: Any) -> power_lib.base.PowerSource:
  """A power source by name (``auto``: see ``resolve_power``)."""
  name = resolve_power(device, power_source, **options)
  return power_lib.create(name, **devices.power_options_for(name, options))


def add_measurement_arguments(parser: argparse.ArgumentParser, precision: bool = True) -> None:
  """The power sources' options (read by ``power_options``), the TensorRT
  engine cache and int8 calibration images (``runtime_options``): shared by
  the device scripts and the agent; ``--precision`` only when ``precision``
  (the agent takes it per request)."""
  parser.add_argument("--rail", default=None, help="ina3221 rail label(s)")
  parser.add_argument("--gpu_index", type=int, default=None, help="nvml device index")
  parser.add_argument("--usb_csv", default=None, help="usb_meter: timestamped CSV log")
  parser.add_argument("--usb_port", default=None, help="usb_meter: serial port")
  parser.add_argument("--power_root", default=None,
                      help="root of the sysfs tree read by ina3221/rapl (default /)")
  parser.add_argument("--engine_cache", default=None,
                      help="tensorrt: cache of engines built from ONNX (the agent's: from "
                           "uploaded ONNX); default $TEA_ENGINE_CACHE, else "
                           "~/.cache/tea-keras/engines")
  parser.add_argument("--calibration", default=None,
                      help="tensorrt int8: .npy float32 normalized NHWC TRAINING images (or "
                           ".npz with an `images` array) to calibrate on; write them on the "
                           "host with python -m deploy.measure --write_calibration=FILE.npy")
  if precision:
    parser.add_argument("--precision", default="fp32", choices=tensorrt_build.PRECISIONS,
                        help="tensorrt: precision of the engine built from ONNX (int8 needs "
                             "--calibration)")


def check_measurement_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Refuse (parser.error) a precision the runtime does not build, or int8
  without calibration images."""
  precision = getattr(args, "precision", "fp32")
  if precision != "fp32" and args.runtime != "tensorrt":
    parser.error("--precision=%s applies to --runtime=tensorrt (which builds its engine on "
                 "the device); other runtimes run the artifact as given." % precision)
  if precision == "int8" and not args.calibration:
    parser.error("--precision=int8 needs --calibration=FILE.npy: float32 normalized NHWC "
                 "training images (python -m deploy.measure --write_calibration=FILE.npy).")


def parser_for(device: str) -> argparse.ArgumentParser:
  kind = devices.device(device)
  p = argparse.ArgumentParser(description="Measure inference time and energy on %s "
                              "(TEA-DNN protocol, section IV-B)." % device)
  p.add_argument("--model", required=True, help="model file for the runtime")
  p.add_argument("--data", required=True, help=".npy/.npz float32 normalized images")
  p.add_argument("--runtime", default=kind.runtimes[0], choices=kind.runtimes)
  p.add_argument("--power_source", default=devices.AUTO,
                 choices=(devices.AUTO,) + kind.power_sources,
                 help="auto: the first readable of %s" % ", ".join(kind.power_sources))
  p.add_argument("--num_images", type=int, default=None)
  p.add_argument("--batch_size", type=int, default=100)
  p.add_argument("--threshold_w", type=float, default=None,
                 help="default: the paper's value for this device, else automatic")
  p.add_argument("--sample_interval_s", type=float,
                 default=protocol.DEFAULT_SAMPLE_INTERVAL_S)
  p.add_argument("--repeats", type=int, default=session.DEFAULT_REPEATS)
  p.add_argument("--warmup_batches", type=int, default=session.DEFAULT_WARMUP_BATCHES)
  p.add_argument("--idle_s", type=float, default=None)
  p.add_argument("--trace_dir", default=None)
  add_measurement_arguments(p)
  p.add_argument("--contention_policy", default=contention.DEFAULT_POLICY,
                 choices=contention.POLICIES,
                 help="a repeat timed while other processes kept the CPUs busy: "
                      "re-measure it, flag it, or refuse (deploy/device/contention.py)")
  p.add_argument("--predictions", action="store_true",
                 help="after the measurement, one untimed pass: the result's top1 is the "
                      "argmax per measured image (the deployed artifact's own predictions)")
  return p


def power_options(args: argparse.Namespace, power_source: Optional[str] = None) -> Dict[str, Any]:
  """Keyword arguments of the power source from the command line (those of
  every source the kind may use when ``power_source`` is auto)."""
  names = [power_source or args.power_source]
  if names[0] == devices.AUTO:
    names = list(devices.device(args.device).power_sources)
  return devices.power_options_from(args, names)


def runtime_options(args: argparse.Namespace) -> Dict[str, Any]:
  """TensorRT's options from the command line: engine cache, precision and
  (int8) the calibration images loaded from ``--calibration``."""
  if args.runtime != "tensorrt":
    return {}
  out = {"precision": getattr(args, "precision", "fp32")}
  if getattr(args, "engine_cache", None):
    out["engine_cache_dir"] = args.engine_cache
  if out["precision"] == "int8" and getattr(args, "calibration", None):
    out["calibration_images"] = image_files.load_data(args.calibration)
  return out


def progress_printer(done: int, total: int, elapsed: float) -> None:
  eta = elapsed / done * (total - done)
  sys.stderr.write("repeat %d/%d, %.1f s elapsed, ETA %.1f s\n" % (done, total, elapsed, eta))


def main(device: str, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Parse args, measure, print one JSON object on stdout."""
  parser = parser_for(device)
  args = parser.parse_args(argv)
  check_measurement_args(parser, args)
  args.device = device
  images = image_files.load_data(args.data, args.num_images)
  runtime = build_runtime(device, args.runtime, args.model, args.batch_size,
                          **runtime_options(args))
  with build_power(args.power_source, device, **power_options(args)) as power:
    result = session.run_measurement(
        runtime, power, images, device, batch_size=args.batch_size,
        threshold_w=args.threshold_w, sample_interval_s=args.sample_interval_s,
        repeats=args.repeats, warmup_batches=args.warmup_batches, idle_s=args.idle_s,
        trace_dir=args.trace_dir, progress=progress_printer,
        contention_policy=args.contention_policy)
  try:
    if args.predictions:
      result["top1"] = session.predict_top1(runtime, images, args.batch_size)
  finally:
    runtime.close()
  result["model"] = args.model
  # Where it was measured: a GPU measurement must run in a process that never
  # loaded TensorFlow (which would hold the GPU's memory).
  result["process"] = {"pid": os.getpid(), "python": sys.version.split()[0],
                       "tensorflow_imported": "tensorflow" in sys.modules}
  print(json.dumps(result, sort_keys=True))
  return result
