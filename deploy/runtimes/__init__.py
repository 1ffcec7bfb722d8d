"""Inference runtimes behind one interface (``base.Runtime``).

Each module imports its vendor package lazily, so this package imports on a
device that has only one runtime. ``create(name, model_path, device)``;
a cascade directory (``deploy.cascade``) is a model too: each of its stages
is loaded by runtime ``name``.
The onnxruntime, openvino and tensorrt modules are device-side code
(Python 3.6 syntax, numpy + the runtime); keras_runtime is host-side.
"""

from deploy import devices

NAMES = tuple(devices.RUNTIMES)


def create(name, model_path, device="cpu", **kwargs):
  """A loaded ``Runtime`` for ``model_path`` on ``device`` (a
  ``deploy.cascade.CascadeRuntime`` for a cascade directory or cascade.json)."""
  from deploy import cascade
  if name in NAMES and cascade.is_cascade(model_path):
    return cascade.CascadeRuntime(model_path, device, runtime=name, **kwargs)
  if name == "keras":
    from deploy.runtimes import keras_runtime
    return keras_runtime.KerasRuntime(model_path, device, **kwargs)
  if name == "onnxruntime":
    from deploy.runtimes import onnxruntime_runtime
    return onnxruntime_runtime.OnnxRuntime(model_path, device, **kwargs)
  if name == "openvino":
    from deploy.runtimes import openvino_runtime
    return openvino_runtime.OpenVinoRuntime(model_path, device, **kwargs)
  if name == "tensorrt":
    from deploy.runtimes import tensorrt_runtime
    return tensorrt_runtime.TensorRtRuntime(model_path, device, **kwargs)
  raise ValueError("Invalid value for argument `runtime`. Expected one of %s. "
                   "Received runtime=%r" % ("|".join(NAMES), name))
