"""Tests of deploy/measure.py (library and CLI)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deploy import measure
from tests import fakes
from tests.deploy import tiny_model


class MeasureTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def test_measure_onnxruntime_and_openvino_time_only(self):
    for runtime in ("onnxruntime", "openvino"):
      trace_dir = os.path.join(self.get_temp_dir(), runtime)
      result = measure.measure(self.tiny["onnx"], device="cpu", runtime=runtime,
                               power_source="none", images=self.tiny["images"],
                               batch_size=32, repeats=2, warmup_batches=1,
                               trace_dir=trace_dir, progress=False)
      self.assertGreater(result["time_s"], 0.0)
      self.assertIsNone(result["energy_j"])
      self.assertEqual((result["runtime"], result["model"]), (runtime, self.tiny["onnx"]))
      with open(os.path.join(trace_dir, "result.json")) as f:
        self.assertEqual(json.load(f)["time_s"], result["time_s"])

  def test_load_images_repeats_small_sets_and_says_so(self):
    images, repeated = measure.load_images("cifar10_sample", 1200)
    self.assertEqual(images.shape, (1200, 32, 32, 3))
    self.assertEqual(str(images.dtype), "float32")
    self.assertEqual(repeated, 508)
    self.assertAllEqual(images[508], images[0])
    self.assertIsNone(measure.load_images("cifar10_sample", 100)[1])
    with self.assertRaisesRegex(ValueError, "num_images"):
      measure.load_images("cifar10_sample", 0)

  def test_cli_writes_the_first_training_images_for_calibration(self):
    from tea_keras import data
    path = os.path.join(self.get_temp_dir(), "calib.npy")
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--write_calibration=" + path,
         "--calibration_images=30"], capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    self.assertEqual(json.loads(out.stdout.strip().splitlines()[-1])["images"], 30)
    expected = data.normalize(data.load("cifar10_sample").x_train[:30])
    written = np.load(path)
    self.assertEqual(written.dtype, np.float32)
    self.assertAllEqual(written, expected)
    with self.assertRaisesRegex(ValueError, "`calibration_images`. Expected a positive"):
      measure.load_calibration_images("cifar10_sample", 0)

  def test_cli_refuses_a_precision_other_runtimes_do_not_build(self):
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--runtime=onnxruntime", "--precision=int8",
         "--model=" + self.tiny["onnx"], "--num_images=10"],
        capture_output=True, text=True, timeout=300)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("--precision=int8 applies to --runtime=tensorrt", out.stderr)

  def test_cli_tensorrt_int8_calibrates_on_training_images(self):
    env = fakes.subprocess_env("8.2.1", board="jetson_xavier")  # the TX2 has no fast INT8
    env["TEA_ENGINE_CACHE"] = os.path.join(self.get_temp_dir(), "engines")
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--device=gpu", "--runtime=tensorrt",
         "--precision=int8", "--calibration_images=100", "--power_source=none",
         "--model=" + self.tiny["onnx"], "--num_images=32", "--batch_size=16",
         "--repeats=1", "--warmup_batches=0", "--contention_policy=warn"],
        capture_output=True, text=True, timeout=300, env=env)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    info = json.loads(out.stdout.strip().splitlines()[-1])["runtime_info"]
    self.assertEqual((info["precision"], info["calibration_images"], info["api"]),
                     ("int8", 100, "bindings"))
    self.assertGreater(info["engine_bytes"], 0)

  @pytest.mark.slow
  def test_cli_prints_result_json(self):
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--device=cpu", "--runtime=openvino",
         "--power_source=none", "--model=" + self.tiny["onnx"], "--num_images=200",
         "--batch_size=100", "--repeats=2"], capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertGreater(result["time_s"], 0.0)
    self.assertIsNone(result["energy_j"])
    self.assertEqual(result["images"], 200)


if __name__ == "__main__":
  tf.test.main()
