"""Tests of deploy/device/runtimes/openvino_runtime.py (OpenVINO CPU, real)."""

import os

import tensorflow as tf

from deploy.device import runtimes
from deploy.device.runtimes import base
from tests.deploy import tiny_model


class OpenVinoRuntimeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def test_reads_onnx_directly_with_f32_precision_on_cpu(self):
    rt = runtimes.create("openvino", self.tiny["onnx"], "cpu")
    x = self.tiny["images"][:16]
    self.assertAllClose(rt.predict(x), self.tiny["model"](x, training=False), atol=1e-3)
    self.assertEqual(rt.describe()["inference_precision"], "f32")
    self.assertIsNone(rt.fixed_batch_size)

  def test_static_batch_reshapes_like_myriad(self):
    rt = runtimes.create("openvino", self.tiny["onnx"], "cpu", static_batch=8)
    self.assertEqual(rt.fixed_batch_size, 8)
    self.assertEqual(rt.predict(self.tiny["images"][:8]).shape, (8, 10))

  def test_missing_plugin_names_available_devices(self):
    with self.assertRaisesRegex(ValueError, "MYRIAD is not available here.*CPU"):
      runtimes.create("openvino", self.tiny["onnx"], "myriad")

  def test_corrupt_ir_is_a_model_load_error(self):
    path = os.path.join(self.get_temp_dir(), "bad.xml")
    with open(path, "w") as f:
      f.write("<net><layers>")
    with self.assertRaisesRegex(base.ModelLoadError, "OpenVINO cannot load"):
      runtimes.create("openvino", path, "cpu")


if __name__ == "__main__":
  tf.test.main()
