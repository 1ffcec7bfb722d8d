"""A tiny TEA network and its exports, built once per test process."""

import atexit
import os
import shutil
import tempfile

import numpy as np

_CACHE = {}


def artifacts():
  """dict: dir, keras (model.keras path), onnx, xml, images (float32, 64),
  model (the keras.Model). Built on first use (about 15 s on 2 cores)."""
  if _CACHE:
    return _CACHE
  from deploy import export
  from tea_keras import data
  from tea_keras import network
  from tea_keras import space
  root = tempfile.mkdtemp(prefix="tea-deploy-test-")
  atexit.register(shutil.rmtree, root, True)
  model = network.build_network(space.resolve("random", 3), num_cells=1, filters=4)
  keras_path = os.path.join(root, "model.keras")
  model.save(keras_path)
  images = data.normalize(data.load("cifar10_sample").x_val[:64])
  onnx_path = os.path.join(root, "model.onnx")
  export.export_model(model, "onnx", onnx_path, check_images=images[:8])
  _CACHE.update(dir=root, keras=keras_path, onnx=onnx_path, model=model,
                images=np.ascontiguousarray(images))
  return _CACHE
