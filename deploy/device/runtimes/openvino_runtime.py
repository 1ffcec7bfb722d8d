"""OpenVINO: CPU here; MYRIAD (NCS2, OpenVINO <= 2022.3), NPU or GPU where
the plugin exists. Reads IR (.xml + .bin) or ONNX directly. Works with the
2022.x API (``openvino.runtime``) and the 2023+ one (``openvino``)."""

from typing import Any, Dict, Optional

import numpy as np

from .. import devices
from .. import errors
from . import base


def _core() -> Any:
  try:
    # vendor runtime: optional, imported only on a machine that has it.
    from openvino import Core   # 2023.1+
  except ImportError:
    try:
      from openvino.runtime import Core   # 2022.1 - 2022.3
    except ImportError as e:
      raise ImportError("runtime=openvino needs OpenVINO (%s): pip install openvino, "
                        "or openvino==2022.3.* for the MYRIAD (NCS2) plugin." % e)
  return Core()


class OpenVinoRuntime(base.Runtime):
  name = "openvino"

  def __init__(self, model_path: str, device: str = "cpu", ov_device: Optional[str] = None,
               num_streams: Optional[int] = None, static_batch: Optional[int] = None,
               inference_precision: Optional[str] = "auto") -> None:
    """``static_batch``: reshape a dynamic-batch model to this batch before
    compiling (MYRIAD needs static shapes). ``inference_precision``: the
    plugin's INFERENCE_PRECISION_HINT; "auto" means f32 on CPU (the CPU plugin
    otherwise runs bf16 on AMX/AVX512-BF16 CPUs, 1e-2 logit error) and the
    plugin default elsewhere; None always means the plugin default."""
    super(OpenVinoRuntime, self).__init__(model_path, device)
    core = _core()
    self.ov_device = ov_device or devices.OPENVINO_DEVICE.get(device)
    if self.ov_device is None:
      raise errors.invalid_value("device",
                                 "one of %s (or pass ov_device)"
                                 % (sorted(devices.OPENVINO_DEVICE),), device,
                                 where="with runtime=openvino")
    if self.ov_device.split(".")[0] not in [d.split(".")[0] for d in core.available_devices]:
      raise ValueError("OpenVINO device %s is not available here; available: %s. "
                       "(MYRIAD needs OpenVINO <= 2022.3 and a plugged-in NCS2.)"
                       % (self.ov_device, core.available_devices))
    config = {}
    if num_streams is not None:
      config["NUM_STREAMS"] = str(num_streams)
    if inference_precision == "auto":
      inference_precision = "f32" if self.ov_device == "CPU" else None
    if inference_precision:
      config["INFERENCE_PRECISION_HINT"] = inference_precision
    self.inference_precision = inference_precision
    try:
      model = core.read_model(model_path)
      if static_batch:
        dims = list(model.inputs[0].get_partial_shape())[1:]
        shape = [int(static_batch)] + [d.get_length() for d in dims]
        model.reshape({model.inputs[0].get_any_name(): shape})
      self.compiled = core.compile_model(model, self.ov_device, config)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses
      raise base.ModelLoadError("OpenVINO cannot load %r: %s" % (model_path, e))
    self.request = self.compiled.create_infer_request()
    shape = self.compiled.inputs[0].get_partial_shape()
    self.fixed_batch_size = shape[0].get_length() if shape[0].is_static else None

  def predict(self, batch: Any) -> Any:
    self.request.infer([np.asarray(batch, np.float32)])
    return np.array(self.request.get_output_tensor(0).data, copy=True)

  def describe(self) -> Dict[str, Any]:
    out = super(OpenVinoRuntime, self).describe()
    out["ov_device"] = self.ov_device
    out["inference_precision"] = self.inference_precision
    return out
