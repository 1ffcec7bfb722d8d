"""The ``Runtime`` interface: load a model file once, run batches.

``predict`` takes a float32 NHWC batch of normalized images and returns the
logits as a numpy array, *synchronously* (the output is on the host when it
returns), so that timing the loop of ``predict`` calls times the inference.
"""

import abc
import importlib
import os
from typing import Any, Dict, Optional


class ModelLoadError(ValueError):
  """The model file is missing, corrupt or not what the runtime reads."""


class Runtime(abc.ABC):
  name = "base"
  #: batch size the model was compiled for, or None when any batch works
  fixed_batch_size = None  # type: Optional[int]

  def __init__(self, model_path: str, device: str = "cpu") -> None:
    if not os.path.exists(model_path):
      raise ModelLoadError("Model file %r does not exist." % (model_path,))
    self.model_path, self.device = model_path, device

  @abc.abstractmethod
  def predict(self, batch: Any) -> Any:
    """Logits for ``batch`` (float32, NHWC) as a numpy array."""

  def describe(self) -> Dict[str, Any]:
    return {"runtime": self.name, "model": os.path.basename(self.model_path),
            "device": self.device}

  def close(self) -> None:
    """Free the session/engine."""


def require(module_name: str, pip_name: str, runtime: str) -> Any:
  """Import a vendor module or raise an ImportError saying how to get it."""
  try:
    return importlib.import_module(module_name)
  except ImportError as e:
    raise ImportError("runtime=%s needs the `%s` package (%s): pip install %s, or use "
                      "the device's own build (JetPack, OpenVINO installer)."
                      % (runtime, module_name, e, pip_name))
