"""Tests of deploy/device/tensorrt_build.py around the fake TensorRT 8.2 / 10.3 of
tests/fakes/gpu_site (no GPU here); the real builder runs on the devices."""

import contextlib
import io
import json
import os
import stat
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from deploy.device import runtimes
from deploy.device import tensorrt_build
from tests import fakes
from tests.deploy import tiny_model

VERSIONS = (("trt8_2", "8.2.1"), ("trt10_3", "10.3.0"))
#: a board with fast INT8 for each version (8.2.1's default, the TX2, has none)
INT8_BOARD = {"8.2.1": "jetson_xavier", "10.3.0": "gpu_server"}


def quantize_input(x, amax):
  """NumPy reference of TensorRT's symmetric int8 input quantization
  (scale amax / 127, round to nearest even, clip to [-127, 127])."""
  scale = np.float32(amax) / np.float32(127.0)
  return (np.clip(np.round(x / scale), -127, 127) * scale).astype(np.float32)


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

  @parameterized.named_parameters(*VERSIONS)
  def test_main_int8_calibrates_writes_the_cache_and_reuses_it(self, version):
    trt = self._fake(version, board=INT8_BOARD[version])
    calib = self.tiny["images"][:40]
    calib_path, cache = os.path.join(self.dir, "calib.npy"), os.path.join(self.dir, "c.cache")
    np.save(calib_path, calib)
    engine = os.path.join(self.dir, "int8.engine")
    with mock.patch.object(tensorrt_build, "CALIBRATION_BATCH_SIZE", 16):
      info = self._main("--onnx=%s" % self.tiny["onnx"], "--engine=%s" % engine,
                        "--precision=int8", "--batch_size=16", "--calibration=" + calib_path,
                        "--calibration_cache=" + cache)
    # 40 images in batches of 16: floor(40 / 16) = 2 batches, the last 8 unused
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (1, 2))
    self.assertEqual((info["precision"], info["calibration_images"]), ("int8", 40))
    self.assertTrue(os.path.exists(cache))
    # a rebuild from the cache alone (or with images) reads no batch
    again = tensorrt_build.build_serialized(trt, open(self.tiny["onnx"], "rb").read(),
                                            "int8", 16, calibration_cache=cache)
    tensorrt_build.build_serialized(trt, open(self.tiny["onnx"], "rb").read(), "int8", 16,
                                    calibration_images=calib, calibration_cache=cache)
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (3, 2))
    from_cache = os.path.join(self.dir, "from_cache.engine")
    tensorrt_build.write_atomic(from_cache, again)
    # independent reference: Keras on the input quantized by NumPy with the amax
    # of the images the calibrator fed (the first 32)
    amax = float(np.max(np.abs(calib[:32])))
    x = self.tiny["images"][:16]
    got = runtimes.create("tensorrt", engine, "gpu").predict(x)
    self.assertAllEqual(runtimes.create("tensorrt", from_cache, "gpu").predict(x), got)
    keras = self.tiny["model"](x, training=False).numpy()
    self.assertAllClose(got, self.tiny["model"](quantize_input(x, amax), training=False),
                        atol=1e-3)
    # int8 tolerance: each input moves by at most half a step, amax / 254
    # (~0.008 for these images); the tiny network's logits then move by well under 0.1
    self.assertAllClose(got, keras, atol=0.1)
    self.assertGreaterEqual(np.mean(got.argmax(-1) == keras.argmax(-1)), 0.9)

  def test_int8_without_calibration_is_refused_before_any_build(self):
    trt = self._fake("10.3.0")
    onnx_bytes = open(self.tiny["onnx"], "rb").read()
    with self.assertRaisesRegex(ValueError, "`calibration_images`. precision=int8 needs"):
      tensorrt_build.build_serialized(trt, onnx_bytes, "int8", 16)
    with self.assertRaisesRegex(ValueError, "`calibration_images`.*float32.*dtype uint8"):
      tensorrt_build.build_serialized(trt, onnx_bytes, "int8", 16,
                                      calibration_images=np.zeros((4, 32, 32, 3), np.uint8))
    with self.assertRaisesRegex(ValueError, "`calibration_images`. Expected images of shape "
                                r"\(N, 32, 32, 3\).*Received shape \(4, 16, 16, 3\)"):
      tensorrt_build.build_serialized(trt, onnx_bytes, "int8", 16,
                                      calibration_images=np.zeros((4, 16, 16, 3), np.float32))
    with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
      tensorrt_build.main(["--onnx=" + self.tiny["onnx"], "--engine=x.engine",
                           "--precision=int8"])
    self.assertIn("--calibration=FILE.npy", err.getvalue())
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (0, 0))

  def test_int8_on_a_gpu_without_fast_int8_is_refused(self):
    trt = self._fake("8.2.1")
    self.enter_context(mock.patch.dict(os.environ, {"TEA_FAKE_TENSORRT_FAST_INT8": "0"}))
    with self.assertRaisesRegex(ValueError, "no fast INT8"):
      tensorrt_build.build_engine(self.tiny["onnx"], os.path.join(self.dir, "m.engine"),
                                  "int8", batch_size=4, calibration_images=self.tiny["images"])
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (0, 0))
    self.assertEqual(os.listdir(self.dir), [])

  def test_trtexec_int8_needs_an_existing_calibration_cache(self):
    trtexec = os.path.join(self.dir, "trtexec")
    with open(trtexec, "w") as f:
      f.write('#!/bin/sh\necho "$@" > "%s.args"\n' % trtexec)
    os.chmod(trtexec, os.stat(trtexec).st_mode | stat.S_IEXEC)
    engine = os.path.join(self.dir, "m.engine")
    with self.assertRaisesRegex(ValueError, "trtexec cannot calibrate int8 from images"):
      tensorrt_build.build_with_trtexec(trtexec, self.tiny["onnx"], engine, "int8", 16)
    self.assertFalse(os.path.exists(trtexec + ".args"))         # trtexec never ran
    cache = os.path.join(self.dir, "calib.cache")
    open(cache, "wb").close()
    tensorrt_build.build_with_trtexec(trtexec, self.tiny["onnx"], engine, "int8", 16,
                                      calibration_cache=cache)
    with open(trtexec + ".args") as f:
      self.assertIn("--int8 --calib=%s" % cache, f.read())

  def test_precisions_come_from_the_registry(self):
    from deploy.device import devices
    self.assertEqual(tensorrt_build.PRECISIONS, ("fp32", "fp16", "int8"))
    self.assertEqual(tensorrt_build.PRECISIONS,
                     tuple(p for p, spec in devices.PRECISIONS.items()
                           if "tensorrt" in spec.conversion))

  def test_write_atomic_replaces_and_leaves_no_temporary_file(self):
    path = os.path.join(self.dir, "sub", "e.engine")
    tensorrt_build.write_atomic(path, b"old")
    tensorrt_build.write_atomic(path, b"new")
    with open(path, "rb") as f:
      self.assertEqual(f.read(), b"new")
    self.assertEqual(os.listdir(os.path.dirname(path)), ["e.engine"])


if __name__ == "__main__":
  tf.test.main()
