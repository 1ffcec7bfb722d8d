"""The trial store: one SQLite database per results directory.

Every state change of a trial is one transaction, in WAL mode, so a search
killed at any instant (``kill -9`` included) leaves a consistent database:
a trial is ``pending`` (proposed, not started), ``running``, ``done`` (all
objectives measured) or ``failed`` (error text recorded). On resume,
``pending`` and ``running`` trials are run again, with their genotypes, so
nothing done is lost or repeated.

Metrics and artifact paths are stored as JSON columns so that every figure a
trial produced (training time, measurement JSON, paths to the model, exports
and power trace) is kept without a schema change.
"""

import contextlib
import json
import socket
import sqlite3
import time

STATUSES = ("pending", "running", "done", "failed")
FINAL = ("done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
  trial_id INTEGER PRIMARY KEY,
  genotype TEXT NOT NULL,
  genotype_key TEXT NOT NULL UNIQUE,
  encoding TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
  source TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  host TEXT,
  created_at REAL NOT NULL,
  started_at REAL,
  finished_at REAL,
  metrics TEXT NOT NULL DEFAULT '{}',
  artifacts TEXT NOT NULL DEFAULT '{}',
  error TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Trial(dict):
  """A row of the trials table as a dict (metrics/artifacts/encoding decoded)."""

  @property
  def id(self):
    return self["trial_id"]


class TrialStore:
  """SQLite-backed trial records. Safe to open from one writer process."""

  def __init__(self, path):
    self.path = str(path)
    self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
    self._db.row_factory = sqlite3.Row
    self._db.execute("PRAGMA journal_mode=WAL")
    self._db.execute("PRAGMA synchronous=NORMAL")
    self._db.executescript(_SCHEMA)

  def close(self):
    self._db.close()

  @contextlib.contextmanager
  def _transaction(self):
    self._db.execute("BEGIN IMMEDIATE")
    try:
      yield self._db
    except BaseException:
      self._db.execute("ROLLBACK")
      raise
    self._db.execute("COMMIT")

  # -- meta -----------------------------------------------------------------
  def get_meta(self, key):
    row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else json.loads(row["value"])

  def set_meta(self, key, value):
    with self._transaction() as db:
      db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

  # -- trials ---------------------------------------------------------------
  def add(self, genotype, source):
    """Insert a ``pending`` trial; returns its id. Raises ``ValueError`` for a
    genotype (by canonical key) already in the store."""
    with self._transaction() as db:
      if db.execute("SELECT 1 FROM trials WHERE genotype_key = ?", (genotype.key(),)).fetchone():
        raise ValueError("Genotype %s is already in the store." % genotype.to_string())
      cur = db.execute(
          "INSERT INTO trials (genotype, genotype_key, encoding, status, source, created_at) "
          "VALUES (?, ?, ?, 'pending', ?, ?)",
          (genotype.to_string(), genotype.key(), json.dumps(genotype.to_vector()), source,
           time.time()))
      return cur.lastrowid

  def has_key(self, key):
    return self._db.execute("SELECT 1 FROM trials WHERE genotype_key = ?", (key,)).fetchone() is not None

  def mark_running(self, trial_id, host=None):
    with self._transaction() as db:
      db.execute("UPDATE trials SET status = 'running', attempts = attempts + 1, host = ?, "
                 "started_at = ? WHERE trial_id = ?",
                 (host or socket.gethostname(), time.time(), trial_id))

  def finish(self, trial_id, status, metrics=None, artifacts=None, error=None):
    if status not in FINAL:
      raise ValueError("Invalid value for argument `status`. Expected one of %s. "
                       "Received status=%r" % (FINAL, status))
    with self._transaction() as db:
      db.execute("UPDATE trials SET status = ?, metrics = ?, artifacts = ?, error = ?, "
                 "finished_at = ? WHERE trial_id = ?",
                 (status, json.dumps(metrics or {}), json.dumps(artifacts or {}), error,
                  time.time(), trial_id))

  def requeue(self, trial_id):
    """Put one ``running`` trial back to ``pending`` (to be retried)."""
    with self._transaction() as db:
      db.execute("UPDATE trials SET status = 'pending' WHERE trial_id = ? AND status = 'running'",
                 (trial_id,))

  def requeue_unfinished(self):
    """Put trials left ``running`` (by a crash) back to ``pending``; returns their ids."""
    with self._transaction() as db:
      ids = [r[0] for r in db.execute("SELECT trial_id FROM trials WHERE status = 'running'")]
      db.execute("UPDATE trials SET status = 'pending' WHERE status = 'running'")
    return ids

  def trials(self, statuses=None):
    """All trials (optionally only those in ``statuses``), by id."""
    query, args = "SELECT * FROM trials", ()
    if statuses:
      query += " WHERE status IN (%s)" % ",".join("?" * len(statuses))
      args = tuple(statuses)
    rows = self._db.execute(query + " ORDER BY trial_id", args).fetchall()
    return [_decode(r) for r in rows]

  def count(self, statuses=None):
    return len(self.trials(statuses))


def _decode(row):
  trial = Trial(dict(row))
  for key in ("metrics", "artifacts", "encoding"):
    trial[key] = json.loads(trial[key])
  return trial
