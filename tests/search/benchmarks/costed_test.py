"""Tests for search/benchmarks/costed.py and ``benchmark --evaluation``."""

import csv
import dataclasses
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.benchmarks import costed
from search.benchmarks.problems import make_problem
from search.optimizer.pareto import hypervolume, non_dominated_mask

COSTS = "error=10,lat+energy=1"
FAST = {"num_samples": 2, "max_pareto": 10, "num_features": 100}
FAST_BOTORCH = {"qhvkg": {"num_fantasies": 4, "num_inner": 12},
                "qlognehvi": {"mc_samples": 32, "acq_pool": 100}}

try:
  import botorch  # noqa: F401  # pylint: disable=unused-import
  HAS_BOTORCH = True
except ImportError:  # the optional `bench` extra
  HAS_BOTORCH = False


def _write_table(path):
  """4 x 4 x 3 = 48 designs: error falls and latency/energy rise with a, b."""
  rng = np.random.default_rng(0)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["a", "b", "c", "error", "lat", "energy"])
    for a, b, c in itertools.product(range(4), range(4), range(3)):
      lat = np.exp(0.3 * a + 0.2 * b + 0.1 * rng.normal())
      energy = lat * np.exp(0.2 * c + 0.05 * rng.normal())
      error = 30.0 - 2.0 * a - b - 0.7 * c + rng.normal()
      w.writerow([a, b, c, "%.5f" % error, "%.5f" % lat, "%.5f" % energy])
  return path


class CostedTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.path = _write_table(os.path.join(self.get_temp_dir(), "toy.csv"))
    self.problem = make_problem("table", table=self.path, variables=["a", "b", "c"],
                                objectives=["error", "lat", "energy"],
                                log_objectives=["lat", "energy"], num_initial=4)
    self.groups = costed.parse_costs(COSTS, self.problem)

  def _options(self, name):
    return dict(FAST) if name == "pesmo" else {}

  @parameterized.named_parameters(("coupled_random", "coupled", "random"),
                                  ("coupled_pesmo", "coupled", "pesmo"),
                                  ("decoupled_pesmo", "decoupled", "pesmo"))
  def test_run_costed_cost_accounting_within_budget(self, evaluation, name):
    run = costed.run_costed(self.problem, name, evaluation, self.groups, 60.0, seed=1,
                            options=self._options(name))
    evals = run["evaluations"]
    costs = dict(zip(self.groups.names, self.groups.costs), all=11.0)
    self.assertAllClose([e["cost"] for e in evals], [costs[e["group"]] for e in evals])
    self.assertAllClose([e["cumulative_cost"] for e in evals],
                        np.cumsum([e["cost"] for e in evals]))
    self.assertLessEqual(evals[-1]["cumulative_cost"], 60.0)
    self.assertEqual([e["group"] for e in evals[:4]], ["all"] * 4)  # the initial design
    self.assertEqual(run["initial_evaluations"], 4)
    if evaluation == "coupled":
      self.assertEqual({e["group"] for e in evals}, {"all"})
      self.assertLen(evals, 5)  # 5 x 11 = 55 <= 60 < 66
    else:
      self.assertGreater(len(evals), 5)  # hardware measurements cost 1
      self.assertTrue({e["group"] for e in evals[4:]} <= {"error", "lat+energy"})

  @parameterized.named_parameters(("decoupled_qhvkg", "decoupled", "qhvkg"),
                                  ("coupled_qlognehvi", "coupled", "qlognehvi"))
  def test_run_costed_botorch_strategy_within_budget(self, evaluation, name):
    if not HAS_BOTORCH:
      self.skipTest("BoTorch (the `bench` extra) is not installed")
    run = costed.run_costed(self.problem, name, evaluation, self.groups, 70.0, seed=1,
                            options=FAST_BOTORCH[name])
    evals = run["evaluations"]
    costs = dict(zip(self.groups.names, self.groups.costs), all=11.0)
    self.assertAllClose([e["cumulative_cost"] for e in evals],
                        np.cumsum([costs[e["group"]] for e in evals]))
    self.assertLessEqual(evals[-1]["cumulative_cost"], 70.0)
    self.assertGreater(evals[-1]["cumulative_cost"], 70.0 - costs["all"])
    figures = [e["hypervolume_fraction"] for e in evals]
    self.assertAllGreaterEqual(np.diff(figures), 0.0)  # complete rows only grow
    rows = [(e["row"], e["group"]) for e in evals]
    self.assertLen(set(rows), len(rows))  # no (row, group) measured twice
    # one proposal per evaluation after the 4 initial ones, plus (decoupled)
    # the last one, whose group did not fit the budget
    self.assertIn(len(run["proposal_seconds"]), (len(evals) - 4, len(evals) - 3))
    if evaluation == "decoupled":
      self.assertTrue({e["group"] for e in evals[4:]} <= {"error", "lat+energy"})

  def test_run_costed_initial_design_stops_before_the_budget(self):
    run = costed.run_costed(self.problem, "random", "coupled", self.groups, 30.0, seed=0)
    self.assertEqual([e["cumulative_cost"] for e in run["evaluations"]], [11.0, 22.0])

  def test_complete_figure_scores_only_rows_with_every_objective(self):
    table = self.problem.table
    run = costed.CostedRun(self.problem, seed=0)
    points = self.problem.space.candidates
    modelled = table.transform(table.y)
    inside = np.all(modelled < table.reference, axis=1) & non_dominated_mask(modelled)
    order = [i for i in np.flatnonzero(inside) if i not in (0, 47, 20)]  # front rows
    for i in (0, 47, 20):
      run.measure(self.problem, self.groups, points[i], None)
    before = run.evaluations[-1]["hypervolume_fraction"]
    for i in order[:3]:
      run.measure(self.problem, self.groups, points[i], 1)  # lat+energy only
      self.assertEqual(run.evaluations[-1]["hypervolume_fraction"], before)
    run.measure(self.problem, self.groups, points[order[0]], 0)  # now trained
    rows = [0, 47, 20, int(order[0])]
    expected = (hypervolume(table.transform(table.y[rows]), table.reference)
                / hypervolume(table.front, table.reference))
    self.assertAllClose(run.evaluations[-1]["hypervolume_fraction"], expected)
    self.assertGreater(run.evaluations[-1]["hypervolume_fraction"], before)

  def test_run_costed_benchmark_json_records_each_evaluation(self):
    out = os.path.join(self.get_temp_dir(), "schema.json")
    costed.run_costed_benchmark(self.problem, "pesmo", "decoupled", self.groups, 40.0, seeds=1,
                                options=FAST, out=out)
    with open(out) as f:
      data = json.load(f)
    self.assertEqual(data["groups"], ["error", "lat+energy"])
    self.assertEqual(data["costs"], [10.0, 1.0])
    self.assertEqual(data["coupled_cost"], 11.0)
    self.assertEqual(data["metric"], "hypervolume_fraction")
    run = data["runs"][0]
    for e in run["evaluations"]:
      self.assertEqual(set(e), {"row", "group", "cost", "cumulative_cost",
                                "hypervolume_fraction"})
    rows = [e["row"] for e in run["evaluations"]]
    self.assertAllInRange(rows, 0, 47)
    self.assertLen(run["proposal_seconds"], len(run["fit_seconds"]))
    self.assertEqual(set(run["load_average"]), {"start", "end"})

  @parameterized.named_parameters(("decoupled_pesmo", "decoupled", "pesmo"),
                                  ("coupled_random", "coupled", "random"))
  def test_run_costed_benchmark_resume_matches_uninterrupted(self, evaluation, name):
    folder = self.get_temp_dir()
    whole = costed.run_costed_benchmark(self.problem, name, evaluation, self.groups, 100.0,
                                        seeds=1, options=self._options(name),
                                        out=os.path.join(folder, "whole_%s.json" % name))
    out = os.path.join(folder, "cut_%s.json" % name)
    calls = [0]

    def failing(x):
      calls[0] += 1
      if calls[0] > 7:  # 4 initial evaluations, 3 proposals
        raise KeyboardInterrupt("stopped")
      return self.problem.evaluate(x)

    stopping = dataclasses.replace(self.problem, evaluate=failing)
    with self.assertRaises(KeyboardInterrupt):
      costed.run_costed_benchmark(stopping, name, evaluation, self.groups, 100.0, seeds=1,
                                  options=self._options(name), out=out, checkpoint_seconds=0)
    self.assertTrue(os.path.exists(out + ".seed0.pkl"))
    counted = [0]

    def counting(x):
      counted[0] += 1
      return self.problem.evaluate(x)

    resumed = costed.run_costed_benchmark(dataclasses.replace(self.problem, evaluate=counting),
                                          name, evaluation, self.groups, 100.0, seeds=1,
                                          options=self._options(name), out=out)
    # Continued from the checkpoint after the 7th evaluation, not restarted:
    self.assertEqual(counted[0], len(whole["runs"][0]["evaluations"]) - 7)
    self.assertGreater(len(whole["runs"][0]["evaluations"]), 8)
    self.assertEqual(resumed["runs"][0]["evaluations"], whole["runs"][0]["evaluations"])
    self.assertFalse(os.path.exists(out + ".seed0.pkl"))

  @parameterized.named_parameters(
      ("unknown_objective", "error=10,lat+power=1", "unknown"),
      ("objective_in_two_groups", "error=10,lat+energy=1,energy=2", "exactly one group"),
      ("objective_in_none", "error=10,lat=1", "exactly one group"),
      ("non_positive_cost", "error=0,lat+energy=1", "positive"),
      ("missing_cost", "error,lat+energy", "a cost"))
  def test_parse_costs_refuses_bad_costs(self, spec, message):
    with self.assertRaisesRegex(ValueError, "--costs.*" + message):
      costed.parse_costs(spec, self.problem)

  def test_check_evaluation_refuses_strategy_that_cannot_decouple(self):
    with self.assertRaisesRegex(ValueError, "'random' cannot decouple"):
      costed.check_evaluation("decoupled", "random")
    costed.check_evaluation("coupled", "random")
    costed.check_evaluation("decoupled", "qhvkg")

  def test_check_evaluation_refuses_coupled_run_of_a_decoupled_only_strategy(self):
    with self.assertRaisesRegex(ValueError, "'qhvkg' has no coupled form"):
      costed.check_evaluation("coupled", "qhvkg")

  def test_cli_decoupled_only_strategy_without_evaluation_says_how_to_run_it(self):
    done = self._cli("--strategy=qhvkg", "--budget=6")
    self.assertNotEqual(done.returncode, 0)
    self.assertIn("--evaluation=decoupled", done.stderr)

  def _cli(self, *extra):
    cmd = [sys.executable, "-m", "search.benchmarks.benchmark", "--problem=table",
           "--table=" + self.path, "--variables=a,b,c", "--objectives=error,lat,energy",
           "--log_objectives=lat,energy", "--num_initial=4", "--seeds=1",
           "--strategy_options=" + json.dumps(FAST)] + list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, check=False)

  @parameterized.named_parameters(
      ("unknown_objective", ["--costs=error=10,power=1", "--strategy=pesmo"], "unknown"),
      ("twice", ["--costs=error=10,lat+energy=1,lat=1", "--strategy=pesmo"], "exactly one"),
      ("negative", ["--costs=error=-1,lat+energy=1", "--strategy=pesmo"], "positive"),
      ("cannot_decouple", ["--costs=" + COSTS, "--strategy=parego"], "cannot decouple"))
  def test_cli_refuses_bad_arguments_before_any_work(self, extra, message):
    out = os.path.join(self.get_temp_dir(), "refused.json")
    done = self._cli("--evaluation=decoupled", "--cost_budget=60", "--out=" + out, *extra)
    self.assertNotEqual(done.returncode, 0)
    self.assertIn(message, done.stderr)
    self.assertNotIn("seed 0", done.stderr)
    self.assertFalse(os.path.exists(out))

  def test_cli_decoupled_run_and_summary(self):
    folder = os.path.join(self.get_temp_dir(), "cli")
    done = self._cli("--evaluation=decoupled", "--costs=" + COSTS, "--cost_budget=60",
                     "--out=" + os.path.join(folder, "dec.json"))
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn("decoupled pesmo seed 0: final hypervolume_fraction", done.stdout)
    self.assertIn("ETA", done.stderr)
    with open(os.path.join(folder, "dec.json")) as f:
      self.assertEqual(json.load(f)["evaluation"], "decoupled")
    name = "decoupled pesmo " + json.dumps(FAST, sort_keys=True)   # as the summary prints it
    done = self._cli("--summarize=" + folder, "--reach=%s@1" % name)
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn("decoupled pesmo", done.stdout)
    self.assertIn("target: %s's median at 1 trainings" % name, done.stdout)
    self.assertIn("beyond the budget", done.stdout)  # 30 trainings = 330 > 60
    self.assertRegex(done.stdout, r"decoupled pesmo .*: \d+ rows completed by proposals")
    self.assertNotIn("against coupled random", done.stdout)   # no random run in the folder
    self.assertTrue(os.path.exists(os.path.join(folder,
                                                "costed_table_error_10_lat_energy_1.png")))

  def test_summarize_costed_median_and_worst_at_trainings(self):
    folder = os.path.join(self.get_temp_dir(), "summary")
    os.makedirs(folder)
    base = {"problem": "table", "strategy": "random", "evaluation": "coupled",
            "groups": ["error", "hw"], "costs": [1.0, 1.0], "coupled_cost": 2.0,
            "cost_budget": 200.0, "metric": "hypervolume_fraction"}
    runs = [{"seed": s, "evaluations": [
        {"cumulative_cost": c, "hypervolume_fraction": v * c / 200.0}
        for c in (60.0, 100.0, 200.0)]} for s, v in enumerate([0.5, 0.2, 0.9])]
    with open(os.path.join(folder, "r.json"), "w") as f:
      json.dump(dict(base, runs=runs), f)
    table = costed.summarize_costed(folder, trainings=(30, 50, 100, 200))
    row = table[("table", "error=1,hw=1")]["coupled random"]
    self.assertAllClose(row[30][:2], (0.5 * 0.3, 0.2 * 0.3))
    self.assertAllClose(row[50][:2], (0.25, 0.1))
    self.assertAllClose(row[100][:2], (0.5, 0.2))
    self.assertIsNone(row[200])
    self.assertEqual(row[100][3], [0, 1, 2])
    line = costed.format_summary(table)[0]
    self.assertIn("100 trainings: median 0.5000, worst 0.2000 (3 seeds: 0 0.5000, 1 0.2000, "
                  "2 0.9000)", line)

  def test_seeds_below_against_random_median_and_same_seed(self):
    folder = os.path.join(self.get_temp_dir(), "bar")
    os.makedirs(folder)
    base = {"problem": "table", "groups": ["error", "hw"], "costs": [1.0, 1.0],
            "coupled_cost": 2.0, "cost_budget": 100.0, "metric": "hypervolume_fraction"}
    runs = lambda values: [{"seed": s, "evaluations": [
        {"cumulative_cost": 60.0, "hypervolume_fraction": v / 2},
        {"cumulative_cost": 100.0, "hypervolume_fraction": v}]} for s, v in values]
    for name, values in (("random", [(0, 0.5), (1, 0.2), (2, 0.9)]),
                         ("pesmo", [(0, 0.4), (1, 0.6), (2, 0.7), (3, 0.3)])):
      with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump(dict(base, strategy=name, evaluation="coupled", runs=runs(values)), f)
    table = costed.summarize_costed(folder, trainings=(30, 50))
    got = costed.seeds_below(table)[("table", "error=1,hw=1")]
    self.assertEqual(list(got), ["coupled pesmo"])   # the baseline is not listed
    # 50 trainings (cost 100): random's median 0.5; pesmo 0.4, 0.6, 0.7, 0.3.
    median, low, paired, n = got["coupled pesmo"][50]
    self.assertAllClose(median, 0.5)
    self.assertEqual(low, [0, 3])
    self.assertEqual(paired, [0, 2])   # 0.4 < 0.5 and 0.7 < 0.9; seed 3 has no random run
    self.assertEqual(n, 4)
    # 30 trainings (cost 60): every figure halved, the same seeds.
    self.assertAllClose(got["coupled pesmo"][30][0], 0.25)
    self.assertEqual(got["coupled pesmo"][30][1:], ([0, 3], [0, 2], 4))
    line = costed.format_seeds_below(costed.seeds_below(table))[0]
    self.assertIn("coupled pesmo against coupled random: 30 trainings: 2 of 4 seeds below its "
                  "median 0.2500 (seeds 0, 3), 2 below its run of the same seed (seeds 0, 2)",
                  line)
    self.assertEqual(costed.seeds_below(table, baseline="coupled qlognehvi"), {})

  def _reach_folder(self):
    """A reference (coupled random, 3 seeds) and a decoupled strategy, costs
    error=1.5, hw=0.5 (a training is worth 2)."""
    folder = os.path.join(self.get_temp_dir(), "reach")
    os.makedirs(folder)
    base = {"problem": "table", "groups": ["error", "hw"], "costs": [1.5, 0.5],
            "coupled_cost": 2.0, "metric": "hypervolume_fraction"}
    ev = lambda group, cost, v: {"group": group, "cumulative_cost": cost,
                                 "hypervolume_fraction": v}
    reference = [{"seed": s, "evaluations": [ev("all", c, v * c / 200.0)
                                             for c in (60.0, 100.0, 200.0)]}
                 for s, v in enumerate([0.5, 0.2, 0.9])]
    other = [{"seed": 0, "evaluations": [ev("all", 20.0, 0.1), ev("hw", 20.5, 0.1),
                                         ev("error", 22.0, 0.3)]},
             {"seed": 1, "evaluations": [ev("all", 20.0, 0.05), ev("error", 21.5, 0.2),
                                         ev("error", 23.0, 0.26)]},
             {"seed": 2, "evaluations": [ev("all", 20.0, 0.0), ev("hw", 20.5, 0.0)]}]
    with open(os.path.join(folder, "ref.json"), "w") as f:
      json.dump(dict(base, strategy="random", evaluation="coupled", cost_budget=200.0,
                     runs=reference), f)
    with open(os.path.join(folder, "dec.json"), "w") as f:
      json.dump(dict(base, strategy="pesmo", evaluation="decoupled", cost_budget=30.0,
                     runs=other), f)
    return folder

  def test_cost_to_reach_first_cost_of_the_median_and_of_each_seed(self):
    merged = costed.load_costed(self._reach_folder())
    got = costed.cost_to_reach(merged, "coupled random", 50)[("table", "error=1.5,hw=0.5")]
    # Target: the reference's seeds at cost 100 (50 trainings) are 0.25, 0.1, 0.45.
    self.assertAllClose(got["target"], 0.25)
    # Median of the decoupled seeds after each cost: 20 -> 0.05, 20.5 -> 0.05,
    # 21.5 -> 0.1, 22 -> 0.2, 23 -> 0.26: first >= 0.25 at 23 = 11.5 trainings.
    median, seeds, budget = got["labels"]["decoupled pesmo"]
    self.assertAllClose(median, 11.5)
    self.assertEqual(seeds, [(0, 11.0, 2), (1, 11.5, 3), (2, None, None)])
    self.assertAllClose(budget, 15.0)
    # The reference itself: medians 0.15 at 60, 0.25 at 100; seed 1 ends at 0.2.
    median, seeds, _ = got["labels"]["coupled random"]
    self.assertAllClose(median, 50.0)
    self.assertEqual(seeds, [(0, 50.0, 2), (1, None, None), (2, 30.0, 1)])
    grid = np.array([0.0, 19.9, 20.0, 20.4, 20.5, 21.0, 23.0, 60.0, 99.0, 100.0, 250.0])
    for _, runs in merged.values():   # the vectorized curve against figure_at_cost
      for run in runs.values():
        self.assertAllEqual(costed._figures_at_costs(run, "hypervolume_fraction", grid),
                            [costed.figure_at_cost(run, "hypervolume_fraction", c) for c in grid])
    lines = costed.format_reach({("table", "error=1.5,hw=0.5"): got}, "coupled random", 50)
    self.assertIn("decoupled pesmo: median reaches it at cost worth 11.5 trainings; seeds "
                  "reaching it 2 of 3 (0: 11.0 (2 trained), 1: 11.5 (3 trained), "
                  "2: not within 15)", lines[2])

  @parameterized.named_parameters(("unknown_label", "coupled qlognehvi", 50, "coupled random"),
                                  ("beyond_budget", "coupled random", 101, "below 101"))
  def test_cost_to_reach_refuses_bad_reference(self, reference, trainings, message):
    merged = costed.load_costed(self._reach_folder())
    with self.assertRaisesRegex(ValueError, message):
      costed.cost_to_reach(merged, reference, trainings)

  def test_cli_reach_refuses_bad_spec_before_reading(self):
    done = self._cli("--summarize=" + self.get_temp_dir(), "--reach=coupled random")
    self.assertNotEqual(done.returncode, 0)
    self.assertIn("expected LABEL@TRAININGS", done.stderr)

  def test_placement_counts_completed_rows_inside_the_reference_point(self):
    # Brute force from the CSV itself: the reference point is each modelled
    # column's median (error; log latency, log energy).
    with open(self.path) as f:
      rows = list(csv.DictReader(f))
    modelled = np.array([[float(r["error"]), np.log(float(r["lat"])), np.log(float(r["energy"]))]
                         for r in rows])
    inside = modelled < np.median(modelled, axis=0)
    hw_in, all_in = inside[:, 1:].all(1), inside.all(1)
    both = int(np.flatnonzero(all_in)[0])
    hw_only = int(np.flatnonzero(hw_in & ~all_in)[0])
    outside = int(np.flatnonzero(~hw_in)[0])
    others = [r for r in range(len(rows)) if r not in (both, hw_only, outside)]
    ev = lambda row, group: {"row": row, "group": group, "cumulative_cost": 0.0,
                             "hypervolume_fraction": 0.0}
    runs = [{"seed": 0, "initial_evaluations": 2, "evaluations": [
                ev(others[0], "all"), ev(others[1], "all"),          # initial design
                ev(both, "lat+energy"), ev(both, "error"),             # completed
                ev(hw_only, "error"), ev(hw_only, "lat+energy"),       # completed
                ev(others[2], "lat+energy")]},                         # never trained
            {"seed": 1, "evaluations": [                               # an older record:
                ev(others[3], "all"), ev(outside, "all")]}]            # --num_initial=1
    header = {"problem": "table", "strategy": "pesmo", "evaluation": "decoupled",
              "groups": ["error", "lat+energy"], "costs": [10.0, 1.0], "coupled_cost": 11.0,
              "cost_budget": 100.0, "metric": "hypervolume_fraction",
              "table": self.problem.table.describe(), "runs": runs}
    folder = os.path.join(self.get_temp_dir(), "placement")
    os.makedirs(folder)
    with open(os.path.join(folder, "p.json"), "w") as f:
      json.dump(header, f)
    got = costed.placement(folder, num_initial=1)[("table", "error=10,lat+energy=1")]
    n, cheap, every, rate, seeds = got["decoupled pesmo"]
    self.assertEqual((n, cheap, every, seeds), (3, 2, 1, 2))
    self.assertAllClose(rate, all_in.sum() / hw_in.sum())
    line = costed.format_placement({("table", "error=10,lat+energy=1"): got})[0]
    self.assertIn("3 rows completed by proposals (2 seeds), 2 inside", line)


if __name__ == "__main__":
  tf.test.main()
