"""Searches on a real Ray cluster of several nodes on this machine, through
``python -m search.run --executor=ray --ray_address=...``.

The cluster (``ray.cluster_utils.Cluster``) has a head and a worker node of
one CPU each, so that the two trials a search keeps in flight run one on
each node; trials measure through the real agent on loopback
(``--device=remote``), which returns the traces with its results. The tests
kill the worker node while a trial runs on it (the trial is retried on the
head: every trial done, exit 0, no --retry_failed) and the driver while
trials run on both nodes (the same command resumes). The refusals, each one
``error:`` line before anything is written in --results_dir: a local device
on two nodes, a results dir one node does not see (a third node started in a
mount namespace where a tmpfs hides it; skipped where unprivileged mount
namespaces are not allowed), and a cluster that wants Ray's token
authentication (a head of its own).

Budgets are tiny (2 trials, N=1, F=4, 1 epoch on 256 images, 100 images
measured); waits are bounded by the runs' own events (worker.json written
by a trial's attempt, the processes ending).
"""

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from search import store as store_lib
from tests.search import paper_flagfiles_test

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--dataset=cifar10_sample", "--num_cells=1", "--filters=4", "--epochs=1",
        "--train_images=256", "--measure_images=100", "--measure_batch_size=50",
        "--measure_repeats=1", "--objectives=error,time", "--contention_policy=warn",
        "--num_samples=2", "--num_initial=2", "--strategy=random", "--executor=ray",
        "--max_parallel=2"]
LOCAL_CPU = ["--device=cpu", "--runtime=onnxruntime", "--power_source=none"]
# Fast node-death detection: the retry does not wait Ray's default ~30 s.
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                 "health_check_initial_delay_ms": 0}


def _env(**extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                 else []))
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  env.pop("RAY_ADDRESS", None)
  env.update(extra)
  return env


def _trials(results_dir):
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  try:
    return store.trials()
  finally:
    store.close()


def _csv_rows(results_dir):
  with open(os.path.join(results_dir, "results.csv")) as f:
    return list(csv.DictReader(f))


def _workers(results_dir):
  """{trial_id: worker.json} of the attempts started so far."""
  out = {}
  for trial_id in (1, 2):
    path = os.path.join(results_dir, "trials", "%04d" % trial_id, "worker.json")
    try:
      with open(path) as f:
        out[trial_id] = json.load(f)
    except (OSError, ValueError):
      pass
  return out


def _wait_for(condition, proc, what, timeout_s=300):
  """Poll ``condition()`` until true; fail if ``proc`` ends first."""
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    value = condition()
    if value:
      return value
    if proc.poll() is not None:
      out, err = proc.communicate()
      raise AssertionError("the search ended (exit %d) before %s:\n%s\n%s"
                           % (proc.returncode, what, out[-3000:], err[-3000:]))
    time.sleep(0.2)
  raise AssertionError("no %s within %d s" % (what, timeout_s))


def _alive(pid):
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


RAY = os.path.join(os.path.dirname(sys.executable), "ray")  # the venv's CLI


def _stop(proc):
  """End a process group started here (a `ray start --block` and its node)."""
  for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      return
    try:
      proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      continue
  proc.wait()


def _unshare_works():
  try:
    return subprocess.run(["unshare", "-Urm", "true"], capture_output=True,
                          timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


@pytest.mark.slow  # a two-node Ray cluster, an agent and four searches: 5 min here
class TwoNodeSearchTest(tf.test.TestCase):
  """One cluster and one agent for the class; each test starts with both nodes.
  Slow (``-m slow``): run before each submission, not in the default suite,
  which keeps the one-node Ray tests (``executors_test.py``)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from ray import cluster_utils  # pylint: disable=g-import-not-at-top
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "ray_cluster")
    cls.stack = contextlib.ExitStack()
    try:
      cls.url, cls.token, _ = cls.stack.enter_context(paper_flagfiles_test.agent(
          os.path.join(cls.root, "agent"), "cpu",
          images=data.normalize(data.load("cifar10_sample").x_val[:100])))
      cls.cluster = cluster_utils.Cluster(
          initialize_head=True, shutdown_at_exit=True,
          head_node_args={"num_cpus": 1, "include_dashboard": False,
                          "_system_config": SYSTEM_CONFIG})
      cls.stack.callback(cls.cluster.shutdown)
      cls.worker = cls.cluster.add_node(num_cpus=1)
    except BaseException:
      cls.stack.close()
      raise

  @classmethod
  def tearDownClass(cls):
    cls.stack.close()
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    if not self.cluster.worker_nodes:  # a test killed it
      type(self).worker = self.cluster.add_node(num_cpus=1)
    self.cluster.wait_for_nodes()
    self.head_id, self.worker_id = self.cluster.head_node.node_id, self.worker.node_id

  def _cmd(self, results_dir, *extra, device=None):
    remote = ["--device=remote", "--device_url=" + self.url, "--device_token_file=" + self.token]
    return [sys.executable, "-m", "search.run", "--results_dir=" + results_dir,
            "--ray_address=" + self.cluster.address] + TINY + (device or remote) + list(extra)

  def _run(self, results_dir, *extra, device=None, timeout=600):
    return subprocess.run(self._cmd(results_dir, *extra, device=device), capture_output=True,
                          text=True, env=_env(), cwd=ROOT, timeout=timeout)

  def _start(self, results_dir):
    return subprocess.Popen(self._cmd(results_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
                            start_new_session=True)

  def _assert_refused(self, out, results_dir, message):
    self.assertEqual(out.returncode, 1, msg=out.stdout[-2000:] + out.stderr[-2000:])
    self.assertNotIn("Traceback", out.stderr)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, msg=out.stderr[-3000:])
    self.assertIn(message, errors[0])
    self.assertNotIn("starting search", out.stdout)
    self.assertFalse(os.path.exists(results_dir) and os.listdir(results_dir),
                     msg="files were written in --results_dir")

  def _assert_complete(self, results_dir, trials):
    """Both trials done once, each trial's row naming where it ran and its
    trial directory holding the agent's traces."""
    self.assertEqual([t["status"] for t in trials], ["done", "done"],
                     msg=[t["error"] for t in trials])
    self.assertLen({t["genotype_key"] for t in trials}, 2)
    rows = {int(r["trial_id"]): r for r in _csv_rows(results_dir)}
    self.assertLen(rows, 2)
    for t in trials:
      trial_dir = os.path.join(results_dir, "trials", "%04d" % t["trial_id"])
      self.assertEqual((rows[t["trial_id"]]["train_node"], rows[t["trial_id"]]["train_host"]),
                       (t["train_node"], socket.gethostname()))
      self.assertEqual(t["measure_host"], socket.gethostname())  # the agent's
      trace = t["artifacts"]["trace"]
      self.assertEqual(os.path.dirname(trace), os.path.join(os.path.abspath(trial_dir),
                                                            "measure"))
      self.assertTrue(os.path.isfile(trace), msg=trace)
      self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(trace), "result.json")))
    return rows

  def test_ray_search_refuses_a_local_device_on_two_nodes_before_writing_anything(self):
    d = os.path.join(self.root, "local_device")
    out = self._run(d, device=LOCAL_CPU, timeout=300)
    self._assert_refused(out, d, "has 2 nodes, and a local --device measures each trial on "
                         "whichever node trained it")

  def test_ray_search_refuses_a_results_dir_that_a_node_does_not_see(self):
    if not _unshare_works():
      self.skipTest("unprivileged mount namespaces (unshare -Urm) are not allowed here: no "
                    "node can be given its own view of the file system")
    hidden = os.path.join(self.root, "unshared")
    os.makedirs(hidden, exist_ok=True)
    d = os.path.join(hidden, "run")
    log_path = os.path.join(self.root, "unshared_node.log")
    with open(log_path, "w") as log:
      node = subprocess.Popen(
          ["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$1" start '
           '--address="$2" --num-cpus=1 --block --disable-usage-stats', hidden, RAY,
           self.cluster.address], stdout=log, stderr=subprocess.STDOUT, env=_env(),
          start_new_session=True)
    try:
      deadline = time.time() + 120
      while len(self.cluster.global_state._live_node_ids()) < 3:  # pylint: disable=protected-access
        self.assertIsNone(node.poll(), msg=open(log_path).read()[-3000:])
        self.assertLess(time.time(), deadline, msg="the third node never joined")
        time.sleep(0.2)
      out = self._run(d, timeout=300)
    finally:
      _stop(node)
    self._assert_refused(out, d, "is not shared with the Ray node(s) ")
    self.assertEqual(os.listdir(hidden), [])  # the probe file went too

  def test_ray_search_resumes_after_its_driver_is_killed_with_trials_on_both_nodes(self):
    d = os.path.join(self.root, "driver_killed")
    proc = self._start(d)
    try:
      workers = _wait_for(lambda: len(_workers(d)) == 2 and _workers(d), proc,
                          "an attempt of each trial")
    finally:
      proc.kill()  # SIGKILL, the driver only: Ray ends the tasks it owned
      proc.communicate()
    self.assertEqual({w["node_id"] for w in workers.values()}, {self.head_id, self.worker_id})
    deadline = time.time() + 60
    while any(_alive(w["pid"]) for w in workers.values()) and time.time() < deadline:
      time.sleep(0.2)
    self.assertFalse([w["pid"] for w in workers.values() if _alive(w["pid"])],
                     msg="the killed driver's trial attempts outlived it by 60 s")
    out = self._run(d)
    self.assertEqual(out.returncode, 0, msg=out.stdout[-3000:] + out.stderr[-3000:])
    self.assertIn("re-running interrupted trial(s) [1, 2]", out.stdout)
    trials = _trials(d)
    self.assertEqual([t["attempts"] for t in trials], [2, 2])
    self._assert_complete(d, trials)
    # Two trials in flight on two one-CPU nodes: one trained on each.
    self.assertEqual({t["train_node"] for t in trials}, {self.head_id, self.worker_id})

  def test_ray_search_retries_a_trial_whose_node_is_killed_mid_trial(self):
    d = os.path.join(self.root, "node_killed")
    proc = self._start(d)
    try:
      on_worker = _wait_for(
          lambda: [i for i, w in _workers(d).items() if w["node_id"] == self.worker_id], proc,
          "an attempt on the worker node")[0]
      self.cluster.remove_node(self.worker, allow_graceful=False)
      out, err = proc.communicate(timeout=600)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
    self.assertEqual(proc.returncode, 0, msg=out[-3000:] + err[-3000:])
    self.assertNotIn("failed", [t["status"] for t in _trials(d)])
    lost = "trial #%d: attempt 1 on %s (node %s) lost: " % (on_worker, socket.gethostname(),
                                                           self.worker_id[:8])
    self.assertIn(lost, out)
    self.assertIn("retrying it (retry 1 of 2)", out)
    self.assertEqual(re.findall(r"^\[trial (\d)/2\]", out, re.M), ["1", "2"])  # once each
    trials = _trials(d)
    rows = self._assert_complete(d, trials)
    by_id = {t["trial_id"]: t for t in trials}
    retried = by_id[on_worker]
    self.assertEqual(retried["attempts"], 2)
    self.assertLen(retried["retries"], 1)
    self.assertRegex(retried["retries"][0]["reason"], r"^(NodeDiedError|WorkerCrashedError)")
    self.assertEqual({t["train_node"] for t in trials}, {self.head_id})  # the node left
    self.assertStartsWith(rows[on_worker]["retried"], "attempt 1 on %s (node %s): "
                          % (socket.gethostname(), self.worker_id[:8]))
    other = 3 - on_worker
    self.assertEqual((by_id[other]["attempts"], rows[other]["retried"]), (1, ""))


class TokenAuthenticationTest(tf.test.TestCase):

  def test_ray_search_explains_a_cluster_that_wants_a_token(self):
    root = os.path.join(self.get_temp_dir(), "token_cluster")
    os.makedirs(root)
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    log_path = os.path.join(root, "head.log")
    with open(log_path, "w") as log:
      head = subprocess.Popen(
          [RAY, "start", "--head", "--port=%d" % port, "--num-cpus=1",
           "--include-dashboard=false", "--disable-usage-stats", "--block"],
          stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
          env=_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="tea-keras-test-token-0123456789ab"))
    d = os.path.join(root, "run")
    try:
      deadline = time.time() + 120
      while "Ray runtime started" not in open(log_path).read():
        self.assertIsNone(head.poll(), msg=open(log_path).read()[-3000:])
        self.assertLess(time.time(), deadline, msg="the head never started")
        time.sleep(0.2)
      # Ray's own setting: 2 attempts to reach the GCS instead of 20 (a second each).
      env = {k: v for k, v in _env(RAY_gcs_server_port_wait_time_s="2").items()
             if not k.startswith("RAY_AUTH")}
      out = subprocess.run(
          [sys.executable, "-m", "search.run", "--results_dir=" + d,
           "--ray_address=127.0.0.1:%d" % port] + TINY + LOCAL_CPU,
          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    finally:
      _stop(head)
    self.assertEqual(out.returncode, 1, msg=out.stdout[-2000:] + out.stderr[-2000:])
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, msg=out.stderr[-3000:])
    self.assertIn("uses token authentication", errors[0])
    self.assertIn("Export RAY_AUTH_MODE=token", errors[0])
    self.assertNotIn("Traceback", out.stderr)
    self.assertNotIn("InvalidAuthToken", out.stderr)  # Ray's own retry lines kept off
    self.assertFalse(os.path.exists(d))


if __name__ == "__main__":
  tf.test.main()
