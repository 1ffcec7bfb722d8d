"""Was the machine busy with other work while we timed the inference?

A measured time is only worth comparing when the measuring process had the
machine to itself: on a shared 2-core machine the same model measured 2-4x
slower next to two trainings. ``CpuMeter`` reads the machine's busy CPU time
(``/proc/stat``) and this process's own CPU time around a timed loop; what
other processes used is::

    other_cpu_share = (machine busy seconds - own CPU seconds) / (wall seconds x cores)

0 means the other cores stayed idle, 1 means every core was busy with other
work all the time. It is exact over the loop (no 1-minute load average), and
counts the power sampler thread as ours.

Policy (``run_measurement(contention_policy=...)``, default ``remeasure``):

* ``remeasure``: a repeat whose ``other_cpu_share`` exceeds
  ``contention_threshold`` (default 0.25: a quarter of the machine) is
  measured again after a pause, up to ``max_remeasures`` times per repeat;
  if it is still contended the result is kept, flagged ``contended`` and
  carries a warning;
* ``warn``: flag and warn, no re-measurement;
* ``refuse``: raise ``ContentionError`` when a repeat stays contended.

Where ``/proc/stat`` cannot be read (not Linux) the share is None and
nothing is flagged; the 1-minute load average is still recorded.
Device-side module: Python 3.6 syntax, standard library only.
"""

import os
import time
from typing import Any, Callable, Dict, Optional

from . import errors

POLICIES = ("remeasure", "warn", "refuse")
DEFAULT_POLICY = "remeasure"
DEFAULT_THRESHOLD = 0.25
DEFAULT_MAX_REMEASURES = 2
DEFAULT_PAUSE_S = 2.0
STAT_PATH = "/proc/stat"


class ContentionError(RuntimeError):
  """Other processes kept the machine busy through every re-measurement."""


def machine_busy_seconds(stat_path: Optional[str] = None) -> Optional[float]:
  """Busy CPU seconds of all cores since boot (None where unreadable)."""
  try:
    with open(stat_path or STAT_PATH) as f:
      fields = f.readline().split()
  except (IOError, OSError):
    return None
  if not fields or fields[0] != "cpu":
    return None
  ticks = [int(x) for x in fields[1:]]
  # user nice system idle iowait irq softirq steal [guest guest_nice]: guests
  # are already counted in user/nice, idle and iowait are not busy.
  busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
  return busy / float(os.sysconf("SC_CLK_TCK"))


def cpu_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


class CpuMeter(object):
  """``start()`` before the timed loop, ``stop()`` after it."""

  def __init__(self, stat_path: Optional[str] = None,
               clock: Callable[[], float] = time.monotonic) -> None:
    self.stat_path, self.clock = stat_path, clock

  def start(self) -> "CpuMeter":
    self._t0, self._own0 = self.clock(), time.process_time()
    self._busy0 = machine_busy_seconds(self.stat_path)
    return self

  def stop(self) -> Dict[str, Any]:
    """``{"wall_s", "own_cpu_s", "other_cpu_share"}`` of the span."""
    wall, own = self.clock() - self._t0, time.process_time() - self._own0
    busy1 = machine_busy_seconds(self.stat_path)
    share = None
    if self._busy0 is not None and busy1 is not None and wall > 0:
      other = (busy1 - self._busy0) - own
      share = min(1.0, max(0.0, other / (wall * cpu_count())))
    return {"wall_s": wall, "own_cpu_s": own, "other_cpu_share": share}


def check_policy(policy: str, threshold: float, max_remeasures: int) -> None:
  if policy not in POLICIES:
    raise errors.invalid_value("contention_policy", "one of %s" % "|".join(POLICIES), policy)
  if not 0.0 < float(threshold) <= 1.0:
    raise errors.invalid_value("contention_threshold", "a share in (0, 1]", threshold)
  if int(max_remeasures) < 0:
    raise errors.invalid_value("max_remeasures", ">= 0", max_remeasures)


def is_contended(share: Optional[float], threshold: float) -> bool:
  return share is not None and share > threshold
