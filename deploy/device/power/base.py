"""The ``PowerSource`` interface shared by every power reader.

A source is either *polled* (the protocol's sampler thread calls ``read_w``
every ``sample_interval_s``) or a *log* (an external instrument records its
own timestamped trace; the protocol asks for the part of it inside a
wall-clock window through ``trace_between``).

Units, everywhere: watts, joules, seconds.
"""

import abc
from typing import Any, Dict, List, Optional, Tuple


class PowerSourceError(RuntimeError):
  """A power source cannot be read (missing file, permission, driver error)."""


class PowerSource(abc.ABC):
  """One power reading channel."""

  #: short name reported in results (nvml, ina3221, rapl, usb_meter, none)
  name = "base"
  #: True when the source measures power at all (``none`` does not)
  measures_power = True
  #: True for sources read by the sampler; False for external logs
  polled = True

  @abc.abstractmethod
  def read_w(self) -> Optional[float]:
    """Power now, in watts (float). For counter-based sources (RAPL) the mean
    power since the previous call."""

  def read_sample(self) -> Tuple[Optional[float], Optional[float]]:
    """``(watts, counter_joules_or_None)`` in one go; the sampler calls this."""
    return self.read_w(), self.energy_counter_j()

  def energy_counter_j(self) -> Optional[float]:
    """Monotonic cumulative energy counter in joules (wraparound undone), or
    None when the source has none. Used as a cross-check of the integral."""
    return None

  @property
  def averaging_window_s(self) -> float:
    """How long the reading is averaged over by the hardware/driver, in
    seconds (0.0 when it is instantaneous as far as we know)."""
    return 0.0

  def describe(self) -> Dict[str, Any]:
    """A JSON-able dict describing the channel (rail, device, layout...)."""
    return {"power_source": self.name}

  def warnings(self) -> List[str]:
    """Known pitfalls of this source as human-readable strings."""
    return []

  def trace_between(self, wall_start: float, wall_end: float) -> Tuple[List[float], List[float]]:
    """Log sources only: ``(wall_times, watts)`` lists inside the window."""
    raise NotImplementedError("%s is a polled source; sample it with read_w()."
                              % self.name)

  def close(self) -> None:
    """Release handles (files, NVML, serial port)."""

  def __enter__(self) -> "PowerSource":
    return self

  def __exit__(self, *exc: Any) -> bool:  # type: ignore[exit-return]
    self.close()
    return False


def read_text(path: str) -> str:
  """Read a small sysfs file as stripped text, with an error naming the file."""
  try:
    with open(path) as f:
      return f.read().strip()
  except PermissionError:
    raise PowerSourceError("Permission denied reading %s; run as a user that "
                           "may read it (often root)." % path)
  except OSError as e:
    raise PowerSourceError("Cannot read %s: %s" % (path, e))


def read_number(path: str) -> float:
  """Read a sysfs file holding one integer/float."""
  text = read_text(path)
  try:
    return float(text)
  except ValueError:
    raise PowerSourceError("Expected a number in %s, found %r." % (path, text))
