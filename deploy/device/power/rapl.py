"""Intel (and AMD) RAPL energy counters through the powercap sysfs interface.

Layout (Linux ``drivers/powercap/intel_rapl_common.c``)::

  /sys/class/powercap/intel-rapl:0/name                 "package-0"
  /sys/class/powercap/intel-rapl:0/energy_uj            cumulative, microjoules
  /sys/class/powercap/intel-rapl:0/max_energy_range_uj  the value it wraps at
  /sys/class/powercap/intel-rapl:0:0/name               "core" / "dram" ...

``energy_uj`` counts up and wraps to 0 after ``max_energy_range_uj``; a delta
``d = new - old < 0`` means one wrap and the true delta is
``d + max_energy_range_uj`` (the convention of powertop, codecarbon and
scaphandre; the off-by-one microjoule is immaterial). Sampling every 20 ms is far below the wrap
period (minutes at package power), so at most one wrap per interval is
assumed. Power is the counter delta over the elapsed time between two
``read_w`` calls, so it is the mean power of the last interval.

Since Linux 5.10 (CVE-2020-8694, "Platypus") ``energy_uj`` is readable by
root only; the error says so.
"""

import glob
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import base

_ROOT_ONLY_HINT = (
    "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694). Run the "
    "measurement as root, or grant read access: sudo chmod o+r %s")


class RaplCounter(object):
  """One RAPL domain's counter with wraparound undone."""

  def __init__(self, zone_dir: str) -> None:
    self.zone_dir = zone_dir
    self.name = base.read_text(os.path.join(zone_dir, "name"))
    self.max_range_uj = base.read_number(os.path.join(zone_dir, "max_energy_range_uj"))
    if self.max_range_uj <= 0:
      raise base.PowerSourceError("Expected a positive max_energy_range_uj in %s, "
                                  "found %r." % (zone_dir, self.max_range_uj))
    self._last_raw = None  # type: Optional[float]
    self.total_uj = 0.0
    self.wraps = 0
    self.update()

  def read_raw(self) -> float:
    path = os.path.join(self.zone_dir, "energy_uj")
    try:
      return base.read_number(path)
    except base.PowerSourceError as e:
      if os.path.exists(path) and not os.access(path, os.R_OK):
        raise base.PowerSourceError(_ROOT_ONLY_HINT % path)
      raise e

  def update(self) -> float:
    """Read the counter and accumulate; returns the unwrapped total (uJ)."""
    raw = self.read_raw()
    if self._last_raw is not None:
      self.total_uj += unwrap_delta(self._last_raw, raw, self.max_range_uj)
      if raw < self._last_raw:
        self.wraps += 1
    self._last_raw = raw
    return self.total_uj


def unwrap_delta(old: float, new: float, max_range: float) -> float:
  """Counter increment from ``old`` to ``new`` allowing one wrap at
  ``max_range`` (the counter goes max_range -> 0)."""
  delta = new - old
  if delta < 0:
    delta += max_range
  return delta


def find_zones(root: str = "/", domains: Sequence[str] = ("package",)) -> List[str]:
  """Top-level RAPL zones whose name starts with one of ``domains``
  (``package`` by default; add ``dram`` or ``psys`` to include them)."""
  pattern = os.path.join(root, "sys/class/powercap/*rapl:*")
  zones = []
  for zone in sorted(glob.glob(pattern)):
    name_path = os.path.join(zone, "name")
    if not os.path.exists(name_path):
      continue
    name = base.read_text(name_path)
    if any(name.startswith(d) for d in domains):
      zones.append(zone)
  return zones


class RaplPower(base.PowerSource):
  """Sum of the selected RAPL domains (all CPU packages by default)."""

  name = "rapl"

  def __init__(self, root: str = "/", domains: Sequence[str] = ("package",),
               clock: Callable[[], float] = time.monotonic) -> None:
    if isinstance(domains, str):
      domains = tuple(d for d in domains.split(",") if d)
    zones = find_zones(root, domains)
    if not zones:
      raise base.PowerSourceError(
          "No RAPL zone named %s under %s. Expected powercap directories like "
          "intel-rapl:0 (load the intel_rapl_common / intel_rapl_msr module; not "
          "available in most VMs)." % ("|".join(domains),
                                       os.path.join(root, "sys/class/powercap")))
    self._clock = clock
    self.counters = [RaplCounter(z) for z in zones]
    self._last_t = clock()
    self._last_total = self._total_uj()

  def _total_uj(self) -> float:
    return sum(c.total_uj for c in self.counters)

  def energy_counter_j(self) -> float:
    for c in self.counters:
      c.update()
    return self._total_uj() * 1e-6

  def read_sample(self) -> Tuple[Optional[float], float]:
    """One counter read: (mean watts since the last read, counter joules)."""
    total = self.energy_counter_j() * 1e6
    now = self._clock()
    dt = now - self._last_t
    delta = total - self._last_total
    self._last_t, self._last_total = now, total
    power = delta * 1e-6 / dt if dt > 0 else None
    return power, total * 1e-6

  def read_w(self) -> Optional[float]:
    return self.read_sample()[0]

  def describe(self) -> Dict[str, Any]:
    return {"power_source": self.name,
            "zones": [c.zone_dir for c in self.counters],
            "domains": [c.name for c in self.counters],
            "wraps": sum(c.wraps for c in self.counters)}

  def warnings(self) -> List[str]:
    return ["rapl: CPU package (and selected domains) energy only; the rest of the "
            "machine (memory unless 'dram' is selected, board, fans) is not counted."]
