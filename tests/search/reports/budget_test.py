"""Tests for search/reports/budget.py (search.reports --figure=budget)."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from search.reports import budget as budget_report
from search import config as config_lib
from search import store as store_lib
from tea_keras import space

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUDGET = 1000
# (params, val_error, time_s) per trained cell, fp32 only.
CONSTRAINED = [(900, 0.40, 1.0), (800, 0.30, 2.0), (500, 0.35, 3.0)]      # #3 dominated
UNCONSTRAINED = [(5000, 0.10, 1.5), (950, 0.45, 0.5), (3000, 0.20, 4.0), (700, 0.50, 2.5)]


def make_search(results_dir, cells, **budgets):
  config = config_lib.SearchConfig(results_dir=results_dir, objectives=("error", "time"),
                                   runtime="onnxruntime", **budgets)
  config_lib.write_config(config)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  for g, (params, err, t) in zip(space.sample_many(len(cells), len(cells)), cells):
    tid = store.add(g, "initial")
    store.mark_running(tid)
    store.finish(tid, "done", {"val_error": err, "time_s": t, "params": params})
  store.close()


def staircase_area(points, ref):
  """2-D hypervolume by a grid sum over the distinct coordinates (brute force)."""
  xs = sorted({p[0] for p in points} | {ref[0]})
  ys = sorted({p[1] for p in points} | {ref[1]})
  area = 0.0
  for x0, x1 in zip(xs, xs[1:]):
    for y0, y1 in zip(ys, ys[1:]):
      if any(p[0] <= x0 and p[1] <= y0 for p in points):
        area += (x1 - x0) * (y1 - y0)
  return area


class BudgetReportTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.c = os.path.join(self.get_temp_dir(), "constrained")
    self.u = os.path.join(self.get_temp_dir(), "unconstrained")
    if not os.path.exists(self.c):
      make_search(self.c, CONSTRAINED, max_params=BUDGET)
      make_search(self.u, UNCONSTRAINED)

  def test_cli_scores_both_searches_against_the_constrained_budget(self):
    out = os.path.join(self.get_temp_dir(), "report")
    proc = subprocess.run([sys.executable, "-m", "search.reports", "--figure=budget",
                           "--results_dir=" + self.c, "--unconstrained_dir=" + self.u,
                           "--out_dir=" + out], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    self.assertEqual(proc.returncode, 0, msg=proc.stderr[-2000:])
    self.assertIn("| unconstrained | 4 | 2 | 4 | 2 |", proc.stdout)
    with open(os.path.join(out, "budget_fronts.json")) as f:
      data = json.load(f)
    self.assertEqual(data["budgets"], {"max_params": BUDGET})
    c, u = data["searches"]["constrained"], data["searches"]["unconstrained"]
    self.assertEqual((c["feasible_pairs"], c["trained_over_known_budgets"]), (3, 0))
    self.assertEqual((u["feasible_pairs"], u["trained_over_known_budgets"]), (2, 2))
    self.assertEqual([t for t, _ in c["feasible_front"]], [2, 1])
    self.assertEqual([t for t, _ in u["feasible_front"]], [2])  # #4 (0.50, 2.5) dominated by #2
    # Reference point: the worst feasible error and time over both searches
    # (0.50, 3.0) plus 10% of their ranges (0.20, 2.5).
    ref = [0.50 + 0.1 * 0.20, 3.0 + 0.1 * 2.5]
    self.assertAllClose(data["reference_point"], ref)
    feasible_c = [(e, t) for p, e, t in CONSTRAINED if p <= BUDGET]
    feasible_u = [(e, t) for p, e, t in UNCONSTRAINED if p <= BUDGET]
    self.assertAllClose(c["feasible_hypervolume"], staircase_area(feasible_c, ref))
    self.assertAllClose(u["feasible_hypervolume"], staircase_area(feasible_u, ref))
    self.assertTrue(os.path.exists(os.path.join(out, "budget_fronts_error_time.png")))

  def test_compare_refuses_bad_pairs_of_searches(self):
    out = os.path.join(self.get_temp_dir(), "bad")
    with self.assertRaisesRegex(ValueError, "has no budget"):
      budget_report.compare(self.u, self.c, out)
    with self.assertRaisesRegex(ValueError, "same directory"):
      budget_report.compare(self.c, self.c, out)
    with self.assertRaisesRegex(ValueError, "needs --unconstrained_dir"):
      budget_report.compare(self.c, None, out)
    other = os.path.join(self.get_temp_dir(), "other_objectives")
    config_lib.write_config(config_lib.SearchConfig(results_dir=other,
                                                    objectives=("error", "energy")))
    store_lib.TrialStore(os.path.join(other, "trials.db")).close()
    with self.assertRaisesRegex(ValueError, "different objectives"):
      budget_report.compare(self.c, other, out)
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  tf.test.main()
