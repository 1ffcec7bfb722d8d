"""Tests of the cascade search: search/cascades/thresholds.py (exact evaluation against
a per-image loop, the grid front, the threshold search), cascade_stages,
cascade_report and the CLI search/cascades/build.py (on a results dir of toy ONNX
stages, and end to end on a tiny real search, measured with ONNX Runtime)."""

import atexit
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from deploy.device import cascade_runner as runner
from search.cascades import build_lib
from search.cascades import thresholds as cascade_lib
from search.cascades import report as cascade_report
from search import config as config_lib
from search import store as store_lib
from search.optimizer import pareto
from tea_keras import space
from tests.deploy.device import cascade_runner_test as toy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def toy_data(num_stages=3, num_images=300, seed=0, kind="max_softmax", energy=True):
  """Stages that get better (and costlier) with s, on random logits."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, num_images)
  logits = []
  for s in range(num_stages):
    z = rng.normal(size=(num_images, 10))
    z[np.arange(num_images), labels] += 0.8 * (s + 1)
    logits.append(z)
  times = 1e-4 * 2.0 ** np.arange(num_stages)
  data = cascade_lib.from_logits(logits, labels, times, 3 * times if energy else None, kind)
  return data, logits, labels


def brute_force(logits, labels, thresholds, times, energies, kind):
  """One image at a time: run stages until one answers (the rule of deploy.device.cascade_runner)."""
  wrong, time_s, energy_j = 0, 0.0, 0.0
  exits = np.zeros(len(logits))
  for n in range(len(labels)):
    for s, z in enumerate(logits):
      time_s += times[s]
      energy_j += energies[s]
      last = s == len(logits) - 1
      if last or runner.answers(runner.confidence(z[n:n + 1], kind), thresholds[s])[0]:
        wrong += int(np.argmax(z[n]) != labels[n])
        exits[s] += 1
        break
  n = float(len(labels))
  return wrong / n, time_s / n, energy_j / n, exits / n


def brute_force_batched(logits, labels, thresholds, per_call, per_image, batch_size, kind):
  """The runner's loop over batches in order: stage s runs on the images of a
  batch still open, costing per_call[s] + per_image[s] * n for n > 0 images."""
  total = 0.0
  for start in range(0, len(labels), batch_size):
    open_ = np.arange(start, min(start + batch_size, len(labels)))
    for s, z in enumerate(logits):
      if not len(open_):
        break
      total += per_call[s] + per_image[s] * len(open_)
      if s < len(logits) - 1:
        open_ = open_[~runner.answers(runner.confidence(z[open_], kind), thresholds[s])]
  return total / len(labels)


class EvaluateTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((2, 50), (3, 32), (4, 7))
  def test_evaluate_with_call_costs_matches_batched_loop(self, stages, batch_size):
    data, logits, labels = toy_data(stages, 130, seed=stages)
    per_call = 1e-3 * np.arange(1, stages + 1)
    per_image = 1e-4 * 2.0 ** np.arange(stages)
    tau = per_image + per_call / batch_size  # per image as measured at batch_size
    batched = dataclasses.replace(data, time_s=tau, call_time_s=per_call, batch_size=batch_size)
    rng = np.random.default_rng(2)
    vectors = np.vstack([rng.random((6, stages - 1)), np.zeros(stages - 1), np.ones(stages - 1)])
    ev = cascade_lib.evaluate(batched, vectors)
    for k, t in enumerate(vectors):
      self.assertAllClose(ev.time_s[k], brute_force_batched(
          logits, labels, t, per_call, per_image, batch_size, "max_softmax"), rtol=1e-12)
    self.assertAllClose(cascade_lib.evaluate(batched.subset(np.arange(40)), vectors[:2]).error,
                        cascade_lib.evaluate(data.subset(np.arange(40)), vectors[:2]).error)

  @parameterized.parameters((2, 50), (3, 32))
  def test_static_batch_costs_a_whole_batch_per_call(self, stages, batch_size):
    """MYRIAD pads every call to its static batch: the runner's loop with a
    per-call cost of a whole batch and nothing per image."""
    data, logits, labels = toy_data(stages, 130, seed=stages + 7)
    tau = 1e-4 * 2.0 ** np.arange(stages)      # per image, measured at full batches
    calls = cascade_lib.static_batch_calls(tau, batch_size)
    batched = dataclasses.replace(data, time_s=tau, call_time_s=calls, batch_size=batch_size)
    rng = np.random.default_rng(5)
    vectors = np.vstack([rng.random((6, stages - 1)), np.zeros(stages - 1), np.ones(stages - 1)])
    ev = cascade_lib.evaluate(batched, vectors)
    for k, t in enumerate(vectors):
      self.assertAllClose(ev.time_s[k], brute_force_batched(
          logits, labels, t, tau * batch_size, np.zeros(stages), batch_size, "max_softmax"),
                          rtol=1e-12)
    # padding makes a deferring cascade dearer than the per-image model says
    per_image = cascade_lib.evaluate(dataclasses.replace(data, time_s=tau), vectors)
    self.assertTrue(np.all(ev.time_s >= per_image.time_s - 1e-15))

  def test_per_call_cost_inverts_the_two_batch_model(self):
    a, b = 4e-3, 2e-4
    self.assertAllClose(cascade_lib.per_call_cost(a / 100 + b, a / 10 + b, 100, 10), a)
    self.assertEqual(cascade_lib.per_call_cost(1e-3, 0.9e-3, 100, 10), 0.0)  # clamped
    with self.assertRaisesRegex(ValueError, "`call_time_s`. Expected 2 per-call costs"):
      cascade_lib.CascadeData(np.zeros((2, 4)), np.zeros((2, 4), bool), [1.0, 2.0],
                              call_time_s=[1.0, 500.0], batch_size=100)

  @parameterized.named_parameters(
      ("two_max_softmax", 2, "max_softmax"), ("three_max_softmax", 3, "max_softmax"),
      ("three_margin", 3, "margin"), ("four_margin", 4, "margin"))
  def test_evaluate_matches_brute_force_loop(self, stages, kind):
    data, logits, labels = toy_data(stages, 120, seed=stages, kind=kind)
    rng = np.random.default_rng(1)
    vectors = np.vstack([rng.random((6, stages - 1)), np.zeros(stages - 1),
                         np.ones(stages - 1), data.confidence[:-1, 7]])
    ev = cascade_lib.evaluate(data, vectors)
    for k, t in enumerate(vectors):
      err, time_s, energy_j, exits = brute_force(logits, labels, t, data.time_s, data.energy_j,
                                                 kind)
      self.assertAllClose([ev.error[k], ev.time_s[k], ev.energy_j[k]], [err, time_s, energy_j],
                          rtol=1e-12, atol=0)
      self.assertAllClose(ev.exit_fractions[k], exits, rtol=0, atol=1e-12)
    self.assertAllClose(ev.reach[:, 0], np.ones(len(vectors)))

  def test_evaluate_zero_thresholds_reproduce_first_stage(self):
    data, _, _ = toy_data(3)
    ev = cascade_lib.evaluate(data, [[0.0, 0.0]])
    self.assertEqual(ev.error[0], 1.0 - data.correct[0].mean())
    self.assertAllEqual(ev.exit_fractions[0], [1.0, 0.0, 0.0])
    self.assertAllClose([ev.time_s[0], ev.energy_j[0]], [data.time_s[0], data.energy_j[0]])

  def test_evaluate_one_thresholds_reproduce_last_stage_at_the_sum_of_costs(self):
    data, _, _ = toy_data(3)
    ev = cascade_lib.evaluate(data, [[1.0, 1.0]])
    self.assertEqual(ev.error[0], 1.0 - data.correct[2].mean())
    self.assertAllEqual(ev.exit_fractions[0], [0.0, 0.0, 1.0])
    self.assertAllClose(ev.time_s[0], data.time_s.sum())

  def test_evaluate_in_chunks_equals_one_chunk(self):
    data, _, _ = toy_data(3, 200)
    vectors = np.random.default_rng(0).random((50, 2))
    whole = cascade_lib.evaluate(data, vectors)
    saved = cascade_lib._CHUNK_ENTRIES
    cascade_lib._CHUNK_ENTRIES = 600  # 3 vectors per chunk
    try:
      parts = cascade_lib.evaluate(data, vectors)
    finally:
      cascade_lib._CHUNK_ENTRIES = saved
    self.assertAllEqual(whole.error, parts.error)
    self.assertAllEqual(whole.time_s, parts.time_s)

  def test_check_thresholds_says_what_was_expected(self):
    with self.assertRaisesRegex(ValueError, "Expected vectors of 2 values in \\[0, 1\\].*"
                                "Received shape \\(1, 3\\)"):
      cascade_lib.check_thresholds([[0.1, 0.2, 0.3]], 3)
    with self.assertRaisesRegex(ValueError, "in \\[0, 1\\]"):
      cascade_lib.check_thresholds([[0.1, 1.5]], 3)

  def test_cascade_data_validates(self):
    with self.assertRaisesRegex(ValueError, "stages >= 2"):
      cascade_lib.CascadeData(np.zeros((1, 4)), np.zeros((1, 4), bool), [1.0])
    with self.assertRaisesRegex(ValueError, "`time_s`. Expected 2 positive"):
      cascade_lib.CascadeData(np.zeros((2, 4)), np.zeros((2, 4), bool), [1.0, 0.0])
    data = cascade_lib.CascadeData(np.zeros((2, 4)), np.zeros((2, 4), bool), [1.0, 2.0])
    self.assertEqual(data.objectives, ("error", "time"))


class FrontTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 2, 3, 4)
  def test_front_mask_matches_pareto_with_duplicates(self, m):
    rng = np.random.default_rng(m)
    for y in (rng.random((400, m)), np.round(rng.random((400, m)) * 4)):
      y = np.vstack([y, y[:40]])
      self.assertAllEqual(cascade_lib.front_mask(y), pareto.non_dominated_mask(y))

  def test_grid_reaches_every_outcome(self):
    data, _, _ = toy_data(3, 60)
    thresholds, exact = cascade_lib.grid(data)
    self.assertTrue(exact)
    self.assertEqual(len(thresholds), np.prod([len(cascade_lib.breakpoints(data, s))
                                               for s in range(2)]))
    on_grid = {tuple(r) for r in cascade_lib.evaluate(data, thresholds).objective_matrix(
        data.objectives)}
    other = cascade_lib.evaluate(data, np.random.default_rng(0).random((300, 2)))
    for row in other.objective_matrix(data.objectives):
      self.assertIn(tuple(row), on_grid)

  def test_grid_thins_beyond_max_evaluations(self):
    data, _, _ = toy_data(3, 300)
    thresholds, exact = cascade_lib.grid(data, max_evaluations=400)
    self.assertFalse(exact)
    self.assertLessEqual(len(thresholds), 400)
    self.assertEqual(thresholds.max(), 1.0)

  @parameterized.named_parameters(("random", "random"), ("parego", "parego"), ("pesmo", "pesmo"))
  def test_grid_front_weakly_dominates_every_strategy_point(self, strategy):
    data, _, _ = toy_data(3, 150, seed=3)
    grid_y = cascade_lib.evaluate(data, cascade_lib.grid(data)[0]).objective_matrix(
        data.objectives)
    front = grid_y[cascade_lib.front_mask(grid_y)]
    found, _ = cascade_lib.search_thresholds(data, strategy, evaluations=7, seed=0,
                                             num_initial=5)
    y = found.objective_matrix(data.objectives)
    self.assertLen(y, 7)
    for row in y:
      self.assertTrue(np.any(np.all(front <= row, axis=1)), msg="%s beats the grid" % row)
    fraction = cascade_lib.hypervolume_fraction(y, front)
    self.assertBetween(fraction, 0.0, 1.0 + 1e-12)
    self.assertAllClose(cascade_lib.hypervolume_fraction(front, front), 1.0)

  def test_search_thresholds_starts_from_the_same_points_per_seed(self):
    data, _, _ = toy_data(2, 80)
    a, _ = cascade_lib.search_thresholds(data, "random", evaluations=6, seed=4, num_initial=3)
    b, _ = cascade_lib.search_thresholds(data, "random", evaluations=3, seed=4, num_initial=3)
    self.assertAllEqual(a.thresholds[:3], b.thresholds)

  def test_centre_thresholds_keep_every_outcome(self):
    data, _, _ = toy_data(3, 100)
    t = np.vstack([cascade_lib.grid(data)[0][::97], [[0.0, 1.0], [0.999, 0.0]]])
    centred = cascade_lib.centre_thresholds(data, t)
    a, b = cascade_lib.evaluate(data, t), cascade_lib.evaluate(data, centred)
    self.assertAllEqual(a.exit_fractions, b.exit_fractions)
    self.assertAllEqual(a.error, b.error)
    self.assertEqual(centred[-1, 0], 1.0)  # above every confidence: answers none

  def test_front_points_one_vector_per_outcome(self):
    data, _, _ = toy_data(3, 100)
    test, _, _ = toy_data(3, 50, seed=9)
    evs = {"grid": cascade_lib.evaluate(data, cascade_lib.grid(data)[0]),
           "random:0": cascade_lib.search_thresholds(data, "random", 10, 0)[0]}
    points = cascade_lib.front_points(data, evs, test)
    y = np.array([[p["error"], p["time_s_per_image"], p["energy_j_per_image"]] for p in points])
    self.assertLen(np.unique(y, axis=0), len(points))
    self.assertTrue(np.all(cascade_lib.front_mask(y)))
    self.assertTrue(all("grid" in p["found_by"] for p in points))
    self.assertTrue(all(len(p["test_exit_fractions"]) == 3 for p in points))
    self.assertEqual([p["time_s_per_image"] for p in points],
                     sorted(p["time_s_per_image"] for p in points))


class ChooseStagesTest(tf.test.TestCase):

  def test_choose_stages_keeps_ends_and_log_spaced_middle(self):
    errors = [0.5, 0.4, 0.3, 0.2, 0.1, 0.45]
    costs = [1.0, 2.0, 10.0, 90.0, 100.0, 50.0]  # the last is dominated
    self.assertEqual(cascade_lib.choose_stages(errors, costs, 3), [0, 2, 4])
    self.assertEqual(cascade_lib.choose_stages(errors, costs, 10), [0, 1, 2, 3, 4])
    with self.assertRaisesRegex(ValueError, "at least 2.*max_stages=1"):
      cascade_lib.choose_stages(errors, costs, 1)


class ReportTest(tf.test.TestCase):

  def test_best_saving_within_tolerance(self):
    points = [{"error": 0.30, "time_s_per_image": 1.0, "energy_j_per_image": None},
              {"error": 0.204, "time_s_per_image": 2.0, "energy_j_per_image": None},
              {"error": 0.20, "time_s_per_image": 3.0, "energy_j_per_image": None}]
    best = {"val_error": 0.2, "time_s_per_image": 4.0, "energy_j_per_image": None}
    saving = cascade_report.best_saving(points, best, 0.005)
    self.assertEqual(saving["time"]["point"], 1)
    self.assertAllClose(saving["time"]["saving"], 0.5)
    self.assertIsNone(saving["energy"])

  def test_front_saving_against_the_single_model_at_equal_error(self):
    points = [{"error": 0.30, "time_s_per_image": 1.0, "energy_j_per_image": None},
              {"error": 0.25, "time_s_per_image": 1.5, "energy_j_per_image": None},
              {"error": 0.10, "time_s_per_image": 9.0, "energy_j_per_image": None}]
    singles = [("a", 0.30, 1.0, None), ("b", 0.24, 3.0, None), ("c", 0.2, 2.0, None)]
    saving = cascade_report.front_saving(points, singles)
    self.assertEqual((saving["time"]["point"], saving["time"]["single"]), (1, "c"))
    self.assertAllClose(saving["time"]["saving"], 0.25)
    self.assertIsNone(saving["energy"])

  def test_summary_lines_explain_a_negative_saving(self):
    stages = [{"name": "trial #%d" % k, "val_error": e, "time_s_per_image": t}
              for k, e, t in ((2, 0.30, 1e-4), (5, 0.20, 4e-4))]
    summary = {"stages": stages, "front_points": 7, "validation_images": 500,
               "stage_costs": "search", "threshold_search": [],
               "grid": {"evaluations": 1000, "exact": True, "seconds": 0.5},
               "best_saving": {"tolerance": 0.005, "best_single_error": 0.2, "energy": None,
                               "time": {"point": 6, "saving": -0.25, "error": 0.2,
                                        "cost": 5e-4, "best_single_cost": 4e-4}},
               "front_saving": {"energy": None, "time": {
                   "point": 2, "saving": 0.4, "error": 0.25, "cost": 1.5e-4,
                   "single": "trial #7", "single_error": 0.24, "single_cost": 2.5e-4}}}
    lines = cascade_report.summary_lines(summary, "out")
    self.assertIn("  time, as accurate as the most accurate stage (trial #5, error 20.00%, "
                  "0.400 ms per image): the cheapest point within 0.5 percentage points of its error "
                  "(point 6, error 20.00%) costs 0.500 ms: 25.0% MORE: no saving at that "
                  "accuracy, since nearly every image must reach the last stage and pays for "
                  "the stages before it too.", lines)
    self.assertIn("  time, anywhere on the front: point 2 (error 25.00%, 0.150 ms per image) "
                  "against trial #7, the cheapest single model at least as accurate (error "
                  "24.00%, 0.250 ms): 40.0% less.", lines)
    self.assertEqual(lines[0], "cascade front: 7 points of the exact error/cost front: all "
                     "1,000 threshold vectors evaluated (0.5 s)")

  def test_measure_indices_spread_along_the_front(self):
    points = [{"time_s_per_image": t} for t in (5, 1, 3, 2, 4)]
    self.assertEqual(cascade_report.measure_indices(points, 3), [1, 2, 0])
    self.assertEqual(cascade_report.measure_indices(points, 0), [])


def write_toy_search(results_dir, num_stages=3):
  """A results dir whose done trials are linear ONNX toys, measured (recorded)."""
  config = config_lib.SearchConfig(results_dir=results_dir, objectives=("error", "time"),
                                   dataset="cifar10_sample", measure_images=64,
                                   measure_batch_size=32, power_source="none")
  config_lib.write_config(config)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  for k, g in enumerate(space.sample_many(0, num_stages)):
    path = toy.linear_onnx(os.path.join(results_dir, "toy%d.onnx" % k), seed=k,
                           scale=0.01 * (k + 1))
    tid = store.add(g, "initial")
    store.mark_running(tid)
    store.finish(tid, "done", {"val_error": 0.9 - 0.01 * k, "time_s": 0.01 * 2 ** k,
                               "images": 100, "batch_size": 32},
                 {"export": path, "model": os.path.join(results_dir, "none.keras")})
  store.close()
  return results_dir


class CliTest(tf.test.TestCase):

  def test_build_on_toy_search_writes_the_cascade_and_measures_it(self):
    results = write_toy_search(os.path.join(self.get_temp_dir(), "search"))
    out = os.path.join(self.get_temp_dir(), "cascade")
    options = build_lib.CascadeOptions(out_dir=out, results_dir=results,
                                       strategies=("random",), compare_strategies=True,
                                       evaluations=12, measure=True,
                                       measure_points=2, measure_repeats=1)
    logged = []
    summary = build_lib.build(options, log=logged.append)
    self.assertRegex("\n".join(logged), r"\[1/1\] random \(seed 0\): 12/12 vectors \| elapsed "
                     r"\dm\d\ds, ETA 0m00s")
    for name in ("cascade.json", "cascade_fronts.png", "cascade_fronts.csv",
                 "cascade_points.md", "cascade_points.csv", "threshold_search.csv",
                 "summary.json", "stages/stage3.onnx"):
      self.assertTrue(os.path.exists(os.path.join(out, name)), msg=name)
    _, spec = runner.load_spec(out)
    self.assertLen(spec["stages"], 3)
    self.assertTrue(summary["grid"]["exact"])
    self.assertBetween(summary["hypervolume_fraction_mean"]["random"], 0.0, 1.0 + 1e-12)
    self.assertLen(summary["measurement"]["points"], 2)
    for row in summary["measurement"]["points"]:  # now: per-call model, >= per-image model
      self.assertGreaterEqual(row["predicted_now_time_s_per_image"],
                              row["predicted_now_per_image_model_time_s_per_image"] - 1e-12)
    self.assertIn("measured / predicted", summary["table"])
    first = min(spec["points"], key=lambda p: p["time_s_per_image"])
    self.assertAllClose(first["time_s_per_image"], 1e-4)  # stage 1 alone: 0.01 s / 100

  def test_build_with_stage_costs_measured_now(self):
    results = write_toy_search(os.path.join(self.get_temp_dir(), "search_now"), 2)
    out = os.path.join(self.get_temp_dir(), "cascade_now")
    summary = build_lib.build(build_lib.CascadeOptions(
        out_dir=out, results_dir=results, strategies=("random",), evaluations=5,
        stage_costs="measure", measure_repeats=1), log=lambda *a: None)
    for stage in summary["stages"]:
      self.assertEqual(stage["measured"]["images"], 64)  # the search's measure_images
      self.assertEqual(stage["measured"]["runtime_options"], {"allow_spinning": False})
      self.assertEqual(stage["measured"]["small_batch_size"], 3)  # batch 32 // 10
      self.assertBetween(stage["call_time_s"], 0.0, 32 * stage["time_s_per_image"])
      self.assertAllClose(stage["time_s_per_image"],
                          stage["measured"]["time_s"] / stage["measured"]["images"])
    _, spec = runner.load_spec(out)
    calls = [s["call_time_s"] for s in spec["stages"]]
    self.assertEqual(calls, [s["call_time_s"] for s in summary["stages"]])
    self.assertNotAllClose([s["time_s_per_image"] for s in summary["stages"]], [1e-4, 2e-4])

  def test_build_on_model_dirs_uses_their_measurements(self):
    dirs = []
    for k in range(2):
      d = os.path.join(self.get_temp_dir(), "model%d" % k)
      os.makedirs(os.path.join(d, "measurements"))
      onnx_path = toy.linear_onnx(os.path.join(d, "model.onnx"), seed=k)
      for name, obj in (("metrics.json", {"val_error": 0.9 - 0.1 * k}),
                        ("config.json", {"dataset": "cifar10_sample", "split_seed": 0}),
                        ("measurements/cpu.json", {"time_s": 0.1 * (k + 1), "images": 100,
                                                   "artifacts": {"export": onnx_path}})):
        with open(os.path.join(d, name), "w") as f:
          json.dump(obj, f)
      open(os.path.join(d, "model.keras"), "w").close()
      dirs.append(d)
    out = os.path.join(self.get_temp_dir(), "from_dirs")
    summary = build_lib.build(build_lib.CascadeOptions(
        out_dir=out, model_dirs=tuple(dirs[::-1]), strategies=("random",), evaluations=5),
        log=lambda *a: None)
    self.assertEqual([s["name"] for s in summary["stages"]], ["model0", "model1"])
    self.assertAllClose([s["time_s_per_image"] for s in summary["stages"]], [1e-3, 2e-3])
    with open(os.path.join(dirs[0], "measurements", "gpu.json"), "w") as f:
      json.dump({"time_s": 1.0, "images": 10}, f)
    with self.assertRaisesRegex(ValueError, "holds measurements \['cpu', 'gpu'\]; expected "
                                "--measurement_label"):
      build_lib.build(build_lib.CascadeOptions(out_dir=out, model_dirs=tuple(dirs)))

  def test_cli_default_skips_the_strategy_comparison_when_the_grid_is_exact(self):
    results = write_toy_search(os.path.join(self.get_temp_dir(), "search_default"))
    out = os.path.join(self.get_temp_dir(), "cascade_default")
    proc = subprocess.run([sys.executable, "-m", "search.cascades.build", "--results_dir=" + results,
                           "--out_dir=" + out], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    with open(os.path.join(out, "summary.json")) as f:
      summary = json.load(f)
    self.assertTrue(summary["grid"]["exact"])
    self.assertEqual(summary["threshold_search"], [])
    self.assertIn("strategy comparison skipped: the exact grid is the front "
                  "(--compare_strategies also runs pesmo, parego, random and scores each "
                  "against it)", proc.stdout)
    self.assertIn("savings per image, costs predicted from each stage's measured cost as the "
                  "search measured it on the 508 validation images:", proc.stdout)
    self.assertNotIn("{", proc.stdout)
    self.assertLess(len(proc.stdout.splitlines()), 12, proc.stdout)

  def test_cli_refuses_a_training_dir_with_one_line_and_writes_nothing(self):
    model_dir = os.path.join(self.get_temp_dir(), "trained")
    os.makedirs(model_dir)
    for name, obj in (("config.json", {  # the keys tea_keras.training writes
        "recipe": {"epochs": 1}, "dataset": "cifar10_sample", "seed": 0,
        "data_sizes": {"train": 64, "val": 508, "test": 508}, "steps_per_epoch": 2,
        "model_name": "tea_net", "params": 1234, "evaluate_test": False,
        "genotype": space.resolve("random", 1).to_string(), "num_cells": 1, "filters": 4}),
                      ("metrics.json", {"val_error": 0.9})):
      with open(os.path.join(model_dir, name), "w") as f:
        json.dump(obj, f)
    out = os.path.join(self.get_temp_dir(), "cascade_of_trained")
    proc = subprocess.run([sys.executable, "-m", "search.cascades.build", "--results_dir=" + model_dir,
                           "--out_dir=" + out], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    self.assertEqual(proc.returncode, 1)
    self.assertEqual(proc.stderr.strip().splitlines(), [
        "error: --results_dir=%s is not a search results directory: it is a tea_keras.train "
        "model_dir (give such directories, two or more, as --model_dirs=A,B). Expected the "
        "--results_dir of a python -m search.run." % model_dir])
    self.assertFalse(os.path.exists(out))
    self.assertEqual(sorted(os.listdir(model_dir)), ["config.json", "metrics.json"])

  def test_options_need_one_source(self):
    with self.assertRaisesRegex(ValueError, "exactly one of --results_dir and --model_dirs"):
      build_lib.CascadeOptions(out_dir="x")

  def test_cli_without_source_exits_with_message(self):
    proc = subprocess.run([sys.executable, "-m", "search.cascades.build", "--out_dir=/tmp/x"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("exactly one of --results_dir and --model_dirs", proc.stderr)


_TINY = {}


def tiny_search():
  """A 3-trial search on the CIFAR-10 sample (about 2-3 min), once per process."""
  if not _TINY:
    root = tempfile.mkdtemp(prefix="tea-cascade-test-")
    atexit.register(shutil.rmtree, root, True)
    results = os.path.join(root, "search")
    proc = subprocess.run(
        [sys.executable, "-m", "search.run", "--results_dir=" + results,
         "--dataset=cifar10_sample", "--num_cells=1", "--filters=4", "--epochs=1",
         "--train_images=256", "--measure_images=100", "--measure_batch_size=50",
         "--measure_repeats=1", "--objectives=error,time", "--device=cpu",
         "--runtime=onnxruntime", "--power_source=none", "--num_samples=3", "--num_initial=3",
         "--strategy=random"], cwd=REPO, capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode:
      raise RuntimeError("tiny search failed:\n" + proc.stderr[-3000:])
    _TINY.update(root=root, results=results)
  return _TINY


@pytest.mark.slow
class EndToEndTest(tf.test.TestCase):

  def test_cascade_of_tiny_search_runs_like_its_prediction(self):
    tiny = tiny_search()
    out = os.path.join(tiny["root"], "cascade")
    options = build_lib.CascadeOptions(out_dir=out, results_dir=tiny["results"],
                                       max_stages=3, stages=(1, 2, 3),
                                       strategies=("random",), evaluations=10,
                                       measure=True, measure_points=2, measure_repeats=1)
    summary = build_lib.build(options, log=lambda *a: None)
    _, spec = runner.load_spec(out)
    for stage in spec["stages"]:  # the ONNX logits agree with the search's Keras error
      self.assertAllClose(stage["val_error"], stage["recorded_val_error"], atol=2.5 / 508)
    self.assertLen(summary["measurement"]["points"], 2)
    for row in summary["measurement"]["points"]:
      self.assertGreater(row["measured_time_s_per_image"], 0.0)
    # the runner answers the validation images as the library predicted
    from deploy.device import runtimes  # pylint: disable=g-import-not-at-top
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    splits = data.load("cifar10_sample", seed=0)
    images = data.normalize(splits.x_val)
    for i in sorted(set(np.linspace(0, len(spec["points"]) - 1, 4).astype(int))):
      rt = runtimes.create("onnxruntime", out, point=int(i))
      preds = np.concatenate([np.argmax(rt.predict(images[j:j + 100]), 1)
                              for j in range(0, len(images), 100)])
      self.assertAllClose(np.mean(preds != splits.y_val), spec["points"][i]["error"],
                          atol=1.5 / len(images), msg="point %d" % i)
      exits = np.bincount(rt.last_stages, minlength=3)  # of the last batch only
      self.assertEqual(exits.sum(), len(images) % 100 or 100)
      rt.close()


if __name__ == "__main__":
  tf.test.main()
