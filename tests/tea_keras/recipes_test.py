"""Tests of tea_keras/recipes.py: the paper's numbers, the schedule, validation, overrides."""

import json

from absl.testing import parameterized
import tensorflow as tf

from tea_keras import recipes


class RecipeTest(tf.test.TestCase, parameterized.TestCase):

  def test_search_recipe_is_paper_section_iv_a(self):
    r = recipes.search_recipe()
    self.assertEqual((r.epochs, r.batch_size, r.num_cells, r.filters), (10, 32, 2, 24))
    self.assertEqual((r.learning_rate, r.lr_decay_rate, r.lr_decay_epochs), (0.01, 0.94, 2))
    self.assertEqual((r.momentum, r.rmsprop_decay, r.epsilon), (0.9, 0.9, 1.0))
    self.assertEqual(r.weight_decay, 4e-5)
    self.assertEqual(r, recipes.Recipe())

  def test_final_recipe_is_paper_section_v_c(self):
    r = recipes.final_recipe()
    self.assertEqual((r.epochs, r.batch_size), (300, 64))
    self.assertEqual((r.learning_rate, r.lr_decay_rate, r.lr_decay_epochs), (0.01, 0.5, 100))
    self.assertEqual(r.weight_decay, 1e-4)
    self.assertEqual((r.momentum, r.rmsprop_decay, r.epsilon), (0.9, 0.9, 1.0))

  def test_learning_rate_at_search_schedule(self):
    r = recipes.search_recipe()
    self.assertAllClose([r.learning_rate_at(e) for e in range(6)],
                        [0.01, 0.01, 0.0094, 0.0094, 0.008836, 0.008836], rtol=1e-12)

  def test_learning_rate_at_final_schedule_halves_every_100(self):
    r = recipes.final_recipe()
    self.assertAllClose([r.learning_rate_at(e) for e in (0, 99, 100, 199, 200, 299)],
                        [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025], rtol=1e-12)

  def test_overrides_apply_and_keep_the_rest(self):
    r = recipes.final_recipe(epochs=3, batch_size=8)
    self.assertEqual((r.epochs, r.batch_size, r.lr_decay_epochs), (3, 8, 100))
    self.assertEqual(recipes.search_recipe(epsilon=0.001).epsilon, 0.001)

  def test_unknown_override_names_the_fields(self):
    with self.assertRaisesRegex(ValueError, "Invalid recipe override.*epoch\\b.*"
                                "Expected field names among: .*epochs"):
      recipes.search_recipe(epoch=3)

  @parameterized.named_parameters(
      ("negative_epochs", {"epochs": -1}, "epochs`. Expected an integer >= 0"),
      ("zero_batch", {"batch_size": 0}, "batch_size`. Expected an integer >= 1"),
      ("float_batch", {"batch_size": 3.0}, "batch_size"),
      ("zero_lr", {"learning_rate": 0.0}, "learning_rate`. Expected a finite number in \\(0"),
      ("nan_lr", {"learning_rate": float("nan")}, "learning_rate"),
      ("momentum_one", {"momentum": 1.0}, "momentum`. Expected a finite number in \\[0.0, 1.0\\)"),
      ("contrast", {"contrast_lower": 2.0}, "contrast_upper"),
      ("jit", {"jit_compile": "yes"}, "jit_compile`. Expected True, False or None"),
  )
  def test_recipe_rejects_bad_values(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      recipes.search_recipe(**overrides)

  def test_dict_round_trip_through_json(self):
    r = recipes.final_recipe(jit_compile=True, drop_path_rate=0.1)
    self.assertEqual(recipes.Recipe.from_dict(json.loads(json.dumps(r.to_dict()))), r)

  def test_every_field_documented(self):
    for name in recipes.field_names():
      self.assertNotEmpty(recipes.field_help(name), name)

  def test_recipe_is_frozen(self):
    with self.assertRaises(AttributeError):
      recipes.search_recipe().epochs = 3  # pytype: disable=not-writable


if __name__ == "__main__":
  tf.test.main()
