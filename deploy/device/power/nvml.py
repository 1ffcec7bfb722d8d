"""NVIDIA GPU power through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Readings, in order of preference:

* ``nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)`` (mW): instantaneous
  board power, exposed by recent drivers (R535+) on recent GPUs;
* ``nvmlDeviceGetPowerUsage`` (mW) otherwise. **Pitfall:** on Ampere and newer
  GPUs (A100, H100, RTX 30xx+) this is a 1-second moving average, not an
  instantaneous value (NVIDIA's nvidia-smi docs, "power.draw.average" vs
  "power.draw.instant"), which smears the edges of the working span by ~1 s
  and biases short measurements. The result then carries
  ``power_averaging_s = 1.0`` and a warning; measure long runs (>> 1 s) and
  give the trace idle padding of several seconds.

Cross-check: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load)
exists on Volta and newer; the paper's TITAN X (Maxwell/Pascal) has none,
so ``energy_counter_j`` returns None there.
"""

from typing import Any, Callable, Dict, List, Optional

from . import base

_FIELD_POWER_INSTANT = 186   # NVML_FI_DEV_POWER_INSTANT (nvml.h, R535+)
_ARCH_VOLTA = 5              # NVML_DEVICE_ARCH_VOLTA
_ARCH_AMPERE = 7             # NVML_DEVICE_ARCH_AMPERE


def _import_pynvml() -> Any:
  try:
    # NVML: optional, imported only on a machine with an NVIDIA GPU.
    import pynvml
  except ImportError:
    raise ImportError("power_source=nvml needs NVML's Python bindings: "
                      "pip install nvidia-ml-py (the module is `pynvml`).")
  return pynvml


class NvmlPower(base.PowerSource):
  """Board power of GPU ``device_index``."""

  name = "nvml"

  def __init__(self, device_index: int = 0) -> None:
    self._nvml = _import_pynvml()
    nv = self._nvml
    try:
      nv.nvmlInit()
      self._handle = nv.nvmlDeviceGetHandleByIndex(int(device_index))
    except nv.NVMLError as e:
      raise base.PowerSourceError("NVML could not open GPU %r: %s (is the NVIDIA "
                                  "driver loaded and the index valid?)" % (device_index, e))
    self.device_index = int(device_index)
    self.gpu_name = _to_str(nv.nvmlDeviceGetName(self._handle))
    self.architecture = self._query(nv.nvmlDeviceGetArchitecture)
    self.instant = self._read_instant_mw() is not None
    self.has_counter = self._query(nv.nvmlDeviceGetTotalEnergyConsumption) is not None

  def _query(self, fn: Callable[[Any], Any]) -> Any:
    try:
      return fn(self._handle)
    except self._nvml.NVMLError:
      return None

  def _read_instant_mw(self) -> Optional[float]:
    nv = self._nvml
    try:
      values = nv.nvmlDeviceGetFieldValues(self._handle, [_FIELD_POWER_INSTANT])
    except (nv.NVMLError, AttributeError):
      return None
    value = values[0]
    if value.nvmlReturn != 0:
      return None
    return float(value.value.uiVal)

  def read_w(self) -> float:
    if self.instant:
      mw = self._read_instant_mw()
      if mw is not None:
        return mw / 1000.0
    try:
      return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
    except self._nvml.NVMLError as e:
      raise base.PowerSourceError("nvmlDeviceGetPowerUsage failed on GPU %d (%s): %s"
                                  % (self.device_index, self.gpu_name, e))

  def energy_counter_j(self) -> Optional[float]:
    if not self.has_counter:
      return None
    mj = self._query(self._nvml.nvmlDeviceGetTotalEnergyConsumption)
    return None if mj is None else mj / 1000.0

  @property
  def averaging_window_s(self) -> float:
    if self.instant:
      return 0.0
    if self.architecture is not None and self.architecture >= _ARCH_AMPERE:
      return 1.0
    return 0.0

  def describe(self) -> Dict[str, Any]:
    return {"power_source": self.name, "gpu": self.gpu_name,
            "device_index": self.device_index, "architecture": self.architecture,
            "reading": "instant_field" if self.instant else "power_usage",
            "energy_counter": self.has_counter}

  def warnings(self) -> List[str]:
    out = []
    if self.averaging_window_s > 0:
      out.append("nvml: %s reports power averaged over ~%.0f s "
                 "(nvmlDeviceGetPowerUsage on Ampere+); span edges are smeared, "
                 "use long runs and several seconds of idle padding."
                 % (self.gpu_name, self.averaging_window_s))
    if not self.has_counter:
      out.append("nvml: %s has no total-energy counter (pre-Volta); the integral "
                 "is not cross-checked." % self.gpu_name)
    return out

  def close(self) -> None:
    try:
      self._nvml.nvmlShutdown()
    except self._nvml.NVMLError:
      pass


def _to_str(name: Any) -> str:
  return str(name, "utf-8") if isinstance(name, bytes) else str(name)
