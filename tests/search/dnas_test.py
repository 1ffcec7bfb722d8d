"""Tests of the DNAS sweep application (search/dnas): its points, the
projection onto a size target, the uniform-width baseline, and the CLI end to
end (a tiny sweep, its resume, its refusals)."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from search.dnas import analysis
from search.dnas import sweep
from tea_keras.dnas import export as dnas_export
from tea_keras.dnas import seeds
from tea_keras.dnas import supernet as supernet_lib
from tests.tea_keras.dnas import fixtures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--flagfile=flags/dnas_quick.cfg", "--size_targets=0.5", "--lambda_energy=1",
        "--nobaseline", "--train_images=128", "--measure_images=100",
        "--measure_batch_size=50", "--measure_repeats=1", "--contention_policy=warn"]


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "search.dnas"] + list(args), cwd=REPO,
                        capture_output=True, text=True, timeout=900, env=env)


class PointsTest(tf.test.TestCase, parameterized.TestCase):

  def test_points_one_per_target_and_strength_and_a_baseline_per_target(self):
    settings = sweep.DnasSettings(size_targets=(0.75, 0.25), lambda_energy=(0.0, 2.0))
    got = [p.to_string() for p in sweep.points(settings)]
    self.assertEqual(got, ["dnas, size <= 0.75 x seed, lambda_E 0",
                           "dnas, size <= 0.75 x seed, lambda_E 2",
                           "uniform width, size <= 0.75 x seed",
                           "dnas, size <= 0.25 x seed, lambda_E 0",
                           "dnas, size <= 0.25 x seed, lambda_E 2",
                           "uniform width, size <= 0.25 x seed"])
    for point in sweep.points(settings):  # the store's encoding round-trips
      self.assertEqual(sweep.Point.from_trial({"encoding": point.to_vector()}), point)

  @parameterized.parameters(
      (dict(size_targets=(0.0,)), "size_targets"),
      (dict(size_targets=(1.5,)), "size_targets"),
      (dict(lambda_energy=(-1.0,)), "lambda_energy"),
      (dict(seed_model="cell"), "genotype"),
      (dict(loss="squared"), "loss"),
      (dict(search_epochs=0), "search_epochs"),
      (dict(mask_speed=0.0), "mask_speed"),
      (dict(table_fractions=(0.25, 0.5)), "table_fractions"))
  def test_settings_refuse_bad_values_naming_them(self, kwargs, name):
    with self.assertRaisesRegex(ValueError, "argument.* `%s`" % name):
      sweep.DnasSettings(**kwargs).validate()


class ProjectionTest(tf.test.TestCase):

  def test_project_to_target_meets_it_counted_on_the_export_and_stops_there(self):
    """Random masks, a target below the binarized size: after projection the
    exported model's count_params() (an independent count) is within the
    target, and putting back the last channel dropped would exceed it."""
    rng = np.random.default_rng(3)
    seed = fixtures.residual_model(width=12)
    net = supernet_lib.make_supernet(seed)
    fixtures.random_masks(net, rng, low=0.45, high=1.0)
    start = int(np.asarray(net.size()))
    target = 0.4 * start
    before = [a.copy() for a in net.mask_values()]
    dropped = sweep.project_to_target(net, target)
    self.assertGreater(dropped, 0)
    exported = dnas_export.export_model(net)
    self.assertLessEqual(exported.count_params(), target)
    self.assertEqual(exported.count_params(), int(np.asarray(net.size())))
    after = net.mask_values()
    changed = [(g, c) for g, (a, b) in enumerate(zip(before, after))
               for c in np.flatnonzero(a != b)]
    self.assertLen(changed, dropped)
    # The most recently dropped channel has the largest mask of those dropped
    # (smallest masks go first); restoring it alone exceeds the target.
    last_g, last_c = max(changed, key=lambda gc: before[gc[0]][gc[1]])
    alpha = after[last_g].copy()
    alpha[last_c] = before[last_g][last_c]
    net.set_mask_values(last_g, alpha)
    self.assertGreater(float(np.asarray(net.size())), target)

  def test_uniform_width_is_the_widest_grid_width_within_the_target(self):
    settings = sweep.DnasSettings()
    seed_params = sweep.seed_network(settings, 10).count_params()
    target = 0.3 * seed_params
    width, model = sweep.uniform_width(settings, 10, target)
    self.assertLessEqual(model.count_params(), target)
    # Brute force on a grid of 1/32: no grid width above the one found fits.
    fits = [w for w in np.arange(1, 33) / 32.0
            if sweep.seed_network(settings, 10, width=w).count_params() <= target]
    self.assertGreaterEqual(width, max(fits))
    keras.backend.clear_session()


class AnalysisTest(tf.test.TestCase):

  def _point(self, trial_id, method, time_ms, error, macs, lam=0.0):
    return {"dir": "d", "trial_id": trial_id, "method": method, "size_target": 0.5,
            "lambda_energy": None if method == "uniform" else lam, "loss": "absolute",
            "cost_model": "macs", "params": 100, "macs": macs,
            "time_per_image_s": time_ms / 1e3, "error": error, "predicted_cost": None,
            "contended": False, "train_seconds": 10.0, "wall_seconds": 20.0}

  def test_analyze_front_dominance_span_and_rank_correlation(self):
    points = [self._point(1, "dnas", 1.0, 0.30, 500), self._point(2, "dnas", 2.0, 0.20, 900),
              self._point(3, "dnas", 3.0, 0.25, 800), self._point(4, "uniform", 2.5, 0.22, 1000)]
    result = analysis.analyze(points)
    t = result["targets"]["0.5"]
    self.assertEqual([p["trial_id"] for p in t["points"] if p["on_front"]], [1, 2])
    self.assertEqual(t["uniform_dominated_by"], [2])     # #2: faster and better than #4
    self.assertEqual(t["uniform_dominates"], [3])        # #4: faster and better than #3
    self.assertAllClose(t["time_span"], 3.0)
    # Ranks of MACs 1,3,2,4 against times 1,2,4,3: d^2 = 0+1+4+1, rho = 1 - 6*6/(4*15).
    self.assertAllClose(result["spearman_macs_vs_time"], 1 - 6 * 6 / (4 * 15))
    self.assertIsNone(result["spearman_table_vs_time"])
    self.assertIn("uniform baseline dominated by DNAS points [2]",
                  analysis.format_report(result))

  def test_load_points_refuses_a_directory_without_a_sweep(self):
    with self.assertRaisesRegex(ValueError, "results_dir.*DNAS sweep"):
      analysis.load_points(self.get_temp_dir())


class FlagfileTest(tf.test.TestCase):

  def test_paper_scale_flagfile_parses_and_is_refused_on_a_machine_without_cuda(self):
    """flags/dnas_resnet8.cfg is valid up to the target check, which this
    CPU machine fails with one error line naming what is missing, before
    anything is written (the GPU run itself needs the GPU)."""
    import onnxruntime  # pylint: disable=g-import-not-at-top
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
      self.skipTest("a GPU machine: the flagfile would run")
    results = os.path.join(self.get_temp_dir(), "dnas_gpu")
    proc = _run("--flagfile=flags/dnas_resnet8.cfg", "--results_dir=" + results)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    self.assertRegex(last, r"^error: this machine \(device gpu\) cannot measure")
    self.assertFalse(os.path.exists(results))


  def test_measured_cost_model_with_a_remote_agent_is_refused_before_contacting_it(self):
    token = os.path.join(self.get_temp_dir(), "token.txt")
    with open(token, "w") as f:
      f.write("t")
    results = os.path.join(self.get_temp_dir(), "dnas_remote")
    proc = _run("--flagfile=flags/dnas_quick.cfg", "--cost_model=measured", "--device=remote",
                "--device_url=http://127.0.0.1:9", "--device_token_file=" + token,
                "--results_dir=" + results)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertRegex(proc.stderr.strip().splitlines()[-1],
                     r"^error: --cost_model=measured times each layer alone")
    self.assertFalse(os.path.exists(results))


class CliTest(tf.test.TestCase):

  @pytest.mark.slow  # three trainings, an export and a measurement: about a minute
  def test_cli_sweeps_resumes_and_refuses_another_sweeps_dir(self):
    """A one-point sweep (ResNet-8 seed, 128 training images, one epoch per
    phase) ends with the point measured and within its size target; the
    same command again resumes with nothing left; other settings and a
    search's directory are refused with one line."""
    results = os.path.join(self.get_temp_dir(), "dnas")
    first = _run(*TINY, "--results_dir=" + results)
    self.assertEqual(first.returncode, 0, first.stdout[-3000:] + first.stderr[-3000:])
    self.assertIn("dnas sweep finished: 1 points (done 1)", first.stdout)
    with open(os.path.join(results, "results.csv")) as f:
      (row,) = list(csv.DictReader(f))
    self.assertEqual((row["status"], row["source"]), ("done", "dnas"))
    seed_params = seeds.resnet8_v05().count_params()  # 78,666 (seeds_test pins it)
    self.assertLessEqual(int(row["params"]), 0.5 * seed_params)
    self.assertGreater(float(row["time_s"]), 0.0)
    for name in ("pareto.csv", "summary.json", "dnas_fronts.png"):
      self.assertTrue(os.path.isfile(os.path.join(results, name)), name)

    analysis_run = subprocess.run(
        [sys.executable, "-m", "search.dnas.analysis", "--results_dir=" + results,
         "--remeasure_rounds=1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    self.assertEqual(analysis_run.returncode, 0, analysis_run.stderr[-3000:])
    self.assertIn("times re-measured back to back", analysis_run.stdout)
    with open(os.path.join(results, "dnas_analysis.json")) as f:
      (point,) = json.load(f)["targets"]["0.5"]["points"]
    self.assertGreater(point["time_per_image_s"], 0.0)
    self.assertAllClose(point["sweep_time_per_image_s"],
                        float(row["time_s"]) / float(row["images"]))

    again = _run(*TINY, "--results_dir=" + results)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn("1 points, 0 left", again.stdout)
    self.assertNotIn("point #1:", again.stdout)

    other = _run(*TINY, "--results_dir=" + results, "--lambda_size=3")
    self.assertEqual(other.returncode, 1)
    self.assertRegex(other.stderr.strip().splitlines()[-1],
                     r"^error: --results_dir=.* holds another sweep \(dnas differ\)")

    search_dir = os.path.join(self.get_temp_dir(), "search")
    os.makedirs(search_dir)
    with open(os.path.join(results, "config.json")) as f:
      config = json.load(f)
    config.pop("dnas")
    with open(os.path.join(search_dir, "config.json"), "w") as f:
      json.dump(config, f)
    refused = _run(*TINY, "--results_dir=" + search_dir)
    self.assertEqual(refused.returncode, 1)
    self.assertIn("holds a search, not a DNAS sweep", refused.stderr)
    self.assertEqual(sorted(os.listdir(search_dir)), ["config.json"])


if __name__ == "__main__":
  tf.test.main()
