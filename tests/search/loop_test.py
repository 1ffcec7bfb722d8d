"""End-to-end tests of the search loop: real training, export, measurement."""

import csv
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from unittest import mock

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from search import config as config_lib
from search import loop
from search import store as store_lib
from tea_keras import space
from tea_keras import training

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
                power_source="none", num_samples=3, num_initial=2,
                # Flag a contended repeat rather than re-measure it up to 6 times: these
                # tests check the loop, not the timing (deploy/contention_test.py does).
                contention_policy="warn")
  values.update(kw)
  return config_lib.SearchConfig(**values)


def run_cli(results_dir, *extra, check=True):
  cmd = [sys.executable, "-m", "search.run", "--results_dir=" + results_dir] + TINY + list(extra)
  return subprocess.run(cmd, capture_output=True, text=True, check=check)


def _spawned_workers(parent_pid):
  """PIDs of the multiprocessing workers whose parent is ``parent_pid`` (Linux /proc)."""
  found = []
  for name in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open("/proc/%s/stat" % name) as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      with open("/proc/%s/cmdline" % name, "rb") as f:
        cmdline = f.read()
    except (OSError, ValueError, IndexError):
      continue
    if ppid == parent_pid and b"spawn_main" in cmdline:
      found.append(int(name))
  return found


def _alive(pid):
  """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def _add_failed_trial(results_dir, error):
  os.makedirs(results_dir, exist_ok=True)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  trial_id = store.add(space.sample(np.random.default_rng(7)), "initial")
  store.mark_running(trial_id)
  store.finish(trial_id, "failed", error=error)
  store.close()
  return trial_id


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
      # A done trial drops its training checkpoints (no --keep_checkpoints).
      self.assertEqual(loop.CHECKPOINT_DIR, training.CHECKPOINT_DIR)
      self.assertFalse(os.path.exists(os.path.join(t["artifacts"]["model_dir"],
                                                   training.CHECKPOINT_DIR)))
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

  def test_cli_refuses_results_dir_held_by_a_live_search(self):
    d = os.path.join(self.get_temp_dir(), "busy")
    with store_lib.RunLock.acquire(d):  # this test process is the live search
      out = run_cli(d, "--num_samples=3", "--num_initial=2", check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("error: --results_dir=%s is in use by another search (host %s, pid %d, "
                  "started " % (d, socket.gethostname(), os.getpid()), out.stderr)
    self.assertEqual(os.listdir(d), [store_lib.LOCK_NAME])  # no config.json, no trials.db

  def test_cli_refuses_corrupt_trials_db_saying_what_to_do(self):
    d = os.path.join(self.get_temp_dir(), "corrupt_db")
    os.makedirs(d)
    with open(os.path.join(d, "trials.db"), "wb") as f:
      f.write(b"garbage" * 1000)
    out = run_cli(d, "--num_samples=3", "--num_initial=2", check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("error: The trial store %s/trials.db cannot be used: DatabaseError: file is "
                  "not a database. Restore it" % d, out.stderr)
    self.assertIn("from a backup, or move the results directory aside", out.stderr)
    self.assertNotIn("Traceback", out.stderr)

  def test_run_search_refuses_zero_length_trials_db_of_a_search(self):
    d = os.path.join(self.get_temp_dir(), "truncated_db")
    config = loop.resolve(tiny_config(d), log=lambda line: None)
    config_lib.write_config(config)
    open(os.path.join(d, "trials.db"), "wb").close()
    with self.assertRaisesRegex(store_lib.CorruptStoreError, r"trials.db cannot be used: it is "
                                r"empty \(0 bytes\)"):
      loop.run_search(config, log=lambda line: None)
    self.assertEqual(os.path.getsize(os.path.join(d, "trials.db")), 0)

  def test_cli_refuses_corrupt_data_dir_before_any_trial(self):
    d = os.path.join(self.get_temp_dir(), "bad_data")
    data_dir = os.path.join(self.get_temp_dir(), "cifar-10-batches-py")
    os.makedirs(data_dir)
    for name in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]:
      with open(os.path.join(data_dir, name), "wb") as f:
        f.write(b"truncated download")
    out = run_cli(d, "--num_samples=3", "--num_initial=2", "--dataset=cifar10",
                  "--data_dir=" + data_dir, check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("error: CIFAR-10 batch file %s/data_batch_1 is corrupt" % data_dir, out.stderr)
    self.assertFalse(os.path.exists(os.path.join(d, "trials.db")))

  def test_take_back_unfinished_waits_for_an_interrupted_runs_lease(self):
    store = store_lib.TrialStore(os.path.join(self.get_temp_dir(), "lease.db"))
    trial_id = store.add(space.sample(np.random.default_rng(1)), "initial")
    store.mark_running(trial_id, lease_s=0.5)  # as left by a run killed just now
    lines = []
    start = time.time()
    self.assertEqual(loop._take_back_unfinished(store, lines.append), [trial_id])
    self.assertGreaterEqual(time.time() - start, 0.4)
    self.assertRegex(lines[0], r"waiting 0 s for the lease\(s\) of trial\(s\) \[%d\], held by "
                     r"%s:%d" % (trial_id, socket.gethostname(), os.getpid()))
    self.assertEqual(store.trials()[0]["status"], "pending")
    store.close()

  def test_take_back_unfinished_refuses_a_lease_renewed_meanwhile(self):
    store = store_lib.TrialStore(os.path.join(self.get_temp_dir(), "renewed.db"))
    trial_id = store.add(space.sample(np.random.default_rng(2)), "initial")
    store.mark_running(trial_id, lease_s=5.0)
    renew = lambda seconds: store.renew_leases(lease_s=60.0)  # a live driver elsewhere
    with self.assertRaisesRegex(store_lib.ResultsDirBusyError, r"Trial\(s\) \[%d\] in .* are "
                                r"still leased by .*another search writes" % trial_id):
      loop._take_back_unfinished(store, lambda line: None, sleep=renew)
    self.assertEqual(store.trials()[0]["status"], "running")
    store.close()


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

  def test_kill_9_of_the_driver_ends_its_worker_and_a_second_run_is_refused(self):
    d = os.path.join(self.get_temp_dir(), "orphan")
    cmd = [sys.executable, "-m", "search.run", "--results_dir=" + d, "--num_samples=2",
           "--num_initial=2", "--strategy=random", "--epochs=3"] + TINY
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = os.path.join(d, "trials.db")
    workers = []
    try:
      deadline = time.time() + 300
      while time.time() < deadline and not workers:
        time.sleep(0.5)
        if os.path.exists(db) and sqlite3.connect(db).execute(
            "SELECT 1 FROM trials WHERE status = 'running'").fetchone():
          workers = _spawned_workers(proc.pid)
      self.assertNotEmpty(workers, msg="the search never had a running trial in a worker")
      second = run_cli(d, "--num_samples=2", "--num_initial=2", "--strategy=random",
                       "--epochs=3", check=False)
      self.assertNotEqual(second.returncode, 0)
      self.assertIn("is in use by another search (host %s, pid %d, started "
                    % (socket.gethostname(), proc.pid), second.stderr)
      self.assertTrue(all(_alive(w) for w in workers))
      os.kill(proc.pid, signal.SIGKILL)  # the driver only, not its process group
      proc.wait()
      deadline = time.time() + 10
      while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
      self.assertFalse([w for w in workers if _alive(w)], msg="workers outlived the driver")
    finally:
      try:
        os.killpg(proc.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      proc.wait()

  def test_cli_stops_after_consecutive_failures_of_one_cause(self):
    d = os.path.join(self.get_temp_dir(), "diverging")
    out = run_cli(d, "--num_samples=5", "--num_initial=5", "--strategy=random",
                  "--learning_rate=1e6", "--max_consecutive_failures=2", check=False)
    self.assertEqual(out.returncode, 1, msg=out.stdout[-2000:])
    self.assertIn("error: stopped after 2 consecutive trials failed with the same cause: "
                  "training diverged", out.stderr)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    statuses = [t["status"] for t in store.trials()]
    store.close()
    self.assertEqual(statuses.count("failed"), 2)
    self.assertNotIn("done", statuses)

  def test_retry_failed_reruns_failed_trials_once_fixed(self):
    d = os.path.join(self.get_temp_dir(), "retry")
    trial_id = _add_failed_trial(d, "DataError: CIFAR-10 batch file data_batch_1 is corrupt")
    flags = ["--num_samples=1", "--num_initial=1", "--strategy=random"]
    out = run_cli(d, *flags, check=False)  # resuming keeps failed trials failed
    self.assertEqual(out.returncode, 1)
    self.assertIn("error: all 1 trials failed", out.stderr)
    self.assertIn("run again with --retry_failed", out.stderr)
    out = run_cli(d, *flags, "--retry_failed", "--keep_checkpoints")
    self.assertIn("re-running failed trial(s) [%d] (--retry_failed)" % trial_id, out.stdout)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    (trial,) = store.trials()
    store.close()
    self.assertEqual(trial["status"], "done", msg=trial["error"])
    self.assertIsNone(trial["error"])
    self.assertEqual(trial["attempts"], 2)
    self.assertTrue(os.path.exists(os.path.join(trial["artifacts"]["model_dir"],
                                                training.CHECKPOINT_DIR, "state.json")))

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


class ConsoleLinesTest(tf.test.TestCase):

  def test_failure_streak_stops_on_the_same_cause_only(self):
    streak = loop.FailureStreak(3)
    streak.record("failed", "training diverged: loss 1.4e14 at epoch 1")
    streak.record("failed", "training diverged: loss 2.0e15 at epoch 2")
    streak.record("done", None)  # a success resets the count
    streak.record("failed", "training diverged: loss 3e14 at epoch 1")
    streak.record("failed", "AgentError: agent answered 500: /tmp/tea-agent-x/model.onnx")
    streak.record("failed", "AgentError: agent answered 500: /tmp/tea-agent-y/model.onnx")
    with self.assertRaisesRegex(loop.SearchStopped, "stopped after 3 consecutive trials failed "
                                "with the same cause: AgentError"):
      streak.record("failed", "AgentError: agent answered 500: /tmp/tea-agent-z/model.onnx")
    loop.FailureStreak(0).record("failed", "never stops")

  def test_progress_shows_no_hypervolume_before_the_reference_point_and_contention(self):
    lines = []
    progress = loop.Progress(10, 0, 1, lines.append, num_initial=5)
    progress.trial_finished(1, "done", {"val_error": 0.5, "time_s": 0.2, "contended": True,
                                        "other_cpu_share": 0.61, "remeasured": 2},
                            ("error", "time"), {"final_hypervolume": 0.05,
                                                "reference_point_frozen": False})
    self.assertIn("| HV after the 5 initial trials |", lines[0])
    self.assertNotIn("0.05", lines[0])
    self.assertIn("warning: trial #1's time was measured while other processes used 61% of "
                  "the CPUs (after 2 re-measurement(s))", lines[1])
    progress.trial_finished(2, "done", {"val_error": 0.4, "time_s": 0.1}, ("error", "time"),
                            {"final_hypervolume": 0.07, "reference_point_frozen": True})
    self.assertIn("| HV 0.07 | elapsed", lines[2])
    self.assertLen(lines, 3)


class RetryTest(tf.test.TestCase):

  def test_record_retries_a_lost_attempt_at_most_trial_retries_times_and_says_why(self):
    d = os.path.join(self.get_temp_dir(), "retries")
    os.makedirs(d)
    config = tiny_config(d, trial_retries=2)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    self.addCleanup(store.close)
    lost_id, own_id = [store.add(g, "initial") for g in space.sample_many(11, 2)]
    node = "0a1b2c3d" + "e" * 48
    lines, retried = [], []
    for _ in range(3):
      store.mark_running(lost_id)
      retried.append(loop._record(store, config, {  # pylint: disable=protected-access
          "trial_id": lost_id, "status": "failed", "metrics": {}, "artifacts": {},
          "error": "attempt lost: NodeDiedError: the node died", "retryable": True,
          "retry_reason": "NodeDiedError: the node died",
          "where": {"train_host": "n1", "train_node": node}}, lines.append)[1])
    store.mark_running(own_id)
    loop._record(store, config, {  # pylint: disable=protected-access
        "trial_id": own_id, "status": "failed", "metrics": {}, "artifacts": {},
        "error": "training diverged: loss is nan", "retryable": False,
        "where": {"train_host": "n2"}}, lines.append)
    lost, own = store.trials()
    self.assertEqual(retried, [True, True, False])
    self.assertEqual((lost["status"], lost["attempts"], len(lost["retries"])), ("failed", 3, 2))
    self.assertEqual(lost["error"], "attempt lost: NodeDiedError: the node died (after 2 "
                     "retries: --trial_retries=2)")
    self.assertEqual((lost["train_host"], lost["train_node"]), ("n1", node))
    self.assertIn("trial #%d: attempt 1 on n1 (node 0a1b2c3d) lost: NodeDiedError: the node "
                  "died; retrying it (retry 1 of 2)" % lost_id, lines)
    self.assertIn("retrying it (retry 2 of 2)", lines[1])
    self.assertEqual((own["status"], own["attempts"], own["retries"]), ("failed", 1, []))
    with open(os.path.join(d, "results.csv")) as f:
      rows = {int(r["trial_id"]): r for r in csv.DictReader(f)}
    self.assertEqual(rows[lost_id]["retried"],
                     "attempt 1 on n1 (node 0a1b2c3d): NodeDiedError: the node died; "
                     "attempt 2 on n1 (node 0a1b2c3d): NodeDiedError: the node died")
    self.assertEqual((rows[own_id]["retried"], rows[own_id]["train_host"]), ("", "n2"))


class DriverDeviceLockTest(tf.test.TestCase, parameterized.TestCase):
  """The driver's own work (proposal: GP fit, acquisition; outputs and plots)
  holds the device shared, as training does: a measurement in another process,
  for another search on this machine, delays it."""

  @parameterized.parameters("propose_genotype", "refresh")
  def test_driver_work_waits_for_a_measurement_in_another_process(self, work_name):
    from search import cellspace  # pylint: disable=g-import-not-at-top
    from tests.search import device_lock_test  # pylint: disable=g-import-not-at-top
    temp = self.get_temp_dir()
    config = tiny_config(os.path.join(temp, "driver_" + work_name), strategy="random")
    os.makedirs(config.results_dir)
    design_space = cellspace.cell_space()

    def work():  # in a thread of its own: its own store connection
      store = store_lib.TrialStore(os.path.join(config.results_dir, "trials.db"))
      try:
        if work_name == "propose_genotype":
          loop.propose_genotype(store, None, config, design_space, log=lambda line: None)
        else:
          loop._refresh(store, config)
      finally:
        store.close()
    with mock.patch.dict(os.environ, TEA_LOCK_DIR=os.path.join(temp, "locks_" + work_name)):
      finished, released = device_lock_test.finish_time_behind(
          "cpu", os.path.join(temp, "measuring_search"), work)
    self.assertGreater(finished, released, msg="expected the driver's %s to wait for the "
                       "measurement of another search on this machine" % work_name)


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


class QLogNEHVIStrategyTest(tf.test.TestCase):
  """--strategy=qlognehvi (BoTorch, the bench extra) in the loop."""

  def _store_with_trials(self, results_dir):
    """4 done trials (error, time) and 1 running one, as a search leaves them."""
    os.makedirs(results_dir)
    store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
    rng = np.random.default_rng(5)
    for k in range(5):
      trial_id = store.add(space.sample(rng), "initial")
      store.mark_running(trial_id)
      if k < 4:
        store.finish(trial_id, "done", metrics={"val_error": 0.9 - 0.1 * k,
                                                "time_s": 0.01 * (1 + k ** 2)})
    return store

  def test_loop_proposes_with_qlognehvi_from_a_store_and_again_after_a_restart(self):
    from search import cellspace  # pylint: disable=g-import-not-at-top
    from search.optimizer import strategies  # pylint: disable=g-import-not-at-top
    config = tiny_config(os.path.join(self.get_temp_dir(), "store"), strategy="qlognehvi")
    store = self._store_with_trials(config.results_dir)
    self.addCleanup(store.close)
    design_space = cellspace.cell_space()
    proposals = []
    for _ in range(2):  # a resumed search builds a fresh strategy
      strategy = strategies.make_strategy("qlognehvi", design_space, 2, seed=config.seed,
                                          log_objectives=(False, True))
      lines = []
      genotype, source = loop._propose(store, strategy, config, design_space, lines.append)
      proposals.append(genotype.key())
    self.assertEqual(source, "qlognehvi")
    self.assertFalse(store.has_key(genotype.key()))  # new: not done, not running
    self.assertEqual(proposals[0], proposals[1])
    self.assertTrue(any(line.startswith("  qlognehvi proposal: fit") for line in lines))

  def test_cli_refuses_qlognehvi_without_botorch_before_any_work(self):
    fake = os.path.join(self.get_temp_dir(), "no_botorch")
    os.makedirs(os.path.join(fake, "botorch"))
    with open(os.path.join(fake, "botorch", "__init__.py"), "w") as f:
      f.write("raise ImportError('No module named botorch (test stand-in)')\n")
    d = os.path.join(self.get_temp_dir(), "refused_qlognehvi")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [fake, os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "search.run", "--results_dir=" + d, "--strategy=qlognehvi"]
    out = subprocess.run(cmd + TINY, capture_output=True, text=True, env=env, check=False)
    self.assertNotEqual(out.returncode, 0)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, msg=out.stderr)
    self.assertIn("--strategy=qlognehvi needs BoTorch", errors[0])
    self.assertIn('pip install -e ".[bench]"', errors[0])
    self.assertIn("test stand-in", errors[0])
    self.assertFalse(os.path.exists(d))

  @pytest.mark.slow
  def test_cli_search_with_qlognehvi_completes(self):
    d = os.path.join(self.get_temp_dir(), "qlognehvi")
    out = run_cli(d, "--strategy=qlognehvi", "--num_samples=3", "--num_initial=2",
                  "--contention_policy=warn", check=False)
    self.assertEqual(out.returncode, 0, msg=out.stdout[-3000:] + out.stderr[-3000:])
    self.assertIn("qlognehvi proposal: fit", out.stdout)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    trials = store.trials()
    store.close()
    self.assertEqual([t["source"] for t in trials], ["initial", "initial", "qlognehvi"])
    self.assertEqual([t["status"] for t in trials], ["done"] * 3,
                     msg=[t["error"] for t in trials])
    self.assertLen({t["genotype_key"] for t in trials}, 3)


if __name__ == "__main__":
  tf.test.main()
