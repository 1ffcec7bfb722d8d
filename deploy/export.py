"""Export a trained Keras model for deployment, with a parity check.

``python -m deploy.export --model_dir=DIR --format=onnx|openvino|tensorrt|saved_model
--precision=fp32|fp16|int8 --out=PATH [--calibration_images=200]``

* **onnx**: tf2onnx (``convert.from_function`` on a ``tf.function`` with a
  dynamic batch), **opset 13** (``ONNX_OPSET``): the newest opset both
  TensorRT 8.2 (JetPack 4.6; its ONNX parser supports opsets 7-13) and
  OpenVINO 2022.3 (the last release with the MYRIAD plugin) read. Input
  ``images`` (N, 32, 32, 3) float32 normalized, output ``logits``. fp16:
  weights and compute converted with onnxruntime's float16 tool, I/O kept
  float32.
* **openvino**: IR ``.xml`` + ``.bin`` converted from the ONNX export;
  fp16 by ``compress_to_fp16`` at save (weights stored in fp16). Every ONNX
  file gets short node and tensor names (``deploy.quantize.compact_names``). The NCS2
  reads the ONNX file directly with OpenVINO 2022.3 (IR from newer releases
  may use a newer IR version).
* **tensorrt**: an engine built from the ONNX export by
  ``deploy.device.tensorrt_build`` (Python builder API, 8.x or 10.x, or trtexec);
  only where TensorRT exists, else a clear ImportError.
* **saved_model**: Keras 3 ``model.export(format="tf_saved_model")``.
* **int8** (onnx, openvino): post-training static quantization of the fp32
  ONNX export (``deploy.quantize``: ONNX Runtime QDQ, NNCF for OpenVINO),
  calibrated on ``calibration_images`` (the CLI: the first
  ``--calibration_images`` images of the bundled sample's TRAINING split).

Every export runs through its runtime on ``check_images`` and the maximum
absolute logit difference to Keras is reported; fp32 must be within
``FP32_TOLERANCE`` (1e-3) or ``ParityError`` is raised. fp16 differences are
reported, checked against ``FP16_TOLERANCE``; int8 ones against
``INT8_RELATIVE_TOLERANCE`` times the range of Keras' logits (a check for a
broken conversion only: the error that counts is the one measured on the
validation split, ``search.trial``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Optional, Sequence

import numpy as np
from absl import app
from absl import flags

from deploy import keras_runtime  # noqa: F401  (registers the host-side "keras" runtime)
from deploy import quantize
from deploy.device import devices
from deploy.device import runtimes
from deploy.device import tensorrt_build
from tea_keras import console
from tea_keras import data
from tea_keras import errors

# Export formats: what this module writes. The artifact formats a device loads
# that the host writes from a Keras model (``deploy.device.devices.FORMATS``;
# not ``keras``, the trained model itself, nor ``cascade``, written by
# ``search.cascades.build``), and ``saved_model``, which no device runtime loads.
EXPORT_FORMATS = ("onnx", "openvino", "tensorrt", "saved_model")
PRECISIONS = tuple(devices.PRECISIONS)  # fp32, fp16, int8
ONNX_OPSET = devices.ONNX_OPSET  # why 13: deploy/device/devices.py
FP32_TOLERANCE = 1e-3
FP16_TOLERANCE = 0.1
INT8_RELATIVE_TOLERANCE = 0.5
INT8_EXPORT_FORMATS = ("onnx", "openvino")
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ParityError(ValueError):
  """An export's logits differ from Keras beyond the tolerance."""


@dataclasses.dataclass
class ExportResult:
  path: str
  fmt: str
  precision: str
  max_abs_diff: Optional[float]
  opset: Optional[int]
  tolerance: Optional[float] = None
  checked_images: int = 0
  parity_runtime: Optional[str] = None
  note: Optional[str] = None

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def load_keras(model_or_model_dir: Any) -> Any:
  """A keras.Model from a model, a ``.keras`` file or a model_dir."""
  if not isinstance(model_or_model_dir, (str, os.PathLike)):
    return model_or_model_dir
  path = os.fspath(model_or_model_dir)
  if os.path.isdir(path):
    path = os.path.join(path, "model.keras")
  if not os.path.exists(path):
    raise errors.invalid_value("model_or_model_dir",
                               "a keras.Model, a .keras file or a model_dir holding model.keras",
                               shown="%r (no %s)." % (model_or_model_dir, path))
  from tea_keras import network  # pylint: disable=g-import-not-at-top  (Keras)
  return network.load_model(path)


def default_check_images(count: int = 16) -> np.ndarray:
  """The first ``count`` test images of the bundled sample, normalized."""
  return data.normalize(data.load("cifar10_sample").x_test[:count])


def randomize_constant_weights(model: Any, seed: int) -> int:
  """Draw at random every weight tensor of ``model`` whose entries are all
  equal (Keras initializes batch-norm scales and moving variances to ones,
  offsets, moving means and biases to zeros): ones become U(0.5, 1.5), other
  constants c become c + N(0, 0.1). Returns how many tensors were drawn.

  Why: tf2onnx drops the zero biases and the additions of zeros of an
  untrained network (a Conv without its bias input, fewer Add nodes), so its
  graph is not the trained network's; with no constant tensor left, it is."""
  rng, drawn = np.random.default_rng(seed), 0
  for variable in model.weights:
    value = np.asarray(variable.numpy())
    if value.size < 1 or not np.issubdtype(value.dtype, np.floating) or \
        np.any(value != value.flat[0]):
      continue
    if value.flat[0] == 1.0:
      new = rng.uniform(0.5, 1.5, value.shape)
    else:
      new = value + rng.normal(0.0, 0.1, value.shape)
    variable.assign(new.astype(value.dtype))
    drawn += 1
  return drawn


def keras_logits(model: Any, images: np.ndarray) -> np.ndarray:
  return np.asarray(model(images, training=False), dtype=np.float32)


def export_onnx(model: Any, out: str, precision: str = "fp32", opset: int = ONNX_OPSET,
                calibration_images: np.ndarray | None = None) -> str:
  if precision == "int8":
    with tempfile.TemporaryDirectory() as tmp:
      fp32 = export_onnx(model, os.path.join(tmp, "model.onnx"), "fp32", opset)
      return quantize.quantize_onnx(fp32, out, calibration_images)
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf
  import tf2onnx
  spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name=INPUT_NAME),)

  @tf.function(input_signature=spec)
  def serve(images: Any) -> dict[str, Any]:
    return {OUTPUT_NAME: model(images, training=False)}

  proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
  if precision == "fp16":
    from onnxruntime.transformers import float16
    proto = float16.convert_float_to_float16(proto, keep_io_types=True)
  import onnx
  onnx.save(quantize.compact_names(proto), out)
  return out


def save_openvino_ir(onnx_path: str, out: str, fp16: bool = False) -> str:
  """Convert ``onnx_path`` to IR at ``out`` (.xml, the .bin beside it) with
  this host's OpenVINO: ``convert_model``/``save_model`` from 2023.1, else
  the 2022.x API (``openvino.runtime``: ``Core.read_model``, ``serialize``;
  fp16 by ``offline_transformations.compress_model_transformation``), as on
  the OpenVINO 2022.3 host of a Movidius stick."""
  try:
    # vendor runtime: optional, imported only on a machine that has it.
    import openvino as ov
    convert, save = ov.convert_model, ov.save_model
  except (ImportError, AttributeError):
    from openvino.runtime import Core, serialize  # 2022.x
    model = Core().read_model(onnx_path)
    if fp16:
      from openvino.offline_transformations import compress_model_transformation
      compress_model_transformation(model)
    serialize(model, out, os.path.splitext(out)[0] + ".bin")
    return out
  save(convert(onnx_path), out, compress_to_fp16=fp16)
  return out


def export_openvino(model: Any, out: str, precision: str = "fp32", opset: int = ONNX_OPSET,
                    calibration_images: np.ndarray | None = None) -> str:
  if not out.endswith(".xml"):
    raise errors.invalid_value("out", "a path ending in .xml (the .bin goes next to it)", out,
                               where="with fmt=openvino")
  with tempfile.TemporaryDirectory() as tmp:
    onnx_path = export_onnx(model, os.path.join(tmp, "model.onnx"), "fp32", opset)
    if precision == "int8":
      return quantize.quantize_openvino(onnx_path, out, calibration_images)
    save_openvino_ir(onnx_path, out, fp16=precision == "fp16")
  return out


def export_tensorrt(model: Any, out: str, precision: str = "fp32", opset: int = ONNX_OPSET,
                    batch_size: int = 100) -> str:
  onnx_path = os.path.splitext(out)[0] + ".onnx"
  export_onnx(model, onnx_path, "fp32", opset)
  tensorrt_build.build_engine(onnx_path, out, precision, batch_size)
  return out


def export_saved_model(model: Any, out: str, precision: str = "fp32") -> str:
  if precision != "fp32":
    raise ValueError("fmt=saved_model supports precision=fp32 only. Received %r" % precision)
  if os.path.exists(out):
    shutil.rmtree(out)
  model.export(out, format="tf_saved_model", verbose=False)
  return out


def run_artifact(fmt: str, path: str, images: np.ndarray,
                 batch_size: int = 100) -> tuple[str, np.ndarray]:
  """Logits of an exported artifact through its runtime (CPU where possible)."""
  name = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt",
          "saved_model": "keras"}[fmt]
  runtime = runtimes.create(name, path, "gpu" if fmt == "tensorrt" else "cpu")
  return name, np.concatenate([runtime.predict(images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)])


def _check_precision_args(fmt: str, precision: str, calibration_images: np.ndarray | None) -> None:
  if precision not in PRECISIONS:
    raise errors.invalid_value("precision", "one of %s" % "|".join(PRECISIONS), precision)
  if precision == "int8" and fmt not in INT8_EXPORT_FORMATS:
    raise ValueError("precision=int8 is exported for fmt=%s only (TensorRT quantizes on "
                     "the device, from the fp32 ONNX file). Received fmt=%r"
                     % ("|".join(INT8_EXPORT_FORMATS), fmt))
  if precision == "int8" and calibration_images is None:
    raise ValueError("precision=int8 needs `calibration_images`: normalized images of the "
                     "TRAINING split (tea_keras.data.normalize(splits.x_train[:200])).")


def parity_tolerance(precision: str, reference: np.ndarray) -> float:
  """The largest |logit difference| accepted for ``precision`` (module doc)."""
  if precision == "int8":
    return INT8_RELATIVE_TOLERANCE * float(np.ptp(reference)) if reference.size else 0.0
  return FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE


def export_model(model_or_model_dir: Any, fmt: str, out: str, precision: str = "fp32",
                 check_images: np.ndarray | None = None, opset: int = ONNX_OPSET,
                 batch_size: int = 100,
                 calibration_images: np.ndarray | None = None) -> ExportResult:
  """Export and parity-check; returns an ``ExportResult`` (see module doc).
  ``calibration_images``: training images for ``precision="int8"``."""
  if fmt not in EXPORT_FORMATS:
    raise errors.invalid_value("fmt", "one of %s" % "|".join(EXPORT_FORMATS), fmt)
  _check_precision_args(fmt, precision, calibration_images)
  model = load_keras(model_or_model_dir)
  out = os.fspath(out)
  if os.path.dirname(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
  if fmt == "onnx":
    export_onnx(model, out, precision, opset, calibration_images)
  elif fmt == "openvino":
    export_openvino(model, out, precision, opset, calibration_images)
  elif fmt == "tensorrt":
    export_tensorrt(model, out, precision, opset, batch_size)
  else:
    export_saved_model(model, out, precision)
  images = default_check_images() if check_images is None else np.asarray(
      check_images, np.float32)
  reference = keras_logits(model, images)
  runtime_name, logits = run_artifact(fmt, out, images, batch_size)
  diff = float(np.max(np.abs(logits.astype(np.float32) - reference)))
  tolerance = parity_tolerance(precision, reference)
  result = ExportResult(out, fmt, precision, diff, opset if fmt != "saved_model" else None,
                        tolerance, int(len(images)), runtime_name)
  with open(out.rstrip("/") + ".export.json", "w") as f:
    json.dump(result.to_dict(), f, indent=2)
  if not diff <= tolerance:
    raise ParityError("Export %s (%s, %s) differs from Keras by max |logit diff| %.3g > "
                      "%.0e on %d images." % (out, fmt, precision, diff, tolerance,
                                              len(images)))
  return result


# -- CLI ----------------------------------------------------------------------
# Flags are defined only when run as a program, so that importing this module
# (the search imports export_model) never clashes with other flag definitions.
FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("model_dir", None, "Directory with model.keras (or a .keras file).")
  flags.DEFINE_enum("format", "onnx", EXPORT_FORMATS, "Export format: an artifact format a "
                    "device loads, or saved_model.")
  flags.DEFINE_enum("precision", "fp32", PRECISIONS, "Numerical precision of the export.")
  flags.DEFINE_string("out", None, "Output path (.onnx, .xml, .engine, or a directory "
                      "for saved_model). Default: <model_dir>/model.<ext>.")
  flags.DEFINE_integer("opset", ONNX_OPSET, "ONNX opset (13 is read by TRT 8.2 and "
                       "OpenVINO 2022.3).", lower_bound=7)
  flags.DEFINE_integer("batch_size", 100, "TensorRT: largest (and optimal) batch.",
                       lower_bound=1)
  flags.DEFINE_integer("calibration_images", 200, "--precision=int8: calibrate on the first "
                       "N training images of the bundled sample.", lower_bound=1)


def default_out(model_dir: str, fmt: str) -> str:
  ext = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine", "saved_model": ""}[fmt]
  base = model_dir if os.path.isdir(model_dir) else os.path.dirname(model_dir)
  return os.path.join(base, "model" + ext if ext else "saved_model")


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required.")
  out = FLAGS.out or default_out(FLAGS.model_dir, FLAGS.format)
  calibration = None
  if FLAGS.precision == "int8":
    calibration = data.normalize(
        data.load("cifar10_sample").x_train[:FLAGS.calibration_images])
  try:
    result = export_model(FLAGS.model_dir, FLAGS.format, out, FLAGS.precision,
                          opset=FLAGS.opset, batch_size=FLAGS.batch_size,
                          calibration_images=calibration)
  except (ImportError, ValueError) as e:   # missing backend, bad input, ParityError
    sys.stderr.write("deploy.export: %s: %s\n" % (type(e).__name__, e))
    sys.exit(1)
  json.dump(result.to_dict(), sys.stdout)
  print()


if __name__ == "__main__":
  define_flags()
  app.run(main)
