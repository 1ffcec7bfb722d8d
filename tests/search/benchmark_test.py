"""Tests for search/benchmark.py: run records and the JSON layout."""

import numpy as np
import tensorflow as tf

from search import benchmark
from search.problems import make_problem


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

  def test_initial_design_is_sobol_in_box(self):
    problem = make_problem("zdt2")
    x = benchmark.initial_design(problem, 3)
    self.assertEqual(x.shape, (14, 6))
    problem.space.validate(x)


if __name__ == "__main__":
  tf.test.main()
