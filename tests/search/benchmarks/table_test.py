"""Tests for search/benchmarks/table.py and ``benchmark --problem=table``."""

import csv
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.benchmarks import benchmark
from search.benchmarks import table as table_lib
from search.benchmarks.problems import make_problem

OPS = ("conv", "pool", "skip")


def _objectives(op, width, depth):
  """Two conflicting objectives of a toy (op, width, depth) design."""
  cost = {"conv": 3.0, "pool": 1.0, "skip": 0.5}[op] * width * (1 + depth)
  error = 40.0 / (1.0 + cost) + 2.0 * depth + (1.5 if op == "skip" else 0.0)
  return error, cost


def _write(path, rows, header=("id", "op", "width", "depth", "error", "cost")):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return path


def _toy_rows():
  """3 x 3 x 2 = 18 designs (every combination), in a shuffled order."""
  rows = []
  for i, (op, width, depth) in enumerate(itertools.product(OPS, (1, 2, 4), (0, 1))):
    rows.append([i, op, width, depth] + ["%.6f" % v for v in _objectives(op, width, depth)])
  order = np.random.default_rng(0).permutation(len(rows))
  return [rows[i] for i in order]


def _brute_force_hv_2d(points, ref):
  """Area dominated by ``points`` (minimized) below ``ref``: the union of the
  rectangles [p, ref], integrated on the grid of their coordinates."""
  pts = [p for p in points if p[0] < ref[0] and p[1] < ref[1]]
  xs = sorted({p[0] for p in pts} | {ref[0]})
  area = 0.0
  for a, b in zip(xs[:-1], xs[1:]):
    low = min([p[1] for p in pts if p[0] <= a] + [ref[1]])
    area += (b - a) * (ref[1] - low)
  return area


class TableTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.rows = _toy_rows()
    self.path = _write(os.path.join(self.get_temp_dir(), "toy.csv"), self.rows)

  def _table(self, logs=("cost",)):
    return table_lib.Table(self.path, ["op", "width", "depth"], ["error", "cost"], logs)

  def test_space_is_categorical_over_the_rows(self):
    t = self._table()
    self.assertAllEqual(t.space.cardinalities, [3, 3, 2])
    self.assertEqual(t.levels[1], ["1", "2", "4"])  # numeric order
    self.assertEqual(t.levels[0], ["conv", "pool", "skip"])
    self.assertEqual(t.space.candidates.shape, (18, 3))
    # Row i of the file is candidate i, and evaluates to that row's objectives.
    for i, row in enumerate(self.rows):
      code = [t.levels[0].index(row[1]), t.levels[1].index(str(row[2])), row[3]]
      self.assertEqual(int(t.rows(np.array([code], float))[0]), i)
      self.assertAllClose(t.evaluate(np.array([code], float))[0],
                          [float(row[4]), float(row[5])])

  @parameterized.parameters(((),), (("cost",),), (("error", "cost"),))
  def test_score_is_brute_force_hypervolume_fraction(self, logs):
    t = self._table(logs)
    raw = np.array([[float(r[4]), float(r[5])] for r in self.rows])
    f = lambda y: np.where([o in logs for o in ("error", "cost")], np.log(y), y)
    modelled = f(raw)
    ref = np.median(modelled, axis=0)
    front = [p for p in modelled
             if not any(np.all(q <= p) and np.any(q < p) for q in modelled)]
    self.assertAllClose(t.reference, ref)
    self.assertLen(t.front, len(front))
    total = _brute_force_hv_2d(front, ref)
    for subset in ([0, 1, 2], [3, 7, 11, 15], list(range(18))):
      self.assertAllClose(t.score(raw[subset]), _brute_force_hv_2d(modelled[subset], ref)
                          / total)
    self.assertAllClose(t.score(raw), 1.0)
    self.assertAllClose(t.ref_point, np.where([o in logs for o in ("error", "cost")],
                                              np.exp(ref), ref))

  def test_run_evaluates_distinct_rows_and_lists_them(self):
    problem = make_problem("table", table=self.path, variables=["op", "width", "depth"],
                           objectives=["error", "cost"], log_objectives=["cost"],
                           num_initial=4)
    for name in ("random", "pesmo"):
      options = ({"num_samples": 2, "burn_in": 5, "acq_pool": 20, "pool_size": 20}
                 if name == "pesmo" else {})
      run = benchmark.run_one(problem, name, 10, seed=1, **options)
      self.assertLen(run["rows"], 10)
      self.assertLen(set(run["rows"]), 10)
      raw = np.array([[float(self.rows[i][4]), float(self.rows[i][5])] for i in run["rows"]])
      scores = [problem.table.score(raw[:i + 1]) for i in range(10)]
      self.assertAllClose(run["hypervolume_fraction"], scores)
    self.assertAllEqual(benchmark.initial_design(problem, 3),
                        benchmark.initial_design(problem, 3))

  def test_bad_tables_raise_before_any_work(self):
    t = self.get_temp_dir()
    base = [r[:] for r in self.rows]
    cases = [
        ("missing", dict(objectives=["error", "energy"], log_objectives=[]), base, r"no column 'energy'"),
        ("text", None, [r[:4] + ["n/a", r[5]] if i == 5 else r for i, r in enumerate(base)],
         r"objective column 'error' must hold finite numbers; row 5 \(data rows from 0\) holds "
         r"'n/a'"),
        ("dup", None, base + [base[2][:4] + ["1.0", "2.0"]],
         r"rows 2 and 18 \(data rows from 0\) have the same values"),
        ("negative", None, [r[:5] + ["-1"] if i == 0 else r for i, r in enumerate(base)],
         r"'cost' is in `log_objectives`, so it must be strictly positive; row 0"),
        ("single", dict(variables=["op", "width", "depth", "id2"]),
         [r + ["x"] for r in base], r"'id2' has a single value"),
    ]
    for name, kwargs, rows, message in cases:
      header = ("id", "op", "width", "depth", "error", "cost") + (
          ("id2",) if name == "single" else ())
      path = _write(os.path.join(t, name + ".csv"), rows, header)
      args = dict(variables=["op", "width", "depth"], objectives=["error", "cost"],
                  log_objectives=["cost"])
      args.update(kwargs or {})
      with self.assertRaisesRegex(ValueError, message):
        table_lib.Table(path, **args)
    with self.assertRaisesRegex(ValueError, "listed both as variable and objective"):
      table_lib.Table(self.path, ["op", "error"], ["error", "cost"])
    with self.assertRaisesRegex(ValueError, "not among the objectives"):
      table_lib.Table(self.path, ["op"], ["error"], ["cost"])
    with self.assertRaisesRegex(ValueError, "no such file"):
      table_lib.Table(os.path.join(t, "nope.csv"), ["op"], ["error"])
    short = table_lib.Table(_write(os.path.join(t, "short.csv"),
                                   [r for r in base if r[1:4] != ["skip", 4, 1]]),
                            ["op", "width", "depth"], ["cost"])
    with self.assertRaisesRegex(ValueError, r"Invalid point \[2.0, 2.0, 1.0\]: not a row"):
      short.evaluate(np.array([[2.0, 2.0, 1.0]]))

  def test_cli_writes_rows_per_seed_and_refuses_bad_column(self):
    out = os.path.join(self.get_temp_dir(), "run.json")
    cmd = [sys.executable, "-m", "search.benchmarks.benchmark", "--problem=table",
           "--table=" + self.path, "--variables=op,width,depth", "--objectives=error,cost",
           "--log_objectives=cost", "--num_initial=3", "--strategy=random", "--budget=8",
           "--seeds=2", "--out=" + out]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    self.assertEqual(done.returncode, 0, done.stderr)
    with open(out) as f:
      data = json.load(f)
    self.assertEqual([len(r["rows"]) for r in data["runs"]], [8, 8])
    self.assertEqual(data["table"]["num_rows"], 18)
    self.assertIn("HV fraction of the true front", done.stdout)
    bad = subprocess.run([a if not a.startswith("--objectives") else "--objectives=watts,cost"
                          for a in cmd], capture_output=True, text=True, check=False)
    self.assertNotEqual(bad.returncode, 0)
    self.assertIn("no column 'watts'", bad.stderr)
    self.assertFalse("proposals" in bad.stderr)


if __name__ == "__main__":
  tf.test.main()
