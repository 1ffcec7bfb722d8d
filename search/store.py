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

Where a trial ran: ``host`` is the driver that started it; ``train_host``
and ``train_node`` (a Ray node id, or none for a local worker) the machine
that trained its final attempt, ``measure_host`` the one that measured it (a
remote agent's host). ``retries`` (JSON) lists each attempt that was retried
(a lost Ray node or worker, an unreachable device): its number, the reason,
the node it ran on and when. Columns added since the first release are added
to an older store when it is opened.

One writer per results directory: a search holds ``RunLock`` (an
``fcntl.flock`` on ``<results_dir>/.search.lock``, which names its host and
PID) for its whole run; a second is refused. The kernel drops the lock when
its holder dies, so a lock file left by a killed run does not block.

Leases: a ``running`` trial carries ``lease_until`` and ``lease_holder``
(``host:pid`` of the driver that started it). The driver renews the leases of
its running trials every ``RENEW_SECONDS`` (``LeaseKeeper``, a thread, so
also while a proposal computes and for Ray tasks on other machines), each for
``LEASE_SECONDS``. ``requeue_unfinished`` takes back only trials whose lease
has expired: with the run lock held, that means their run is gone.

Opening checks the file (``PRAGMA quick_check`` and the trials table) and
refuses, with ``CorruptStoreError`` saying what to do, a damaged store, a
zero-length one next to a search's ``config.json`` or ``trials/``, and a
missing one whose ``trials/`` holds trial directories. A new store is created
under a temporary name and renamed, so it never exists without its schema.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from typing import Any, Iterator, Sequence

from tea_keras import errors
from tea_keras import files

STATUSES = ("pending", "running", "done", "failed")
FINAL = ("done", "failed")
LOCK_NAME = ".search.lock"
LEASE_SECONDS = 30.0   # how long a running trial's lease lasts unless renewed ...
RENEW_SECONDS = 10.0   # ... which its driver does this often

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
  error TEXT,
  lease_until REAL,
  lease_holder TEXT,
  train_host TEXT,
  train_node TEXT,
  measure_host TEXT,
  retries TEXT,
  kind TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after the first release, added to an older store on open.
_ADDED_COLUMNS = (("lease_until", "REAL"), ("lease_holder", "TEXT"), ("train_host", "TEXT"),
                  ("train_node", "TEXT"), ("measure_host", "TEXT"), ("retries", "TEXT"),
                  ("kind", "TEXT"))
# What an evaluation of a decoupled search (``--evaluation=decoupled``) does:
# ``measure`` an untrained export (time, energy) or ``train`` (error, and its
# trained export measured); a coupled search's trials have no kind (NULL).
# One design has at most one evaluation of each kind: a measure evaluation's
# ``genotype_key`` is the design's key with ``MEASURE_KEY_SUFFIX``, so that
# the key stays unique per row and ``has_key(key)`` still means "trained".
KINDS = ("measure", "train")
MEASURE_KEY_SUFFIX = "/measure"
# Where a trial ran (``finish(where=...)``): the host and Ray node id that
# trained it (the last attempt's), and the host that measured it.
WHERE_COLUMNS = ("train_host", "train_node", "measure_host")


class StoreError(RuntimeError):
  """A results directory cannot be used as it is; the message says what to do."""


class ResultsDirBusyError(StoreError):
  """Another live search writes the results directory."""


class CorruptStoreError(StoreError):
  """trials.db is damaged, truncated or missing next to a search's trials."""


def holder() -> str:
  """``host:pid`` of this process, as leases and the run lock record it."""
  return "%s:%d" % (socket.gethostname(), os.getpid())


class RunLock:
  """Exclusive ``flock`` on ``<results_dir>/.search.lock`` for a whole run.

  The file holds JSON ``{"host", "pid", "started"}`` of its holder. Use
  ``RunLock.acquire(results_dir)`` (creates the directory) and ``release()``,
  or ``with``. The lock's descriptor is not inherited by worker processes.
  """

  def __init__(self, path: str, fd: int) -> None:
    self._fd: int | None
    self.path, self._fd = path, fd

  @classmethod
  def acquire(cls, results_dir: str) -> "RunLock":
    """Take the lock or raise ``ResultsDirBusyError`` naming its holder."""
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      info = _read_lock_info(fd)
      os.close(fd)
      raise ResultsDirBusyError(_busy_message(results_dir, path, info)) from None
    info = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return cls(path, fd)

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> RunLock:
    return self

  def __exit__(self, *exc: object) -> None:
    self.release()


def check_not_locked(results_dir: str) -> None:
  """Refuse at once (``ResultsDirBusyError``) when a live search holds the
  run lock of ``results_dir``; creates nothing. ``RunLock.acquire`` is the
  authoritative check; this one lets a second run stop before any work."""
  path = os.path.join(results_dir, LOCK_NAME)
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    raise ResultsDirBusyError(_busy_message(results_dir, path, _read_lock_info(fd))) from None
  finally:
    os.close(fd)  # also drops the shared lock


def _read_lock_info(fd: int) -> dict[str, Any]:
  try:
    return json.loads(os.pread(fd, 4096, 0).decode())
  except (OSError, ValueError):
    return {}


def _busy_message(results_dir: str, path: str, info: dict[str, Any]) -> str:
  who = ("host %s, pid %s, started %s" % (info.get("host"), info.get("pid"), info.get("started"))
         if info else "its holder has not written its host and pid yet")
  return ("--results_dir=%s is in use by another search (%s; lock %s). One search at a time "
          "writes a results directory: wait for that one to finish or stop it, or use "
          "another --results_dir." % (results_dir, who, path))


class Trial(dict[str, Any]):
  """A row of the trials table as a dict (metrics/artifacts/encoding decoded)."""

  @property
  def id(self) -> int:
    return self["trial_id"]


class TrialStore:
  """SQLite-backed trial records. Safe to open from one writer process."""

  def __init__(self, path: str) -> None:
    """Open (or create) the store at ``path``; raises ``CorruptStoreError``
    (see module doc) instead of opening a damaged or truncated one."""
    self.path = str(path)
    existed = _check_file(self.path)
    if not existed:
      _create(self.path)
    self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
    self._db.row_factory = sqlite3.Row
    try:
      problem = self._problem() if existed else None
      if problem is None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(trials)")}
        for name, kind in _ADDED_COLUMNS:
          if name not in columns:
            self._db.execute("ALTER TABLE trials ADD COLUMN %s %s" % (name, kind))
    except sqlite3.DatabaseError as e:
      self._db.close()
      if not _is_corruption(e):  # locked, read-only, ...: not the file's content
        raise
      raise CorruptStoreError(_corrupt_message(self.path, "%s: %s" % (type(e).__name__, e))
                              ) from e
    if problem is not None:
      self._db.close()
      raise CorruptStoreError(_corrupt_message(self.path, problem))

  def _problem(self) -> str | None:
    """What is wrong with an existing store's content (None: nothing)."""
    problems = [r[0] for r in self._db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
      return "PRAGMA quick_check found %s" % "; ".join(problems[:3])
    if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'trials'").fetchone():
      return "it has no trials table (not a tea-keras trial store)"
    return None

  def close(self) -> None:
    self._db.close()

  @contextlib.contextmanager
  def _transaction(self) -> Iterator[sqlite3.Connection]:
    self._db.execute("BEGIN IMMEDIATE")
    try:
      yield self._db
    except BaseException:
      self._db.execute("ROLLBACK")
      raise
    self._db.execute("COMMIT")

  # -- meta -----------------------------------------------------------------
  def get_meta(self, key: str) -> Any:
    row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else json.loads(row["value"])

  def set_meta(self, key: str, value: Any) -> None:
    with self._transaction() as db:
      db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

  # -- trials ---------------------------------------------------------------
  def add(self, genotype: Any, source: str, kind: str | None = None) -> int:
    """Insert a ``pending`` trial; returns its id. Raises ``ValueError`` for a
    genotype (by canonical key) already in the store with this ``kind``
    (None: a coupled trial; ``KINDS``: a decoupled search's evaluation)."""
    if kind is not None and kind not in KINDS:
      raise errors.invalid_value("kind", "None or one of %s" % (KINDS,), kind)
    key = evaluation_key(genotype.key(), kind)
    with self._transaction() as db:
      if db.execute("SELECT 1 FROM trials WHERE genotype_key = ?", (key,)).fetchone():
        raise ValueError("Genotype %s is already in the store%s." % (
            genotype.to_string(), "" if kind is None else " (a %s evaluation)" % kind))
      cur = db.execute(
          "INSERT INTO trials (genotype, genotype_key, encoding, status, source, created_at, "
          "kind) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
          (genotype.to_string(), key, json.dumps(genotype.to_vector()), source,
           time.time(), kind))
      return cur.lastrowid  # type: ignore[return-value]  # set by an INSERT

  def has_key(self, key: str) -> bool:
    return self._db.execute("SELECT 1 FROM trials WHERE genotype_key = ?", (key,)).fetchone() is not None

  def mark_running(self, trial_id: int, host: str | None = None,
                   lease_s: float = LEASE_SECONDS) -> None:
    """Start a trial: ``running``, leased by this process for ``lease_s``."""
    now = time.time()
    with self._transaction() as db:
      db.execute("UPDATE trials SET status = 'running', attempts = attempts + 1, host = ?, "
                 "started_at = ?, lease_until = ?, lease_holder = ? WHERE trial_id = ?",
                 (host or socket.gethostname(), now, now + lease_s, holder(), trial_id))

  def renew_leases(self, lease_s: float = LEASE_SECONDS) -> int:
    """Extend the leases of this process's running trials; returns how many."""
    with self._transaction() as db:
      return db.execute("UPDATE trials SET lease_until = ? WHERE status = 'running' AND "
                        "lease_holder = ?", (time.time() + lease_s, holder())).rowcount

  def release_leases(self) -> None:
    """End the leases of this process's running trials (a run stopping
    cleanly), so that the next run takes them back at once."""
    with self._transaction() as db:
      db.execute("UPDATE trials SET lease_until = 0 WHERE status = 'running' AND "
                 "lease_holder = ?", (holder(),))

  def finish(self, trial_id: int, status: str, metrics: dict[str, Any] | None = None,
             artifacts: dict[str, Any] | None = None, error: str | None = None,
             where: dict[str, Any] | None = None) -> None:
    """Record a trial's final ``status`` with its figures; ``where``: some of
    ``WHERE_COLUMNS`` (the machines that trained and measured it)."""
    if status not in FINAL:
      raise errors.invalid_value("status", "one of %s" % (FINAL,), status)
    where = dict(where or {})
    unknown = sorted(set(where) - set(WHERE_COLUMNS))
    if unknown:
      raise ValueError("Invalid keys %s in argument `where`. Expected some of %s."
                       % (unknown, list(WHERE_COLUMNS)))
    sets = "".join(", %s = ?" % k for k in sorted(where))
    with self._transaction() as db:
      db.execute("UPDATE trials SET status = ?, metrics = ?, artifacts = ?, error = ?, "
                 "finished_at = ?%s WHERE trial_id = ?" % sets,
                 (status, json.dumps(metrics or {}), json.dumps(artifacts or {}), error,
                  time.time()) + tuple(where[k] for k in sorted(where)) + (trial_id,))

  def requeue(self, trial_id: int, reason: str | None = None, node: str | None = None) -> int:
    """Put one ``running`` trial back to ``pending`` (to be retried), adding
    ``{"attempt", "reason", "node", "at"}`` to its ``retries`` in the same
    transaction; returns how many times it has been retried."""
    with self._transaction() as db:
      row = db.execute("SELECT attempts, retries FROM trials WHERE trial_id = ? AND "
                       "status = 'running'", (trial_id,)).fetchone()
      if row is None:
        return 0
      retries = json.loads(row[1] or "[]")
      retries.append({"attempt": row[0], "reason": reason, "node": node, "at": time.time()})
      db.execute("UPDATE trials SET status = 'pending', lease_until = NULL, lease_holder = NULL, "
                 "retries = ? WHERE trial_id = ?", (json.dumps(retries), trial_id))
      return len(retries)

  def requeue_unfinished(self, now: float | None = None) -> list[int]:
    """Put ``running`` trials whose lease has expired (a crash or ``kill -9``
    ended their run; an older store records no lease) back to ``pending``;
    returns their ids. Trials still leased stay ``running``."""
    now = time.time() if now is None else now
    with self._transaction() as db:
      ids = [r[0] for r in db.execute(
          "SELECT trial_id FROM trials WHERE status = 'running' AND "
          "(lease_until IS NULL OR lease_until <= ?) ORDER BY trial_id", (now,))]
      db.executemany("UPDATE trials SET status = 'pending', lease_until = NULL, "
                     "lease_holder = NULL WHERE trial_id = ?", [(i,) for i in ids])
    return ids

  def requeue_failed(self) -> list[int]:
    """Put ``failed`` trials back to ``pending`` (``--retry_failed``, once
    their cause is fixed), clearing their error; returns their ids."""
    with self._transaction() as db:
      ids = [r[0] for r in db.execute(
          "SELECT trial_id FROM trials WHERE status = 'failed' ORDER BY trial_id")]
      db.execute("UPDATE trials SET status = 'pending', error = NULL, metrics = '{}', "
                 "artifacts = '{}', finished_at = NULL WHERE status = 'failed'")
    return ids

  def trials(self, statuses: Sequence[str] | None = None) -> list[Trial]:
    """All trials (optionally only those in ``statuses``), by id."""
    args: tuple[str, ...]
    query, args = "SELECT * FROM trials", ()
    if statuses:
      query += " WHERE status IN (%s)" % ",".join("?" * len(statuses))
      args = tuple(statuses)
    rows = self._db.execute(query + " ORDER BY trial_id", args).fetchall()
    return [_decode(r) for r in rows]

  def count(self, statuses: Sequence[str] | None = None) -> int:
    return len(self.trials(statuses))


def evaluation_key(key: str, kind: str | None) -> str:
  """The ``genotype_key`` of an evaluation of kind ``kind`` of the design
  whose canonical key is ``key`` (see ``KINDS``)."""
  return key + MEASURE_KEY_SUFFIX if kind == "measure" else key


def design_key(genotype_key: str) -> str:
  """The design's canonical key from a row's ``genotype_key``."""
  return genotype_key[:-len(MEASURE_KEY_SUFFIX)] if genotype_key.endswith(
      MEASURE_KEY_SUFFIX) else genotype_key


class LeaseKeeper:
  """A thread renewing this process's leases every ``interval_s`` (its own
  connection to the store at ``path``); ``with LeaseKeeper(path): ...``."""

  def __init__(self, path: str, interval_s: float = RENEW_SECONDS,
               lease_s: float = LEASE_SECONDS) -> None:
    self.path, self.interval_s, self.lease_s = str(path), interval_s, lease_s
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, name="trial-leases", daemon=True)

  def _run(self) -> None:
    db = sqlite3.connect(self.path, timeout=self.interval_s, isolation_level=None)
    try:
      while not self._stop.wait(self.interval_s):
        try:
          db.execute("UPDATE trials SET lease_until = ? WHERE status = 'running' AND "
                     "lease_holder = ?", (time.time() + self.lease_s, holder()))
        except sqlite3.OperationalError:  # busy: the next round renews
          pass
    finally:
      db.close()

  def __enter__(self) -> LeaseKeeper:
    self._thread.start()
    return self

  def __exit__(self, *exc: object) -> None:
    self._stop.set()
    self._thread.join()


def _check_file(path: str) -> bool:
  """Whether ``path`` holds a store (else a new one is made there). Refuses a
  zero-length store next to a search's files, and a missing one whose
  trials/ holds trial directories (starting over would overwrite them)."""
  folder = os.path.dirname(os.path.abspath(path))
  trials_dir = os.path.join(folder, "trials")
  trial_dirs = os.listdir(trials_dir) if os.path.isdir(trials_dir) else []
  if not os.path.exists(path):
    if trial_dirs:
      raise CorruptStoreError(_corrupt_message(path, "it is missing, but %s holds %d trial "
                                               "directories" % (trials_dir, len(trial_dirs))))
    return False
  wal = path + "-wal"
  if os.path.getsize(path) or (os.path.exists(wal) and os.path.getsize(wal)):
    return True
  if trial_dirs or os.path.exists(os.path.join(folder, "config.json")):
    raise CorruptStoreError(_corrupt_message(
        path, "it is empty (0 bytes), but %s holds a search's config.json or trial "
        "directories: it was truncated (a full disk, an interrupted copy?), and starting "
        "again at trial 1 would overwrite that search" % folder))
  return False


def _is_corruption(error: sqlite3.Error) -> bool:
  """Whether a sqlite3 error says the file is damaged (SQLITE_CORRUPT or
  SQLITE_NOTADB; Python < 3.11 gives no code: any non-operational error)."""
  code = getattr(error, "sqlite_errorcode", None)
  if code is None:
    return not isinstance(error, sqlite3.OperationalError)
  return code & 0xFF in (11, 26)


def _corrupt_message(path: str, reason: str) -> str:
  folder = os.path.dirname(os.path.abspath(path))
  return ("The trial store %s cannot be used: %s. Restore it (with any %s-wal file) from a "
          "backup, or move the results directory aside (mv %s %s.damaged) and run the search "
          "again to start over; the trial directories keep each finished trial's model and "
          "metrics." % (path, reason, os.path.basename(path), folder, folder))


def _create(path: str) -> None:
  """A new store with its schema, in one rename (never a schema-less file)."""
  with files.atomic_path(path) as tmp:
    for leftover in (tmp, tmp + "-journal"):
      if os.path.exists(leftover):
        os.remove(leftover)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
      db.executescript(_SCHEMA)
    finally:
      db.close()


def _decode(row: sqlite3.Row) -> Trial:
  trial = Trial(dict(row))
  for key in ("metrics", "artifacts", "encoding"):
    trial[key] = json.loads(trial[key])
  trial["retries"] = json.loads(trial.get("retries") or "[]")
  return trial
