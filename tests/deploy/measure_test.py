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
         "--repeats=1", "--warmup_batches=0", "--contention_policy=warn", "--json"],
        capture_output=True, text=True, timeout=300, env=env)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    info = json.loads(out.stdout.strip().splitlines()[-1])["runtime_info"]
    self.assertEqual((info["precision"], info["calibration_images"], info["api"]),
                     ("int8", 100, "bindings"))
    self.assertGreater(info["engine_bytes"], 0)

  def _cli_measure(self, *extra):
    return subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--device=cpu", "--runtime=onnxruntime",
         "--power_source=none", "--model=" + self.tiny["onnx"], "--num_images=64",
         "--batch_size=32", "--repeats=1", "--warmup_batches=0", "--contention_policy=warn"]
        + list(extra), capture_output=True, text=True, timeout=300)

  def test_cli_prints_a_summary_and_warnings_on_stderr(self):
    path = os.path.join(self.get_temp_dir(), "result.json")
    out = self._cli_measure("--out=" + path)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    lines = out.stdout.splitlines()
    self.assertEqual([l.split()[0] for l in lines],
                     ["model", "runtime", "images", "time", "energy", "contention", "full"])
    self.assertEqual(lines[1], "runtime     onnxruntime on cpu")
    self.assertRegex(lines[3], r"^time +\S+ s per 64 images, \S+ ms per image \(time source: "
                     r"host clock\)$")
    self.assertEqual(lines[4], "energy      not measured (power source: none)")
    self.assertEqual(lines[-1], "full result " + path)
    self.assertLess(max(len(l) for l in lines), 160, out.stdout)
    self.assertNotIn("{", out.stdout)
    self.assertIn("deploy.measure: warning: power_source=none: energy is not measured "
                  "(energy_j is null).", out.stderr.splitlines())
    with open(path) as f:
      result = json.load(f)
    self.assertEqual((result["images"], result["runtime"]), (64, "onnxruntime"))
    self.assertIn("%.4g s per 64 images" % result["time_s"], lines[3])

  def test_cli_json_prints_the_whole_result(self):
    out = self._cli_measure("--json")
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    self.assertLen(out.stdout.strip().splitlines(), 1)
    result = json.loads(out.stdout)
    self.assertEqual((result["images"], result["batch_size"]), (64, 32))
    self.assertGreater(result["time_s"], 0.0)
    self.assertEqual(len([l for l in out.stderr.splitlines()
                          if l.startswith("deploy.measure: warning: ")]),
                     len(result["warnings"]))

  @pytest.mark.slow
  def test_cli_prints_result_json(self):
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--device=cpu", "--runtime=openvino",
         "--power_source=none", "--model=" + self.tiny["onnx"], "--num_images=200",
         "--batch_size=100", "--repeats=2", "--json"], capture_output=True, text=True,
        timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertGreater(result["time_s"], 0.0)
    self.assertIsNone(result["energy_j"])
    self.assertEqual(result["images"], 200)


if __name__ == "__main__":
  tf.test.main()
