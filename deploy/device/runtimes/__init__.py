"""Inference runtimes behind one interface (``base.Runtime``).

Each module imports its vendor package lazily, so this package imports on a
device that has only one runtime. ``create(name, model_path, device)``.
The onnxruntime, openvino and tensorrt modules are device-side code
(Python 3.6 syntax, numpy + the runtime). The Keras runtime is host-side
(``deploy.keras_runtime``, it needs TensorFlow and ``tea_keras``): importing
it registers it here (``register``). A cascade directory is run by
``deploy.device.cascade_runner.CascadeRuntime`` (``device_main.build_runtime``
picks it), each of its stages loaded through ``create``.
"""

from typing import Any, Callable, Dict

from .. import devices
from .. import errors
from . import base
from . import onnxruntime_runtime
from . import openvino_runtime
from . import tensorrt_runtime

NAMES = tuple(devices.RUNTIMES)
# Runtimes that live outside the device package, registered by their module.
_REGISTERED = {}  # type: Dict[str, Callable[..., base.Runtime]]


def register(name: str, factory: Callable[..., base.Runtime]) -> None:
  """Makes ``create(name, ...)`` call ``factory(model_path, device, **kwargs)``
  (the host-side Keras runtime registers itself on import)."""
  if name not in NAMES:
    raise errors.invalid_value("name", "one of %s" % "|".join(NAMES), name)
  _REGISTERED[name] = factory


def create(name: str, model_path: str, device: str = "cpu", **kwargs: Any) -> base.Runtime:
  """A loaded ``Runtime`` for ``model_path`` on ``device``."""
  if name in _REGISTERED:
    return _REGISTERED[name](model_path, device, **kwargs)
  if name == "keras":
    raise ImportError("runtime=keras is host-side (TensorFlow and tea_keras): import "
                      "deploy.keras_runtime first, or measure with python -m deploy.measure.")
  if name == "onnxruntime":
    return onnxruntime_runtime.OnnxRuntime(model_path, device, **kwargs)
  if name == "openvino":
    return openvino_runtime.OpenVinoRuntime(model_path, device, **kwargs)
  if name == "tensorrt":
    return tensorrt_runtime.TensorRtRuntime(model_path, device, **kwargs)
  raise errors.invalid_value("runtime", "one of %s" % "|".join(NAMES), name)
