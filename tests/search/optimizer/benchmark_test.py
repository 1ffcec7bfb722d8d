"""Tests for search/optimizer/benchmark.py: run records and the JSON layout."""

import json
import os

import numpy as np
import tensorflow as tf

from search.optimizer import benchmark
from search.optimizer.problems import make_problem


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
    self.assertEqual(table, {"zdt2": {"random": (0.3, 3)}})
    self.assertTrue(os.path.exists(os.path.join(folder, "zdt2.png")))

  def test_initial_design_is_sobol_in_box(self):
    problem = make_problem("zdt2")
    x = benchmark.initial_design(problem, 3)
    self.assertEqual(x.shape, (14, 6))
    problem.space.validate(x)


if __name__ == "__main__":
  tf.test.main()
