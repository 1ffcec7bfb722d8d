"""Tests of deploy/tensorrt_build.py around the fake TensorRT 8.2 / 10.3 of
tests/fakes/gpu_site (no GPU here); the real builder runs on the devices."""

import contextlib
import io
import json
import os
import tempfile
from unittest import mock

import tensorflow as tf
from absl.testing import parameterized

from deploy import runtimes
from deploy import tensorrt_build
from tests import fakes
from tests.deploy import tiny_model

VERSIONS = (("trt8_2", "8.2.1"), ("trt10_3", "10.3.0"))


class TensorRtBuildTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(dir=self.get_temp_dir())

  def _fake(self, version, **kwargs):
    return self.enter_context(fakes.fake_gpu(version, **kwargs))

  def _main(self, *argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      info = tensorrt_build.main(list(argv))
    self.assertEqual(json.loads(out.getvalue()), info)
    return info

  @parameterized.named_parameters(*VERSIONS)
  def test_main_builds_an_engine_file(self, version):
    trt = self._fake(version)
    engine = os.path.join(self.dir, "model.engine")
    info = self._main("--onnx=%s" % self.tiny["onnx"], "--engine=%s" % engine,
                      "--batch_size=8")
    self.assertEqual(trt.BUILDS, 1)
    self.assertEqual((info["builder"], info["tensorrt_version"], info["batch_size"]),
                     ("tensorrt-python", version, 8))
    self.assertEqual(os.listdir(self.dir), ["model.engine"])
    rt = runtimes.create("tensorrt", engine, "gpu")
    self.assertEqual(rt.max_batch, 8)
    x = self.tiny["images"][:8]
    self.assertAllClose(rt.predict(x), self.tiny["model"](x, training=False), atol=1e-3)

  def test_main_fp16_engine_is_close_to_keras(self):
    self._fake("10.3.0")
    engine = os.path.join(self.dir, "model.plan")
    info = self._main("--onnx=%s" % self.tiny["onnx"], "--engine=%s" % engine,
                      "--precision=fp16", "--batch_size=4")
    self.assertEqual(info["precision"], "fp16")
    x = self.tiny["images"][:4]
    rt = runtimes.create("tensorrt", engine, "gpu")
    self.assertAllClose(rt.predict(x), self.tiny["model"](x, training=False), atol=1e-2)

  def test_fp16_on_a_gpu_without_fast_fp16_is_refused(self):
    self._fake("8.2.1")
    self.enter_context(mock.patch.dict(os.environ, {"TEA_FAKE_TENSORRT_FAST_FP16": "0"}))
    with self.assertRaisesRegex(ValueError, "no fast FP16"):
      tensorrt_build.build_engine(self.tiny["onnx"], os.path.join(self.dir, "m.engine"),
                                  "fp16", batch_size=4)
    self.assertEqual(os.listdir(self.dir), [])

  @parameterized.named_parameters(*VERSIONS)
  def test_workspace_limit_uses_the_version_api(self, version):
    trt = self._fake(version)
    config = trt.Builder(trt.Logger()).create_builder_config()
    tensorrt_build._set_workspace(trt, config, 1 << 20)
    if version.startswith("8.2"):
      self.assertEqual(config.max_workspace_size, 1 << 20)
      self.assertEqual(tensorrt_build._network_flags(trt), 1)   # EXPLICIT_BATCH
    else:
      self.assertEqual(config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE), 1 << 20)
      self.assertEqual(tensorrt_build._network_flags(trt), 0)
      with self.assertRaises(AttributeError):
        config.max_workspace_size = 1

  def test_unparsable_onnx_reports_the_parser_errors(self):
    trt = self._fake("10.3.0")
    with self.assertRaisesRegex(ValueError, "TensorRT 10.3.0 cannot parse junk.onnx: In node"):
      tensorrt_build.build_serialized(trt, b"\x08\x07junk", source="junk.onnx")

  def test_build_engine_checks_its_arguments(self):
    with self.assertRaisesRegex(ValueError, "ONNX file .*missing.onnx' does not exist"):
      tensorrt_build.build_engine(os.path.join(self.dir, "missing.onnx"), "m.engine")
    with self.assertRaisesRegex(ValueError, "`batch_size`. Expected a positive integer. "
                                "Received batch_size=0"):
      tensorrt_build.build_engine(self.tiny["onnx"], "m.engine", batch_size=0)

  def test_write_atomic_replaces_and_leaves_no_temporary_file(self):
    path = os.path.join(self.dir, "sub", "e.engine")
    tensorrt_build.write_atomic(path, b"old")
    tensorrt_build.write_atomic(path, b"new")
    with open(path, "rb") as f:
      self.assertEqual(f.read(), b"new")
    self.assertEqual(os.listdir(os.path.dirname(path)), ["e.engine"])


if __name__ == "__main__":
  tf.test.main()
