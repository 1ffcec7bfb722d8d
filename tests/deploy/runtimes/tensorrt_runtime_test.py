"""Tests of deploy/runtimes/tensorrt_runtime.py: need TensorRT and a CUDA
GPU, which the development machine does not have (skipped with the reason)."""

import os

import tensorflow as tf

from deploy import runtimes
from deploy import tensorrt_build
from tests.deploy import tiny_model


def _tensorrt_missing():
  try:
    import tensorrt  # noqa: F401
  except ImportError as e:
    return "TensorRT is not installed here (%s)" % e
  return None


class TensorRtRuntimeTest(tf.test.TestCase):

  def test_engine_round_trip_matches_keras(self):
    reason = _tensorrt_missing()
    if reason:
      self.skipTest(reason)
    tiny = tiny_model.artifacts()
    engine = os.path.join(self.get_temp_dir(), "m.engine")
    tensorrt_build.build_engine(tiny["onnx"], engine, "fp32", batch_size=16)
    rt = runtimes.create("tensorrt", engine, "gpu")
    x = tiny["images"][:16]
    self.assertAllClose(rt.predict(x), tiny["model"](x, training=False), atol=1e-3)

  def test_missing_tensorrt_is_an_actionable_import_error(self):
    if not _tensorrt_missing():
      self.skipTest("TensorRT is installed here")
    path = os.path.join(self.get_temp_dir(), "x.engine")
    open(path, "wb").close()
    with self.assertRaisesRegex(ImportError, "runtime=tensorrt needs the `tensorrt`"):
      runtimes.create("tensorrt", path, "gpu")

  def test_build_engine_rejects_bad_precision(self):
    with self.assertRaisesRegex(ValueError, "fp32 or fp16"):
      tensorrt_build.build_engine("m.onnx", "m.engine", "int4")


if __name__ == "__main__":
  tf.test.main()
