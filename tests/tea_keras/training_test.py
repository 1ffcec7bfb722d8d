"""Tests of tea_keras/training.py: schedule, optimizer, weight decay, loop, resume, NaN."""

import dataclasses
import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tea_keras import data
from tea_keras import network
from tea_keras import recipes
from tea_keras import space
from tea_keras import training
from tea_keras import training_callbacks


def _tiny_splits(num_train=256, num_val=64):
  s = data.load("cifar10_sample", seed=0)
  return dataclasses.replace(s, x_train=s.x_train[:num_train], y_train=s.y_train[:num_train],
                             x_val=s.x_val[:num_val], y_val=s.y_val[:num_val],
                             x_test=s.x_test[:num_val], y_test=s.y_test[:num_val])


def _tiny_model(weight_decay=4e-5, seed=0):
  """A plain conv net: fast to compile, enough to exercise the loop."""
  keras.utils.set_random_seed(seed)
  reg = keras.regularizers.L2(weight_decay / 2)
  return keras.Sequential([
      keras.Input((32, 32, 3)),
      keras.layers.Conv2D(8, 3, strides=2, kernel_regularizer=reg),
      keras.layers.BatchNormalization(),
      keras.layers.ReLU(),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(10, kernel_regularizer=reg)], name="tiny")


class ScheduleTest(tf.test.TestCase):

  def test_learning_rate_schedule_per_epoch_exact(self):
    steps = 143
    schedule = training.learning_rate_schedule(recipes.search_recipe(), steps)
    first = [float(schedule(e * steps)) for e in range(6)]
    last = [float(schedule((e + 1) * steps - 1)) for e in range(6)]
    expected = [0.01, 0.01, 0.0094, 0.0094, 0.008836, 0.008836]
    self.assertAllClose(first, expected, rtol=1e-6)
    self.assertAllClose(last, expected, rtol=1e-6)

  def test_learning_rate_schedule_matches_recipe_final(self):
    recipe = recipes.final_recipe()
    schedule = training.learning_rate_schedule(recipe, 703)
    for epoch in (0, 99, 100, 250):
      self.assertAllClose(float(schedule(epoch * 703)), recipe.learning_rate_at(epoch),
                          rtol=1e-6)

  def test_make_optimizer_is_tf_slim_rmsprop(self):
    opt = training.make_optimizer(recipes.search_recipe(epsilon=0.5), 10)
    self.assertIsInstance(opt, keras.optimizers.RMSprop)
    self.assertEqual((opt.rho, opt.momentum, opt.epsilon), (0.9, 0.9, 0.5))

  def test_rmsprop_step_matches_tf_slim_update(self):
    # One step from zero state: v = (1-decay) g^2; m = lr g / sqrt(v + eps); w -= m.
    recipe = recipes.search_recipe()
    opt = training.make_optimizer(recipe, 10)
    w = keras.Variable(np.array([1.0, -2.0], np.float32))
    g = np.array([0.5, 3.0], np.float32)
    opt.apply_gradients([(tf.constant(g), w)])
    v = (1 - 0.9) * g.astype(np.float64) ** 2
    expected = np.array([1.0, -2.0]) - 0.01 * g / np.sqrt(v + 1.0)
    self.assertAllClose(w.numpy(), expected, rtol=1e-6)


class WeightDecayTest(tf.test.TestCase):

  def test_weight_decay_reaches_every_kernel(self):
    recipe = recipes.search_recipe(weight_decay=1e-3)
    model = training.build_cell_network(space.resolve("chain"), recipe, 1, 4)
    kernels = [v for v in model.trainable_weights
               if v.path.endswith(("kernel", "depthwise_kernel", "pointwise_kernel"))]
    # Every conv-like layer of the "chain" cell network: stem, cells, logits.
    self.assertGreater(len(kernels), 20)
    expected = 1e-3 / 2 * sum(float(np.sum(np.square(v.numpy()))) for v in kernels)
    model(np.zeros((1, 32, 32, 3), np.float32))
    self.assertAllClose(float(sum(model.losses)), expected, rtol=1e-5)
    self.assertLen(model.losses, len(kernels))


class CompileModelTest(tf.test.TestCase):

  def _train_step_traces(self, compile_fn):
    """How many times Keras traces the train step in a 2-step fit."""
    model = _tiny_model()
    compile_fn(model)
    traces, step = [], model.train_step

    def counting_step(batch):
      traces.append(1)
      return step(batch)

    model.train_step = counting_step
    splits = _tiny_splits(num_train=16)
    model.fit(data.normalize(splits.x_train), splits.y_train, batch_size=8, epochs=1,
              verbose=0)
    return len(traces), model

  def test_compile_model_builds_optimizer_so_train_step_traces_once(self):
    recipe = recipes.search_recipe()
    count, model = self._train_step_traces(
        lambda m: training.compile_model(m, recipe, 2, jit_compile=False))
    self.assertEqual(count, 1)
    # One velocity and one momentum slot per trainable variable, built at compile time.
    self.assertLen(model.optimizer._velocities, len(model.trainable_variables))  # pylint: disable=protected-access
    self.assertLen(model.optimizer._momentums, len(model.trainable_variables))  # pylint: disable=protected-access
    # Keras alone (optimizer left unbuilt) traces twice: the first trace creates the slots.
    plain, _ = self._train_step_traces(
        lambda m: m.compile(optimizer=training.make_optimizer(recipe, 2), jit_compile=False,
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
    self.assertEqual(plain, 2)


class TrainModelTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.splits = _tiny_splits()
    self.recipe = recipes.search_recipe(epochs=2, batch_size=32)

  def _dir(self):
    return tempfile.mkdtemp(dir=self.get_temp_dir())

  def test_train_model_writes_model_dir_contract(self):
    model_dir = self._dir()
    result = training.train_model(_tiny_model(), self.recipe, self.splits, model_dir,
                                  evaluate_test=True, verbose=0)
    self.assertFalse(result.diverged)
    for name in ("model.keras", "metrics.json", "config.json", "train.log", "curves.png",
                 "checkpoints/state.json", "checkpoints/epoch_0002.weights.h5"):
      self.assertTrue(os.path.exists(os.path.join(model_dir, name)), name)
    self.assertNotEmpty(os.listdir(os.path.join(model_dir, "tensorboard", "train")))
    with open(os.path.join(model_dir, "metrics.json")) as f:
      metrics = json.load(f)
    self.assertEqual(metrics, result.metrics)
    self.assertEqual(metrics["epochs_completed"], 2)
    self.assertEqual(metrics["params"], result.model.count_params())
    self.assertAllClose(metrics["val_error"], result.val_error)
    # The final epoch's validation is the final val_error (not computed twice)...
    self.assertEqual(metrics["val_error"], metrics["history"][-1]["val_error"])
    self.assertAllClose(metrics["val_error"], training.evaluate_error(
        result.model, self.splits.x_val, self.splits.y_val), atol=1e-7)
    # ...and a re-run with nothing left to train evaluates the restored weights.
    again = training.train_model(_tiny_model(seed=3), self.recipe, self.splits, model_dir,
                                 verbose=0)
    self.assertAllClose(again.val_error, result.val_error, atol=1e-7)
    self.assertBetween(metrics["test_error"], 0.0, 1.0)
    self.assertGreater(metrics["train_images_per_second"], 0)
    self.assertGreater(metrics["steady_images_per_second"],
                       metrics["train_images_per_second"])
    self.assertGreater(metrics["startup_seconds"], 0)
    self.assertGreater(metrics["train_seconds"], 0)
    self.assertEqual([h["epoch"] for h in metrics["history"]], [1, 2])
    loaded = network.load_model(os.path.join(model_dir, "model.keras"))
    x = data.normalize(self.splits.x_val[:8])
    self.assertAllClose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0),
                        atol=1e-5)
    with open(os.path.join(model_dir, "config.json")) as f:
      self.assertEqual(json.load(f)["recipe"], self.recipe.to_dict())

  def test_train_model_resume_continues_epoch_count_and_matches(self):
    straight = training.train_model(_tiny_model(), self.recipe, self.splits, self._dir(),
                                    verbose=0)
    model_dir = self._dir()
    first = training.train_model(_tiny_model(), self.recipe.replace(epochs=1), self.splits,
                                 model_dir, verbose=0)
    self.assertEqual(first.metrics["epochs_completed"], 1)
    resumed = training.train_model(_tiny_model(seed=5), self.recipe, self.splits, model_dir,
                                   verbose=0)
    self.assertEqual(resumed.metrics["epochs_completed"], 2)
    self.assertLen(resumed.metrics["history"], 2)
    steps = data.steps_per_epoch(len(self.splits.x_train), 32)
    self.assertEqual(int(resumed.model.optimizer.iterations.numpy()), 2 * steps)
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights()):
      self.assertAllClose(a, b, atol=1e-4, rtol=1e-4)
    with open(os.path.join(model_dir, "train.log")) as f:
      self.assertIn("resuming from", f.read())
    self.assertEqual(os.listdir(os.path.join(model_dir, "checkpoints")).count(
        "epoch_0001.weights.h5"), 0)  # older checkpoints are removed

  def test_train_model_refuses_to_resume_a_different_run(self):
    model_dir = self._dir()
    training.train_model(_tiny_model(), self.recipe.replace(epochs=1), self.splits,
                         model_dir, verbose=0)
    with self.assertRaisesRegex(ValueError, "different run") as refused:
      training.train_model(_tiny_model(), self.recipe.replace(batch_size=16), self.splits,
                           model_dir, verbose=0)
    message = str(refused.exception)
    self.assertIn("(recipe.batch_size: %r -> 16; " % self.recipe.batch_size, message)
    self.assertNotIn("learning_rate", message)  # only what differs, not the whole recipe

  def test_train_model_divergence_is_recorded_not_raised(self):
    model_dir = self._dir()
    recipe = self.recipe.replace(learning_rate=1e30, epsilon=1e-30)
    result = training.train_model(_tiny_model(), recipe, self.splits, model_dir, verbose=0)
    self.assertTrue(result.diverged)
    self.assertTrue(np.isnan(result.val_error))
    self.assertRegex(result.error, "diverged: non-finite training loss.*epoch 1")
    with open(os.path.join(model_dir, "metrics.json")) as f:
      metrics = json.load(f)
    self.assertTrue(metrics["diverged"])
    self.assertIsNone(metrics["val_error"])
    self.assertEqual(metrics["error"], result.error)
    self.assertEqual(metrics["epochs_completed"], 0)
    self.assertFalse(os.path.exists(os.path.join(model_dir, "model.keras")))

  def test_train_model_exploding_finite_loss_is_divergence(self):
    # The reliability probe's case: learning_rate=1e6 gives a huge but finite loss.
    model_dir = self._dir()
    result = training.train_model(_tiny_model(), self.recipe.replace(learning_rate=1e6),
                                  self.splits, model_dir, verbose=0)
    self.assertTrue(result.diverged)
    self.assertRegex(result.error, r"diverged: training loss \S+ at epoch 1, batch \d+ exceeds "
                     r"the divergence bound \(more than 1000 x the initial loss 2\.\d+ and more "
                     r"than 10000\); lower the learning rate")
    self.assertFalse(os.path.exists(os.path.join(model_dir, "model.keras")))

  def test_train_model_verbose_zero_is_quiet(self):
    with self.captureWritesToStream(__import__("sys").stdout) as captured:
      training.train_model(_tiny_model(), self.recipe.replace(epochs=1), self.splits,
                           verbose=0)
    self.assertEmpty(captured.contents())

  def test_train_model_rejects_non_recipe(self):
    with self.assertRaisesRegex(ValueError, "Expected a tea_keras.recipes.Recipe"):
      training.train_model(_tiny_model(), {"epochs": 1}, self.splits)


class DivergenceTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.monitor = training_callbacks.RunMonitor(recipes.search_recipe(), 10,
                                                 training.new_state(), log=lambda line: None)

  def test_divergence_bound_is_relative_and_absolute(self):
    self.assertEqual(training_callbacks.DIVERGENCE_FACTOR, 1e3)
    self.assertEqual(training_callbacks.DIVERGENCE_MIN_LOSS, 1e4)
    self.assertIsNone(self.monitor.divergence(2.3, 0))  # the initial loss
    self.assertEqual(self.monitor.state["initial_loss"], 2.3)
    self.assertIsNone(self.monitor.divergence(5000.0, 1))  # > 1000 x 2.3, < 1e4
    self.assertRegex(self.monitor.divergence(2e4, 2),
                     r"training loss 2e\+04 at epoch 1, batch 3 exceeds the divergence bound")

  def test_divergence_needs_a_thousandfold_rise(self):
    self.assertIsNone(self.monitor.divergence(50.0, 0))
    self.assertIsNone(self.monitor.divergence(4e4, 1))  # > 1e4, < 1000 x 50
    self.assertIsNotNone(self.monitor.divergence(6e4, 2))

  def test_divergence_non_finite_loss(self):
    self.assertRegex(self.monitor.divergence(float("inf"), 4),
                     r"non-finite training loss \(inf\) at epoch 1, batch 5")
    self.assertNotIn("initial_loss", self.monitor.state)

  def test_divergence_initial_loss_survives_a_resume(self):
    self.monitor.divergence(2.0, 0)
    resumed = training_callbacks.RunMonitor(recipes.search_recipe(), 10,
                                            json.loads(json.dumps(self.monitor.state)),
                                            log=lambda line: None)
    self.assertIsNotNone(resumed.divergence(2.5e4, 0))


class TrainGenotypeTest(tf.test.TestCase):

  def test_train_genotype_loss_goes_down(self):
    splits = _tiny_splits(num_train=320)
    recipe = recipes.search_recipe(epochs=4, brightness_max_delta=0.0, contrast_lower=1.0,
                                   contrast_upper=1.0, pad=0, flip=False)
    result = training.train_genotype(space.resolve("chain"), recipe, splits, num_cells=1,
                                     filters=8, verbose=0, seed=0)
    losses = [h["loss"] for h in result.metrics["history"]]
    self.assertLen(losses, 4)
    self.assertLess(losses[-1], losses[0] - 0.1)
    self.assertBetween(result.val_error, 0.0, 1.0)
    self.assertIsNone(result.test_error)
    self.assertEqual(result.model.count_params(), result.metrics["params"])

  def test_train_genotype_rejects_bad_genotype(self):
    with self.assertRaisesRegex(ValueError, "Invalid genotype string"):
      training.train_genotype("nope", recipes.search_recipe(), _tiny_splits())


if __name__ == "__main__":
  tf.test.main()
