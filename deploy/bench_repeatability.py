"""Repeatability benchmark: the CV of ``time_s`` over repeated measurements.

``python -m deploy.bench_repeatability --model=model.onnx --runtime=onnxruntime
--num_images=1000 --measurements=5`` runs ``deploy.measure.measure`` that many
times (each the median of ``--repeats`` runs) and prints every ``time_s``,
their mean, standard deviation and coefficient of variation (target: < 5%),
the same for each measurement's fastest repeat (``cv_of_min``),
with the machine's load average before and after (other processes sharing
the cores inflate the CV; report it with the figure).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np
from absl import app
from absl import flags

from deploy import measure

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("model", None, "Model file (.onnx or .xml).")
  flags.DEFINE_enum("runtime", "onnxruntime", ["onnxruntime", "openvino", "keras"], "Runtime.")
  flags.DEFINE_enum("dataset", "cifar10_sample", ["cifar10", "cifar10_sample"], "Images.")
  flags.DEFINE_integer("num_images", 1000, "Images per run.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 100, "Batch size.", lower_bound=1)
  flags.DEFINE_integer("measurements", 5, "Independent measurements.", lower_bound=2)
  flags.DEFINE_integer("repeats", 3, "Repeats inside each measurement.", lower_bound=1)
  flags.DEFINE_integer("threads", None, "Runtime threads (onnxruntime intra-op, "
                       "OpenVINO streams); default: the runtime's.")


def repeatability(model: str, runtime: str, images: np.ndarray, measurements: int,
                  batch_size: int = 100, repeats: int = 3,
                  runtime_options: dict[str, Any] | None = None) -> dict[str, Any]:
  """time_s of each measurement and their mean, std (ddof=1) and CV."""
  times: Any
  mins: Any
  times, mins, cpu_share = [], [], []
  for i in range(measurements):
    start = time.time()
    result = measure.measure(model, device="cpu", runtime=runtime, power_source="none",
                             images=images, batch_size=batch_size, repeats=repeats,
                             runtime_options=runtime_options, progress=False)
    times.append(result["time_s"])
    mins.append(result["time_s_stats"]["min"])
    cpu_share.append(result["process_cpu_s_stats"]["median"] / result["host_time_s"])
    elapsed = time.time() - start
    print("measurement %d/%d: time_s=%.4f (ETA %.0f s)"
          % (i + 1, measurements, result["time_s"], elapsed * (measurements - i - 1)),
          flush=True)
  times, mins = np.asarray(times), np.asarray(mins)
  std = float(times.std(ddof=1))
  return {"time_s": [float(t) for t in times], "mean": float(times.mean()), "std": std,
          "cv": std / float(times.mean()),
          # the fastest repeat of each measurement: contention only slows runs
          # down, so this shows how much of the CV other processes cause
          "min_time_s": [float(t) for t in mins],
          "cv_of_min": float(mins.std(ddof=1) / mins.mean()),
          # CPU seconds used per wall second of the timed loop (<= threads)
          "cpu_per_wall_s": [round(float(c), 3) for c in cpu_share]}


def main(argv: Sequence[str]) -> None:
  del argv
  images, _ = measure.load_images(FLAGS.dataset, FLAGS.num_images)
  options = None
  if FLAGS.threads:
    options = ({"intra_op_threads": FLAGS.threads} if FLAGS.runtime == "onnxruntime"
               else {"num_streams": FLAGS.threads} if FLAGS.runtime == "openvino" else None)
  load_before = os.getloadavg()
  out = repeatability(FLAGS.model, FLAGS.runtime, images, FLAGS.measurements,
                      FLAGS.batch_size, FLAGS.repeats, options)
  out.update(runtime=FLAGS.runtime, num_images=FLAGS.num_images, threads=FLAGS.threads,
             batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
             loadavg_before=load_before, loadavg_after=os.getloadavg(),
             cpu_count=os.cpu_count())
  print(json.dumps(out))


if __name__ == "__main__":
  define_flags()
  app.run(main)
