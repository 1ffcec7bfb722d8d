"""Classify images with an adaptive cascade on this device (LEANets): the
threshold vector is picked by a budget (``deploy.device.cascade_runner``
holds the cascade; this is its command line)::

  python -m deploy.device.run_cascade --cascade=DIR --data=images.npy \\
      --max_time_per_image_s=0.002
"""

import argparse
import json
import sys
from typing import Any, Dict, Optional, Sequence

import numpy as np

from . import cascade_runner
from . import device_main
from . import devices
from . import image_files


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description="Classify images with an adaptive cascade "
                              "(LEANets): the threshold vector is picked by a budget.")
  p.add_argument("--cascade", required=True, help="cascade directory (or its cascade.json)")
  p.add_argument("--data", help=".npy/.npz float32 normalized images (python -m "
                 "deploy.measure --write_data=FILE)")
  p.add_argument("--labels", default=None, help=".npy integer labels: report the error")
  p.add_argument("--max_energy_per_image_j", type=float, default=None,
                 help="energy budget per image (J): the lowest-error point within it")
  p.add_argument("--max_time_per_image_s", type=float, default=None,
                 help="time budget per image (s): the lowest-error point within it")
  p.add_argument("--max_error", type=float, default=None,
                 help="error bound: the cheapest point within it")
  p.add_argument("--point", type=int, default=None, help="run this point (index) instead")
  p.add_argument("--device", default="cpu", choices=list(devices.DEVICES))
  p.add_argument("--runtime", default=None, choices=list(devices.RUNTIMES),
                 help="runtime of the stages (default: the device's)")
  p.add_argument("--batch_size", type=int, default=100)
  p.add_argument("--num_images", type=int, default=None)
  p.add_argument("--out", default=None, help="write the predicted classes to this .npy")
  p.add_argument("--list", action="store_true", help="print the points and exit")
  return p


def run(args: argparse.Namespace) -> Dict[str, Any]:
  """The CLI's work; returns the JSON-able result."""
  if args.list:
    _, spec = cascade_runner.load_spec(args.cascade)
    return {"points": spec["points"], "stages": spec["stages"]}
  if not args.data:
    raise ValueError("--data is required (or --list).")
  images = image_files.load_data(args.data, args.num_images)
  runtime = args.runtime or devices.default_runtime(args.device)
  rt = device_main.build_runtime(args.device, runtime, args.cascade, args.batch_size,
                                 point=args.point,
                                 max_energy_per_image_j=args.max_energy_per_image_j,
                                 max_time_per_image_s=args.max_time_per_image_s,
                                 max_error=args.max_error)
  try:
    preds, stages, seconds = cascade_runner.classify(rt, images, args.batch_size)
    info = rt.describe()["cascade"]
  finally:
    rt.close()
  result = {"point": info["point"], "thresholds": info["thresholds"],
            "predicted": info["predicted"], "images": int(len(images)),
            "exit_counts": [int((stages == s).sum()) for s in range(len(info["stages"]))],
            "stage_images": info["stage_images"], "seconds": seconds,
            "time_s_per_image": seconds / max(len(images), 1), "device": args.device,
            "runtime": runtime}
  if args.labels:
    labels = np.load(args.labels).reshape(-1)[:len(preds)]
    if len(labels) != len(preds):
      raise ValueError("--labels has %d labels for %d images." % (len(labels), len(preds)))
    result["error"] = float(np.mean(preds != labels))
  if args.out:
    np.save(args.out, preds)
    result["out"] = args.out
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    result = run(args)
  except (ValueError, ImportError) as e:
    sys.stderr.write("deploy.device.run_cascade: %s: %s\n" % (type(e).__name__, e))
    return 1
  print(json.dumps(result, sort_keys=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
