"""Tests for search/benchmarks/benchmark.py: run records and the JSON layout."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from search.benchmarks import benchmark
from search.benchmarks.problems import make_problem


class BenchmarkTest(tf.test.TestCase):

  def test_run_one_records_one_score_per_evaluation(self):
    problem = make_problem("branin_currin")
    run = benchmark.run_one(problem, "random", 9, seed=0)
    self.assertLen(run["log_hv_gap"], 9)
    self.assertLen(run["fit_seconds"], 9 - problem.num_initial)
    self.assertTrue(np.all(np.diff(run["log_hv_gap"]) <= 1e-12))

  def test_cell_problem_reports_hypervolume(self):
    result = benchmark.run_benchmark("cell_synthetic", "random", budget=12, seeds=2)
    self.assertEqual(result["problem"], "cell_synthetic")
    self.assertEqual([r["seed"] for r in result["runs"]], [0, 1])
    self.assertLen(result["runs"][0]["hypervolume"], 12)
    self.assertTrue(np.all(np.diff(result["runs"][0]["hypervolume"]) >= -1e-12))

  def test_summarize_reports_median_final_figure_and_writes_png(self):
    folder = self.get_temp_dir()
    result = {"problem": "zdt2", "strategy": "random", "budget": 3,
              "runs": [{"seed": s, "log_hv_gap": [2.0, 1.0, v]} for s, v in
                       enumerate([0.5, 0.1, 0.3])]}
    with open(os.path.join(folder, "zdt2_random.json"), "w") as f:
      json.dump(result, f)
    table = benchmark.summarize(folder)
    # log10 HV gap: lower is better, so the worst seed is the largest (seed 0).
    self.assertEqual(table, {"zdt2": {"random": (0.3, 3, 0, 0.5)}})
    self.assertTrue(os.path.exists(os.path.join(folder, "zdt2.png")))

  def test_summarize_merges_per_seed_files_and_refuses_conflicts(self):
    folder = self.get_temp_dir() + "/merge"
    os.makedirs(folder)
    def write(name, seeds_values, **extra):
      result = dict({"problem": "zdt2", "strategy": "pesmo", "budget": 2,
                     "runs": [{"seed": s, "log_hv_gap": [1.0, v]} for s, v in seeds_values]},
                    **extra)
      with open(os.path.join(folder, name), "w") as f:
        json.dump(result, f)
    write("a.json", [(0, 0.4), (1, 0.2)])
    write("b.json", [(1, 0.2), (2, 0.9), (3, 0.1)])   # seed 1 again, same figures
    write("c.json", [(0, 5.0)], strategy_options={"refine": 1})
    table = benchmark.summarize(folder)
    median, count, worst, worst_value = table["zdt2"]["pesmo"]
    self.assertAlmostEqual(median, 0.3)  # median of 0.4, 0.2, 0.9, 0.1
    self.assertEqual(count, 4)
    self.assertEqual((worst, worst_value), (2, 0.9))
    self.assertEqual(table["zdt2"]['pesmo {"refine": 1}'], (5.0, 1, 0, 5.0))
    write("d.json", [(2, 0.8)])
    with self.assertRaisesRegex(ValueError, "seed 2 in .*b.json and .*d.json"):
      benchmark.summarize(folder)

  def test_summarize_reports_worst_seed_by_metric_direction(self):
    folder = self.get_temp_dir() + "/worst"
    os.makedirs(folder)
    result = {"problem": "table", "strategy": "pesmo", "budget": 2,
              "runs": [{"seed": s, "hypervolume_fraction": [0.0, v]} for s, v in
                       ((6, 0.198), (0, 0.715), (2, 0.265))]}
    with open(os.path.join(folder, "table_pesmo.json"), "w") as f:
      json.dump(result, f)
    # HV fraction: higher is better, so the worst seed is the smallest.
    self.assertEqual(benchmark.summarize(folder)["table"]["pesmo"], (0.265, 3, 6, 0.198))

  def test_worst_seed_follows_metric_and_refuses_mismatched_lengths(self):
    self.assertEqual(benchmark.worst_seed("log_hv_gap", [3, 4, 5], [-1.0, -0.2, -0.5]),
                     (4, -0.2))
    self.assertEqual(benchmark.worst_seed("hypervolume", [3, 4, 5], [1.0, 0.2, 0.2]), (4, 0.2))
    with self.assertRaisesRegex(ValueError, "one final figure per seed"):
      benchmark.worst_seed("hypervolume", [3, 4], [1.0])

  def test_initial_design_is_sobol_in_box(self):
    problem = make_problem("zdt2")
    x = benchmark.initial_design(problem, 3)
    self.assertEqual(x.shape, (14, 6))
    problem.space.validate(x)


def _bounded_table(path):
  """36 designs (a, b in 0..5): cost = 1 + a + b, error = 12 / (1 + a) + b / 2."""
  rows = ["%d,%d,%.6f,%.6f" % (a, b, 12.0 / (1 + a) + 0.5 * b, 1.0 + a + b)
          for a, b in itertools.product(range(6), range(6))]
  with open(path, "w") as f:
    f.write("a,b,error,cost\n" + "\n".join(rows) + "\n")
  return path


def _brute_force_hv_2d(points, ref):
  """Area dominated by ``points`` below ``ref`` (union of rectangles)."""
  pts = [p for p in points if p[0] < ref[0] and p[1] < ref[1]]
  xs = sorted({p[0] for p in pts} | {ref[0]})
  area = 0.0
  for lo, hi in zip(xs[:-1], xs[1:]):
    area += (hi - lo) * (ref[1] - min([p[1] for p in pts if p[0] <= lo] + [ref[1]]))
  return area


class BoundsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.path = _bounded_table(os.path.join(self.get_temp_dir(), "bounded.csv"))
    self.problem = make_problem("table", table=self.path, variables=["a", "b"],
                                objectives=["error", "cost"])

  def test_with_bounds_scores_feasible_evaluations_against_feasible_front(self):
    bounds = benchmark.parse_bounds(["cost=4"], self.problem)
    self.assertEqual(bounds, [None, 4.0])
    bounded, info = benchmark.with_bounds(self.problem, bounds)
    y = self.problem.table.y
    ref = np.median(y, axis=0)
    feasible = y[y[:, 1] <= 4.0]
    self.assertEqual(info["feasible_rows"], 10)  # a + b <= 3
    best = _brute_force_hv_2d(feasible.tolist(), ref)
    evaluated = y[[0, 7, 30, 35]]  # (0,0), (1,1) feasible; (5,0), (5,5) not
    expected = _brute_force_hv_2d(evaluated[evaluated[:, 1] <= 4.0].tolist(), ref) / best
    self.assertAllClose(benchmark.quality(bounded, evaluated), expected)
    self.assertAllClose(benchmark.quality(bounded, feasible), 1.0)
    self.assertEqual(bounded.metric, "feasible_hypervolume_fraction")

  def test_parse_bounds_refuses_bad_entries(self):
    for entries, message in ((["watts=3"], "Expected OBJECTIVE=VALUE with OBJECTIVE one of "
                                           "error, cost"),
                             (["cost=fast"], "Expected a finite number"),
                             (["cost"], "Expected OBJECTIVE=VALUE"),
                             (["cost=3", "cost=4"], "bounded twice")):
      with self.assertRaisesRegex(ValueError, message):
        benchmark.parse_bounds(entries, self.problem)
    with self.assertRaisesRegex(ValueError, "no row of the table"):
      benchmark.with_bounds(self.problem, [None, 0.5])

  def test_cli_bounds_write_feasible_fields_and_refuse_bad_input(self):
    out = os.path.join(self.get_temp_dir(), "bounded.json")
    cmd = [sys.executable, "-m", "search.benchmarks.benchmark", "--problem=table",
           "--table=" + self.path, "--variables=a,b", "--objectives=error,cost",
           "--num_initial=10", "--strategy=pesmo", "--budget=12", "--seeds=1",
           "--strategy_options={\"num_samples\": 2}", "--out=" + out]
    for bad, message in (("--bounds=watts=3", "OBJECTIVE one of error, cost"),
                         ("--bounds=cost=x", "Expected a finite number"),
                         ("--bounds=cost=0.5", "no row of the table")):
      done = subprocess.run(cmd + [bad], capture_output=True, text=True, check=False)
      self.assertNotEqual(done.returncode, 0)
      self.assertIn(message, done.stderr)
      self.assertNotIn("proposals", done.stderr)  # refused before any run
      self.assertFalse(os.path.exists(out))
    done = subprocess.run(cmd + ["--bounds=cost=4"], capture_output=True, text=True,
                          check=False)
    self.assertEqual(done.returncode, 0, done.stderr)
    with open(out) as f:
      data = json.load(f)
    self.assertEqual(data["bounds"], {"cost": 4.0})
    self.assertEqual(data["feasible_rows"], 10)
    self.assertTrue(data["bounds_to_strategy"])
    run = data["runs"][0]
    cost = self.problem.table.y[run["rows"], 1]
    self.assertEqual(run["feasible_evaluations"], int(np.sum(cost <= 4.0)))
    self.assertEqual(run["feasible_proposals"], int(np.sum(cost[10:] <= 4.0)))
    self.assertLen(run["feasible_hypervolume_fraction"], 12)
    self.assertIn("HV fraction of the true feasible front", done.stdout)
    self.assertRegex(done.stdout, r"worst [0-9.]+ \(seed 0\)")

  def test_cli_strategies_run_one_after_another_and_are_checked_before_any_run(self):
    out = os.path.join(self.get_temp_dir(), "several", "t_{strategy}.json")
    cmd = [sys.executable, "-m", "search.benchmarks.benchmark", "--problem=table",
           "--table=" + self.path, "--variables=a,b", "--objectives=error,cost",
           "--num_initial=10", "--budget=12", "--seeds=1", "--strategies=random,qlognehvi"]
    done = subprocess.run(cmd + ["--out=" + out.replace("{strategy}", "x")],
                          capture_output=True, text=True, check=False)
    self.assertNotEqual(done.returncode, 0)
    self.assertIn("--out must hold {strategy}", done.stderr)
    fake = os.path.join(self.get_temp_dir(), "no_botorch")
    os.makedirs(os.path.join(fake, "botorch"), exist_ok=True)
    with open(os.path.join(fake, "botorch", "__init__.py"), "w") as f:
      f.write("raise ImportError('No module named botorch (test stand-in)')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([fake, os.getcwd()]))
    done = subprocess.run(cmd + ["--out=" + out], capture_output=True, text=True, env=env,
                          check=False)
    self.assertNotEqual(done.returncode, 0)
    self.assertIn('needs BoTorch and PyTorch (the `bench` extra): pip install -e ".[bench]"',
                  done.stderr)
    self.assertNotIn("proposals", done.stderr)  # refused before the random runs too
    self.assertFalse(os.path.exists(os.path.dirname(out)))
    done = subprocess.run(cmd + ["--out=" + out], capture_output=True, text=True, check=False)
    self.assertEqual(done.returncode, 0, done.stderr)
    for name in ("random", "qlognehvi"):
      with open(out.replace("{strategy}", name)) as f:
        data = json.load(f)
      self.assertEqual(data["strategy"], name)
      self.assertLen(data["runs"][0]["rows"], 12)
      self.assertLen(set(data["runs"][0]["rows"]), 12)
      self.assertRegex(done.stdout, "table %s budget=12 seeds=1 .* s per proposal" % name)


  def test_gp_fit_check_ranks_held_out_rows_of_a_smooth_table(self):
    result = benchmark.gp_fit_check("table", 20, seeds=2, holdout=16, problem_args=dict(
        table=self.path, variables=["a", "b"], objectives=["error", "cost"]), num_samples=3)
    self.assertEqual(np.shape(result["spearman"]), (2, 2))
    self.assertEqual(np.shape(result["lengthscales"]), (2, 2, 2))
    # Both objectives are monotone in a and b; 20 of the 36 rows pin the order
    # of the other 16 (a model that ignored the inputs would score about 0).
    self.assertAllGreater(np.asarray(result["spearman"]), 0.8)

  def test_cli_gp_fit_check_prints_spearman_and_refuses_too_many_points(self):
    out = os.path.join(self.get_temp_dir(), "check.json")
    cmd = [sys.executable, "-m", "search.benchmarks.benchmark", "--problem=table",
           "--table=" + self.path, "--variables=a,b", "--objectives=error,cost", "--seeds=1",
           "--gp_check_holdout=10", "--strategy_options={\"num_samples\": 2}", "--out=" + out]
    done = subprocess.run(cmd + ["--gp_fit_check=34"], capture_output=True, text=True,
                          check=False)
    self.assertNotEqual(done.returncode, 0)
    self.assertIn("need 37 designs; table has 36", done.stderr)
    done = subprocess.run(cmd + ["--gp_fit_check=20"], capture_output=True, text=True,
                          check=False)
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn("median Spearman per objective", done.stdout)
    with open(out) as f:
      self.assertEqual(json.load(f)["holdout"], 10)


if __name__ == "__main__":
  tf.test.main()
