"""Tests for search/optimizer/anchors.py: input checks, the missing-BoTorch
error, and a subprocess run whose JSON follows the benchmark's format from
the benchmark's own initial points."""

import csv
import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import tensorflow as tf

from search.optimizer import anchors, benchmark, pareto
from search.optimizer.problems import make_problem

ROOT = pathlib.Path(__file__).resolve().parents[3]

try:
  import botorch  # pylint: disable=g-import-not-at-top,unused-import
  _HAVE_BOTORCH = True
except ImportError:
  _HAVE_BOTORCH = False


def _python(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable] + list(args), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


class AnchorsTest(tf.test.TestCase):

  def test_check_supported_rejects_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, "Expected one of qlognehvi"):
      anchors.check_supported(make_problem("zdt1"), "qnehvi")
    with self.assertRaisesRegex(ValueError, "continuous space or a finite candidate set"):
      anchors.check_supported(make_problem("cell_synthetic"), "qlognehvi")

  def test_missing_botorch_error_names_the_extra(self):
    code = ("import sys; sys.modules['botorch'] = None\n"
            "from search.optimizer import anchors\n"
            "try:\n  anchors.import_botorch()\n"
            "except ImportError as e:\n  print(e)\n")
    proc = _python("-c", code)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn('pip install -e ".[bench]"', proc.stdout)
    self.assertIn("Import error", proc.stdout)

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_cli_run_writes_benchmark_json_from_benchmark_initial_points(self):
    problem = make_problem("branin_currin")
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "bc.json")
      proc = _python("-m", "search.optimizer.anchors", "--problem=branin_currin",
                     "--strategy=qlognehvi", "--budget=%d" % (problem.num_initial + 2),
                     "--seeds=1", "--first_seed=3", "--num_restarts=2", "--raw_samples=32",
                     "--out=" + out)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      with open(out) as f:
        result = json.load(f)
    self.assertEqual(result["problem"], "branin_currin")
    self.assertEqual(result["strategy"], "qlognehvi")
    run = result["runs"][0]
    self.assertEqual(run["seed"], 3)
    self.assertLen(run["log_hv_gap"], problem.num_initial + 2)
    self.assertLen(run["fit_seconds"], 2)
    self.assertLen(run["acquisition_seconds"], 2)
    # The initial scores are those of the benchmark's seeded Sobol points.
    y = problem.evaluate(benchmark.initial_design(problem, 3))
    expected = pareto.log_hv_gap(y, problem.ref_point, problem.max_hypervolume)
    self.assertAllClose(run["log_hv_gap"][problem.num_initial - 1], expected)
    self.assertTrue(np.all(np.diff(run["log_hv_gap"]) <= 1e-12))  # gaps never grow

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_table_run_proposes_only_unevaluated_rows(self):
    path = os.path.join(self.get_temp_dir(), "toy.csv")
    with open(path, "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["op", "width", "depth", "error", "cost"])
      for op, width, depth in itertools.product(("conv", "pool", "skip"), (1, 2, 4), (0, 1)):
        cost = {"conv": 3.0, "pool": 1.0, "skip": 0.5}[op] * width * (1 + depth)
        error = 40.0 / (1.0 + cost) + 2.0 * depth + (1.5 if op == "skip" else 0.0)
        w.writerow([op, width, depth, error, cost])
    problem = make_problem("table", table=path, variables=["op", "width", "depth"],
                           objectives=["error", "cost"], log_objectives=["cost"],
                           num_initial=4)
    result = anchors.run_anchor(problem, "qlognparego", budget=7, seeds=1,
                                settings={"mc_samples": 16})
    run = result["runs"][0]
    self.assertLen(run["rows"], 7)
    self.assertLen(set(run["rows"]), 7)              # no row twice
    self.assertEqual(run["rows"][:4], [int(i) for i in problem.table.rows(
        benchmark.initial_design(problem, 0))])     # the benchmark's initial rows
    self.assertLen(run["hypervolume_fraction"], 7)
    self.assertEqual(result["table"]["objectives"], ["error", "cost"])
    with self.assertRaisesRegex(ValueError, "needs a continuous box"):
      anchors.check_supported(problem, "pes")


if __name__ == "__main__":
  tf.test.main()
