"""Reduced IEEE 754 float formats: how accurate is a trained model in E/M bits?

An accuracy study, not a deployment: no device runs these formats. It follows
the "model-optimized IEEE 754 reduced types" of the constrained IoT search

  Scheidegger, F., Benini, L., Bekas, C., Malossi, C. "Constrained deep neural
  network architecture search for IoT devices accounting for hardware
  calibration", NeurIPS 2019,

which picks, per model, the fewest exponent and mantissa bits that keep its
accuracy. ``python -m deploy.formats --model_dir=DIR --formats=e5m10,e8m7,e4m3``
writes ``formats.csv``, ``formats.md`` and ``formats.png`` (validation error
per format) in ``--out_dir``.

A format ``eEmM`` has a sign bit, E exponent bits (bias 2^(E-1) - 1) and M
fraction bits, with subnormals, infinities and NaN as IEEE 754 defines them
(e5m10 is binary16, e8m7 is bfloat16, e5m2 / e4m3 / e3m4 the IEEE-style
8-bit formats). ``round_to_format`` rounds float32 values to the nearest
value of the format, ties to even; values at or beyond the largest finite
value plus half an ulp overflow to infinity, as IEEE rounding does:

* normal range (|x| >= 2^emin): round the float32 fraction to M bits on the
  bit pattern (add half an ulp minus one plus the kept lsb, clear the dropped
  bits; a carry moves into the exponent, which is exact);
* subnormal range (|x| < 2^emin): round |x| / 2^(emin - M) to an integer
  with ties to even and scale back (both scalings are exact powers of two).

Emulation of a model: every weight is rounded once; every activation is
rounded where it enters and leaves a leaf layer (convolutions, batch norm,
activations, pooling, dense), so sums between layers (a cell's block outputs)
are rounded at the next layer's input. Products are accumulated in float32
inside a layer, as hardware with wider accumulators does.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from typing import Any, Callable, Sequence

import numpy as np
from absl import app
from absl import flags

from tea_keras import console
from deploy import export
from tea_keras import data

_FORMAT = re.compile(r"^e(\d+)m(\d+)$")


def parse_format(name: str) -> tuple[int, int]:
  """(E, M) from 'e5m10'; E in 2..8, M in 0..23 (what float32 can carry)."""
  found = _FORMAT.match(str(name).strip().lower())
  if not found:
    raise ValueError("Invalid float format %r. Expected eEmM, e.g. e5m10 (binary16), e8m7 "
                     "(bfloat16), e4m3." % (name,))
  e, m = int(found.group(1)), int(found.group(2))
  if not (2 <= e <= 8 and 0 <= m <= 23):
    raise ValueError("Invalid float format %r. Expected 2 <= E <= 8 exponent bits and "
                     "0 <= M <= 23 mantissa bits (float32 holds the emulation)." % (name,))
  return e, m


def format_limits(e: int, m: int) -> tuple[int, float]:
  """(emin, largest finite value) of format (e, m)."""
  bias = 2 ** (e - 1) - 1
  return 1 - bias, (2.0 - 2.0 ** -m) * 2.0 ** bias


def round_to_format(x: Any, e: int, m: int) -> np.ndarray:
  """float32 array of ``x`` rounded to format (e, m) (see module doc)."""
  x = np.asarray(x, np.float32)
  emin, largest = format_limits(e, m)
  out = np.abs(x)
  normal = out >= np.float32(2.0 ** emin)
  shift = 23 - m
  if shift:
    bits = out.view(np.uint32).copy()
    keep = (bits >> np.uint32(shift)) & np.uint32(1)
    half = np.uint32((1 << (shift - 1)) - 1)
    rounded = ((bits + half + keep) & ~np.uint32((1 << shift) - 1)).view(np.float32)
    out = np.where(normal, rounded, out)
  quantum = 2.0 ** (emin - m)
  sub = np.rint(np.abs(x).astype(np.float64) / quantum) * quantum
  out = np.where(normal, out, sub.astype(np.float32))
  with np.errstate(invalid="ignore"):
    out = np.where(out > largest, np.float32(np.inf), out)
  out = np.where(np.isnan(x), x, np.copysign(out, x))
  return out.astype(np.float32)


def round_to_format_tf(x: Any, e: int, m: int) -> Any:
  """The same rounding in TensorFlow ops (for activations inside a graph).
  TensorFlow's CPU kernels flush float32 subnormal inputs (|x| < 2^-126) to
  zero; otherwise bit-for-bit equal to ``round_to_format``."""
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf
  emin, largest = format_limits(e, m)
  a = tf.abs(x)
  shift = 23 - m
  rounded = a
  if shift:
    bits = tf.bitcast(a, tf.int32)
    keep = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, shift), 1)
    bits = bits + ((1 << (shift - 1)) - 1) + keep
    bits = tf.bitwise.bitwise_and(bits, ~((1 << shift) - 1))
    rounded = tf.bitcast(bits, tf.float32)
  quantum = 2.0 ** (emin - m)
  sub = tf.round(a / quantum) * quantum  # tf.round: ties to even
  out = tf.where(a >= 2.0 ** emin, rounded, sub)
  out = tf.where(out > largest, tf.constant(np.inf, tf.float32), out)
  out = tf.where(tf.math.is_nan(x), x, tf.where(x < 0, -out, out))
  return tf.where(tf.equal(x, 0.0), x, out)


# -- a model in a reduced format ------------------------------------------------
def _leaf_layers(model: Any) -> list[Any]:
  return [l for l in model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
          if not list(l._flatten_layers(include_self=False, recursive=False))]  # pylint: disable=protected-access


def emulate(model: Any, e: int, m: int) -> Any:
  """A copy of ``model`` whose weights and leaf-layer activations are in (e, m)."""
  # Keras: heavy, imported only when this runs.
  import keras
  import tensorflow as tf
  clone = keras.models.clone_model(model)
  clone.set_weights([round_to_format(w, e, m) for w in model.get_weights()])

  def rounding(call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
      args = tf.nest.map_structure(
          lambda t: round_to_format_tf(t, e, m) if _is_float(t) else t, args)
      return tf.nest.map_structure(
          lambda t: round_to_format_tf(t, e, m) if _is_float(t) else t, call(*args, **kwargs))
    return wrapped
  for layer in _leaf_layers(clone):
    if not isinstance(layer, keras.layers.InputLayer):
      layer.call = rounding(layer.call)
  return clone


def _is_float(t: Any) -> bool:
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf
  return tf.is_tensor(t) and t.dtype == tf.float32


def format_errors(model: Any, images: np.ndarray, labels: np.ndarray, formats: Sequence[str],
                  batch_size: int = 250) -> list[dict[str, Any]]:
  """[{format, exponent_bits, mantissa_bits, bits, error, delta}] with the float32
  model's error first (format "fp32")."""
  def error(net: Any) -> float:
    wrong = 0
    for i in range(0, len(images), batch_size):
      logits = np.asarray(net(images[i:i + batch_size], training=False))
      wrong += int(np.sum(np.argmax(logits, 1) != labels[i:i + batch_size]))
    return wrong / float(len(images))
  base = error(model)
  rows = [{"format": "fp32", "exponent_bits": 8, "mantissa_bits": 23, "bits": 32,
           "error": base, "delta": 0.0}]
  for name in formats:
    e, m = parse_format(name)
    err = error(emulate(model, e, m))
    rows.append({"format": name, "exponent_bits": e, "mantissa_bits": m, "bits": 1 + e + m,
                 "error": err, "delta": err - base})
  return rows


def write_report(rows: Sequence[dict[str, Any]], out_dir: str, title: str) -> str:
  os.makedirs(out_dir, exist_ok=True)
  fields = ["format", "exponent_bits", "mantissa_bits", "bits", "error", "delta"]
  with open(os.path.join(out_dir, "formats.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| format | E | M | bits | error (%) | vs fp32 (points) |", "|---|---|---|---|---|---|"]
  lines += ["| %s | %d | %d | %d | %.2f | %+.2f |" % (r["format"], r["exponent_bits"],
                                                     r["mantissa_bits"], r["bits"],
                                                     100 * r["error"], 100 * r["delta"])
            for r in rows]
  with open(os.path.join(out_dir, "formats.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  # matplotlib: imported only when plotting.
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.bar(range(len(rows)), [100 * r["error"] for r in rows], color="C0")
  ax.axhline(100 * rows[0]["error"], color="k", ls="--", lw=1, label="float32")
  ax.set_xticks(range(len(rows)))
  ax.set_xticklabels(["%s\n(%d bits)" % (r["format"], r["bits"]) for r in rows], fontsize=8)
  ax.set_ylabel("validation error (%)")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "formats.png"), dpi=110)
  plt.close(fig)
  return "\n".join(lines) + "\n"


# -- CLI ------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("model_dir", None, "Training directory holding model.keras.")
  flags.DEFINE_list("formats", ["e5m10", "e8m7", "e5m7", "e4m3", "e5m2"],
                    "Float formats eEmM to emulate (accuracy study only: no device runs them).")
  flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "cifar10_sample"],
                    "Validation images are taken from this data set.")
  flags.DEFINE_string("data_dir", None, "cifar10: a cifar-10-batches-py folder.")
  flags.DEFINE_integer("num_images", 5000, "Validation images evaluated.", lower_bound=1)
  flags.DEFINE_string("out_dir", None, "Where formats.csv/.md/.png go (default: model_dir).")


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  try:
    if not FLAGS.model_dir:
      raise ValueError("--model_dir is required (a training directory with model.keras).")
    for name in FLAGS.formats:
      parse_format(name)
    model = export.load_keras(FLAGS.model_dir)
    splits = data.load(FLAGS.dataset, data_dir=FLAGS.data_dir)
    images = data.normalize(splits.x_val[:FLAGS.num_images])
    labels = np.asarray(splits.y_val[:FLAGS.num_images]).reshape(-1)
  except (ValueError, FileNotFoundError) as e:
    sys.exit("error: %s" % e)
  rows = format_errors(model, images, labels, FLAGS.formats)
  title = "%s: %d validation images (emulated formats, not a device run)" % (
      os.path.basename(os.path.normpath(FLAGS.model_dir)), len(images))
  print(write_report(rows, FLAGS.out_dir or FLAGS.model_dir, title))
  print(json.dumps({"out_dir": FLAGS.out_dir or FLAGS.model_dir}))


if __name__ == "__main__":
  define_flags()
  app.run(main)
