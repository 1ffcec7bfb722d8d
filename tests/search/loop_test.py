"""End-to-end tests of the search loop: real training, export, measurement."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from search import config as config_lib
from search import loop
from search import store as store_lib
from tea_keras import space

# A tiny but complete search: N=1, F=4 networks, 1 epoch on 256 images, time
# measured with ONNX Runtime on 100 validation images.
TINY = ["--dataset=cifar10_sample", "--num_cells=1", "--filters=4", "--epochs=1",
        "--train_images=256", "--measure_images=100", "--measure_batch_size=50",
        "--measure_repeats=1", "--objectives=error,time", "--device=cpu",
        "--runtime=onnxruntime", "--power_source=none"]


def tiny_config(results_dir, **kw):
  values = dict(results_dir=results_dir, dataset="cifar10_sample",
                recipe={"num_cells": 1, "filters": 4, "epochs": 1}, train_images=256,
                measure_images=100, measure_batch_size=50, measure_repeats=1,
                objectives=("error", "time"), device="cpu", runtime="onnxruntime",
                power_source="none", num_samples=3, num_initial=2)
  values.update(kw)
  return config_lib.SearchConfig(**values)


def run_cli(results_dir, *extra, check=True):
  cmd = [sys.executable, "-m", "search.run", "--results_dir=" + results_dir] + TINY + list(extra)
  return subprocess.run(cmd, capture_output=True, text=True, check=check)


class LoopTest(tf.test.TestCase):

  def test_run_search_completes_and_writes_outputs(self):
    d = os.path.join(self.get_temp_dir(), "search")
    lines = []
    summary = loop.run_search(tiny_config(d, strategy="pesmo"), log=lines.append)
    self.assertEqual(summary["trials"], 3)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    trials = store.trials()
    store.close()
    self.assertLen(trials, 3)
    self.assertEqual([t["status"] for t in trials], ["done"] * 3, msg=[t["error"] for t in trials])
    self.assertEqual([t["source"] for t in trials], ["initial", "initial", "pesmo"])
    self.assertLen({t["genotype_key"] for t in trials}, 3)
    for t in trials:
      self.assertBetween(t["metrics"]["val_error"], 0.0, 1.0)
      self.assertGreater(t["metrics"]["time_s"], 0.0)
      self.assertIsNone(t["metrics"]["energy_j"])
      self.assertTrue(os.path.exists(t["artifacts"]["model"]))
      self.assertTrue(os.path.exists(t["artifacts"]["export"]))
    for name in ("results.csv", "pareto.csv", "summary.json", "config.json",
                 "pareto_error_time.png", "hypervolume.png"):
      self.assertTrue(os.path.exists(os.path.join(d, name)), msg=name)
    self.assertGreater(summary["final_hypervolume"], 0.0)
    self.assertTrue(any("ETA" in line for line in lines))
    # Re-running a finished search does no new work.
    again = loop.run_search(tiny_config(d, strategy="pesmo"), log=lines.append)
    self.assertEqual(again["trials"], 3)

  def test_cli_refuses_invalid_combination_before_any_work(self):
    d = os.path.join(self.get_temp_dir(), "refused")
    out = run_cli(d, "--objectives=error,time,energy", check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("--objectives includes energy but --power_source=none", out.stderr)
    self.assertFalse(os.path.exists(d))
    out = run_cli(d, "--device=remote", check=False)
    self.assertIn("--device=remote needs --device_url", out.stderr)

  def test_cli_refuses_results_dir_of_other_experiment(self):
    d = os.path.join(self.get_temp_dir(), "other")
    config = tiny_config(d)
    config_lib.write_config(config_lib.SearchConfig.from_dict(
        dict(loop.resolve(config).__dict__, recipe={"num_cells": 2, "filters": 4, "epochs": 1})))
    out = run_cli(d, "--num_samples=3", "--num_initial=2", check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("holds another experiment (recipe", out.stderr)


@pytest.mark.slow
class LoopResumeTest(tf.test.TestCase, parameterized.TestCase):

  def test_kill_9_mid_trial_then_resume_finishes_exactly(self):
    d = os.path.join(self.get_temp_dir(), "killed")
    cmd = [sys.executable, "-m", "search.run", "--results_dir=" + d, "--num_samples=4",
           "--num_initial=2", "--strategy=random"] + TINY
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = os.path.join(d, "trials.db")
    deadline = time.time() + 300
    done_before = []
    while time.time() < deadline:
      time.sleep(0.5)
      if os.path.exists(db):
        rows = sqlite3.connect(db).execute(
            "SELECT trial_id, status, finished_at FROM trials").fetchall()
        if any(r[1] == "done" for r in rows) and any(r[1] == "running" for r in rows):
          done_before = [r for r in rows if r[1] == "done"]
          break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    self.assertNotEmpty(done_before, msg="the search never had a done and a running trial")
    out = run_cli(d, "--num_samples=4", "--num_initial=2", "--strategy=random")
    self.assertIn("re-running interrupted trial(s)", out.stdout)
    store = store_lib.TrialStore(db)
    trials = store.trials()
    store.close()
    self.assertLen(trials, 4)
    self.assertEqual([t["status"] for t in trials], ["done"] * 4)
    self.assertLen({t["genotype_key"] for t in trials}, 4)
    by_id = {t["trial_id"]: t for t in trials}
    for trial_id, _, finished_at in done_before:  # nothing done was redone
      self.assertEqual(by_id[trial_id]["finished_at"], finished_at)
      self.assertEqual(by_id[trial_id]["attempts"], 1)

  @parameterized.parameters("ray", "local")
  def test_parallel_search_never_measures_while_another_trial_works(self, executor):
    d = os.path.join(self.get_temp_dir(), executor)
    out = run_cli(d, "--executor=" + executor, "--max_parallel=2", "--num_samples=4",
                  "--num_initial=2", "--strategy=pesmo")
    self.assertIn("search finished: 4 trials", out.stdout)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    trials = store.trials()
    store.close()
    self.assertEqual([t["status"] for t in trials], ["done"] * 4)
    self.assertLen({space.Genotype.parse(t["genotype"]).key() for t in trials}, 4)
    starts = sorted(t["started_at"] for t in trials)
    finishes = sorted(t["finished_at"] for t in trials)
    self.assertLess(starts[1], finishes[0])  # two trials were in flight at once
    windows = [(t["trial_id"], kind, t["metrics"][kind + "_start_time"],
                t["metrics"][kind + "_end_time"]) for t in trials for kind in ("train", "measure")]
    for trial_id, _, m0, m1 in [w for w in windows if w[1] == "measure"]:
      for other, kind, t0, t1 in windows:
        if other != trial_id:
          self.assertFalse(t0 < m1 and m0 < t1, msg="trial %d measured during %s of trial %d"
                           % (trial_id, kind, other))


class RayExecutorTest(tf.test.TestCase):

  def test_gpu_search_on_a_ray_cluster_without_gpus_is_refused(self):
    from search import executors  # pylint: disable=g-import-not-at-top
    import ray  # pylint: disable=g-import-not-at-top
    try:
      with self.assertRaisesRegex(ValueError, "asks Ray for 0.5 GPU per trial, but the Ray "
                                  "cluster has 0"):
        executors.make_executor("ray", 2, gpus_per_trial=0.5, single_node=True)
    finally:
      ray.shutdown()


class SharedStorageTest(tf.test.TestCase):

  def test_trial_on_a_node_without_the_results_dir_fails_before_training(self):
    from search import trial as trial_lib  # pylint: disable=g-import-not-at-top
    d = os.path.join(self.get_temp_dir(), "not_shared")
    config = tiny_config(d)
    spec = {"trial_id": 1, "genotype": space.sample(np.random.default_rng(0)).to_string(),
            "trial_dir": os.path.join(d, "trials", "0001"), "config": dict(config.__dict__),
            "storage_nonce": "abc123"}
    start = time.time()
    result = trial_lib.evaluate_trial(spec)
    self.assertLess(time.time() - start, 5.0)
    self.assertEqual(result["status"], "failed")
    self.assertIn("is not shared with", result["error"])
    self.assertFalse(os.path.exists(spec["trial_dir"]))


if __name__ == "__main__":
  tf.test.main()
