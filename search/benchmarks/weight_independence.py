"""Weight independence, measured (issue 33): is a network's inference time the
same untrained as trained?

  python -m search.benchmarks.weight_independence \\
      --cells=20 --seed=0 --train_images=1000 --epochs=1 --measure_images=500 \\
      --runtimes=onnxruntime,openvino --precisions=fp32,fp16,int8 --int8_cells=5 \\
      --results_dir=runs/weight_independence

For each of ``--cells`` random cells (``tea_keras.space.sample``, seeded by
``--seed``; the network of ``--num_cells`` and ``--filters``, the
quickstart's N=1, F=8 by default) it builds the network, exports it UNTRAINED
(ONNX opset 13 by ``deploy.export``, checked against Keras; the OpenVINO IR,
fp16 and int8 artifacts converted from that ONNX file as ``deploy.export``
converts them), trains it briefly with the project's search recipe
(``tea_keras.training.train_model``: ``--epochs`` on the first
``--train_images`` training images of the bundled CIFAR-10 sample), exports
the trained network the same way, and measures both with the project's
protocol on this CPU (``deploy.measure.measure``: warm-up, ``--repeats``
repeats, the fastest reported, contention re-measured), every artifact of the
cell in a shuffled order, so that load on the machine hits the untrained and
the trained export alike. int8 (static quantization calibrated on
``--calibration_images`` training images, ``deploy.quantize``) is measured on
the first ``--int8_cells`` cells only: the untrained network is calibrated on
the activations of its random weights.

Each ONNX pair is also compared as a graph (``graph_signature``: operation
types in order, initializer shapes and data types), each IR pair by its layer
types and output shapes: ``same_graph`` in the CSV.

Energy: ``--power_source=rapl --power_root=ROOT`` measures energy with the
protocol too; on a machine without readable RAPL, the fake RAPL tree of
``tests/fakes/hardware_site`` (its power follows this process's CPU use)
stands in: ``PYTHONPATH=tests/fakes/hardware_site TEA_FAKE_HARDWARE=rapl=ROOT``.

Writes into ``--results_dir``: ``cells/NNN.json`` per cell (a re-run skips
cells already there), ``weight_independence.csv`` (one row per cell, runtime
and precision: untrained and trained ms per image, % difference
``100 (untrained - trained) / trained``, energy likewise when measured, file
sizes, same_graph, contention), ``summary.json`` (per runtime and precision:
cells, mean and max |% difference|, Spearman's rank correlation of untrained
against trained time across cells, ``scipy.stats.spearmanr``; the same for
energy; load averages) and ``weight_independence.png`` (untrained against
trained time per image, log axes, one colour per runtime). Progress with an
ETA goes to stderr.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import sys
import time
from typing import Any, Sequence

import numpy as np
from absl import app
from absl import flags

from deploy import export as export_lib
from deploy import measure as measure_lib
from deploy import quantize
from deploy.device import devices
from tea_keras import console
from tea_keras import data
from tea_keras import recipes
from tea_keras import space

# Exports of each cell: Keras' initial weights, the same with every tensor
# that Keras initializes to a constant (batch-norm scale, offset and moving
# statistics, biases) drawn at random (``randomize_constant_weights``), and
# the trained weights. Each untrained export is compared with the trained one.
STATES = ("untrained", "randomized", "trained")
UNTRAINED = STATES[:2]
RUNTIMES = ("onnxruntime", "openvino")
CSV_FIELDS = ("cell", "genotype", "runtime", "precision", "variant", "untrained_ms_per_image",
              "trained_ms_per_image", "time_pct_diff", "untrained_mj_per_image",
              "trained_mj_per_image", "energy_pct_diff", "untrained_bytes", "trained_bytes",
              "untrained_time_cv", "trained_time_cv", "same_graph", "contended",
              "max_other_cpu_share", "decouplable")


def sample_cells(count: int, seed: int) -> list[Any]:
  """``count`` distinct seeded random genotypes (uniform over encodings)."""
  cells: list[Any]
  rng, cells, keys = np.random.default_rng(seed), [], set()
  while len(cells) < count:
    genotype = space.sample(rng)
    if genotype.key() not in keys:
      keys.add(genotype.key())
      cells.append(genotype)
  return cells


def pct_diff(untrained: float, trained: float) -> float | None:
  """100 (untrained - trained) / trained; None when either is missing."""
  if untrained is None or trained is None or not trained:
    return None
  return 100.0 * (float(untrained) - float(trained)) / float(trained)


# Moved to deploy.export, where the decoupled search's measure evaluations
# (search.trial) read it too; kept here under its old name.
randomize_constant_weights = export_lib.randomize_constant_weights


# -- exports ----------------------------------------------------------------------
def export_all(model: Any, folder: str, runtimes: Sequence[str], precisions: Sequence[str],
               check_images: Any, calibration_images: Any) -> Any:
  """Every artifact of ``model`` for ``runtimes`` x ``precisions`` under
  ``folder``: ``{(runtime, precision): path}``. The fp32 ONNX export is
  ``deploy.export``'s (checked against Keras); the others are converted from
  it as ``deploy.export`` converts them (IR, fp16, int8)."""
  os.makedirs(folder, exist_ok=True)
  fp32 = os.path.join(folder, "fp32.onnx")
  export_lib.export_model(model, "onnx", fp32, "fp32", check_images=check_images)
  out = {}
  for runtime in runtimes:
    for precision in precisions:
      out[(runtime, precision)] = convert(fp32, folder, runtime, precision, calibration_images)
  return out


def convert(fp32_onnx: str, folder: str, runtime: str, precision: str,
            calibration_images: Any = None) -> Any:
  """The artifact of ``fp32_onnx`` that ``runtime`` runs at ``precision``."""
  devices.check_precision(runtime, precision)
  if runtime == "onnxruntime":
    if precision == "fp32":
      return fp32_onnx
    path = os.path.join(folder, "%s.onnx" % precision)
    if precision == "int8":
      return quantize.quantize_onnx(fp32_onnx, path, calibration_images)
    import onnx  # pylint: disable=g-import-not-at-top
    from onnxruntime.transformers import float16  # pylint: disable=g-import-not-at-top
    proto = float16.convert_float_to_float16(onnx.load(fp32_onnx), keep_io_types=True)
    onnx.save(quantize.compact_names(proto), path)
    return path
  if runtime != "openvino":
    raise ValueError("Invalid value for argument `runtime`. Expected one of %s. Received "
                     "runtime=%r" % ("|".join(RUNTIMES), runtime))
  path = os.path.join(folder, "openvino_%s.xml" % precision)
  if precision == "int8":
    return quantize.quantize_openvino(fp32_onnx, path, calibration_images)
  return export_lib.save_openvino_ir(fp32_onnx, path, fp16=precision == "fp16")


def graph_signature(path: str) -> Any:
  """What a runtime's kernels depend on, values left out: for ONNX, each
  node's operation type, attributes and the shape and data type of each
  initializer it reads (a sorted list: tf2onnx may write the same graph's
  independent nodes in another order), and the initializers' shapes; for an
  OpenVINO IR, each layer's type, element type and port shapes, in order. Two
  exports of one cell with equal signatures hold the same operations on the
  same shapes and differ only in their constants' values (the wiring between
  nodes is not compared)."""
  if path.endswith(".xml"):
    import xml.etree.ElementTree as ET  # pylint: disable=g-import-not-at-top
    layers = []
    for layer in ET.parse(path).getroot().iter("layer"):
      ports = tuple(tuple(d.text for d in port.iter("dim")) for port in layer.iter("port")
                    if port.get("precision") is not None)
      data_node = layer.find("data")
      element = data_node.get("element_type") if data_node is not None else None
      layers.append((layer.get("type"), element, ports))
    return {"layers": layers}
  import onnx  # pylint: disable=g-import-not-at-top
  model = onnx.load(path)
  inits = {t.name: (tuple(t.dims), t.data_type) for t in model.graph.initializer}
  nodes = sorted(repr((n.op_type, n.domain, sorted(
      (a.name, onnx.helper.get_attribute_value(a) if a.type != onnx.AttributeProto.TENSOR
       else "tensor") for a in n.attribute), [inits.get(i, "activation") for i in n.input]))
      for n in model.graph.node)
  return {"nodes": nodes, "initializers": sorted(inits.values())}


# -- measurement --------------------------------------------------------------------
def measure_shuffled(artifacts: Any, images: Any, rng: Any, settings: Any,
                     log: Any = None) -> Any:
  """Measure every ``{key: path}`` of ``artifacts`` once, in an order
  shuffled by ``rng``; returns ``{key: result dict}`` (``deploy.measure``)."""
  keys = list(artifacts)
  order = rng.permutation(len(keys))
  out = {}
  for i in order:
    key = keys[i]
    runtime = key[0]
    out[key] = measure_lib.measure(artifacts[key], runtime=runtime, images=images,
                                   progress=False, **settings)
    if log:
      log("    %-30s %.4f ms/img" % (" ".join(key), 1e3 * out[key]["time_s"] / len(images)))
  return out


def cell_rows(index: int, genotype: Any, artifacts: Any, results: Any,
              signatures: Any) -> list[dict[str, Any]]:
  """CSV rows of one cell: one per (runtime, precision)."""
  rows = []
  per = lambda r, key: None if r.get(key) is None else 1e3 * r[key] / r["images"]
  for (runtime, precision), variant in itertools.product(
      sorted({k[:2] for k in artifacts}), UNTRAINED):
    u, t = results[(runtime, precision, variant)], results[(runtime, precision, "trained")]
    shares = [r.get("other_cpu_share") for r in (u, t) if r.get("other_cpu_share") is not None]
    rows.append({
        "cell": index, "genotype": genotype.to_string(), "runtime": runtime,
        "precision": precision, "variant": variant,
        "untrained_ms_per_image": per(u, "time_s"), "trained_ms_per_image": per(t, "time_s"),
        "time_pct_diff": pct_diff(u["time_s"], t["time_s"]),
        "untrained_mj_per_image": per(u, "energy_j"), "trained_mj_per_image": per(t, "energy_j"),
        "energy_pct_diff": pct_diff(u.get("energy_j"), t.get("energy_j")),
        "untrained_bytes": quantize.artifact_bytes(artifacts[(runtime, precision, variant)]),
        "trained_bytes": quantize.artifact_bytes(artifacts[(runtime, precision, "trained")]),
        # the spread of each measurement's own repeats: the noise floor of its time
        "untrained_time_cv": u.get("time_cv"), "trained_time_cv": t.get("time_cv"),
        "same_graph": signatures[(runtime, precision, variant)],
        "contended": bool(u.get("contended") or t.get("contended")),
        "max_other_cpu_share": max(shares) if shares else None,
        "decouplable": devices.decouplable(runtime, precision)})
  return rows


# -- summary ------------------------------------------------------------------------
def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Per ``runtime/precision/variant``: cells, mean and max |time % diff|, Spearman's
  rho (and p) of untrained against trained time across cells; the same for
  energy where measured; the registry's ``decouplable``."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  groups: dict[Any, Any] = {}
  for row in rows:
    groups.setdefault("%s/%s/%s" % (row["runtime"], row["precision"], row["variant"]),
                      []).append(row)
  out = {}
  for name, group in sorted(groups.items()):
    entry = {"cells": len(group), "decouplable": group[0]["decouplable"],
             "same_graph_cells": sum(1 for r in group if r["same_graph"]),
             "contended_cells": sum(1 for r in group if r["contended"])}
    for metric, unit in (("time", "ms_per_image"), ("energy", "mj_per_image")):
      diffs = [abs(r[metric + "_pct_diff"]) for r in group if r[metric + "_pct_diff"] is not None]
      if not diffs:
        continue
      u = [r["untrained_" + unit] for r in group if r[metric + "_pct_diff"] is not None]
      t = [r["trained_" + unit] for r in group if r[metric + "_pct_diff"] is not None]
      rho, p = stats.spearmanr(u, t) if len(u) >= 3 else (None, None)
      entry[metric] = {"mean_abs_pct_diff": float(np.mean(diffs)),
                       "median_abs_pct_diff": float(np.median(diffs)),
                       "max_abs_pct_diff": float(np.max(diffs)),
                       "spearman_rho": None if rho is None else float(rho),
                       "spearman_p": None if p is None else float(p)}
    out[name] = entry
  return out


def plot(rows: Sequence[dict[str, Any]], path: str) -> str:
  """Untrained against trained time per image, log axes, one colour per
  runtime, one marker per precision (hollow: Keras' initial weights; filled:
  constants randomized), and the diagonal."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 5))
  colours = {"onnxruntime": "tab:blue", "openvino": "tab:orange"}
  markers = {"fp32": "o", "fp16": "s", "int8": "^"}
  for runtime, precision, variant in sorted({(r["runtime"], r["precision"], r["variant"])
                                              for r in rows}):
    pts = [(r["untrained_ms_per_image"], r["trained_ms_per_image"]) for r in rows
           if (r["runtime"], r["precision"], r["variant"]) == (runtime, precision, variant)]
    colour = colours.get(runtime, "tab:grey")
    ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=22, alpha=0.8, edgecolors=colour,
               facecolors=colour if variant == "randomized" else "none",
               marker=markers.get(precision, "x"),
               label="%s %s, %s (%d cells)" % (runtime, precision, variant, len(pts)))
  values = [v for r in rows for v in (r["untrained_ms_per_image"], r["trained_ms_per_image"])]
  lo, hi = min(values) / 1.2, max(values) * 1.2
  ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="untrained = trained")
  ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
         xlabel="trained export: ms per image", ylabel="untrained export: ms per image",
         title="Inference time, untrained vs trained (this CPU)")
  for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write_outputs(results_dir: str, rows: Sequence[dict[str, Any]], config: Any) -> Any:
  """The CSV, summary JSON and PNG of ``rows``; returns the summary."""
  with open(os.path.join(results_dir, "weight_independence.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
  summary = {"config": config, "per_runtime_precision": summarize(rows),
             "load_average_now": list(os.getloadavg())}
  with open(os.path.join(results_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  if rows:
    plot(rows, os.path.join(results_dir, "weight_independence.png"))
  return summary


# -- one cell -----------------------------------------------------------------------
@dataclasses.dataclass
class Settings:
  num_cells: int
  filters: int
  epochs: int
  runtimes: tuple
  precisions: tuple
  int8_cells: int
  measure: dict


def run_cell(index: int, genotype: Any, settings: Any, splits: Any, images: Any,
             calibration: Any, folder: str, seed: int, log: Any) -> Any:
  """Export untrained, train, export trained, measure all shuffled; returns
  the cell's record (rows, loads, seconds)."""
  import keras  # pylint: disable=g-import-not-at-top
  from tea_keras import training  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  started, load_start = time.time(), list(os.getloadavg())
  recipe = recipes.search_recipe(num_cells=settings.num_cells, filters=settings.filters,
                                 epochs=settings.epochs)
  model = training.build_cell_network(genotype, recipe, settings.num_cells, settings.filters,
                                      seed=seed + index)
  precisions = tuple(p for p in settings.precisions
                     if p != "int8" or index < settings.int8_cells)
  artifacts = {}
  initial = [w.numpy() for w in model.weights]
  for state in STATES:
    if state == "randomized":
      log("  randomized %d constant tensors" % randomize_constant_weights(model, seed + index))
    if state == "trained":
      for variable, value in zip(model.weights, initial):
        variable.assign(value)
      trained = training.train_model(model, recipe, splits, None, verbose=0, seed=seed + index)
      log("  trained: val error %.4f" % trained.metrics.get("val_error", float("nan")))
    exported = export_all(model, os.path.join(folder, state), settings.runtimes, precisions,
                          images[:8], calibration)
    artifacts.update({k + (state,): v for k, v in exported.items()})
  signatures = {k + (v,): graph_signature(artifacts[k + (v,)]) ==
                graph_signature(artifacts[k + ("trained",)]) for k in exported for v in UNTRAINED}
  rng = np.random.default_rng([seed, index])
  results = measure_shuffled(artifacts, images, rng, settings.measure, log)
  rows = cell_rows(index, genotype, artifacts, results, signatures)
  return {"cell": index, "genotype": genotype.to_string(), "rows": rows,
          "load_average_start": load_start, "load_average_end": list(os.getloadavg()),
          "seconds": time.time() - started,
          "val_error_trained": trained.metrics.get("val_error")}


def artifact_path(folder: str, runtime: str, precision: str, variant: str) -> str:
  """Where ``run_cell`` wrote the artifact of ``runtime`` at ``precision``."""
  if runtime == "openvino":
    name = "openvino_%s.xml" % precision
  else:
    name = "%s.onnx" % precision
  return os.path.join(folder, variant, name)


def refresh_same_graph(record: Any, folder: str) -> Any:
  """``record`` (a cached cell) with ``same_graph`` recomputed by the current
  ``graph_signature`` from its exports under ``folder``, where they exist."""
  for row in record["rows"]:
    paths = [artifact_path(folder, row["runtime"], row["precision"], v)
             for v in (row["variant"], "trained")]
    if all(os.path.exists(p) for p in paths):
      row["same_graph"] = graph_signature(paths[0]) == graph_signature(paths[1])
  return record


# -- CLI ----------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_integer("cells", 20, "Random cells to measure.", lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Seed of the cells, weights, training and shuffles.",
                       lower_bound=0)
  flags.DEFINE_integer("num_cells", 1, "N: cells per stage (quickstart: 1).", lower_bound=1)
  flags.DEFINE_integer("filters", 8, "F: filters in the first stage (quickstart: 8).",
                       lower_bound=1)
  flags.DEFINE_integer("epochs", 1, "Training epochs of the trained export.", lower_bound=1)
  flags.DEFINE_integer("train_images", 1000, "Training images (first N of the split).",
                       lower_bound=1)
  flags.DEFINE_integer("measure_images", 500, "Validation images per measurement.",
                       lower_bound=1)
  flags.DEFINE_integer("batch_size", 100, "Measurement batch size.", lower_bound=1)
  flags.DEFINE_integer("repeats", 3, "Timed repeats per measurement (fastest reported).",
                       lower_bound=1)
  flags.DEFINE_list("runtimes", list(RUNTIMES), "Runtimes: onnxruntime, openvino.")
  flags.DEFINE_list("precisions", ["fp32"], "Precisions: fp32, fp16, int8.")
  flags.DEFINE_integer("int8_cells", 5, "int8 is measured on the first N cells only.",
                       lower_bound=0)
  flags.DEFINE_integer("calibration_images", 200, "int8: training images to calibrate on.",
                       lower_bound=1)
  flags.DEFINE_enum("power_source", "none", ["none", "rapl"], "Energy: none, or RAPL "
                    "(with --power_root: a fake tree, see the module doc).")
  flags.DEFINE_string("power_root", None, "rapl: root of the sysfs tree (default /).")
  flags.DEFINE_string("results_dir", "runs/weight_independence", "Output folder.")


def _check_flags() -> Any:
  for runtime in FLAGS.runtimes:
    if runtime not in RUNTIMES:
      raise app.UsageError("--runtimes: expected some of %s, received %r."
                           % (",".join(RUNTIMES), runtime))
    for precision in FLAGS.precisions:
      try:
        devices.check_precision(runtime, precision)
      except ValueError as e:
        raise app.UsageError("--precisions: %s" % e)


def _log(text: str) -> None:
  sys.stderr.write("[weight_independence %s] %s\n" % (time.strftime("%H:%M:%S"), text))
  sys.stderr.flush()


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  _check_flags()
  os.makedirs(os.path.join(FLAGS.results_dir, "cells"), exist_ok=True)
  config = {k: FLAGS[k].value for k in ("cells", "seed", "num_cells", "filters", "epochs",
                                        "train_images", "measure_images", "batch_size",
                                        "repeats", "runtimes", "precisions", "int8_cells",
                                        "calibration_images", "power_source", "power_root")}
  with open(os.path.join(FLAGS.results_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  splits = data.load("cifar10_sample", seed=FLAGS.seed)
  splits = dataclasses.replace(splits, x_train=splits.x_train[:FLAGS.train_images],
                               y_train=splits.y_train[:FLAGS.train_images])
  images = data.normalize(splits.x_val[:FLAGS.measure_images])
  calibration = data.normalize(splits.x_train[:FLAGS.calibration_images])
  power_options = {"root": FLAGS.power_root} if FLAGS.power_root else None
  settings = Settings(FLAGS.num_cells, FLAGS.filters, FLAGS.epochs, tuple(FLAGS.runtimes),
                      tuple(FLAGS.precisions), FLAGS.int8_cells,
                      dict(device="cpu", power_source=FLAGS.power_source,
                           batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
                           power_options=power_options))
  records: list[Any]
  spent: list[float]
  records, spent = [], []
  folder = lambda index: os.path.join(FLAGS.results_dir, "exports", "%03d" % index)
  for index, genotype in enumerate(sample_cells(FLAGS.cells, FLAGS.seed)):
    path = os.path.join(FLAGS.results_dir, "cells", "%03d.json" % index)
    if os.path.exists(path):
      with open(path) as f:
        records.append(refresh_same_graph(json.load(f), folder(index)))
      continue
    eta = ("ETA %.0f s" % (np.mean(spent) * (FLAGS.cells - index))) if spent else "ETA ?"
    _log("cell %d/%d %s (%s)" % (index + 1, FLAGS.cells, genotype.to_string(), eta))
    record = run_cell(index, genotype, settings, splits, images, calibration, folder(index),
                      FLAGS.seed, _log)
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)
    records.append(record)
    spent.append(record["seconds"])
  summary = write_outputs(FLAGS.results_dir, [r for rec in records for r in rec["rows"]],
                          config)
  summary["load_average_per_cell"] = [[rec["load_average_start"], rec["load_average_end"]]
                                      for rec in records]
  with open(os.path.join(FLAGS.results_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  print(json.dumps(summary["per_runtime_precision"], indent=2, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
