"""Tests for search/reports/precisions.py (search.reports --figure=precisions)."""

import csv
import os
import subprocess
import sys

import tensorflow as tf

from search import config as config_lib
from search.reports import precisions as precision_report
from search import store as store_lib
from tea_keras import space

# (fp32, int8) per trial: (val_error, time_s, model_bytes)
PAIRS = [((0.30, 1.0, 400), (0.32, 0.5, 100)),
         ((0.20, 2.0, 800), (0.26, 1.5, 200)),
         ((0.50, 3.0, 900), (0.60, 2.9, 300))]   # dominated at both precisions


def make_search(results_dir):
  config = config_lib.SearchConfig(results_dir=results_dir, objectives=("error", "time"),
                                   runtime="onnxruntime", precisions=("fp32", "int8"))
  config_lib.write_config(config)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  for g, values in zip(space.sample_many(1, len(PAIRS)), PAIRS):
    tid = store.add(g, "initial")
    store.mark_running(tid)
    pairs = {p: {"val_error": e, "time_s": t, "model_bytes": b}
             for p, (e, t, b) in zip(("fp32", "int8"), values)}
    store.finish(tid, "done", {"val_error": values[0][0], "time_s": values[0][1],
                               "precisions": pairs})
  store.close()


class PrecisionReportTest(tf.test.TestCase):

  def test_cli_writes_ratios_of_the_front_cells(self):
    d = os.path.join(self.get_temp_dir(), "search")
    out = os.path.join(self.get_temp_dir(), "report")
    make_search(d)
    proc = subprocess.run([sys.executable, "-m", "search.reports", "--figure=precisions",
                           "--results_dir=" + d, "--out_dir=" + out, "--top=2"],
                          capture_output=True, text=True)
    self.assertEqual(proc.returncode, 0, msg=proc.stderr)
    self.assertIn("| #1 |", proc.stdout)
    with open(os.path.join(out, "precision_table.csv")) as f:
      rows = {(r["trial_id"], r["precision"]): r for r in csv.DictReader(f)}
    self.assertEqual(sorted({k[0] for k in rows}), ["1", "2"])  # trial 3 is off the front
    int8 = rows[("1", "int8")]
    self.assertAllClose([float(int8["error_delta_pp"]), float(int8["size_ratio"]),
                         float(int8["time_ratio"])], [2.0, 0.25, 0.5])
    self.assertAllClose(float(rows[("2", "int8")]["error_delta_pp"]), 6.0)
    self.assertEqual(float(rows[("2", "fp32")]["size_ratio"]), 1.0)

  def test_front_cells_spread_and_limit(self):
    d = os.path.join(self.get_temp_dir(), "s2")
    make_search(d)
    from search.reports import common  # pylint: disable=g-import-not-at-top
    _, trials = common.load_search(d)
    self.assertEqual(precision_report.front_cells(trials, ("error", "time"), {}, top=1), [2])
    self.assertEqual(precision_report.front_cells(trials, ("error", "time"), {}, top=0), [2, 1])
    # Fewer front cells than asked: the next non-dominated layer fills in.
    self.assertEqual(precision_report.front_cells(trials, ("error", "time"), {}, top=3),
                     [2, 1, 3])


if __name__ == "__main__":
  tf.test.main()
