"""Tests of deploy/device/runtimes/onnxruntime_runtime.py on a real tiny export."""

import os

import tensorflow as tf

from deploy.device import runtimes
from deploy.device.runtimes import base
from tests.deploy import tiny_model


class OnnxRuntimeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def test_predict_matches_keras_for_any_batch(self):
    rt = runtimes.create("onnxruntime", self.tiny["onnx"], "cpu")
    self.assertIsNone(rt.fixed_batch_size)
    for n in (1, 7, 32):
      x = self.tiny["images"][:n]
      out = rt.predict(x)
      self.assertEqual(out.shape, (n, 10))
      self.assertAllClose(out, self.tiny["model"](x, training=False), atol=1e-4)
    self.assertEqual(rt.describe()["providers"], ["CPUExecutionProvider"])

  def test_allow_spinning_false_turns_both_pools_off(self):
    entries = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
    quiet = runtimes.create("onnxruntime", self.tiny["onnx"], "cpu", allow_spinning=False)
    options = quiet.session.get_session_options()
    self.assertEqual([options.get_session_config_entry(e) for e in entries], ["0", "0"])
    self.assertFalse(quiet.describe()["allow_spinning"])
    x = self.tiny["images"][:7]
    default = runtimes.create("onnxruntime", self.tiny["onnx"], "cpu")
    self.assertTrue(default.describe()["allow_spinning"])
    self.assertAllClose(quiet.predict(x), default.predict(x), atol=1e-6)
    with self.assertRaisesRegex(ValueError, "`allow_spinning`. Expected True or False. "
                                "Received allow_spinning=0"):
      runtimes.create("onnxruntime", self.tiny["onnx"], "cpu", allow_spinning=0)

  def test_corrupt_model_is_a_model_load_error(self):
    path = os.path.join(self.get_temp_dir(), "corrupt.onnx")
    with open(path, "wb") as f:
      f.write(b"\x08\x07garbage" * 10)
    with self.assertRaisesRegex(base.ModelLoadError, "cannot load .*corrupt.onnx"):
      runtimes.create("onnxruntime", path, "cpu")
    with self.assertRaisesRegex(base.ModelLoadError, "does not exist"):
      runtimes.create("onnxruntime", path + ".missing", "cpu")

  def test_gpu_without_cuda_provider_says_so(self):
    with self.assertRaisesRegex(ValueError, "CUDAExecutionProvider"):
      runtimes.create("onnxruntime", self.tiny["onnx"], "gpu")

  def test_unknown_runtime_lists_names(self):
    with self.assertRaisesRegex(ValueError, "onnxruntime\\|openvino\\|tensorrt\\|keras"):
      runtimes.create("tflite", self.tiny["onnx"])


if __name__ == "__main__":
  tf.test.main()
