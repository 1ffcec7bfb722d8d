"""Tests of tea_keras/train.py: flags -> recipe, the flagfile, one-line errors, kill -9 resume."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags
import pytest
import tensorflow as tf

from tea_keras import console
from tea_keras import recipes
from tea_keras import space
from tea_keras import train

REPO = Path(__file__).resolve().parents[2]
FINAL_CFG = REPO / "flags" / "final_train.cfg"


def _flags(*argv):
  fv = flags.FlagValues()
  train.define_flags(fv)
  fv(["train"] + list(argv))
  return fv


def _cli(*argv, timeout=120):
  return subprocess.run([sys.executable, "-m", "tea_keras.train"] + list(argv), cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


class FlagsTest(tf.test.TestCase):

  def test_recipe_from_flags_defaults_to_preset(self):
    self.assertEqual(train.recipe_from_flags(_flags()), recipes.search_recipe())
    self.assertEqual(train.recipe_from_flags(_flags("--recipe=final")),
                     recipes.final_recipe())

  def test_recipe_from_flags_overrides_any_field(self):
    fv = _flags("--recipe=final", "--batch_size=8", "--epsilon=0.001", "--noflip",
                "--jit_compile=true", "--mixed_precision=auto", "--bn_momentum=none")
    self.assertEqual(train.recipe_from_flags(fv),
                     recipes.final_recipe(batch_size=8, epsilon=0.001, flip=False,
                                          jit_compile=True, mixed_precision=None,
                                          bn_momentum=None))

  def test_every_recipe_field_has_a_flag(self):
    fv = _flags()
    for name in recipes.field_names():
      self.assertIn(name, fv)
      self.assertIsNone(fv[name].value, name)

  def test_final_train_flagfile_is_the_final_recipe(self):
    fv = _flags("--flagfile=%s" % FINAL_CFG)
    self.assertEqual(train.recipe_from_flags(fv), recipes.final_recipe())
    self.assertEqual(fv.dataset, "cifar10")
    self.assertTrue(fv.evaluate_test)


class ErrorsTest(tf.test.TestCase):

  def _assert_one_error_line(self, proc, pattern):
    self.assertEqual(proc.returncode, 1, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertRegex(lines[0], "^tea_keras.train: error: " + pattern)

  def test_main_missing_data_folder_one_line(self):
    missing = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "cifar")
    proc = _cli("--dataset=cifar10", "--data_dir=" + missing, "--genotype=random",
                "--model_dir=" + missing + "_run")
    self._assert_one_error_line(proc, ".*%s does not exist.*data_batch_1" % missing)
    self.assertFalse(os.path.exists(missing + "_run"))

  def test_main_invalid_genotype_one_line(self):
    proc = _cli("--genotype=sep3x3(prev)+max9x9(prev)", "--model_dir=unused")
    self._assert_one_error_line(proc, "Invalid genotype string.*max9x9")

  def test_main_negative_epochs_one_line(self):
    proc = _cli("--genotype=random", "--epochs=-3", "--model_dir=unused")
    self._assert_one_error_line(proc, "Invalid recipe field `epochs`.*epochs=-3")

  def test_main_missing_model_dir_one_line(self):
    proc = _cli("--genotype=random")
    self._assert_one_error_line(proc, "Missing --model_dir")


# The smallest run that trains and checkpoints: 2 steps of 32 images.
TINY = ("--dataset=cifar10_sample", "--num_cells=1", "--filters=4", "--epochs=1",
        "--train_images=64", "--batch_size=32", "--noevaluate_test")


class ConsoleTest(tf.test.TestCase):
  """What a user sees: the genotype first, no TensorFlow native line, short refusals."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(tempfile.mkdtemp(), "run")
    cls.first = _cli("--genotype=random", "--seed=1", "--model_dir=" + cls.model_dir, *TINY,
                     timeout=600)

  def test_main_prints_the_drawn_genotype_first(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-2000:])
    drawn = space.resolve("random", 1).to_string()
    self.assertEqual(self.first.stdout.splitlines()[0],
                     "tea_keras.train: genotype (random, drawn with --seed=1): %s; N=1 cells "
                     "per stage, F=4 filters" % drawn)

  def test_main_prints_no_native_tensorflow_line(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-2000:])
    lines = (self.first.stdout + self.first.stderr).splitlines()
    self.assertEqual([l for l in lines if console.is_native_log(l) or "cuInit" in l], [])

  def test_main_refusal_names_only_the_changed_settings(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-2000:])
    proc = _cli("--genotype=random", "--seed=1", "--model_dir=" + self.model_dir,
                "--learning_rate=0.05", *TINY)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertIn("recipe.learning_rate 0.01 -> 0.05", lines[0])
    for unchanged in ("rmsprop_decay", "weight_decay", "genotype", "batch_size"):
      self.assertNotIn(unchanged, lines[0])
    self.assertLess(len(lines[0]), 300, lines[0])


@pytest.mark.slow
class RunTest(tf.test.TestCase):

  def test_run_densenet40_zero_epochs_evaluates_and_saves(self):
    model_dir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "dn")
    fv = _flags("--model=densenet40", "--dataset=cifar10_sample", "--epochs=0",
                "--model_dir=" + model_dir, "--verbose=0")
    result = train.run(fv)
    self.assertEqual(result.metrics["epochs_completed"], 0)
    self.assertBetween(result.test_error, 0.5, 1.0)  # untrained: about chance
    self.assertTrue(os.path.exists(os.path.join(model_dir, "model.keras")))
    config = json.loads(Path(model_dir, "config.json").read_text())
    self.assertEqual(config["model"], "densenet40")
    self.assertEqual(config["params"], result.model.count_params())


@pytest.mark.slow
class KillResumeTest(tf.test.TestCase):

  def test_main_resumes_after_kill_9(self):
    model_dir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "run")
    argv = ["-m", "tea_keras.train", "--dataset=cifar10_sample", "--genotype=chain",
            "--num_cells=1", "--filters=4", "--batch_size=128", "--epochs=3",
            "--model_dir=" + model_dir, "--verbose=0"]
    proc = subprocess.Popen([sys.executable] + argv, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = Path(model_dir) / "checkpoints" / "state.json"
    deadline = time.time() + 500
    while not state.exists() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    self.assertTrue(state.exists())
    self.assertFalse((Path(model_dir) / "metrics.json").exists())
    done = _cli(*argv[2:], timeout=600)
    self.assertEqual(done.returncode, 0, done.stderr[-2000:])
    metrics = json.loads((Path(model_dir) / "metrics.json").read_text())
    self.assertEqual(metrics["epochs_completed"], 3)
    self.assertEqual([h["epoch"] for h in metrics["history"]], [1, 2, 3])
    self.assertIn("resuming from", (Path(model_dir) / "train.log").read_text())


if __name__ == "__main__":
  tf.test.main()
