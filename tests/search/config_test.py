"""Tests for search/config.py: invalid combinations refused before any work."""

import dataclasses
import os
import sys
from unittest import mock

import tensorflow as tf
from absl.testing import parameterized

from search import config as config_lib


class ConfigTest(tf.test.TestCase, parameterized.TestCase):

  def _config(self, **kw):
    kw.setdefault("results_dir", self.get_temp_dir())
    return config_lib.SearchConfig(**kw)

  def test_validate_accepts_defaults(self):
    config = self._config()
    # The defaults are the paper's experiment: PESMO over error, time and energy.
    self.assertEqual((config.strategy, config.objectives, config.power_source),
                     ("pesmo", ("error", "time", "energy"), "auto"))
    try:
      config_lib.validate(config)
    except ValueError as e:
      self.fail("expected the default config to be valid; validate() refused it: %s" % e)

  @parameterized.parameters(
      (dict(device="tpu"), "--device=tpu is not supported. Expected one of: cpu, gpu"),
      (dict(objectives=("error", "latency")), "--objectives=latency is not supported"),
      (dict(objectives=("error",)), "needs at least two"),
      (dict(objectives=("error", "time", "energy"), power_source="none"),
       "--objectives includes energy but --power_source=none"),
      (dict(device="cpu", power_source="nvml"), "--power_source=nvml cannot measure device=cpu"),
      (dict(device="remote"), "--device=remote needs --device_url"),
      (dict(device="remote", device_url="http://127.0.0.1:1", device_token_file="/nonexistent"),
       "needs --device_token_file naming a readable file"),
      (dict(num_initial=20, num_samples=10), "expected 1 <= num_initial <= num_samples"),
      (dict(strategy="bohb"), "--strategy=bohb is not supported"),
      (dict(measure_images=50, measure_batch_size=100), "smaller than --measure_batch_size"),
  )
  def test_validate_refuses_invalid_combination(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      config_lib.validate(self._config(**kwargs))

  def test_validate_refuses_qlognehvi_without_botorch_saying_what_to_install(self):
    config = self._config(strategy="qlognehvi")
    config_lib.validate(config)  # BoTorch is installed here (the bench extra)
    with mock.patch.dict(sys.modules, {"botorch": None}):
      with self.assertRaisesRegex(ValueError, r"--strategy=qlognehvi needs BoTorch .*pip "
                                  r"install -e \"\.\[bench\]\"\. Import error: .*botorch"):
        config_lib.validate(config)

  def test_validate_allows_energy_dropped_when_optional(self):
    no_meter = dict(objectives=("error", "time", "energy"), power_source="none")
    with self.assertRaisesRegex(ValueError, "--objectives includes energy but "
                                "--power_source=none"):
      config_lib.validate(self._config(**no_meter))
    try:
      config_lib.validate(self._config(optional_energy=True, **no_meter))
    except ValueError as e:
      self.fail("expected --optional_energy to allow energy among the objectives with "
                "--power_source=none (it is dropped); validate() refused it: %s" % e)

  def test_check_results_dir_refuses_other_experiment(self):
    config = self._config(objectives=("error", "time"))
    self.assertFalse(config_lib.check_results_dir(config))
    config_lib.write_config(config)
    self.assertTrue(config_lib.check_results_dir(config))
    # Run-control fields may change (extend a search, more workers).
    config_lib.check_results_dir(dataclasses.replace(config, num_samples=800, max_parallel=4))
    with self.assertRaisesRegex(ValueError, "holds another experiment.*objectives"):
      config_lib.check_results_dir(dataclasses.replace(config, objectives=("error", "energy")))
    changed_space = dict(config.search_space, num_blocks=4)
    with self.assertRaisesRegex(ValueError, "search_space"):
      config_lib.check_results_dir(dataclasses.replace(config, search_space=changed_space))

  def test_check_results_dir_names_only_the_differing_fields(self):
    config = self._config(objectives=("error", "time"), recipe={"epochs": 2})
    config_lib.write_config(config)
    other = dataclasses.replace(config, recipe={"epochs": 3},
                                search_space=dict(config.search_space, num_blocks=4))
    with self.assertRaises(ValueError) as refused:
      config_lib.check_results_dir(other)
    message = str(refused.exception)
    self.assertIn("(recipe.epochs: 2 there, 3 now; search_space.num_blocks: 5 there, 4 now)",
                  message)
    for unchanged in ("ops", "sep7x7", "cardinalities", "objectives", "dataset"):
      self.assertNotIn(unchanged, message)

  def test_check_results_dir_resumes_a_config_written_before_new_fields(self):
    """An older tea-keras did not write `precisions` (nor later fields): the
    same experiment resumes, whatever their defaults."""
    import json  # pylint: disable=g-import-not-at-top
    config = self._config(objectives=("error", "time"))
    config_lib.write_config(config)
    path = os.path.join(config.results_dir, "config.json")
    with open(path) as f:
      raw = json.load(f)
    for field in ("precisions", "calibration_images", "power_options"):
      raw.pop(field)
    with open(path, "w") as f:
      json.dump(raw, f)
    self.assertTrue(config_lib.check_results_dir(config))
    with self.assertRaisesRegex(ValueError, "objectives"):
      config_lib.check_results_dir(dataclasses.replace(config, objectives=("error", "energy")))

  def test_check_results_dir_refuses_a_changed_artifact_format(self):
    config = self._config(objectives=("error", "time"), device_kind="myriad",
                          artifact_format="onnx", onnx_opset=13)
    config_lib.write_config(config)
    with self.assertRaisesRegex(ValueError, "artifact_format: 'onnx' there, 'openvino' now"):
      config_lib.check_results_dir(dataclasses.replace(config, artifact_format="openvino"))

  def test_check_results_dir_refuses_foreign_config(self):
    d = os.path.join(self.get_temp_dir(), "foreign")
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
      f.write('{"model": "something else"}')
    with self.assertRaisesRegex(ValueError, "is not a tea-keras search config"):
      config_lib.check_results_dir(self._config(results_dir=d))

  def test_config_json_round_trip(self):
    config = self._config(recipe={"epochs": 2}, objectives=("error", "time"))
    import json
    self.assertEqual(config_lib.SearchConfig.from_dict(json.loads(config.to_json())), config)


if __name__ == "__main__":
  tf.test.main()
