"""``python -m tea_keras.train --dataset=folder --data_dir=DIR``: your own images."""

import json
import os
import subprocess
import sys
from pathlib import Path

from absl import flags
import pytest
import tensorflow as tf

from tea_keras import train
from tests.tea_keras import image_folder

REPO = Path(__file__).resolve().parents[2]
TINY = ["--genotype=chain", "--num_cells=1", "--filters=4", "--epochs=1", "--batch_size=16",
        "--verbose=0"]


def _cli(*argv):
  return subprocess.run([sys.executable, "-m", "tea_keras.train"] + list(argv), cwd=REPO,
                        capture_output=True, text=True, timeout=300)


class FolderTrainTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.images = image_folder.write(os.path.join(self.get_temp_dir(), "images"))
    self.model_dir = os.path.join(self.get_temp_dir(), "run")

  @pytest.mark.slow  # a training
  def test_train_run_on_image_folder_has_one_logit_per_class(self):
    fv = flags.FlagValues()
    train.define_flags(fv)
    fv(["train", "--dataset=folder", "--data_dir=" + self.images,
        "--model_dir=" + self.model_dir] + TINY)
    result = train.run(fv)
    self.assertEqual(result.model.output_shape, (None, 3))
    self.assertBetween(result.val_error, 0.0, 1.0)
    self.assertIsNone(result.test_error)  # no test/ folder: no test split
    config = json.loads(Path(self.model_dir, "config.json").read_text())
    self.assertEqual((config["dataset"], config["data_sizes"]),
                     ("folder", {"train": 57, "val": 15, "test": 0}))

  def test_main_refuses_an_empty_class_before_training(self):
    os.makedirs(os.path.join(self.images, "zebra"))
    proc = _cli("--dataset=folder", "--data_dir=" + self.images,
                "--model_dir=" + self.model_dir, *TINY)
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertEqual(proc.stderr.strip().splitlines(), [
        "tea_keras.train: error: Class folder %s/zebra holds 0 image(s); expected at least 2 "
        "(one for training, one for validation)." % self.images])
    self.assertFalse(os.path.exists(self.model_dir))

  def test_main_refuses_too_few_images_for_a_batch_before_training(self):
    proc = _cli("--dataset=folder", "--data_dir=" + self.images,
                "--model_dir=" + self.model_dir, *TINY[:-2], "--batch_size=64")
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertIn("tea_keras.train: error: Data set 'folder' (%s), train split: expected at "
                  "least 64 image(s) (one training batch). Received 57" % self.images,
                  proc.stderr)
    self.assertFalse(os.path.exists(self.model_dir))


if __name__ == "__main__":
  tf.test.main()
