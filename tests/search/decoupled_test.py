"""Tests for search/decoupled.py: the decoupled search (--evaluation=decoupled).

Fast: the store rows -> the strategy's inputs (NaN, durations, pending), the
slots (a stub strategy, no training), the refusals before any work, the free
check's columns in results.csv. Slow (a real search each): a tiny decoupled
search on this host's CPU (measure-only and trained rows, results.csv's kind
column, a resume that continues without repeating, no measurement during a
training: the local device lock), and one against the agent on loopback
(measurements proceed while the host trains).
"""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from search import api
from search import cellspace
from search import config as config_lib
from search import decoupled
from search import loop
from search import outputs
from search import store as store_lib
from search.optimizer.objective_groups import Proposal
from tea_keras import space
from tests.search import loop_test
from tests.search import paper_flagfiles_test

ROOT = paper_flagfiles_test.ROOT


def _row(trial_id, genotype, kind, status="done", metrics=None, started=0.0, finished=None):
  key = store_lib.evaluation_key(genotype.key(), kind)
  return {"trial_id": trial_id, "genotype": genotype.to_string(), "genotype_key": key,
          "encoding": genotype.to_vector(), "kind": kind, "status": status, "source": "initial",
          "metrics": metrics or {}, "started_at": started, "finished_at": finished,
          "artifacts": {}, "error": None, "attempts": 1, "host": "h", "retries": []}


def _genotypes(count, seed=3):
  rng = np.random.default_rng(seed)
  out = []
  while len(out) < count:
    g = space.sample(rng)
    if g.key() not in {o.key() for o in out}:
      out.append(g)
  return out


class ObservationsTest(tf.test.TestCase):

  def test_observations_one_row_per_design_nan_where_unmeasured_and_worked_seconds(self):
    a, b, c, d = _genotypes(4)
    objectives = ("error", "time", "energy")
    groups = decoupled.objective_groups(objectives)
    self.assertEqual(groups.names, ("error", "time+energy"))
    trials = [
        # a: measured untrained (2 s of build, 3 s of measurement after a 50 s lock wait) ...
        _row(1, a, "measure", metrics={"time_s": 0.5, "energy_j": 2.0, "build_start_time": 100.0,
                                       "build_end_time": 102.0, "measure_start_time": 150.0,
                                       "measure_end_time": 153.0}, started=100, finished=153),
        # ... then trained: its error; its trained export's time does not replace the untrained.
        _row(2, a, "train", metrics={"val_error": 0.3, "time_s": 0.6, "energy_j": 2.2,
                                     "train_start_time": 10.0, "train_end_time": 40.0,
                                     "measure_start_time": 40.0, "measure_end_time": 44.0}),
        # b: trained only: its trained export gives its time and energy.
        _row(3, b, "train", metrics={"deployed_val_error": 0.4, "val_error": 0.45, "time_s": 0.7,
                                     "energy_j": 3.0}, started=5.0, finished=25.0),
        _row(4, c, "measure", status="running"),
        _row(5, d, "train", status="failed"),
    ]
    obs = decoupled.observations(trials, objectives, groups, len(a.to_vector()))
    self.assertEqual(obs.keys, [a.key(), b.key()])
    self.assertAllClose(obs.x, [a.to_vector(), b.to_vector()])
    self.assertAllClose(obs.y, [[0.3, 0.5, 2.0], [0.4, 0.7, 3.0]])
    # error group: 30 s + 4 s of a's windows, 20 s wall for b; hardware: 2 s + 3 s for a.
    self.assertAllClose(obs.durations, [[34.0, 5.0], [20.0, np.nan]])
    # Pending per group: c measuring, d's failed training (never proposed again).
    self.assertAllClose(obs.pending[0], [d.to_vector()])
    self.assertAllClose(obs.pending[1], [c.to_vector()])

  def test_train_row_records_untrained_measurement_of_its_design_in_results_csv(self):
    (a,) = _genotypes(1)
    trials = [_row(1, a, "measure", metrics={"time_s": 0.50, "images": 100}),
              _row(2, a, "train", metrics={"val_error": 0.3, "time_s": 0.40, "images": 100})]
    path = os.path.join(self.get_temp_dir(), "results.csv")
    outputs.write_results_csv(path, trials, ("error", "time"))
    with open(path) as f:
      rows = {r["trial_id"]: r for r in csv.DictReader(f)}
    self.assertEqual(rows["1"]["kind"], "measure")
    self.assertEqual(rows["1"]["val_error"], "")
    self.assertEqual(rows["2"]["kind"], "train")
    self.assertEqual(rows["2"]["untrained_trial_id"], "1")
    self.assertAlmostEqual(float(rows["2"]["untrained_time_s"]), 0.50)
    self.assertAlmostEqual(float(rows["2"]["untrained_vs_trained_time_pct"]),
                           100.0 * (0.50 - 0.40) / 0.40)
    summary = outputs.summarize(trials, ("error", "time"))
    self.assertEqual(summary["kinds"]["measure"]["done"], 1)
    self.assertEqual(summary["hypervolume_trial_ids"], [2])  # only complete designs


class _StubStrategy:
  """Proposes a fresh uniform cell for the first allowed group."""

  def __init__(self, objectives):
    self.groups = decoupled.objective_groups(objectives)
    self.timings = {"fit_seconds": 0.0, "acquisition_seconds": 0.0}
    self.rng = np.random.default_rng(0)
    self.allowed = []

  def propose(self, x, y, pending, durations, allowed=None):
    self.allowed.append(list(allowed))
    return Proposal(np.array(space.sample(self.rng).to_vector(), float), allowed[0], 1.0)


class SlotsTest(tf.test.TestCase):

  def _fill(self):
    decoupled.fill_slots(self.store, self.strategy, self.config, cellspace.cell_space(),
                         self.in_flight, self._submit, lambda line: None)

  def _submit(self, trial):
    self.store.mark_running(trial["trial_id"])
    self.in_flight.add(trial["trial_id"])
    self.submitted.append((trial["trial_id"], trial["kind"], trial["source"]))

  def _finish(self, trial_id):
    self.store.finish(trial_id, "done", {"time_s": 0.1})
    self.in_flight.discard(trial_id)

  def test_one_training_and_one_measurement_in_flight_until_num_samples_trainings(self):
    d = self.get_temp_dir()
    self.store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    self.config = config_lib.SearchConfig(results_dir=d, evaluation="decoupled",
                                          objectives=("error", "time"), num_samples=2,
                                          num_initial=1, device="remote")
    self.strategy, self.in_flight, self.submitted = _StubStrategy(("error", "time")), set(), []
    self._fill()
    self.assertEqual(self.submitted, [(1, "train", "initial"), (2, "measure", "pesmo")])
    self.assertEqual(self.strategy.allowed, [[1]])  # only the free measurement slot
    self._fill()
    self.assertLen(self.submitted, 2)  # both slots busy
    self._finish(1)
    self._fill()
    self.assertEqual(self.submitted[2], (3, "train", "pesmo"))
    self._finish(2)
    self._fill()
    self.assertEqual(self.submitted[3], (4, "measure", "pesmo"))  # train #3 still runs
    self._finish(3)
    self._finish(4)
    self._fill()  # 2 trainings done: no new training, and no measurement without one
    self.assertLen(self.submitted, 4)
    self.assertEqual(self.strategy.allowed, [[1], [0], [1]])
    self.store.close()


class RefusalTest(tf.test.TestCase):

  def _refused(self, *extra):
    d = os.path.join(self.get_temp_dir(), "refused")
    out = loop_test.run_cli(d, "--evaluation=decoupled", *extra, check=False)
    self.assertEqual(out.returncode, 1, msg=out.stderr[-2000:])
    self.assertNotIn("Traceback", out.stderr)
    self.assertNotIn("starting", out.stdout)
    self.assertFalse(os.path.exists(d), msg="files were written in --results_dir")
    return out.stderr

  def test_cli_refuses_int8_before_any_work(self):
    stderr = self._refused("--precisions=int8", "--strategy=pesmo")
    self.assertIn("--evaluation=decoupled cannot measure --precisions=int8", stderr)
    self.assertIn("calibrat", stderr)

  def test_cli_refuses_a_strategy_without_a_decoupled_version_before_any_work(self):
    stderr = self._refused("--strategy=random")
    self.assertIn("--evaluation=decoupled needs a decoupled strategy; --strategy=random", stderr)

  def test_api_takes_the_evaluation_as_a_flag_and_refuses_int8_alike(self):
    config = api.config_from("flags/quickstart.cfg", evaluation="decoupled",
                             results_dir=self.get_temp_dir())
    self.assertEqual(config.evaluation, "decoupled")
    config_lib.validate(config)
    with self.assertRaisesRegex(ValueError, "cannot measure --precisions=int8"):
      api.run("flags/quickstart.cfg", evaluation="decoupled", precisions="int8",
              results_dir=os.path.join(self.get_temp_dir(), "int8"), log=lambda line: None)
    self.assertFalse(os.path.exists(os.path.join(self.get_temp_dir(), "int8")))

  def test_validate_refuses_objectives_without_error_or_hardware(self):
    config = loop_test.tiny_config("/nonexistent", evaluation="decoupled",
                                   objectives=("time", "energy"))
    with self.assertRaisesRegex(ValueError, "expected error and at least one of time,energy"):
      config_lib.validate(config)


def _trials(results_dir):
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  try:
    return store.trials()
  finally:
    store.close()


def _overlaps(trials):
  """(measure row, train row) pairs whose measurement and training windows overlap."""
  return [(m["trial_id"], t["trial_id"]) for m in trials for t in trials
          if m["trial_id"] != t["trial_id"] and "measure_start_time" in m["metrics"]
          and "train_start_time" in t["metrics"]
          and m["metrics"]["measure_start_time"] < t["metrics"]["train_end_time"]
          and t["metrics"]["train_start_time"] < m["metrics"]["measure_end_time"]]


@pytest.mark.slow  # two tiny searches, 3 trainings in all: about 5 min on 2 cores
class LocalDecoupledSearchTest(tf.test.TestCase):

  def test_decoupled_search_records_both_kinds_resumes_and_never_measures_during_training(self):
    d = os.path.join(self.get_temp_dir(), "decoupled")
    config = loop_test.tiny_config(d, strategy="pesmo", evaluation="decoupled", num_samples=2)
    lines = []
    loop.run_search(config, log=lines.append)
    first = _trials(d)
    kinds = [t["kind"] for t in first]
    self.assertEqual(kinds.count("train"), 2)
    self.assertGreaterEqual(kinds.count("measure"), 1)
    for t in first:
      self.assertEqual(t["status"], "done", msg=t["error"])
      self.assertGreater(t["metrics"]["time_s"], 0.0)
      if t["kind"] == "measure":
        self.assertIsNone(outputs.trial_lib.objective_value(t["metrics"], "error"))
        self.assertTrue(t["metrics"]["untrained"])
        self.assertGreater(t["metrics"]["randomized_tensors"], 0)
        self.assertTrue(os.path.exists(t["artifacts"]["export"]))
        self.assertNotIn("model", t["artifacts"])
      else:
        self.assertBetween(outputs.trial_lib.objective_value(t["metrics"], "error"), 0.0, 1.0)
    with open(os.path.join(d, "results.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual(sorted({r["kind"] for r in rows}), ["measure", "train"])
    self.assertTrue(all(r["val_error"] == "" for r in rows if r["kind"] == "measure"))
    with open(os.path.join(d, "config.json")) as f:
      self.assertEqual(json.load(f)["evaluation"], "decoupled")
    # The local device lock: no measurement while another evaluation trains.
    self.assertEqual(_overlaps(first), [])
    # An interruption: a measurement was proposed, not started, when the run died.
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    (extra,) = [g for g in _genotypes(20, seed=11)
                if not store.has_key(store_lib.evaluation_key(g.key(), "measure"))][:1]
    extra_id = store.add(extra, "pesmo", kind="measure")
    store.close()
    loop.run_search(config.__class__(**dict(config.__dict__, num_samples=3)), log=lines.append)
    second = _trials(d)
    by_id = {t["trial_id"]: t for t in second}
    for t in first:  # nothing done is redone
      self.assertEqual(by_id[t["trial_id"]]["finished_at"], t["finished_at"])
      self.assertEqual(by_id[t["trial_id"]]["attempts"], 1)
    self.assertEqual(by_id[extra_id]["status"], "done")
    self.assertEqual(by_id[extra_id]["genotype"], extra.to_string())
    self.assertEqual([t["kind"] for t in second].count("train"), 3)
    self.assertLen({t["genotype_key"] for t in second}, len(second))
    self.assertEqual(_overlaps(second), [])


@pytest.mark.slow  # an agent and a tiny search: about 3 min on 2 cores
class AgentDecoupledSearchTest(tf.test.TestCase):

  def test_agent_measures_while_the_host_trains(self):
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    root = os.path.join(self.get_temp_dir(), "agent_decoupled")
    images = data.normalize(data.load("cifar10_sample").x_val[:100])
    with paper_flagfiles_test.agent(os.path.join(root, "agent"), "cpu", images=images) as (
        url, token, _):
      d = os.path.join(root, "search")
      cmd = [sys.executable, "-m", "search.run", "--results_dir=" + d,
             "--evaluation=decoupled", "--strategy=pesmo", "--num_samples=2", "--num_initial=2",
             "--device=remote", "--device_url=" + url, "--device_token_file=" + token]
      cmd += [a for a in loop_test.TINY if not a.startswith(("--device=", "--runtime=",
                                                            "--power_source="))]
      out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, check=False,
                           env=paper_flagfiles_test._env())  # pylint: disable=protected-access
    self.assertEqual(out.returncode, 0, msg=out.stdout[-3000:] + out.stderr[-3000:])
    trials = _trials(d)
    self.assertEqual([t["status"] for t in trials], ["done"] * len(trials))
    self.assertEqual([t["kind"] for t in trials].count("train"), 2)
    measured = [t for t in trials if t["kind"] == "measure"]
    self.assertNotEmpty(measured)
    self.assertTrue(all(t["measure_host"] == socket.gethostname() for t in measured))  # the agent's
    # Measurements proceeded on the agent while the host trained.
    overlaps = _overlaps(trials)
    self.assertNotEmpty(overlaps)
    self.assertTrue(all(by["kind"] == "train" for by in
                        ({t["trial_id"]: t for t in trials}[j] for _, j in overlaps)))
