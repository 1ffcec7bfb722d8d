"""ONNX Runtime: CPU here; CUDA (and TensorRT EP) where the GPU build exists.

``allow_spinning=False`` sets the session options
``session.intra_op.allow_spinning`` and ``session.inter_op.allow_spinning``
to 0: the session's pool threads then sleep after a run instead of
spin-waiting for more work. Use it when several sessions take turns on the
same cores (a cascade's stages, ``deploy.device.cascade_runner``): an idle session's
spinning threads otherwise take the cores from the one running.
"""

from typing import Any, Dict

import numpy as np

from .. import devices
from .. import errors
from . import base


SPINNING_ENTRIES = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


class OnnxRuntime(base.Runtime):
  name = "onnxruntime"

  def __init__(self, model_path: str, device: str = "cpu", intra_op_threads: int = 0,
               allow_spinning: bool = True) -> None:
    super(OnnxRuntime, self).__init__(model_path, device)
    ort = base.require("onnxruntime", "onnxruntime", self.name)
    if device not in devices.ONNXRUNTIME_PROVIDER:
      raise errors.invalid_value("device", "one of %s" % (sorted(devices.ONNXRUNTIME_PROVIDER),),
                                 device, where="with runtime=onnxruntime")
    wanted = [devices.ONNXRUNTIME_PROVIDER[device]]
    if wanted[0] != "CPUExecutionProvider":
      wanted.append("CPUExecutionProvider")
    available = ort.get_available_providers()
    if device != "cpu" and wanted[0] not in available:
      raise ValueError("device=%s needs %s, but this onnxruntime build has %s "
                       "(install onnxruntime-gpu)." % (device, wanted[0], available))
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(intra_op_threads)
    if not isinstance(allow_spinning, bool):
      raise errors.invalid_value("allow_spinning", "True or False", allow_spinning)
    self.allow_spinning = allow_spinning
    for entry in SPINNING_ENTRIES if not allow_spinning else ():
      options.add_session_config_entry(entry, "0")  # unset: ONNX Runtime's default, spinning
    try:
      self.session = ort.InferenceSession(model_path, options,
                                          providers=[p for p in wanted if p in available])
    except Exception as e:  # onnxruntime raises its own exception types
      raise base.ModelLoadError("onnxruntime cannot load %r as an ONNX model: %s"
                                % (model_path, e))
    inp = self.session.get_inputs()[0]
    self.input_name = inp.name
    self.input_shape = inp.shape
    batch = inp.shape[0]
    self.fixed_batch_size = batch if isinstance(batch, int) else None

  def predict(self, batch: Any) -> Any:
    return self.session.run(None, {self.input_name: np.asarray(batch, np.float32)})[0]

  def describe(self) -> Dict[str, Any]:
    out = super(OnnxRuntime, self).describe()
    out["providers"] = self.session.get_providers()
    out["allow_spinning"] = self.allow_spinning
    return out
