"""Tests of the fakes themselves: they keep the version contracts the
runtime tests rely on (wrong API fails loudly, EXPLICIT_BATCH, memory checks)."""

import ctypes
import os
import sys

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tests import fakes
from tests.deploy import tiny_model

_BINDING = ("num_bindings", "get_binding_shape", "get_profile_shape")
_NAMED = ("num_io_tensors", "get_tensor_name", "get_tensor_profile_shape")


def _engine(trt, onnx_path, flags):
  logger = trt.Logger()
  builder = trt.Builder(logger)
  network = builder.create_network(flags)
  parser = trt.OnnxParser(network, logger)
  with open(onnx_path, "rb") as f:
    parsed = parser.parse(f.read())
  if not parsed:
    return None, [str(parser.get_error(i)) for i in range(parser.num_errors)]
  config = builder.create_builder_config()
  profile = builder.create_optimization_profile()
  dims = list(network.get_input(0).shape)[1:]
  profile.set_shape(network.get_input(0).name, [1] + dims, [2] + dims, [2] + dims)
  config.add_optimization_profile(profile)
  plan = builder.build_serialized_network(network, config)
  return trt.Runtime(logger).deserialize_cuda_engine(plan), []


class GpuFakesTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.onnx = tiny_model.artifacts()["onnx"]

  @parameterized.named_parameters(("trt8_2", "8.2.1", True, False),
                                  ("trt8_6", "8.6.1", True, True),
                                  ("trt10_3", "10.3.0", False, True))
  def test_engine_api_families_follow_the_version(self, version, binding, named):
    with fakes.fake_gpu(version) as trt:
      engine, errors = _engine(trt, self.onnx, 1)
      self.assertEqual(errors, [])
      context = engine.create_execution_context()
      for name in _BINDING:
        self.assertEqual(hasattr(engine, name), binding, msg=name)
      for name in _NAMED:
        self.assertEqual(hasattr(engine, name), named, msg=name)
      self.assertEqual(hasattr(context, "execute_async_v2"), binding)
      self.assertEqual(hasattr(context, "execute_async_v3"), named)

  def test_tensorrt_8_parser_needs_explicit_batch(self):
    with fakes.fake_gpu("8.2.1") as trt:
      engine, errors = _engine(trt, self.onnx, 0)
    self.assertIsNone(engine)
    self.assertRegex(errors[0], "EXPLICIT_BATCH")

  def test_input_shape_outside_the_profile_is_refused(self):
    with fakes.fake_gpu("10.3.0") as trt:
      context = _engine(trt, self.onnx, 0)[0].create_execution_context()
      self.assertTrue(context.set_input_shape("images", (2, 32, 32, 3)))
      self.assertFalse(context.set_input_shape("images", (3, 32, 32, 3)))
      self.assertFalse(context.execute_async_v3(0))   # no tensor addresses set

  def test_cuda_copies_check_the_device_range(self):
    with fakes.fake_gpu() as trt:
      del trt
      from cuda import cudart
      from cuda.bindings import runtime
      self.assertIs(cudart.cudaMalloc, runtime.cudaMalloc)
      err, ptr = runtime.cudaMalloc(16)
      self.assertEqual(int(err), 0)
      host = np.arange(4, dtype=np.float32)
      h2d = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
      self.assertEqual(int(runtime.cudaMemcpy(ptr, host.ctypes.data, 16, h2d)[0]), 0)
      self.assertEqual(ctypes.string_at(ptr, 16), host.tobytes())
      self.assertEqual(runtime.cudaMemcpy(ptr + 8, host.ctypes.data, 16, h2d)[0],
                       runtime.cudaError_t.cudaErrorInvalidValue)
      self.assertEqual(int(runtime.cudaFree(ptr)[0]), 0)

  def test_calibrator_must_call_the_base_init_as_pybind_requires(self):
    with fakes.fake_gpu("8.2.1") as trt:

      class NoBase(trt.IInt8EntropyCalibrator2):
        def __init__(self):  # pylint: disable=super-init-not-called
          self.x = 1

      class WithBase(trt.IInt8EntropyCalibrator2):
        def __init__(self):
          trt.IInt8EntropyCalibrator2.__init__(self)

      with self.assertRaisesRegex(TypeError, "IInt8EntropyCalibrator2.__init__.. must be "
                                  "called when overriding __init__"):
        NoBase()
      self.assertEqual(WithBase().get_algorithm(),
                       trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2)
      config = trt.Builder(trt.Logger()).create_builder_config()
      with self.assertRaisesRegex(TypeError, "int8_calibrator: incompatible type"):
        config.int8_calibrator = object()

  def test_int8_build_without_calibrator_fails_like_tensorrt(self):
    with fakes.fake_gpu("10.3.0") as trt:
      logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
      builder = trt.Builder(logger)
      network = builder.create_network(0)
      parser = trt.OnnxParser(network, logger)
      with open(self.onnx, "rb") as f:
        self.assertTrue(parser.parse(f.read()))
      config = builder.create_builder_config()
      profile = builder.create_optimization_profile()
      dims = list(network.get_input(0).shape)[1:]
      profile.set_shape(network.get_input(0).name, [1] + dims, [2] + dims, [2] + dims)
      config.add_optimization_profile(profile)
      config.set_flag(trt.BuilderFlag.INT8)
      self.assertIsNone(builder.build_serialized_network(network, config))
      self.assertIn("no calibrator", logger.messages[-1][1])
      self.assertEqual(trt.BUILDS, 0)

  def test_fakes_leave_no_trace(self):
    before = list(sys.path)
    with fakes.fake_gpu("8.2.1", gpu_name="X"):
      self.assertEqual(os.environ["TEA_FAKE_GPU_NAME"], "X")
    self.assertEqual(sys.path, before)
    self.assertNotIn("tensorrt", sys.modules)
    self.assertNotIn("cuda", sys.modules)
    self.assertNotIn("TEA_FAKE_GPU_NAME", os.environ)


if __name__ == "__main__":
  tf.test.main()
