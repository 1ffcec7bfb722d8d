"""What this machine can really measure: runtimes, formats, power sources.

``probe(device, power_source, power_options)`` imports each runtime the
device kind lists in ``deploy.device.devices`` and asks it what it has, instead of
assuming it from the registry:

* onnxruntime: its version and ``get_available_providers()``; a GPU/Jetson
  needs ``CUDAExecutionProvider`` (the CPU wheel lacks it);
* openvino: its version, ``Core().available_devices`` and the device's
  ``OPTIMIZATION_CAPABILITIES``; MYRIAD needs the 2022.3 release (the last
  with that plugin) and a plugged-in stick, and computes in FP16 only;
* tensorrt: importable, its version, a CUDA memory library (pycuda or
  cuda-python) for the runtime's buffers, the GPU's name and whether its
  builder has fast FP16 and INT8 (``platform_has_fast_fp16/int8``: a Jetson
  TX2 has no fast INT8, a Pascal TITAN X no fast FP16);
* keras: importable (host only).

Each runtime's answer names the ``precisions`` (``deploy.device.devices.PRECISIONS``)
it can deploy here, so that a search refuses one the target cannot run
before any training (``deploy.target``).

and reads one sample of the power source (``auto``: the first of the kind's
sources that reads). The answer is a JSON-able dict; the agent serves it on
``/v1/health`` and the host runs the same probe for a local device, so a
search knows before its first trial whether the target can measure it
(``deploy.target``).

Device-side module: Python 3.6 syntax, standard library (+ the runtimes).
"""

import platform
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import cuda_memory as cuda_memory_lib
from . import devices
from . import power as power_lib


def _error(e: BaseException) -> str:
  return "%s: %s" % (type(e).__name__, e)


# A one-node ONNX model (y = Relu(x), opset 13), so that the probe can open a
# real session on the provider without the onnx package on the device.
_PROBE_MODEL = (b'\x08\x07:7\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x05probeZ\x0f\n\x01x\x12\n'
                b'\n\x08\x08\x01\x12\x04\n\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04'
                b'\n\x02\x08\x01B\x04\n\x00\x10\r')


def _registry_precisions(name: str) -> List[str]:
  """The precisions the registry knows how to deploy with runtime ``name``."""
  return [p for p, spec in devices.PRECISIONS.items() if name in spec.conversion]


def _probe_onnxruntime(kind: str) -> Dict[str, Any]:
  # vendor runtime: optional, probed only on a machine that has it.
  import onnxruntime as ort
  providers = list(ort.get_available_providers())
  need = devices.ONNXRUNTIME_PROVIDER.get(kind)
  out = {"version": ort.__version__, "providers": providers,
         "precisions": _registry_precisions("onnxruntime")}
  if need not in providers:
    hint = ("install the CUDA build of ONNX Runtime (pip install 'tea-keras[gpu]', i.e. "
            "onnxruntime-gpu, in place of onnxruntime; on a Jetson the wheel from NVIDIA's "
            "Jetson Zoo)" if need == "CUDAExecutionProvider" else "reinstall onnxruntime")
    out["error"] = "onnxruntime %s has providers %s, not %s: %s." % (
        ort.__version__, providers, need, hint)
    return out
  # A listed provider can still fail to start (CUDA or cuDNN libraries missing):
  # ONNX Runtime then falls back to the CPU with a warning. Open a real session.
  fallback = [] if need == "CPUExecutionProvider" else ["CPUExecutionProvider"]
  session = ort.InferenceSession(_PROBE_MODEL, providers=[need] + fallback)
  started = session.get_providers()
  if not started or started[0] != need:
    out["error"] = ("onnxruntime lists %s but a session on it started only %s (are the CUDA "
                    "and cuDNN libraries that onnxruntime-gpu %s needs installed?)."
                    % (need, started, ort.__version__))
  return out


def _openvino_core() -> Tuple[Any, str]:
  try:
    # vendor runtime: optional, imported only on a machine that has it.
    import openvino as ov
    core_cls = ov.Core
  except (ImportError, AttributeError):
    from openvino.runtime import Core as core_cls  # type: ignore[no-redef]  # 2022.x
  try:
    from openvino import get_version
  except ImportError:
    from openvino.runtime import get_version
  return core_cls(), get_version()


def openvino_precisions(capabilities: Optional[Sequence[str]]) -> Tuple[List[str], Optional[str]]:
  """(precisions deployable, compute note) from a device's
  ``OPTIMIZATION_CAPABILITIES`` (None: unknown, the registry's). A device
  that computes in FP16 only (MYRIAD: ``["FP16", ...]``) runs an fp32
  artifact in FP16; INT8 needs the ``INT8`` capability."""
  registry = _registry_precisions("openvino")
  if capabilities is None:
    return registry, None
  caps = set(str(c).upper() for c in capabilities)
  out = [p for p in registry if (p == "int8" and "INT8" in caps) or
         (p != "int8" and caps & set(["FP32", "FP16"]))]
  note = ("computes in FP16 only: an fp32 artifact runs in FP16 there"
          if "FP16" in caps and "FP32" not in caps else None)
  return out, note


def _probe_openvino(kind: str) -> Dict[str, Any]:
  core, version = _openvino_core()
  available = list(core.available_devices)
  need = devices.OPENVINO_DEVICE.get(kind)
  out = {"version": version, "devices": available, "precisions": []}  # type: Dict[str, Any]
  if need is None or need not in [d.split(".")[0] for d in available]:
    hint = ""
    if kind == "myriad":
      hint = (" The MYRIAD plugin exists only up to OpenVINO 2022.3 (pip install "
              "'openvino==2022.3.*' on Python <= 3.10) and needs the stick plugged in "
              "with its udev rules (deploy/README.md).")
    out["error"] = "OpenVINO %s sees devices %s, not %s.%s" % (version, available, need, hint)
    return out
  try:
    caps = list(core.get_property(need, "OPTIMIZATION_CAPABILITIES"))  # type: Optional[List[Any]]
  except Exception:  # pylint: disable=broad-except  (a plugin without the property)
    caps = None
  out["optimization_capabilities"] = caps
  out["precisions"], out["compute_note"] = openvino_precisions(caps)
  return out


def _probe_tensorrt(kind: str) -> Dict[str, Any]:
  del kind
  # vendor runtime: optional, imported only on a machine that has it.
  import tensorrt as trt
  out = {"version": trt.__version__, "precisions": []}
  try:
    memory = cuda_memory_lib.cuda_memory()
  except ImportError as e:
    out["error"] = str(e)
    return out
  try:
    with memory.active():
      builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
      fast = {"fp16": bool(builder.platform_has_fast_fp16),
              "int8": bool(builder.platform_has_fast_int8)}
    out["gpu"] = memory.device_name()
  finally:
    memory.close()
  out["fast"] = fast
  out["precisions"] = ["fp32"] + [p for p in ("fp16", "int8") if fast[p]]
  return out


def _probe_keras(kind: str) -> Dict[str, Any]:
  del kind
  # Keras: heavy, imported only when this runs.
  import keras
  return {"version": keras.__version__, "precisions": ["fp32"]}


_PROBES = {"onnxruntime": _probe_onnxruntime, "openvino": _probe_openvino,
           "tensorrt": _probe_tensorrt, "keras": _probe_keras}


def probe_runtime(kind: str, name: str) -> Dict[str, Any]:
  """``{"available", "version", "reads", "max_onnx_opset", "precisions",
  "error", ...}``."""
  spec = devices.runtime(name)
  out = {"available": False, "reads": list(spec.formats), "max_onnx_opset": spec.max_onnx_opset,
         "version": None, "error": None, "precisions": []}
  try:
    out.update(_PROBES[name](kind))
  except ImportError as e:
    out["error"] = ("runtime=%s is not installed here (%s): pip install %s."
                    % (name, _error(e), spec.pip))
  except Exception as e:  # pylint: disable=broad-except  (a broken install says why)
    out["error"] = "runtime=%s failed to start: %s" % (name, _error(e))
  out["available"] = out["error"] is None
  return out


def probe_power(kind: str, power_source: str,
                power_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """``{"name", "requested", "readable", "error", "tried"}``: ``auto`` takes the
  kind's first readable source, else ``none``."""
  names = list(devices.device(kind).power_sources) if power_source == devices.AUTO \
      else [power_source]
  tried = {}  # type: Dict[str, Optional[str]]
  for name in names:
    try:
      source = power_lib.create(name, **devices.power_options_for(name, power_options))
      try:
        if getattr(source, "polled", True):
          source.read_sample()
        else:  # a log source (USB meter CSV, serial): it must parse
          source.trace_between(0.0, 1e12)
      finally:
        close = getattr(source, "close", None)
        if close:
          close()
      return {"name": name, "requested": power_source, "readable": True, "error": None,
              "tried": tried}
    except Exception as e:  # pylint: disable=broad-except  (unreadable: say why)
      tried[name] = _error(e)
  return {"name": names[-1], "requested": power_source, "readable": False,
          "error": tried.get(names[-1]), "tried": tried}


def probe(kind: str, power_source: str = devices.AUTO,
          power_options: Optional[Dict[str, Any]] = None,
          runtimes: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Everything the host needs to know about this measuring machine.

  runtimes: the runtimes to probe (default: every runtime of the kind; a
  local search probes only the one it will use, so that it imports no
  runtime it does not need).
  """
  spec = devices.device(kind)
  names = spec.runtimes if runtimes is None else [r for r in spec.runtimes if r in runtimes]
  return {
      "device": kind,
      "runtimes": dict((name, probe_runtime(kind, name)) for name in names),
      "power": probe_power(kind, power_source, power_options),
      "paper_threshold_w": spec.paper_threshold_w,
      "python": platform.python_version(),
      "platform": "%s %s" % (platform.system(), platform.machine()),
      "argv0": sys.argv[0] if sys.argv else None,
  }
