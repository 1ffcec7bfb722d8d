"""Tests of deploy/device/runtimes/tensorrt_runtime.py.

The real-TensorRT test needs TensorRT and a CUDA GPU, which the development
machine does not have (skipped with the reason). The others run the real
runtime code around the fake TensorRT 8.2 / 10.3 and fake CUDA runtime of
tests/fakes/gpu_site (activated per test; sys.path and sys.modules are
restored afterwards).
"""

import os
import tempfile
import threading
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from deploy import export
from deploy import measure
from deploy.device import runtimes
from deploy.device import image_files
from deploy.device import tensorrt_build
from deploy.device.runtimes import base
from deploy.device.runtimes import tensorrt_runtime
from tests import fakes
from tests.deploy import tiny_model
from tests.deploy.device.tensorrt_build_test import quantize_input

#: (test name suffix, fake TensorRT version, API the runtime must pick); 8.2.1 is
#: JetPack 4.6 on a TX2 (pycuda only), 10.3.0 a GPU server (cuda-python)
VERSIONS = (("trt8_2", "8.2.1", "bindings"), ("trt10_3", "10.3.0", "named_tensors"))
#: boards with fast INT8 for each version (the TX2 has none: tests/fakes/README.md)
INT8_BOARD = {"8.2.1": "jetson_xavier", "10.3.0": "gpu_server"}
_OPSET17 = {}


def _tensorrt_missing():
  try:
    import tensorrt  # noqa: F401
  except ImportError as e:
    return "TensorRT is not installed here (%s)" % e
  return None


def _opset17_onnx(model):
  """The tiny model exported at opset 17 (once per process)."""
  if not _OPSET17:
    path = os.path.join(tiny_model.artifacts()["dir"], "model_opset17.onnx")
    _OPSET17["path"] = export.export_onnx(model, path, opset=17)
  return _OPSET17["path"]


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
    with self.assertRaisesRegex(ValueError, "Expected one of fp32, fp16, int8. Received "
                                "precision='int4'"):
      tensorrt_build.build_engine("m.onnx", "m.engine", "int4")

  def test_engine_key_changes_with_each_build_input(self):
    args = (b"onnx bytes", "fp32", 16, "10.3.0", "Orin")
    key = tensorrt_runtime.engine_key(*args)
    self.assertLen(key, 64)
    self.assertEqual(key, tensorrt_runtime.engine_key(*args))
    for i, other in enumerate((b"onnx bytez", "fp16", 32, "8.2.1", "")):
      changed = list(args)
      changed[i] = other
      self.assertNotEqual(tensorrt_runtime.engine_key(*changed), key, msg=str(i))
    calib = np.zeros((4, 2, 2, 3), np.float32)
    sha = image_files.images_sha256(calib, with_shape=True)
    self.assertNotEqual(tensorrt_runtime.engine_key(*args, calibration_sha256=sha), key)
    calib[0, 0, 0, 0] = 1e-3
    self.assertNotEqual(image_files.images_sha256(calib, with_shape=True), sha)

  def test_default_cache_dir_from_env_else_home(self):
    with mock.patch.dict(os.environ, {"TEA_ENGINE_CACHE": "/srv/engines"}):
      self.assertEqual(tensorrt_runtime.default_cache_dir(), "/srv/engines")
    with mock.patch.dict(os.environ, {"HOME": "/home/tea"}):
      os.environ.pop("TEA_ENGINE_CACHE", None)
      self.assertEqual(tensorrt_runtime.default_cache_dir(),
                       "/home/tea/.cache/tea-keras/engines")


class FakeTensorRtRuntimeTest(tf.test.TestCase, parameterized.TestCase):
  """The runtime around the fake TensorRT of each supported major version."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def setUp(self):
    super().setUp()
    self.cache_dir = tempfile.mkdtemp(dir=self.get_temp_dir())

  def _fake(self, version, **kwargs):
    return self.enter_context(fakes.fake_gpu(version, **kwargs))

  def _create(self, model_path=None, **options):
    options.setdefault("engine_cache_dir", self.cache_dir)
    options.setdefault("max_batch_size", 16)
    return runtimes.create("tensorrt", model_path or self.tiny["onnx"], "jetson", **options)

  def _keras(self, x):
    return self.tiny["model"](x, training=False)

  @parameterized.named_parameters(*VERSIONS)
  def test_onnx_is_built_cached_and_matches_keras(self, version, api):
    trt = self._fake(version)
    rt = self._create()
    self.assertEqual(trt.BUILDS, 1)
    self.assertIsNone(rt.fixed_batch_size)
    for n in (16, 5):
      x = self.tiny["images"][:n]
      self.assertAllClose(rt.predict(x), self._keras(x), atol=1e-3)
    info = rt.describe()
    self.assertEqual(info["api"], api)
    self.assertEqual(info["tensorrt_version"], version)
    self.assertFalse(info["engine_cached"])
    self.assertGreater(info["engine_build_s"], 0.0)
    self.assertLen(info["engine_key"], 64)
    # the cache holds the engine under its key and no leftover temporary file
    self.assertEqual(os.listdir(self.cache_dir), [info["engine_key"] + ".engine"])

  @parameterized.named_parameters(*VERSIONS)
  def test_second_creation_is_a_cache_hit(self, version, api):
    del api
    trt = self._fake(version)
    first = self._create().describe()
    rt = self._create()
    info = rt.describe()
    self.assertEqual(trt.BUILDS, 1)
    self.assertTrue(info["engine_cached"])
    self.assertEqual(info["engine_build_s"], 0.0)
    self.assertEqual(info["engine_key"], first["engine_key"])
    x = self.tiny["images"][:16]
    self.assertAllClose(rt.predict(x), self._keras(x), atol=1e-3)

  def test_cache_key_follows_precision_batch_and_gpu(self):
    with fakes.fake_gpu("10.3.0") as trt:
      keys = [self._create(precision=p, max_batch_size=b).describe()["engine_key"]
              for p, b in (("fp32", 16), ("fp16", 16), ("fp32", 32))]
      self.assertEqual(trt.BUILDS, 3)
    with fakes.fake_gpu("10.3.0", gpu_name="Other GPU") as trt:
      info = self._create().describe()
      self.assertEqual(info["gpu_name"], "Other GPU")
      self.assertFalse(info["engine_cached"])
      keys.append(info["engine_key"])
    self.assertLen(set(keys), 4)
    self.assertLen(os.listdir(self.cache_dir), 4)

  def test_cache_dir_defaults_to_env(self):
    self._fake("10.3.0")
    self.enter_context(mock.patch.dict(os.environ, {"TEA_ENGINE_CACHE": self.cache_dir}))
    info = runtimes.create("tensorrt", self.tiny["onnx"], "gpu").describe()
    self.assertEqual(info["max_batch_size"], tensorrt_runtime.DEFAULT_MAX_BATCH_SIZE)
    self.assertEqual(os.listdir(self.cache_dir), [info["engine_key"] + ".engine"])

  def test_corrupt_cached_engine_is_rebuilt(self):
    trt = self._fake("10.3.0")
    key = self._create().describe()["engine_key"]
    with open(os.path.join(self.cache_dir, key + ".engine"), "wb") as f:
      f.write(b"truncated")
    with self.assertWarnsRegex(UserWarning, "cannot be deserialized; rebuilding"):
      info = self._create().describe()
    self.assertEqual(trt.BUILDS, 2)
    self.assertFalse(info["engine_cached"])
    self.assertTrue(self._create().describe()["engine_cached"])

  @parameterized.named_parameters(*VERSIONS)
  def test_opset_17_needs_tensorrt_10(self, version, api):
    del api
    trt = self._fake(version)
    path = _opset17_onnx(self.tiny["model"])
    if version.startswith("8."):
      with self.assertRaisesRegex(base.ModelLoadError, "opset 17.*up to 13"):
        self._create(path)
      self.assertEqual(trt.BUILDS, 0)
      self.assertEqual(os.listdir(self.cache_dir), [])
    else:
      x = self.tiny["images"][:8]
      self.assertAllClose(self._create(path).predict(x), self._keras(x), atol=1e-3)

  @parameterized.named_parameters(*VERSIONS)
  def test_prebuilt_engine_loads_as_before(self, version, api):
    trt = self._fake(version)
    plan = os.path.join(self.cache_dir, "m.plan")
    tensorrt_build.build_engine(self.tiny["onnx"], plan, "fp32", batch_size=8)
    rt = self._create(plan, max_batch_size=None)
    info = rt.describe()
    self.assertEqual((info["api"], info["engine_cached"], info["engine_key"]), (api, False, None))
    self.assertEqual(info["engine_build_s"], 0.0)
    self.assertEqual(trt.BUILDS, 1)
    x = self.tiny["images"][:8]
    self.assertAllClose(rt.predict(x), self._keras(x), atol=1e-3)
    with self.assertRaisesRegex(ValueError, "Batch of 9 exceeds the engine's maximum batch 8"):
      rt.predict(self.tiny["images"][:9])

  @parameterized.named_parameters(*VERSIONS)
  def test_corrupt_engine_is_a_model_load_error(self, version, api):
    del api
    self._fake(version)
    path = os.path.join(self.cache_dir, "corrupt.engine")
    with open(path, "wb") as f:
      f.write(b"\x00garbage" * 16)
    with self.assertRaisesRegex(base.ModelLoadError, "cannot deserialize .*corrupt.engine"):
      self._create(path)

  def test_engine_of_another_tensorrt_version_is_a_model_load_error(self):
    path = os.path.join(self.cache_dir, "m.engine")
    with fakes.fake_gpu("10.3.0"):
      tensorrt_build.build_engine(self.tiny["onnx"], path, "fp32", batch_size=8)
    self._fake("8.2.1")
    with self.assertRaisesRegex(base.ModelLoadError, "not an engine built by this TensorRT"):
      self._create(path)

  def test_invalid_arguments_say_what_was_expected(self):
    self._fake("10.3.0")
    with self.assertRaisesRegex(ValueError, "Expected one of fp32, fp16, int8. Received "
                                "precision='int4'"):
      self._create(precision="int4")
    with self.assertRaisesRegex(ValueError, "`max_batch_size`. Expected a positive integer"):
      self._create(max_batch_size=0)

  @parameterized.named_parameters(*VERSIONS)
  def test_int8_engine_is_calibrated_cached_and_close_to_keras(self, version, api):
    del api
    trt = self._fake(version, board=INT8_BOARD[version])
    calib = self.tiny["images"]                        # 64: one batch of 50, 14 unused
    rt = self._create(precision="int8", calibration_images=calib)
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (1, 64 // 50))
    info = rt.describe()
    self.assertEqual((info["precision"], info["calibration_images"]), ("int8", 64))
    self.assertEqual(info["engine_bytes"],
                     os.path.getsize(os.path.join(self.cache_dir, info["engine_key"] + ".engine")))
    x = self.tiny["images"][:16]
    got = rt.predict(x)
    amax = float(np.max(np.abs(calib[:50])))
    self.assertAllClose(got, self._keras(quantize_input(x, amax)), atol=1e-3)
    keras = self._keras(x).numpy()
    self.assertAllClose(got, keras, atol=0.1)      # justified in tensorrt_build_test
    self.assertGreaterEqual(np.mean(got.argmax(-1) == keras.argmax(-1)), 0.9)
    again = self._create(precision="int8", calibration_images=calib)
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (1, 1))
    self.assertTrue(again.describe()["engine_cached"])
    self.assertEqual(again.describe()["engine_bytes"], info["engine_bytes"])
    self.assertAllEqual(again.predict(x), got)

  def test_int8_without_calibration_images_is_refused_before_any_build(self):
    trt = self._fake("10.3.0")
    with self.assertRaisesRegex(ValueError, "`calibration_images`. precision=int8 needs"):
      self._create(precision="int8")
    with self.assertRaisesRegex(ValueError, "`calibration_images`.*dtype float64"):
      self._create(precision="int8", calibration_images=np.zeros((2, 32, 32, 3)))
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (0, 0))
    self.assertEqual(os.listdir(self.cache_dir), [])

  def test_cache_key_changes_with_the_calibration_images(self):
    trt = self._fake("8.2.1", board="jetson_xavier")
    calib = self.tiny["images"][:50]
    keys = [self._create(precision="int8", calibration_images=c).describe()["engine_key"]
            for c in (calib, calib[::-1].copy(), calib)]
    self.assertNotEqual(keys[0], keys[1])
    self.assertEqual(keys[0], keys[2])
    self.assertEqual(trt.BUILDS, 2)
    fp32 = self._create().describe()
    self.assertNotIn(fp32["engine_key"], keys)
    self.assertEqual(fp32["calibration_images"], 0)
    self.assertGreater(fp32["engine_bytes"], 0)

  @parameterized.named_parameters(*VERSIONS)
  def test_measurement_protocol_builds_outside_the_timed_runs(self, version, api):
    trt = self._fake(version)
    images = self.tiny["images"]
    result = measure.measure(
        self.tiny["onnx"], device="jetson", runtime="tensorrt", power_source="none",
        images=images, batch_size=16, repeats=1, warmup_batches=0, progress=False,
        runtime_options={"engine_cache_dir": self.cache_dir, "precision": "fp32"},
        contention_policy="warn")  # one timed run, however busy the machine is
    self.assertGreater(result["time_s"], 0.0)
    self.assertEqual((result["runtime"], result["images"]), ("tensorrt", len(images)))
    info = result["runtime_info"]
    self.assertEqual((info["api"], info["max_batch_size"]), (api, 16))
    self.assertGreater(info["engine_build_s"], 0.0)
    self.assertFalse(info["engine_cached"])
    self.assertEqual(trt.BUILDS, 1)
    self.assertEqual(trt.EXECUTIONS, len(images) // 16)

  @parameterized.named_parameters(*VERSIONS)
  def test_runtime_works_on_a_fresh_thread_after_the_probe(self, version, api):
    """The agent's situation: its start-up probe imports the CUDA library on
    the main thread, then each request builds and runs an engine on its own
    connection thread. pycuda's contexts are per thread (JetPack 4.6)."""
    del api
    self._fake(version)
    from deploy.device import capabilities  # pylint: disable=g-import-not-at-top
    answer = capabilities.probe_runtime("jetson", "tensorrt")
    self.assertTrue(answer["available"], msg=answer["error"])
    x = self.tiny["images"][:16]
    outcome = {}

    def request():
      try:
        rt = self._create()
        outcome["logits"] = rt.predict(x)
        rt.close()
      except Exception as e:  # pylint: disable=broad-except  (reported below)
        outcome["error"] = "%s: %s" % (type(e).__name__, e)

    for _ in range(2):  # two requests, two threads, one engine cache
      thread = threading.Thread(target=request)
      thread.start()
      thread.join()
      self.assertNotIn("error", outcome, msg=outcome.get("error"))
      self.assertAllClose(outcome.pop("logits"), self._keras(x), atol=1e-3)

  @parameterized.named_parameters(*VERSIONS)
  def test_close_frees_the_buffers_and_destroys_the_stream(self, version, api):
    del api
    self._fake(version)
    import tea_fake_gpu  # pylint: disable=g-import-not-at-top  (the fake GPU's state)
    streams, buffers = tea_fake_gpu.live_streams(), len(tea_fake_gpu.ALLOCATIONS)
    for _ in range(3):  # a long-lived agent creates and closes one runtime per request
      rt = self._create()
      rt.predict(self.tiny["images"][:4])
      rt.close()
    self.assertEqual(tea_fake_gpu.live_streams(), streams)
    self.assertLen(tea_fake_gpu.ALLOCATIONS, buffers)


if __name__ == "__main__":
  tf.test.main()
