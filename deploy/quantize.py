"""Post-training int8 quantization of an fp32 ONNX export, calibrated on images.

Each runtime quantizes with its own tool (the registry's
``deploy.device.devices.PRECISIONS["int8"].conversion``):

* **onnxruntime**: ``onnxruntime.quantization.quantize_static`` in the QDQ
  format (QuantizeLinear/DequantizeLinear pairs around each quantized op, the
  format ONNX Runtime's CPU kernels and TensorRT read), int8 weights per output
  channel, uint8 activations (ONNX Runtime's recommended U8S8 on x86 CPUs),
  MinMax calibration (Jacob et al., "Quantization and Training of Neural
  Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, eq. 1-3:
  ``x = scale * (q - zero_point)``).
* **openvino**: NNCF's post-training quantization (``nncf.quantize``, default
  "performance" preset: symmetric int8 weights and activations) of the
  OpenVINO model read from the ONNX file, saved as IR.

Calibration images should come from the TRAINING split (a search passes
``tea_keras.data.normalize(x_train[:n])``): the validation split measures the
quantized model's error and must not tune it. Heavy packages are imported
here, lazily, with an actionable error.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from typing import Any, Iterator

import numpy as np

from tea_keras import errors

CALIBRATION_BATCH = 10
INPUT_NAME = "images"


def _check_images(images: Any) -> np.ndarray:
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[0] < 1:
    raise errors.invalid_value("calibration_images",
                               "a float32 NHWC batch of at least one normalized training image",
                               shown="shape %s." % (images.shape,))
  return images


def _batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
  return [images[i:i + batch_size] for i in range(0, len(images), batch_size)]


def _import(name: str, pip_name: str, what: str) -> Any:
  try:
    return importlib.import_module(name)
  except ImportError as e:
    raise ImportError("%s needs the `%s` package (%s): pip install %s (or pip install -e "
                      "\".[deploy]\")." % (what, name, e, pip_name))


class _DropAdvice(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
  """ONNX Runtime logs "Please consider pre-processing before quantization"
  on the root logger after every ``quantize_static`` (once per trial in a
  search's console); this drops that one line, nothing else."""
  drop, root = _DropAdvice(), logging.getLogger()
  targets = [root] + list(root.handlers)
  for target in targets:
    target.addFilter(drop)
  try:
    yield
  finally:
    for target in targets:
      target.removeFilter(drop)


def quantize_onnx(fp32_path: str, out: str, calibration_images: Any,
                  batch_size: int = CALIBRATION_BATCH) -> str:
  """Write the QDQ int8 model of ``fp32_path`` to ``out``; returns ``out``."""
  images = _check_images(calibration_images)
  quantization = _import("onnxruntime.quantization", "onnxruntime", "int8 for onnxruntime")

  class _Reader(quantization.CalibrationDataReader):  # type: ignore[name-defined]
    def __init__(self) -> None:
      self._it = iter(_batches(images, batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
      batch = next(self._it, None)
      return None if batch is None else {INPUT_NAME: batch}

  with _without_preprocessing_advice():
    quantization.quantize_static(
        fp32_path, out, _Reader(), quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
        per_channel=True, calibrate_method=quantization.CalibrationMethod.MinMax)
  # ONNX: optional (the deploy extra), imported only when used.
  import onnx  # pylint: disable=g-import-not-at-top
  onnx.save(compact_names(onnx.load(out)), out)
  return out


def quantize_openvino(fp32_onnx_path: str, out: str, calibration_images: Any,
                      batch_size: int = CALIBRATION_BATCH) -> str:
  """Write the NNCF int8 IR (``out``: .xml, .bin next to it) of an fp32 ONNX file."""
  images = _check_images(calibration_images)
  if not out.endswith(".xml"):
    raise errors.invalid_value("out", "a path ending in .xml", out)
  ov = _import("openvino", "openvino", "int8 for openvino")
  if not hasattr(ov, "convert_model"):
    raise ImportError("int8 for openvino quantizes with NNCF on OpenVINO 2023.1 or newer; this "
                      "host has an older OpenVINO (2022.x API, the MYRIAD plugin's, whose stick "
                      "computes in FP16 only): quantize on a host with a current OpenVINO, or "
                      "drop int8.")
  nncf = _import("nncf", "nncf", "int8 for openvino (NNCF post-training quantization)")
  model = ov.convert_model(fp32_onnx_path)
  dataset = nncf.Dataset(_batches(images, batch_size))
  quantized = nncf.quantize(model, dataset, subset_size=len(images))
  if os.path.dirname(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
  ov.save_model(quantized, out, compress_to_fp16=False)
  return out


def compact_names(proto: Any) -> Any:
  """Rename the nodes and internal tensors of an ONNX ``ModelProto`` in place
  to short names (``n12``, ``t34``), keeping the graph's inputs, outputs and
  initializers' roles. tf2onnx and the quantizer name tensors after the whole
  Keras layer path; in a small network those names outweigh the weights (an
  int8 QDQ file of 80k weights was 40% names). Returns ``proto``."""
  graph = proto.graph
  keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
  mapping: dict[str, str] = {}

  def short(name: str) -> str:
    if name in keep:
      return name
    if name not in mapping:
      mapping[name] = "t%d" % len(mapping)
    return mapping[name]

  for init in graph.initializer:
    init.name = short(init.name)
  for info in graph.value_info:
    info.name = short(info.name)
  for i, node in enumerate(graph.node):
    node.name = "n%d" % i
    node.doc_string = ""
    node.input[:] = [short(n) for n in node.input]
    node.output[:] = [short(n) for n in node.output]
  return proto


def artifact_bytes(path: str) -> int:
  """Bytes on disk of an artifact (an IR counts its .bin; a folder its files)."""
  if os.path.isdir(path):
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)
  size = os.path.getsize(path)
  if path.endswith(".xml") and os.path.exists(path[:-4] + ".bin"):
    size += os.path.getsize(path[:-4] + ".bin")
  return size


def weight_bytes(path: str) -> int | None:
  """Bytes of the stored weights: an ONNX file's initializers, an IR's .bin
  (None for other formats). For a small network the graph itself (node and
  tensor descriptions, the IR's XML) can outweigh the weights."""
  if path.endswith(".xml"):
    return os.path.getsize(path[:-4] + ".bin") if os.path.exists(path[:-4] + ".bin") else None
  if not path.endswith(".onnx"):
    return None
  # ONNX: optional (the deploy extra), imported only when used.
  import onnx  # pylint: disable=g-import-not-at-top
  model = onnx.load(path)
  return int(sum(len(t.raw_data) or onnx.numpy_helper.to_array(t).nbytes
                 for t in model.graph.initializer))
