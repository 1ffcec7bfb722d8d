"""Measure requests the agent remembers by their ``X-Request-Id``, so that a
client's retry of one measurement is answered by the first attempt instead
of measuring again.

The client (``deploy.agent_client``) sends one random id with every attempt
of one ``measure()`` call. An attempt whose id is in flight waits for the
first attempt and gets its answer (its result, or its refusal); one whose id
finished within ``keep_s`` gets the remembered answer at once. Finished
answers are kept for ``keep_s`` seconds, at most ``keep`` of them (the
oldest are forgotten first; a retry after that measures again). The id is
bound to what it asked (format, settings and the upload's sha256): the same
id with another upload is a client bug, answered 409. Attempts that fail
before their upload is whole never register, so their retry is measured.

Device-side module: Python 3.6 syntax, standard library only.
"""

import collections
import re
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from . import errors
from .agent_uploads import BadRequest

HEADER = "X-Request-Id"
ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
KEEP = 64
KEEP_S = 600.0


def check_id(request_id: Optional[str]) -> Optional[str]:
  """``request_id`` (a header value or None), or BadRequest 400."""
  if request_id is not None and not ID_PATTERN.match(request_id):
    raise BadRequest(400, errors.message(HEADER, "8 to 128 characters of A-Z a-z 0-9 . _ -",
                                         request_id[:140], noun="header"))
  return request_id


class Entry(object):
  """One request id: what it asked, and its answer once ``done`` is set:
  ``result`` (a dict) or ``error`` ((status, message))."""
  result: Optional[Dict[str, Any]]
  error: Optional[Tuple[int, str]]
  finished_at: Optional[float]

  def __init__(self, fingerprint: Any) -> None:
    self.fingerprint = fingerprint
    self.done = threading.Event()
    self.result = self.error = self.finished_at = None


class RequestLog(object):
  """The in-flight and recently finished requests by id (see module doc)."""

  def __init__(self, keep: int = KEEP, keep_s: float = KEEP_S,
               clock: Callable[[], float] = time.monotonic) -> None:
    self.keep, self.keep_s, self.clock = int(keep), float(keep_s), clock
    self.lock = threading.Lock()
    self.entries = collections.OrderedDict()  # type: collections.OrderedDict[str, Entry]  # id -> Entry, in order of arrival

  def begin(self, request_id: Optional[str], fingerprint: Any) -> Tuple[Optional[Entry], bool]:
    """(entry, first): ``first`` when this attempt is to measure (then call
    ``finish``), else the entry to ``wait`` for. No id: (None, True)."""
    if request_id is None:
      return None, True
    with self.lock:
      self._forget()
      entry = self.entries.get(request_id)
      if entry is None:
        entry = self.entries[request_id] = Entry(fingerprint)
        return entry, True
    if entry.fingerprint != fingerprint:
      raise BadRequest(409, "%s %s was sent with another upload or other settings; expected "
                            "a new id per measurement." % (HEADER, request_id))
    return entry, False

  def finish(self, entry: Optional[Entry], result: Optional[Dict[str, Any]] = None,
             error: Optional[Tuple[int, str]] = None) -> None:
    """Record the first attempt's answer and wake those waiting for it."""
    if entry is None:
      return
    with self.lock:
      entry.result, entry.error, entry.finished_at = result, error, self.clock()
      entry.done.set()
      self._forget()

  @staticmethod
  def wait(entry: Entry) -> Dict[str, Any]:
    """The first attempt's answer: its result (marked ``replayed``), or its
    refusal raised as BadRequest."""
    entry.done.wait()
    if entry.error is not None:
      raise BadRequest(*entry.error)
    result = dict(entry.result)  # type: ignore[arg-type]  # done without error: a result
    result["replayed"] = True
    return result

  def _forget(self) -> None:
    """Drop finished entries past ``keep_s``, and the oldest past ``keep``."""
    now = self.clock()
    finished = sorted((e.finished_at, key) for key, e in self.entries.items()
                      if e.finished_at is not None)
    excess = len(finished) - self.keep
    for k, (at, key) in enumerate(finished):
      if k < excess or now - at > self.keep_s:
        del self.entries[key]

  def __len__(self) -> int:
    with self.lock:
      return len(self.entries)
