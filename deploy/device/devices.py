"""The device registry: every fact about a device kind, in one place.

Each device kind names the runtimes that can measure on it (the first is the
default), the power sources that can exist on it (``auto`` picks the first
one that reads, else ``none``) and the working/idle threshold of the paper
(Cai et al., 2018, section IV-B: TITAN X 80 W, Jetson TX2 1 W, Movidius NCS
0.45 W). Each runtime names the artifact formats it reads, in the order the
host prefers to send them, and the newest ONNX opset its oldest supported
release reads. Every CLI, the agent, its client, the search config and the
reports read these tables; nothing else spells them.

Artifact formats (what travels from the host to the device):

* ``onnx``: the portable export. Every runtime but Keras reads it; TensorRT
  builds its engine from it *on the device* (engines are specific to the GPU
  and the TensorRT release), OpenVINO compiles it there.
* ``openvino``: IR (``.xml`` + ``.bin``, zipped for upload), written by the
  host's OpenVINO. An IR is read only by an OpenVINO at least as new as the
  one that wrote it (2023.3+ writes IR v11 with opset-12+ operations that the
  2022.3 release, the last with the MYRIAD plugin, cannot read), so it is sent
  only when the device's OpenVINO is not older than the host's; otherwise the
  host sends ONNX (``choose_format``).
* ``tensorrt``: a prebuilt engine, accepted for a device that built it.
* ``keras``: a ``.keras`` file, for the host-side Keras runtime.

ONNX opset 13 is the newest that both TensorRT 8.2 (JetPack 4.6, the TX2's
last; its parser reads opsets 7-13) and OpenVINO 2022.3 read.

Device-side module: Python 3.6 syntax, standard library only.
"""

import collections
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import errors

DeviceKind = collections.namedtuple(
    "DeviceKind", "name runtimes power_sources paper_threshold_w description")
RuntimeKind = collections.namedtuple(
    "RuntimeKind", "name formats max_onnx_opset package pip host_only")
ArtifactFormat = collections.namedtuple("ArtifactFormat", "name suffix upload_suffix")

ONNX_OPSET = 13

FORMATS = collections.OrderedDict((f.name, f) for f in (
    ArtifactFormat("onnx", ".onnx", ".onnx"),
    ArtifactFormat("openvino", ".xml", ".zip"),
    ArtifactFormat("tensorrt", ".engine", ".engine"),
    ArtifactFormat("keras", ".keras", ".keras"),
    ArtifactFormat("cascade", "cascade.json", ".zip"),
))
# Formats that hold models of another format: a runtime reads the container
# when it reads what is inside. ``cascade``: a directory (``deploy.device.cascade_runner``,
# written by ``python -m search.cascades.build``) of ``cascade.json`` and ONNX stage
# models, zipped for upload; measured with its stages on that runtime.
CONTAINER_FORMATS = {"cascade": "onnx"}
# Suffixes of files a user may hand to the client or a device script.
SUFFIX_FORMATS = {".onnx": "onnx", ".xml": "openvino", ".zip": "openvino",
                  ".engine": "tensorrt", ".plan": "tensorrt", ".trt": "tensorrt",
                  ".keras": "keras"}

RUNTIMES = collections.OrderedDict((r.name, r) for r in (
    RuntimeKind("onnxruntime", ("onnx",), 13, "onnxruntime",
                "onnxruntime (CPU) or onnxruntime-gpu (CUDA)", False),
    RuntimeKind("openvino", ("openvino", "onnx"), 13, "openvino",
                "openvino (openvino==2022.3.* for the MYRIAD plugin)", False),
    RuntimeKind("tensorrt", ("onnx", "tensorrt"), 13, "tensorrt",
                "tensorrt (JetPack on a Jetson; pip install tensorrt on a GPU server)",
                False),
    RuntimeKind("keras", ("keras",), None, "keras", "tensorflow keras", True),
))

POWER_SOURCES = ("nvml", "ina3221", "rapl", "usb_meter", "none")
# The keyword arguments each power source's constructor takes (deploy.device.power).
POWER_OPTIONS = {"nvml": ("device_index",), "ina3221": ("rail", "root"), "rapl": ("root",),
                 "usb_meter": ("csv_path", "port"), "none": ()}
# The command-line flag of each power-source keyword, the same in every CLI
# (device scripts, the agent, deploy.measure, search.run).
POWER_OPTION_FLAGS = {"rail": "rail", "root": "power_root", "device_index": "gpu_index",
                      "csv_path": "usb_csv", "port": "usb_port"}

DEVICES = collections.OrderedDict((d.name, d) for d in (
    DeviceKind("cpu", ("onnxruntime", "openvino", "keras"), ("rapl", "none"), None,
               "this machine's CPU (energy from Intel RAPL where readable)"),
    DeviceKind("gpu", ("onnxruntime", "tensorrt", "keras"), ("nvml", "none"), 80.0,
               "an NVIDIA GPU (NVML power; paper: TITAN X, 80 W threshold)"),
    DeviceKind("jetson", ("tensorrt", "onnxruntime"), ("ina3221", "none"), 1.0,
               "an NVIDIA Jetson (INA3221 rails; paper: TX2, 1 W threshold)"),
    DeviceKind("myriad", ("openvino",), ("usb_meter", "none"), 0.45,
               "an Intel Movidius NCS/NCS2 through OpenVINO's MYRIAD plugin (USB power "
               "meter; paper: NCS, 0.45 W threshold)"),
))
# ``remote``: a device kind above, behind ``python -m deploy.device.agent``; the
# agent's health answer says which (``capabilities``).
REMOTE = "remote"
AUTO = "auto"
# The OpenVINO device name of each kind (MYRIAD: the NCS2 plugin, <= 2022.3).
OPENVINO_DEVICE = {"cpu": "CPU", "gpu": "GPU", "myriad": "MYRIAD"}
# Kinds whose runtime compiles for one static batch size (MYRIAD: static shapes).
STATIC_BATCH = ("myriad",)
# Kinds measured through CUDA: a search measures them in a process of its own
# that never imported TensorFlow (which holds the GPU's memory once it ran).
CUDA_DEVICES = ("gpu", "jetson")
# The ONNX Runtime execution provider that must be present for each kind.
ONNXRUNTIME_PROVIDER = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider",
                        "jetson": "CUDAExecutionProvider"}

# Numerical precisions of a deployed artifact (deploy.export, deploy.quantize).
# bytes_per_weight: storage of one weight (the budget's size estimate before
# training, search.budgets); conversion: how each runtime gets the artifact;
# int8 is post-training static quantization calibrated on training images
# (TensorRT: on the device, by deploy.device.tensorrt_build's calibrator).
Precision = collections.namedtuple("Precision", "name bytes_per_weight conversion")
PRECISIONS = collections.OrderedDict((p.name, p) for p in (
    Precision("fp32", 4, {"onnxruntime": "tf2onnx export", "openvino": "IR from the ONNX export",
                          "tensorrt": "engine from the ONNX export", "keras": ".keras file"}),
    Precision("fp16", 2, {"onnxruntime": "onnxruntime.transformers.float16 (I/O float32)",
                          "openvino": "IR with compress_to_fp16",
                          "tensorrt": "engine built with the FP16 flag"}),
    Precision("int8", 1, {"onnxruntime": "onnxruntime.quantization.quantize_static (QDQ, "
                                         "per-channel int8 weights, uint8 activations, "
                                         "MinMax calibration)",
                          "openvino": "nncf.quantize (post-training, default preset)",
                          "tensorrt": "engine built with the INT8 flag, calibrated on the "
                                      "device by an IInt8EntropyCalibrator2 on training "
                                      "images"}),
))


# Weight independence (issue 33): whether the artifact's inference time and
# energy on a (runtime, precision) depend on the trained weights' values. Where
# they do not, the cost of a network can be measured on its UNTRAINED export
# (decoupled evaluation: seconds instead of a training). True only where the
# conversion writes the same graph whatever the values (same operations,
# shapes and data types; only the constants differ) and the runtime's kernels
# run the same instructions for any values of those constants. One condition
# on the untrained network: no weight tensor may be constant. Keras starts
# batch-norm offsets and means at 0 and the exporter (tf2onnx) drops zero
# biases and additions of zeros, so the export of Keras' initial weights has
# a smaller graph than the trained one; draw those tensors at random first
# (``deploy.export.randomize_constant_weights``).
# onnxruntime and openvino were measured on this project's CPU (BENCHMARKS.md,
# "Decoupled evaluation (issue 33)"; ``python -m
# search.benchmarks.weight_independence``); the TensorRT and Keras entries are
# argued from how their artifacts are built, not measured here. Not covered by
# any entry: denormal weights or activations (slow on x86 without
# flush-to-zero) and structured sparsity (TensorRT's SPARSE_WEIGHTS, not set by
# this project), both value-dependent.
WeightIndependence = collections.namedtuple("WeightIndependence", "independent why")
_GRAPH_ONLY = ("the conversion writes the same graph (operations, shapes, data types) for any "
               "weights and the runtime's kernels do not branch on their values")
WEIGHT_INDEPENDENCE = {
    ("onnxruntime", "fp32"): WeightIndependence(True, _GRAPH_ONLY + " (tf2onnx export)"),
    ("onnxruntime", "fp16"): WeightIndependence(
        True, _GRAPH_ONLY + " (float16 conversion casts every weight whatever its value)"),
    ("openvino", "fp32"): WeightIndependence(True, _GRAPH_ONLY + " (IR from the ONNX export)"),
    ("openvino", "fp16"): WeightIndependence(
        True, _GRAPH_ONLY + " (IR with every weight compressed to fp16)"),
    ("tensorrt", "fp32"): WeightIndependence(
        True, "the engine's layers come from the ONNX graph, its tactics from timing on the "
              "device, not from the weights' values (not measured here: no GPU)"),
    ("tensorrt", "fp16"): WeightIndependence(
        True, "as fp32, with the FP16 flag; no SPARSE_WEIGHTS flag is set, which would make "
              "kernels depend on the weights' zeros (not measured here: no GPU)"),
    ("keras", "fp32"): WeightIndependence(True, "the same Keras layers whatever the weights"),
    ("onnxruntime", "int8"): WeightIndependence(
        False, "static quantization calibrates activation scales and zero points on images "
               "run through the network's weights: the untrained artifact holds other "
               "constants than the deployed one, so it is not the artifact that ships"),
    ("openvino", "int8"): WeightIndependence(
        False, "NNCF derives scales from activation statistics of the network's weights "
               "on calibration images: the untrained IR is not the one that ships"),
    ("tensorrt", "int8"): WeightIndependence(
        False, "the INT8 calibrator derives per-tensor ranges from activations, and the "
               "builder keeps a layer in higher precision where int8 is slower for it: the "
               "engine depends on the weights and the calibration data"),
}


def weight_independence(runtime_name: str, precision: str) -> Any:
  """The ``WeightIndependence`` of ``precision`` on ``runtime_name``: whether
  its time and energy do not depend on the weights, and why. ValueError for
  an unknown runtime or precision, or one the runtime does not deploy."""
  check_precision(runtime_name, precision)
  return WEIGHT_INDEPENDENCE[(runtime_name, precision)]


def decouplable(runtime_name: str, precision: str) -> bool:
  """Whether a network's time and energy on ``runtime_name`` at ``precision``
  may be measured on its untrained export (``WEIGHT_INDEPENDENCE``)."""
  return weight_independence(runtime_name, precision).independent


def check_precision(runtime_name: str, precision: str) -> None:
  """Refuse a precision ``runtime_name`` cannot deploy (``PRECISIONS``)."""
  runtime(runtime_name)
  _one_of("precision", precision, list(PRECISIONS))
  if runtime_name not in PRECISIONS[precision].conversion:
    raise ValueError("precision=%s cannot be deployed with runtime=%s; it supports: %s."
                     % (precision, runtime_name,
                        ", ".join(p for p, spec in PRECISIONS.items()
                                  if runtime_name in spec.conversion)))


def _one_of(name: str, value: Any, allowed: Any) -> None:
  if value not in allowed:
    raise errors.invalid_value(name, "one of %s" % "|".join(allowed), value)


def device(name: str) -> DeviceKind:
  """The ``DeviceKind`` called ``name`` (a clear ValueError otherwise)."""
  _one_of("device", name, list(DEVICES))
  return DEVICES[name]


def runtime(name: str) -> RuntimeKind:
  _one_of("runtime", name, list(RUNTIMES))
  return RUNTIMES[name]


def reads_format(runtime_name: str, fmt: str) -> bool:
  """Whether ``runtime_name`` reads artifact format ``fmt`` (a container
  format when it reads the format of its members)."""
  formats = runtime(runtime_name).formats
  return fmt in formats or CONTAINER_FORMATS.get(fmt) in formats


def default_runtime(device_name: str) -> str:
  return device(device_name).runtimes[0]


def paper_threshold_w(device_name: str) -> Optional[float]:
  """The paper's working/idle threshold for ``device_name`` (None: derive it)."""
  return DEVICES[device_name].paper_threshold_w if device_name in DEVICES else None


def check_runtime(device_name: str, runtime_name: str) -> None:
  """Refuse a runtime that cannot measure on ``device_name``."""
  kind = device(device_name)
  runtime(runtime_name)
  if runtime_name not in kind.runtimes:
    raise ValueError("runtime=%s cannot measure on device=%s; expected one of: %s."
                     % (runtime_name, device_name, ", ".join(kind.runtimes)))


def power_options_from(values: Any, sources: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """The power sources' keyword arguments from command-line values
  (``values``: an argparse Namespace or absl's FLAGS, attributes named by
  ``POWER_OPTION_FLAGS``), set ones only; with ``sources``, only the options
  those sources take (none for ``auto``)."""
  keys = None if sources is None else set(k for s in sources for k in POWER_OPTIONS.get(s, ()))
  out = {}
  for key, flag in sorted(POWER_OPTION_FLAGS.items()):
    value = getattr(values, flag, None)
    if value is not None and (keys is None or key in keys):
      out[key] = value
  return out


def power_option_arguments(options: Optional[Mapping[str, Any]]) -> List[str]:
  """``--flag=value`` command-line arguments of power options (the inverse of
  ``power_options_from``), sorted by option name."""
  return ["--%s=%s" % (POWER_OPTION_FLAGS[key], value)
          for key, value in sorted((options or {}).items())]


def power_options_for(source: str, options: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  """The entries of ``options`` that power source ``source`` takes (set ones only)."""
  keys = POWER_OPTIONS.get(source, ())
  return dict((k, v) for k, v in (options or {}).items() if k in keys and v is not None)


def check_power_source(device_name: str, source: str) -> None:
  kind = device(device_name)
  if source not in (AUTO,) + kind.power_sources:
    raise ValueError("power_source=%s cannot measure device=%s; expected one of: %s."
                     % (source, device_name, ", ".join((AUTO,) + kind.power_sources)))


def format_of_path(path: str, fmt: Optional[str] = None) -> str:
  """The artifact format of ``path`` (from its suffix unless ``fmt`` is given;
  the agent checks a given one)."""
  if fmt is not None:
    return fmt
  cascade_file = FORMATS["cascade"].suffix
  if os.path.basename(path) == cascade_file or os.path.isfile(os.path.join(path, cascade_file)):
    return "cascade"
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SUFFIX_FORMATS:
    raise ValueError("Cannot tell the artifact format of %r from its suffix; expected one "
                     "of %s, or pass fmt=." % (path, ", ".join(sorted(SUFFIX_FORMATS))))
  return SUFFIX_FORMATS[suffix]


def version_tuple(text: Optional[str]) -> Tuple[int, ...]:
  """(2022, 3, 0) from '2022.3.0-9052-9752fafe8eb-releases/2022/3' and the like."""
  out = []
  for part in str(text or "").replace("-", ".").split("."):
    digits = ""
    for ch in part:
      if not ch.isdigit():
        break
      digits += ch
    if not digits:
      break
    out.append(int(digits))
  return tuple(out[:3])


def choose_format(runtime_name: str, reads: Sequence[str],
                  device_versions: Optional[Mapping[str, Optional[str]]] = None,
                  host_versions: Optional[Mapping[str, Optional[str]]] = None) -> str:
  """The artifact format the host sends to ``runtime_name``.

  reads: formats the device's runtime reads (its capability answer).
  device_versions / host_versions: ``{package: version string}``; OpenVINO
  IR is sent only when the device's OpenVINO is at least the host's (an IR
  from a newer release may not load in an older one), else ONNX.
  Returns the format name; ValueError when no format fits.
  """
  spec = runtime(runtime_name)
  device_versions, host_versions = device_versions or {}, host_versions or {}
  for fmt in spec.formats:
    if fmt not in reads:
      continue
    if fmt == "openvino":
      dev = version_tuple(device_versions.get("openvino"))
      host = version_tuple(host_versions.get("openvino"))
      if not dev or not host or dev[:2] < host[:2]:
        continue
    if fmt == "tensorrt":
      continue  # engines are built on the device, never sent by a search
    return fmt
  raise ValueError("runtime=%s on the device reads %s; the host can send none of them "
                   "(it sends %s)." % (runtime_name, ", ".join(reads) or "nothing",
                                        ", ".join(f for f in spec.formats if f != "tensorrt")))


def onnx_opset(runtime_name: str, device_max_opset: Optional[int] = None) -> int:
  """The ONNX opset to export for ``runtime_name``: the registry's default,
  lowered to what the device says its runtime reads."""
  opset = runtime(runtime_name).max_onnx_opset or ONNX_OPSET
  if device_max_opset:
    opset = min(opset, int(device_max_opset))
  return opset
