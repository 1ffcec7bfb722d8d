"""End to end on your own images: ``--dataset=folder --data_dir=DIR`` through
``python -m search.run`` and ``python -m deploy.measure --write_data``."""

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deploy.device import image_files
from search import config as config_lib
from search import loop
from tea_keras import data
from tests.tea_keras import image_folder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 3 classes x 24 images: 57 training, 15 validation images (tea_keras.data).
TINY = ["--num_samples=2", "--num_initial=2", "--num_cells=1", "--filters=4", "--epochs=1",
        "--batch_size=16", "--measure_images=15", "--measure_batch_size=5",
        "--measure_repeats=1", "--objectives=error,time", "--device=cpu",
        "--runtime=onnxruntime", "--power_source=none", "--contention_policy=warn"]


def _run(module, *args):
  return subprocess.run([sys.executable, "-m", module] + list(args), cwd=REPO,
                        capture_output=True, text=True, timeout=600)


class FolderSearchTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.images = image_folder.write(os.path.join(self.get_temp_dir(), "images"))

  @pytest.mark.slow  # a search: two trainings, exports, measurements
  def test_search_run_on_image_folder_trains_three_class_networks(self):
    results = os.path.join(self.get_temp_dir(), "search")
    proc = _run("search.run", "--results_dir=" + results, "--dataset=folder",
                "--data_dir=" + self.images, *TINY)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("data: %s: 3 classes (disc, hstripes, vstripes); 57 training, 15 "
                  "validation, 0 test images." % self.images, proc.stdout)
    with sqlite3.connect(os.path.join(results, "trials.db")) as db:
      rows = db.execute("SELECT trial_id, status FROM trials ORDER BY trial_id").fetchall()
    self.assertEqual([status for _, status in rows], ["done", "done"])
    import onnxruntime  # pylint: disable=g-import-not-at-top
    for trial_id, _ in rows:
      path = os.path.join(results, "trials", "%04d" % trial_id, "export", "model.onnx")
      session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
      logits = session.run(None, {session.get_inputs()[0].name: np.zeros(
          (2, 32, 32, 3), np.float32)})[0]
      self.assertEqual(logits.shape, (2, 3))

  def test_search_run_refuses_a_non_image_before_any_trial(self):
    bad = os.path.join(self.images, "vstripes", "labels.csv")
    with open(bad, "w") as f:
      f.write("file,label\n")
    results = os.path.join(self.get_temp_dir(), "bad")
    proc = _run("search.run", "--results_dir=" + results, "--dataset=folder",
                "--data_dir=" + self.images, *TINY)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("error: File %s is not an image that can be read" % bad, proc.stderr)
    self.assertFalse(os.path.exists(os.path.join(results, "trials.db")))

  def test_search_run_refuses_folder_without_data_dir(self):
    proc = _run("search.run", "--results_dir=" + self.get_temp_dir(), "--dataset=folder",
                *TINY)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("error: --dataset=folder needs --data_dir: an image folder with one "
                  "sub-folder of images per class", proc.stderr)

  def test_measure_writes_the_searchs_validation_images(self):
    config = config_lib.SearchConfig(results_dir=self.get_temp_dir(), dataset="folder",
                                     data_dir=self.images)
    expected = loop._validation_images(config)  # what the handshake checks an agent for
    self.assertEqual(expected.shape, (15, 32, 32, 3))
    written = os.path.join(self.get_temp_dir(), "images.npy")
    calibration = os.path.join(self.get_temp_dir(), "calibration.npy")
    common = ["--dataset=folder", "--data_dir=" + self.images]
    for args in (["--num_images=15", "--write_data=" + written],
                 ["--calibration_images=20", "--write_calibration=" + calibration]):
      proc = _run("deploy.measure", *common, *args)
      self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    images = np.load(written)
    self.assertEqual(images.dtype, np.float32)
    self.assertAllEqual(images, expected)
    self.assertEqual(image_files.images_sha256(images), image_files.images_sha256(expected))
    splits = data.load("folder", self.images, seed=config.seed)
    self.assertAllEqual(np.load(calibration), data.normalize(splits.x_train[:20]))


if __name__ == "__main__":
  tf.test.main()
