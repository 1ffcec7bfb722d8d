"""Tests of search/trial.py: a precision that fails is a failed pair and the
others are kept; the deployed error's source; TensorFlow's GPU memory
growth set before any trainer initializes TensorFlow."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from search import trial as trial_lib
from tests.deploy import tiny_model
from tests.search import loop_test


class MeasurePrecisionsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = tiny_model.artifacts()["model"]

  def _config(self, **kw):
    config = loop_test.tiny_config(os.path.join(self.get_temp_dir(), "r"), **kw)
    return config.__class__.from_dict(dict(config.__dict__, device_kind="cpu",
                                           artifact_format=kw.get("artifact_format", "onnx"),
                                           onnx_opset=13))

  def test_a_failing_precision_is_a_failed_pair_and_the_others_are_kept(self):
    # Keras measures fp32 only: its fp16 pair fails for real, the fp32 pair stays.
    config = self._config(runtime="keras", artifact_format="keras", precisions=("fp32", "fp16"))
    splits = trial_lib.load_splits(config)
    pairs, metrics, artifacts = trial_lib.measure_precisions(
        self.model, os.path.join(self.get_temp_dir(), "work"), config, splits)
    self.assertEqual(pairs["fp16"]["status"], "failed")
    self.assertIn("runtime=keras measures fp32 only", pairs["fp16"]["error"])
    self.assertEqual(pairs["fp32"]["status"], "done")
    self.assertGreater(pairs["fp32"]["time_s"], 0.0)
    self.assertIsNotNone(metrics)
    self.assertTrue(artifacts["export"].endswith(".keras"))

  def test_a_failing_first_precision_fails_the_trial_with_its_pairs_recorded(self):
    config = self._config(runtime="keras", artifact_format="keras", precisions=("fp16", "fp32"))
    result = {"metrics": {}, "artifacts": {}, "error": None}
    spec = {"_model": self.model, "trial_dir": os.path.join(self.get_temp_dir(), "t")}
    trial_lib._measure(spec, config, result)  # pylint: disable=protected-access
    self.assertStartsWith(result["error"], "precision fp16 failed: ValueError: runtime=keras "
                          "measures fp32 only")
    self.assertEqual(result["metrics"]["precisions"]["fp32"]["status"], "done")

  def test_deployed_error_on_this_cpu_is_the_runtimes_on_the_whole_split(self):
    config = self._config(precisions=("fp32",))
    splits = trial_lib.load_splits(config)
    pairs, _, _ = trial_lib.measure_precisions(
        self.model, os.path.join(self.get_temp_dir(), "cpu"), config, splits)
    self.assertEqual(pairs["fp32"]["val_error_source"],
                     "onnxruntime fp32 on this host's CPU (%d images)" % len(splits.y_val))
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    logits = self.model(data.normalize(splits.x_val), training=False).numpy()
    keras_error = float(np.mean(np.argmax(logits, 1) != np.asarray(splits.y_val).ravel()))
    self.assertAllClose(pairs["fp32"]["val_error"], keras_error, atol=2.0 / len(splits.y_val))

  def test_device_predictions_give_the_deployed_error(self):
    config = self._config()
    splits = trial_lib.load_splits(config)
    labels = np.asarray(splits.y_val).ravel()
    top1 = labels[:100].copy()
    top1[:25] = (top1[:25] + 1) % 10                  # 25 of 100 wrong
    error, source = trial_lib.deployed_error(None, "m.onnx", splits, config, "fp16",
                                             device_top1=top1)
    self.assertEqual(error, 0.25)
    self.assertEqual(source, "device (onnxruntime fp16 on cpu, 100 images)")


class GpuMemoryTest(tf.test.TestCase):

  def test_trainers_let_tensorflow_grow_gpu_memory(self):
    """Set before TensorFlow initializes a GPU, by the package every trainer
    imports (a search trial, tea_keras.train, a Ray task)."""
    env = dict(os.environ)
    env.pop("TF_FORCE_GPU_ALLOW_GROWTH", None)
    code = ("import os, search.trial, tensorflow\n"
            "print(os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    self.assertEqual(out.returncode, 0, msg=out.stderr[-2000:])
    self.assertEqual(out.stdout.strip().splitlines()[-1], "true")
    env["TF_FORCE_GPU_ALLOW_GROWTH"] = "false"  # a user's own setting is kept
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    self.assertEqual(out.stdout.strip().splitlines()[-1], "false")


if __name__ == "__main__":
  tf.test.main()
