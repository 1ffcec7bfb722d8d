"""Tests for search/outputs.py."""

import csv
import json
import os

import numpy as np
import tensorflow as tf

from search import outputs
from search.optimizer import pareto
from search import store as store_lib
from tea_keras import space


def _trial(i, status, err=None, t=None, e=None):
  metrics = {} if err is None else {"val_error": err, "time_s": t, "energy_j": e}
  return {"trial_id": i, "status": status, "source": "initial", "genotype": "g%d" % i,
          "encoding": [0] * 20, "attempts": 1, "host": "h", "started_at": 1.0,
          "finished_at": 3.5, "metrics": metrics, "artifacts": {"model": "m%d" % i},
          "error": "boom\ntraceback" if status == "failed" else None}


class OutputsTest(tf.test.TestCase):

  def test_refresh_writes_files_and_pareto(self):
    trials = [_trial(1, "done", 0.5, 0.10, 2.0), _trial(2, "done", 0.4, 0.20, 3.0),
              _trial(3, "done", 0.6, 0.30, 4.0),  # dominated by 1
              _trial(4, "failed"), _trial(5, "running")]
    d = self.get_temp_dir()
    summary = outputs.refresh(d, trials, ("error", "time", "energy"))
    with open(os.path.join(d, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r["status"] for r in rows], ["done", "done", "done", "failed", "running"])
    self.assertEqual(rows[3]["error"], "boom")
    with open(os.path.join(d, "pareto.csv")) as f:
      front = list(csv.DictReader(f))
    self.assertEqual(sorted(int(r["trial_id"]) for r in front), [1, 2])
    with open(os.path.join(d, "summary.json")) as f:
      self.assertEqual(json.load(f), summary)
    self.assertEqual(summary["counts"], {"pending": 0, "running": 1, "done": 3, "failed": 1})
    self.assertEqual(summary["best"]["time"], {"value": 0.10, "trial_id": 1})
    for name in ("pareto_error_time.png", "pareto_error_energy.png", "hypervolume.png"):
      self.assertGreater(os.path.getsize(os.path.join(d, name)), 1000)

  def test_hypervolume_curve_is_monotone_and_matches_pareto(self):
    rng = np.random.default_rng(0)
    trials = [_trial(i, "done", *rng.uniform(0.1, 1.0, 3)) for i in range(1, 30)]
    summary = outputs.summarize(trials, ("error", "time", "energy"))
    curve = np.array(summary["hypervolume"])
    self.assertTrue(np.all(np.diff(curve) >= -1e-12))
    _, y = outputs.objective_matrix(trials, ("error", "time", "energy"))
    self.assertAllClose(curve[-1], pareto.hypervolume(y, np.array(summary["reference_point"])))

  def test_freeze_reference_point_after_initial_trials(self):
    store = store_lib.TrialStore(os.path.join(self.get_temp_dir(), "t.db"))
    genotypes = space.sample_many(0, 4)
    for g in genotypes[:2]:
      store.add(g, "initial")
    self.assertIsNone(outputs.freeze_reference_point(store, store.trials(), ("error", "time"), 2))
    for tid, (err, t) in zip((1, 2), ((0.5, 0.1), (0.4, 0.3))):
      store.mark_running(tid)
      store.finish(tid, "done", {"val_error": err, "time_s": t})
    ref = outputs.freeze_reference_point(store, store.trials(), ("error", "time"), 2)
    self.assertAllClose(ref, pareto.reference_point(np.array([[0.5, 0.1], [0.4, 0.3]])))
    # Later, better or worse trials do not move the frozen point.
    tid = store.add(genotypes[2], "pesmo")
    store.mark_running(tid)
    store.finish(tid, "done", {"val_error": 0.9, "time_s": 5.0})
    self.assertEqual(outputs.freeze_reference_point(store, store.trials(), ("error", "time"), 2), ref)
    curve = outputs.summarize(store.trials(), ("error", "time"), ref)["hypervolume"]
    self.assertEqual(curve[1], curve[2])  # the worse-than-reference trial adds nothing
    store.close()

  def test_refresh_rows_per_precision_and_feasible_front(self):
    def pairs(*values):
      return {p: {"val_error": e, "time_s": t, "model_bytes": b}
              for p, (e, t, b) in zip(("fp32", "int8"), values)}
    trials = [_trial(1, "done", 0.30, 1.0), _trial(2, "done", 0.40, 0.5), _trial(3, "failed")]
    trials[0]["metrics"].update(params=100, precisions=pairs((0.30, 1.0, 400), (0.32, 0.6, 150)))
    trials[1]["metrics"].update(params=50, precisions=pairs((0.40, 0.5, 200), (0.45, 0.4, 90)))
    d = self.get_temp_dir()
    summary = outputs.refresh(d, trials, ("error", "time"), budgets={"max_model_bytes": 300})
    with open(os.path.join(d, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([(r["trial_id"], r["precision"], r["feasible"]) for r in rows],
                     [("1", "fp32", "False"), ("1", "int8", "True"), ("2", "fp32", "True"),
                      ("2", "int8", "True"), ("3", "", "")])
    self.assertEqual(rows[0]["over_budget"], "max_model_bytes")
    self.assertEqual(float(rows[1]["val_error"]), 0.32)
    with open(os.path.join(d, "pareto.csv")) as f:
      front = [(r["trial_id"], r["precision"]) for r in csv.DictReader(f)]
    # (0.30, 1.0) is over budget; of the rest, (0.40, 0.5) is dominated by (0.32, 0.6)? no:
    # 0.32 < 0.40 but 0.6 > 0.5, so the three feasible pairs are all non-dominated.
    self.assertEqual(front, [("1", "int8"), ("2", "fp32"), ("2", "int8")])
    feas = summary["feasibility"]
    self.assertEqual((feas["pairs"], feas["feasible_pairs"], feas["pairs_over_budget"]),
                     (4, 3, {"max_model_bytes": 1}))
    self.assertEqual(feas["trained_over_known_budgets"], 0)
    # The feasible pairs' hypervolume against the summary's reference point,
    # by a grid sum over the distinct coordinates.
    ref = summary["reference_point"]
    points = [(0.32, 0.6), (0.40, 0.5), (0.45, 0.4)]
    xs = sorted({p[0] for p in points if p[0] < ref[0]} | {ref[0]})
    ys = sorted({p[1] for p in points if p[1] < ref[1]} | {ref[1]})
    area = sum((x1 - x0) * (y1 - y0) for x0, x1 in zip(xs, xs[1:]) for y0, y1 in zip(ys, ys[1:])
               if any(p[0] <= x0 and p[1] <= y0 for p in points))
    self.assertAllClose(feas["feasible_hypervolume"], area)
    self.assertGreater(area, 0.0)
    self.assertEqual(outputs.refresh(d, trials, ("error", "time"), budgets={"max_params": 60})[
        "feasibility"]["trained_over_known_budgets"], 1)
    self.assertGreater(os.path.getsize(os.path.join(d, "pareto_error_time.png")), 1000)

  def test_summarize_without_done_trials(self):
    summary = outputs.summarize([_trial(1, "failed")], ("error", "time"))
    self.assertIsNone(summary["final_hypervolume"])
    self.assertEqual(summary["hypervolume"], [])


if __name__ == "__main__":
  tf.test.main()
