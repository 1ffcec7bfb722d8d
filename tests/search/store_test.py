"""Tests for search/store.py (real SQLite)."""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

from absl.testing import parameterized
import tensorflow as tf

from search import store as store_lib
from tea_keras import space

# A second process that takes the run lock, says so, and holds it until killed.
_HOLD_LOCK = ("import sys, time; from search import store; "
              "lock = store.RunLock.acquire(sys.argv[1]); print('locked', flush=True); "
              "time.sleep(600)")


class StoreTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.path = os.path.join(self.get_temp_dir(), "trials.db")
    self.store = store_lib.TrialStore(self.path)

  def tearDown(self):
    self.store.close()
    super().tearDown()

  def test_store_lifecycle_and_json_columns(self):
    g = space.sample(0)
    tid = self.store.add(g, "initial")
    self.assertEqual(self.store.trials()[0]["status"], "pending")
    self.store.mark_running(tid, host="h1")
    self.store.finish(tid, "done", {"val_error": 0.4, "time_s": 0.01}, {"model": "m.keras"})
    (t,) = self.store.trials()
    self.assertEqual((t["status"], t["host"], t["attempts"]), ("done", "h1", 1))
    self.assertEqual(t["metrics"], {"val_error": 0.4, "time_s": 0.01})
    self.assertEqual(t["encoding"], g.to_vector())
    self.assertEqual(space.Genotype.parse(t["genotype"]), g)

  def test_store_rejects_commuted_duplicate(self):
    self.store.add(space.Genotype.parse("sep3x3(prev)+max3x3(prev_prev)"), "initial")
    with self.assertRaisesRegex(ValueError, "already in the store"):
      self.store.add(space.Genotype.parse("max3x3(prev_prev)+sep3x3(prev)"), "initial")
    self.assertEqual(self.store.count(), 1)

  def test_store_requeue_unfinished_after_reopen(self):
    ids = [self.store.add(g, "initial") for g in space.sample_many(1, 3)]
    self.store.mark_running(ids[0])
    self.store.mark_running(ids[1])
    self.store.finish(ids[1], "failed", error="boom")
    self.store.close()
    self.store = store_lib.TrialStore(self.path)  # as after a crash, once its lease expired
    self.assertEqual(self.store.requeue_unfinished(
        now=time.time() + store_lib.LEASE_SECONDS + 1), [ids[0]])
    self.assertEqual([t["status"] for t in self.store.trials()], ["pending", "failed", "pending"])
    self.assertEqual(self.store.trials(["failed"])[0]["error"], "boom")

  def test_store_uses_wal_and_meta_round_trip(self):
    mode = sqlite3.connect(self.path).execute("PRAGMA journal_mode").fetchone()[0]
    self.assertEqual(mode, "wal")
    self.store.set_meta("k", {"a": [1, 2]})
    self.assertEqual(self.store.get_meta("k"), {"a": [1, 2]})
    self.assertIsNone(self.store.get_meta("missing"))

  def test_store_finish_rejects_non_final_status(self):
    tid = self.store.add(space.sample(2), "initial")
    with self.assertRaisesRegex(ValueError, "Received status='running'"):
      self.store.finish(tid, "running")

  def test_store_requeue_unfinished_keeps_a_live_lease(self):
    tid = self.store.add(space.sample(3), "initial")
    self.store.mark_running(tid, lease_s=60.0)
    (t,) = self.store.trials()
    self.assertEqual(t["lease_holder"], "%s:%d" % (socket.gethostname(), os.getpid()))
    self.assertBetween(t["lease_until"] - time.time(), 50.0, 60.0)
    self.assertEqual(self.store.requeue_unfinished(), [])
    self.assertEqual(self.store.renew_leases(lease_s=600.0), 1)
    self.assertEqual(self.store.requeue_unfinished(now=time.time() + 300), [])
    self.store.release_leases()  # a clean stop: the next run takes it back at once
    self.assertEqual(self.store.requeue_unfinished(), [tid])
    self.assertEqual(self.store.trials()[0]["status"], "pending")
    self.assertIsNone(self.store.trials()[0]["lease_until"])

  def test_store_lease_keeper_renews_in_the_background(self):
    tid = self.store.add(space.sample(4), "initial")
    self.store.mark_running(tid, lease_s=1.0)
    first = self.store.trials()[0]["lease_until"]
    with store_lib.LeaseKeeper(self.path, interval_s=0.05, lease_s=100.0):
      time.sleep(0.5)
    self.assertGreater(self.store.trials()[0]["lease_until"], first + 90.0)

  def test_store_requeue_failed_clears_the_error(self):
    ids = [self.store.add(g, "initial") for g in space.sample_many(5, 2)]
    for tid, status in zip(ids, ("failed", "done")):
      self.store.mark_running(tid)
      self.store.finish(tid, status, {"val_error": 0.5},
                        error="boom" if status == "failed" else None)
    self.assertEqual(self.store.requeue_failed(), [ids[0]])
    retried, done = self.store.trials()
    self.assertEqual((retried["status"], retried["error"], retried["metrics"]),
                     ("pending", None, {}))
    self.assertEqual(retried["attempts"], 1)
    self.assertEqual(done["status"], "done")

  def test_store_adds_lease_columns_to_an_older_store(self):
    path = os.path.join(self.get_temp_dir(), "old", "trials.db")
    os.makedirs(os.path.dirname(path))
    old_schema = store_lib._SCHEMA.replace(",\n  lease_until REAL,\n  lease_holder TEXT", "")
    self.assertNotIn("lease", old_schema)
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.execute("INSERT INTO trials (genotype, genotype_key, encoding, status, source, "
               "created_at) VALUES ('g', 'k', '[]', 'running', 'initial', 0)")
    db.commit()
    db.close()
    store = store_lib.TrialStore(path)
    try:
      self.assertEqual(store.requeue_unfinished(), [1])  # no lease recorded: taken back
      self.assertIn("lease_until", store.trials()[0])
    finally:
      store.close()


  def test_store_records_where_a_trial_ran_and_why_it_was_retried(self):
    tid = self.store.add(space.sample(6), "initial")
    self.store.mark_running(tid, host="driver")
    self.assertEqual(self.store.requeue(tid, reason="node died (NodeDiedError)",
                                        node="n1 (node 0a1b2c3d)"), 1)
    (t,) = self.store.trials()
    self.assertEqual((t["status"], t["lease_holder"]), ("pending", None))
    self.store.mark_running(tid, host="driver")
    self.store.finish(tid, "done", {"val_error": 0.5}, {},
                      where={"train_host": "n2", "train_node": "9f8e7d6c", "measure_host": "tx2"})
    (t,) = self.store.trials()
    self.assertEqual((t["status"], t["attempts"], t["host"]), ("done", 2, "driver"))
    self.assertEqual((t["train_host"], t["train_node"], t["measure_host"]),
                     ("n2", "9f8e7d6c", "tx2"))
    self.assertLen(t["retries"], 1)
    self.assertEqual({k: t["retries"][0][k] for k in ("attempt", "reason", "node")},
                     {"attempt": 1, "reason": "node died (NodeDiedError)",
                      "node": "n1 (node 0a1b2c3d)"})

  def test_store_adds_node_and_retry_columns_to_an_older_store(self):
    path = os.path.join(self.get_temp_dir(), "older", "trials.db")
    os.makedirs(os.path.dirname(path))
    db = sqlite3.connect(path)
    db.executescript(  # the schema before the nodes and retries were recorded
        "CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, genotype TEXT NOT NULL, "
        "genotype_key TEXT NOT NULL UNIQUE, encoding TEXT NOT NULL, status TEXT NOT NULL, "
        "source TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, host TEXT, "
        "created_at REAL NOT NULL, started_at REAL, finished_at REAL, "
        "metrics TEXT NOT NULL DEFAULT '{}', artifacts TEXT NOT NULL DEFAULT '{}', error TEXT, "
        "lease_until REAL, lease_holder TEXT);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
    db.execute("INSERT INTO trials (genotype, genotype_key, encoding, status, source, attempts, "
               "host, created_at) VALUES ('g', 'k', '[]', 'done', 'initial', 1, 'h', 0)")
    db.execute("INSERT INTO trials (genotype, genotype_key, encoding, status, source, "
               "created_at) VALUES ('g2', 'k2', '[]', 'running', 'initial', 0)")
    db.commit()
    db.close()
    store = store_lib.TrialStore(path)
    try:
      old, running = store.trials()
      self.assertEqual((old["retries"], old["train_host"], old["measure_host"]), ([], None, None))
      self.assertEqual(store.requeue(running["trial_id"], reason="worker crashed"), 1)
      self.assertEqual(store.trials()[1]["retries"][0]["reason"], "worker crashed")
    finally:
      store.close()


class StoreCorruptionTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    self.path = os.path.join(self.dir, "trials.db")

  def _assert_refused(self, reason_regex):
    with self.assertRaisesRegex(store_lib.CorruptStoreError,
                                reason_regex + ".*from a backup.*mv " + re.escape(self.dir)):
      store_lib.TrialStore(self.path)

  def test_store_refuses_a_file_that_is_not_a_database(self):
    with open(self.path, "wb") as f:
      f.write(b"garbage" * 1000)
    self._assert_refused("cannot be used: DatabaseError: file is not a database")

  def test_store_refuses_a_truncated_database(self):
    store = store_lib.TrialStore(self.path)
    for g in space.sample_many(0, 200):
      store.finish(store.add(g, "initial"), "done", {"note": "x" * 500})
    store.close()
    with open(self.path, "r+b") as f:
      f.truncate(os.path.getsize(self.path) // 2)
    self._assert_refused("malformed")

  def test_store_refuses_a_database_without_trials_table(self):
    db = sqlite3.connect(self.path)
    db.execute("CREATE TABLE other (a INTEGER)")
    db.commit()
    db.close()
    self._assert_refused("no trials table")

  @parameterized.parameters("config.json", "trials/0001")
  def test_store_refuses_zero_length_file_next_to_a_search(self, neighbour):
    if neighbour.startswith("trials"):
      os.makedirs(os.path.join(self.dir, neighbour))
    else:
      with open(os.path.join(self.dir, neighbour), "w") as f:
        f.write("{}")
    open(self.path, "wb").close()
    self._assert_refused(r"it is empty \(0 bytes\).*would overwrite that search")

  def test_store_zero_length_file_alone_starts_a_new_store(self):
    open(self.path, "wb").close()
    store = store_lib.TrialStore(self.path)
    store.add(space.sample(0), "initial")
    store.close()
    self.assertEqual(store_lib.TrialStore(self.path).count(), 1)

  def test_store_refuses_a_missing_file_whose_trials_dir_holds_trials(self):
    os.makedirs(os.path.join(self.dir, "trials", "0001"))
    self._assert_refused("it is missing, but .*trials holds 1 trial directories")
    self.assertFalse(os.path.exists(self.path))


class RunLockTest(tf.test.TestCase):

  def test_run_lock_refuses_a_second_holder_naming_host_and_pid(self):
    d = os.path.join(self.get_temp_dir(), "locked")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, d], stdout=subprocess.PIPE,
                              text=True)
    try:
      self.assertEqual(holder.stdout.readline().strip(), "locked")
      expected = r"in use by another search \(host %s, pid %d, started " % (
          socket.gethostname(), holder.pid)
      with self.assertRaisesRegex(store_lib.ResultsDirBusyError, expected):
        store_lib.RunLock.acquire(d)
      with self.assertRaisesRegex(store_lib.ResultsDirBusyError, expected):
        store_lib.check_not_locked(d)
    finally:
      holder.kill()
      holder.wait()
    # The holder died (kill -9): its lock file stays, its flock does not.
    with open(os.path.join(d, store_lib.LOCK_NAME)) as f:
      self.assertEqual(json.load(f)["pid"], holder.pid)
    store_lib.check_not_locked(d)
    with store_lib.RunLock.acquire(d):
      with open(os.path.join(d, store_lib.LOCK_NAME)) as f:
        info = json.load(f)
    self.assertEqual((info["host"], info["pid"]), (socket.gethostname(), os.getpid()))
    self.assertEqual(holder.returncode, -signal.SIGKILL)

  def test_run_lock_is_exclusive_within_a_process_and_released(self):
    d = os.path.join(self.get_temp_dir(), "in_process")
    store_lib.check_not_locked(d)  # no directory yet: nothing to refuse, nothing created
    self.assertFalse(os.path.exists(d))
    lock = store_lib.RunLock.acquire(d)
    with self.assertRaisesRegex(store_lib.ResultsDirBusyError, "pid %d" % os.getpid()):
      store_lib.RunLock.acquire(d)
    lock.release()
    store_lib.RunLock.acquire(d).release()


if __name__ == "__main__":
  tf.test.main()
