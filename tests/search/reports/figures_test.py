"""Tests for search/reports/figures.py on real stores written by the test."""

import json
import os

import numpy as np
import tensorflow as tf

from search import config as config_lib
from search.reports import figures as report
from search import store as store_lib
from tea_keras import space


def make_search(results_dir, strategy, seed, n, quality):
  """A results dir with ``n`` done trials whose fronts improve with ``quality``."""
  config = config_lib.SearchConfig(results_dir=results_dir, strategy=strategy,
                                   objectives=("error", "time", "energy"), power_source="rapl")
  config_lib.write_config(config)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  rng = np.random.default_rng(seed)
  for g in space.sample_many(seed, n):
    tid = store.add(g, strategy)
    store.mark_running(tid)
    t = rng.uniform(0.01, 0.1)
    err = 0.2 + (0.1 / t) * 0.01 + rng.uniform(0, 0.3) / quality
    store.finish(tid, "done", {"val_error": err, "time_s": t, "energy_j": 5 * t})
  store.close()


class ReportTest(tf.test.TestCase):

  def test_fig5_draws_and_compares(self):
    base = self.get_temp_dir()
    make_search(os.path.join(base, "bo"), "pesmo", 1, 40, quality=10.0)
    make_search(os.path.join(base, "rnd"), "random", 2, 40, quality=1.0)
    out = os.path.join(base, "fig5")
    data = report.fig5(os.path.join(base, "bo"), os.path.join(base, "rnd"), [10, 20, 40, 400], out)
    for name in ("fig5_error_time.png", "fig5_error_energy.png", "fig5_hypervolume.png",
                 "fig5.json"):
      self.assertGreater(os.path.getsize(os.path.join(out, name)), 500, msg=name)
    self.assertEqual(sorted(data["checkpoints"], key=int), ["10", "20", "40"])  # 400 clipped
    final = data["checkpoints"]["40"]
    self.assertEqual(final["PESMO"]["trials"], 40)
    self.assertGreater(final["PESMO"]["hypervolume"], final["random"]["hypervolume"])
    with open(os.path.join(out, "fig5.json")) as f:
      self.assertEqual(json.load(f)["reference_point"], data["reference_point"])

  def test_a_searchs_own_figures_default_to_its_results_dir(self):
    self.assertEqual(report.default_out_dir("remeasure", "runs/q"), os.path.join("runs/q",
                                                                                "remeasure"))
    self.assertEqual(report.default_out_dir("precisions", "runs/q"), os.path.join(
        "runs/q", "precisions"))
    self.assertEqual(report.default_out_dir("fig5"), os.path.join("reports", "fig5"))
    self.assertEqual(report.default_out_dir("table2"), os.path.join("reports", "table2"))

  def test_fig5_checkpoints_default_to_the_runs_size(self):
    self.assertEqual(report.choose_checkpoints([400, 412]), [100, 200, 300, 400])
    self.assertEqual(report.choose_checkpoints([10, 12]), [3, 5, 8, 10])
    self.assertEqual(report.choose_checkpoints([2, 40]), [1, 2])
    notices = []
    self.assertEqual(report.choose_checkpoints([10, 10], [5, 100, 400], notices.append), [5, 10])
    self.assertIn("clipped to the 10 finished trials", notices[0])
    with self.assertRaisesRegex(ValueError, "expected positive sample counts"):
      report.choose_checkpoints([10, 10], [0])

  def test_fig5_says_when_it_compares_contended_times(self):
    base = self.get_temp_dir()
    make_search(os.path.join(base, "a"), "pesmo", 1, 6, quality=1.0)
    make_search(os.path.join(base, "b"), "random", 2, 6, quality=1.0)
    store = store_lib.TrialStore(os.path.join(base, "b", "trials.db"))
    tid = store.add(space.sample_many(9, 1)[0], "random")
    store.mark_running(tid)
    store.finish(tid, "done", {"val_error": 0.5, "time_s": 0.05, "energy_j": 0.2,
                               "contended": True})
    store.close()
    lines = []
    data = report.fig5(os.path.join(base, "a"), os.path.join(base, "b"), None,
                       os.path.join(base, "out"), log=lines.append)
    self.assertIn("random: 1 of 7", data["contention_notice"])
    self.assertIn(data["contention_notice"], lines)

  def test_fig5_refuses_the_same_search_twice(self):
    d = os.path.join(self.get_temp_dir(), "bo")
    make_search(d, "pesmo", 1, 5, quality=1.0)
    with self.assertRaisesRegex(ValueError, "are the same directory"):
      report.fig5(d, d + "/", None, self.get_temp_dir())

  def test_fig5_rejects_non_results_dir(self):
    with self.assertRaisesRegex(ValueError, "is not a search results directory"):
      report.fig5(self.get_temp_dir(), os.path.join(self.get_temp_dir(), "other"), [1],
                  self.get_temp_dir())

  def test_table2_gathers_measurements(self):
    d = os.path.join(self.get_temp_dir(), "n1f8")
    os.makedirs(os.path.join(d, "measurements"))
    with open(os.path.join(d, "metrics.json"), "w") as f:
      json.dump({"test_error": 0.0412, "params": 3_300_000}, f)
    with open(os.path.join(d, "config.json"), "w") as f:
      json.dump({"genotype": "g", "num_cells": 1, "filters": 8}, f)
    for label, t in (("cpu", 0.5), ("gpu", 0.05)):
      with open(os.path.join(d, "measurements", label + ".json"), "w") as f:
        json.dump({"time_s": t, "energy_j": None if label == "cpu" else 9.5}, f)
    text = report.table2([d])
    lines = text.strip().splitlines()
    self.assertEqual(lines[0], "| model | N | F | params | test error (%) | cpu time (s) | "
                     "cpu energy (J) | gpu time (s) | gpu energy (J) |")
    self.assertEqual(lines[2], "| g | 1 | 8 | 3.30M | 4.12 | 0.5 | n/a | 0.05 | 9.5 |")
    self.assertIn("| mine | 1 | 8 |", report.table2([d], ["mine"]))
    with self.assertRaisesRegex(ValueError, "one label per model dir"):
      report.table2([d], ["a", "b"])


if __name__ == "__main__":
  tf.test.main()
