"""End to end: a constrained, two-precision search through `python -m search.run`
(flags/constrained.cfg with tiny settings), and the refusal of a budget no cell
meets before any work."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tea_keras import cost
from tea_keras import space

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--flagfile=" + os.path.join(ROOT, "flags", "constrained.cfg"), "--num_cells=1",
        "--filters=4", "--epochs=1", "--train_images=256", "--measure_images=100",
        "--measure_batch_size=50", "--measure_repeats=1", "--power_source=none",
        "--objectives=error,time", "--calibration_images=50"]


def _run(results_dir, *extra, timeout=1500):
  # --results_dir after the flagfile, whose own value it overrides.
  return subprocess.run([sys.executable, "-m", "search.run"] + TINY
                        + ["--results_dir=" + results_dir] + list(extra), capture_output=True,
                        text=True, cwd=ROOT, timeout=timeout)


def _median_params(count=200, seed=0):
  return int(np.median([cost.genotype_cost(g, 1, 4)["params"]
                        for g in space.sample_many(np.random.default_rng(seed), count)]))


class ConstrainedSearchTest(tf.test.TestCase):

  def test_cli_refuses_a_budget_no_cell_meets_before_any_work(self):
    d = os.path.join(self.get_temp_dir(), "none_fits")
    proc = _run(d, "--max_params=800", timeout=300)
    self.assertEqual(proc.returncode, 1, msg=proc.stderr[-2000:])
    self.assertIn("No cell of the search space meets the budget (params <= 800", proc.stderr)
    self.assertFalse(os.path.exists(os.path.join(d, "trials")))

  @pytest.mark.slow
  def test_constrained_int8_search_end_to_end(self):
    d = os.path.join(self.get_temp_dir(), "constrained")
    budget = _median_params()
    proc = _run(d, "--max_params=%d" % budget, "--num_samples=3", "--num_initial=2",
                "--strategy=random")
    self.assertEqual(proc.returncode, 0, msg=proc.stderr[-3000:])
    with open(os.path.join(d, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual(sorted({r["precision"] for r in rows}), ["fp32", "int8"])
    self.assertLen({r["trial_id"] for r in rows}, 3)
    for r in rows:  # every trained cell within budget, counted on the built model
      self.assertLessEqual(int(r["params"]), budget)
    with open(os.path.join(d, "pareto.csv")) as f:
      front = list(csv.DictReader(f))
    self.assertIn("precision", front[0])
    int8 = [r for r in rows if r["precision"] == "int8"]
    fp32 = {r["trial_id"]: r for r in rows if r["precision"] == "fp32"}
    for r in int8:  # measured by ONNX Runtime, smaller than its fp32 export
      self.assertGreater(float(r["time_s"]), 0)
      self.assertLess(int(r["model_bytes"]), int(fp32[r["trial_id"]]["model_bytes"]))
    with open(os.path.join(d, "summary.json")) as f:
      feasibility = json.load(f)["feasibility"]
    self.assertEqual(feasibility["budgets"], {"max_params": budget})
    self.assertEqual((feasibility["pairs"], feasibility["trained_over_known_budgets"]), (6, 0))


if __name__ == "__main__":
  tf.test.main()
