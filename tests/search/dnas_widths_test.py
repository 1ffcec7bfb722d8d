"""Tests of search/dnas/widths.py: the black-box search over ResNet-8's six
free widths (the DNAS sweep's like-for-like baseline), its designs, its
place in ``search.dnas.analysis`` and the CLI end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from search.dnas import analysis
from search.dnas import widths as widths_lib
from tea_keras.dnas import seeds
from tea_keras.dnas import supernet as supernet_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--flagfile=flags/dnas_quick.cfg", "--train_images=128", "--measure_images=100",
        "--measure_batch_size=50", "--measure_repeats=1", "--contention_policy=warn",
        "--warmup_epochs=0", "--search_epochs=1", "--finetune_epochs=0", "--num_initial=2"]


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "search.dnas.widths"] + list(args), cwd=REPO,
                        capture_output=True, text=True, timeout=900, env=env)


class WidthsTest(tf.test.TestCase):

  def test_widths_from_fractions_rounds_to_whole_channels_at_least_one(self):
    w = widths_lib.Widths.from_fractions([1.0, 0.5, 0.26, 0.01, 1 / 32, 0.999])
    self.assertEqual(w.widths, (16, 16, 17, 1, 1, 64))
    self.assertEqual(widths_lib.Widths.from_trial({"encoding": list(w.widths)}), w)

  def test_width_space_one_key_per_network(self):
    space = widths_lib.width_space()
    a = np.array([[0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    b = a + 0.005      # 8.08 -> 8, 16.16 -> 16, 32.32 -> 32 channels: the same network
    c = a + 0.02       # 8.32 -> 8, 16.64 -> 17, 32.64 -> 33: another one
    self.assertEqual(widths_lib.Widths.from_fractions(b[0]).widths, (8, 16, 32) * 2)
    self.assertEqual(widths_lib.Widths.from_fractions(c[0]).widths, (8, 17, 33) * 2)
    self.assertEqual(space.keys(a), space.keys(b))
    self.assertNotEqual(space.keys(a), space.keys(c))

  def test_widths_build_the_six_groups_the_supernet_masks(self):
    """The space's six widths are the DNAS supernet's six mask groups of
    ResNet-8: searching them is searching the same space."""
    w = widths_lib.Widths((12, 20, 40, 5, 9, 30))
    model = w.build(10)
    groups = supernet_lib.make_supernet(model).mask_variables
    self.assertEqual(sorted(int(v.shape[0]) for v in groups), sorted(w.widths))
    self.assertEqual(widths_lib.Widths(widths_lib.SEED_WIDTHS).build(10).count_params(),
                     seeds.resnet8_v05().count_params())

  def test_objectives_of_reads_the_deployed_error_time_per_image_and_size(self):
    m = {"deployed_val_error": 0.3, "val_error": 0.9, "time_s": 0.5, "images": 500,
         "params": 1234}
    self.assertAllClose(widths_lib.objectives_of(m), [0.3, 1e-3, 1234.0])
    self.assertIsNone(widths_lib.objectives_of(dict(m, params=None)))


class AnalysisTest(tf.test.TestCase):

  @staticmethod
  def _point(trial_id, method, time_ms, error, params, target=0.5, cpu=None):
    return {"dir": "w" if target is None else "d", "trial_id": trial_id, "method": method,
            "size_target": target, "lambda_energy": 1.0 if method == "dnas" else None,
            "loss": "absolute", "cost_model": "macs", "params": params, "macs": 10 * trial_id,
            "time_per_image_s": time_ms / 1e3, "error": error, "predicted_cost": None,
            "contended": False, "train_seconds": 10.0, "wall_seconds": 20.0,
            "seed_params": 1000, "cpu_seconds": cpu}

  def test_analyze_files_searched_networks_under_every_target_they_meet(self):
    points = [self._point(1, "dnas", 1.0, 0.30, 500, 0.5),
              self._point(2, "dnas", 2.0, 0.20, 240, 0.25),
              self._point(1, "pesmo", 0.8, 0.25, 400, None, cpu=60.0),   # meets 0.5 only
              self._point(2, "pesmo", 3.0, 0.19, 200, None, cpu=30.0),   # meets both
              self._point(3, "pesmo", 0.5, 0.50, 900, None, cpu=30.0)]   # meets neither
    result = analysis.analyze(points)
    half = result["targets"]["0.5"]
    quarter = result["targets"]["0.25"]
    # brute force: at 0.5, dnas #1 (1.0, .30), pesmo #1 (0.8, .25), pesmo #2 (3.0, .19)
    self.assertEqual(sorted((p["method"], p["trial_id"]) for p in half["points"]),
                     [("dnas", 1), ("pesmo", 1), ("pesmo", 2)])
    self.assertEqual(half["searched_on_front"], [1, 2])
    self.assertEqual(half["dnas_dominated_by_searched"], [1])
    self.assertEqual(sorted(p["trial_id"] for p in quarter["points"]), [2, 2])
    self.assertEqual(quarter["searched_dominated_by_dnas"], [])
    cost = result["cost_per_dir"]
    self.assertAllClose(cost["w"]["cpu_seconds"], 120.0)
    self.assertIsNone(cost["d"]["cpu_seconds"])
    self.assertIn("width-search networks on the front [1, 2]", analysis.format_report(result))


class CliTest(tf.test.TestCase):

  @pytest.mark.slow  # three short trainings, exports and measurements: about a minute
  def test_cli_searches_resumes_and_refuses_a_dnas_sweeps_dir(self):
    results = os.path.join(self.get_temp_dir(), "widths")
    first = _run(*TINY, "--num_samples=3", "--results_dir=" + results)
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    self.assertIn("[network 3/3]", first.stdout)
    with open(os.path.join(results, "results.csv")) as f:
      rows = f.read().splitlines()
    self.assertLen(rows, 4)
    again = _run(*TINY, "--num_samples=4", "--results_dir=" + results)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn("[network 4/4]", again.stdout)
    self.assertNotIn("network #1 ", again.stdout)       # the first three kept
    points = analysis.load_points(results)
    self.assertLen(points, 4)
    for p in points:
      self.assertLessEqual(p["params"], p["seed_params"])
      self.assertGreater(p["cpu_seconds"], 0.0)
    with open(os.path.join(results, "config.json")) as f:
      self.assertIn("widths", json.load(f))
    sweep_dir = os.path.join(self.get_temp_dir(), "sweep")
    os.makedirs(sweep_dir)
    with open(os.path.join(sweep_dir, "config.json"), "w") as f:
      json.dump({"dnas": {}}, f)
    refused = _run(*TINY, "--num_samples=3", "--results_dir=" + sweep_dir)
    self.assertEqual(refused.returncode, 1)
    self.assertRegex(refused.stderr.strip().splitlines()[-1],
                     r"^error: --results_dir=.* holds a DNAS sweep, not a width search")


if __name__ == "__main__":
  tf.test.main()
