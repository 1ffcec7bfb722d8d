"""Tests for search/store.py (real SQLite)."""

import os
import sqlite3

import tensorflow as tf

from search import store as store_lib
from tea_keras import space


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
    self.store = store_lib.TrialStore(self.path)  # as after a crash
    self.assertEqual(self.store.requeue_unfinished(), [ids[0]])
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


if __name__ == "__main__":
  tf.test.main()
