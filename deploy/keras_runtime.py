"""Keras/TensorFlow runtime (host side): a ``.keras`` model through
``tea_keras.network.load_model`` or a SavedModel directory (``serve``)."""

from __future__ import annotations

import os

import numpy as np

from deploy.device import runtimes
from deploy.device.runtimes import base
from tea_keras import errors


class KerasRuntime(base.Runtime):
  name = "keras"

  def __init__(self, model_path: str, device: str = "cpu") -> None:
    super().__init__(model_path, device)
    if device not in ("cpu", "gpu"):
      raise errors.invalid_value("device", "cpu or gpu", device, where="with runtime=keras")
    import tensorflow as tf
    self._tf = tf
    self._device = "/GPU:0" if device == "gpu" else "/CPU:0"
    try:
      if os.path.isdir(model_path):
        loaded = tf.saved_model.load(model_path)
        self._fn = loaded.serve if hasattr(loaded, "serve") else \
            loaded.signatures["serving_default"]
        self._saved = loaded
      else:
        from tea_keras import network  # (Keras: loaded only with the model)
        model = network.load_model(model_path)
        self._fn = tf.function(lambda x: model(x, training=False), jit_compile=False)
        self.model = model
    except Exception as e:  # zip, h5, deserialization errors of many types
      raise base.ModelLoadError("Keras/TF cannot load %r: %s" % (model_path, e))

  def predict(self, batch: np.ndarray) -> np.ndarray:
    with self._tf.device(self._device):
      out = self._fn(self._tf.constant(np.asarray(batch, np.float32)))
    if isinstance(out, dict):
      out = list(out.values())[0]
    return out.numpy()


runtimes.register(KerasRuntime.name, KerasRuntime)
