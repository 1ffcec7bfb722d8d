"""What every device script shares: per-device defaults, building the
runtime and the power source, the command line, printing one JSON object.

Run on the device with its own Python (3.6+), numpy and its runtime, from a
copy of the ``deploy`` package, e.g.::

  python3 -m deploy.jetson.measure --model=model.engine --data=images.npy

``--data``: a ``.npy`` (or ``.npz`` with an ``images`` array) of float32
NHWC images already normalized on the host (``python -m deploy.measure
--write_data=images.npy``), so the device needs no TensorFlow.
"""

import argparse
import json
import os
import sys

import numpy as np

from deploy import power as power_lib
from deploy.power import base as power_base
from deploy import protocol
from deploy import runtimes
from deploy import session

# device: (runtimes it supports, default runtime, default power source)
DEVICE_DEFAULTS = {
    "cpu": (("onnxruntime", "openvino", "keras"), "onnxruntime", "auto"),
    "gpu": (("tensorrt", "onnxruntime", "keras"), "tensorrt", "nvml"),
    "jetson": (("tensorrt", "onnxruntime"), "tensorrt", "ina3221"),
    "myriad": (("openvino",), "openvino", "usb_meter"),
}


def build_runtime(device, runtime, model_path, batch_size, **options):
  """A loaded runtime for ``device`` (MYRIAD gets a static batch)."""
  if device not in DEVICE_DEFAULTS:
    raise ValueError("Invalid value for argument `device`. Expected one of %s. "
                     "Received device=%r" % ("|".join(DEVICE_DEFAULTS), device))
  if runtime not in runtimes.NAMES:
    raise ValueError("Invalid value for argument `runtime`. Expected one of %s. "
                     "Received runtime=%r" % ("|".join(runtimes.NAMES), runtime))
  if device == "myriad" and runtime == "openvino":
    options.setdefault("static_batch", batch_size)
  return runtimes.create(runtime, model_path, device, **options)


def build_power(power_source, **options):
  """A power source; ``auto`` = RAPL when readable, else ``none``."""
  options = dict((k, v) for k, v in options.items() if v is not None)
  if power_source == "auto":
    try:
      return power_lib.create("rapl", **options)
    except power_base.PowerSourceError:
      return power_lib.create("none")
  return power_lib.create(power_source, **options)


def load_data(path, num_images=None):
  """float32 NHWC normalized images from ``.npy`` / ``.npz`` (``images``)."""
  if not os.path.exists(path):
    raise ValueError("Data file %r does not exist." % (path,))
  data = np.load(path)
  if hasattr(data, "files"):
    if "images" not in data.files:
      raise ValueError("%s: expected an `images` array, found %s." % (path, data.files))
    data = data["images"]
  if data.dtype != np.float32 or data.ndim != 4:
    raise ValueError("%s: expected float32 normalized NHWC images, found %s %s. Write "
                     "them on the host with python -m deploy.measure --write_data=FILE."
                     % (path, data.dtype, data.shape))
  if num_images:
    data = data[:int(num_images)]
  return data


def parser_for(device):
  supported, runtime, power = DEVICE_DEFAULTS[device]
  p = argparse.ArgumentParser(description="Measure inference time and energy on %s "
                              "(TEA-DNN protocol, section IV-B)." % device)
  p.add_argument("--model", required=True, help="model file for the runtime")
  p.add_argument("--data", required=True, help=".npy/.npz float32 normalized images")
  p.add_argument("--runtime", default=runtime, choices=supported)
  p.add_argument("--power_source", default=power,
                 choices=power_lib.NAMES + ("auto",))
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
  p.add_argument("--rail", default=None, help="ina3221 rail label(s)")
  p.add_argument("--gpu_index", type=int, default=None, help="nvml device index")
  p.add_argument("--usb_csv", default=None, help="usb_meter: timestamped CSV log")
  p.add_argument("--usb_port", default=None, help="usb_meter: serial port")
  return p


def power_options(args):
  if args.power_source == "ina3221":
    return {"rail": args.rail}
  if args.power_source == "nvml":
    return {"device_index": args.gpu_index}
  if args.power_source == "usb_meter":
    return {"csv_path": args.usb_csv, "port": args.usb_port}
  return {}


def progress_printer(done, total, elapsed):
  eta = elapsed / done * (total - done)
  sys.stderr.write("repeat %d/%d, %.1f s elapsed, ETA %.1f s\n" % (done, total, elapsed, eta))


def main(device, argv=None):
  """Parse args, measure, print one JSON object on stdout."""
  args = parser_for(device).parse_args(argv)
  images = load_data(args.data, args.num_images)
  runtime = build_runtime(device, args.runtime, args.model, args.batch_size)
  with build_power(args.power_source, **power_options(args)) as power:
    result = session.run_measurement(
        runtime, power, images, device, batch_size=args.batch_size,
        threshold_w=args.threshold_w, sample_interval_s=args.sample_interval_s,
        repeats=args.repeats, warmup_batches=args.warmup_batches, idle_s=args.idle_s,
        trace_dir=args.trace_dir, progress=progress_printer)
  result["model"] = args.model
  print(json.dumps(result, sort_keys=True))
  return result
