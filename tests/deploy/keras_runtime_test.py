"""Tests of deploy/keras_runtime.py."""

import os

import tensorflow as tf

from deploy.device import runtimes
from deploy.device.runtimes import base
from tests.deploy import tiny_model


class KerasRuntimeTest(tf.test.TestCase):

  def test_loads_keras_file_and_predicts(self):
    tiny = tiny_model.artifacts()
    rt = runtimes.create("keras", tiny["keras"], "cpu")
    x = tiny["images"][:4]
    self.assertAllClose(rt.predict(x), tiny["model"](x, training=False), atol=1e-5)

  def test_corrupt_keras_file_is_a_model_load_error(self):
    path = os.path.join(self.get_temp_dir(), "bad.keras")
    with open(path, "wb") as f:
      f.write(b"not a zip")
    with self.assertRaisesRegex(base.ModelLoadError, "Keras/TF cannot load"):
      runtimes.create("keras", path, "cpu")


if __name__ == "__main__":
  tf.test.main()
