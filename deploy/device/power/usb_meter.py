"""USB power meters: a live serial reader and a timestamped CSV log importer.

Both are *log* sources: the meter keeps its own timestamped trace, and the
protocol asks for the part inside the inference run's wall-clock window
(``trace_between``), padded by the idle periods before and after it. The
timestamps are host wall-clock seconds (``time.time()``); a meter whose
clock is off by a known amount is corrected with ``clock_offset_s``
(added to the log's times).

Serial (pyserial): the meter (or its bridge firmware) writes one ASCII line
per reading. ``fields="watts"`` takes the first number of the line as watts;
``fields="volts_amps"`` takes the first two as volts and amps. Each line is
stamped with the host's clock when it arrives.

CSV: a header row, a time column (epoch seconds, or ISO 8601 local time like
``2024-05-01 12:00:00.250``) and either a power column (W) or voltage (V)
and current (A) columns; names are matched case-insensitively.
"""

import csv
import datetime
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import errors
from . import base

TIME_COLUMNS = ("timestamp", "time", "time_s", "epoch", "t", "unix_time")
POWER_COLUMNS = ("power_w", "power", "watts", "w", "p")
VOLT_COLUMNS = ("voltage_v", "voltage", "volts", "v", "u")
AMP_COLUMNS = ("current_a", "current", "amps", "a", "i")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def create(csv_path: Optional[str] = None, port: Optional[str] = None,
           **kwargs: Any) -> base.PowerSource:
  """``UsbMeterCsv`` when ``csv_path`` is given, else ``SerialMeter(port)``."""
  if csv_path:
    return UsbMeterCsv(csv_path, **kwargs)
  if port:
    return SerialMeter(port, **kwargs)
  raise ValueError("power_source=usb_meter needs either csv_path=PATH (a timestamped "
                   "log) or port=DEVICE (a serial meter, e.g. /dev/ttyUSB0).")


def parse_time(text: str) -> float:
  """Epoch seconds from a number or an ISO 8601 local-time string."""
  text = text.strip()
  try:
    return float(text)
  except ValueError:
    pass
  for fmt in _ISO_FORMATS:
    try:
      parsed = datetime.datetime.strptime(text, fmt)
    except ValueError:
      continue
    return time.mktime(parsed.timetuple()) + parsed.microsecond * 1e-6
  raise ValueError("Invalid timestamp %r: expected epoch seconds or ISO 8601 like "
                   "'2024-05-01 12:00:00.250'." % text)


def _pick(header: Sequence[str], names: Sequence[str], what: Optional[str],
          path: str) -> Optional[int]:
  lowered = [h.strip().lower() for h in header]
  for name in names:
    if name in lowered:
      return lowered.index(name)
  if what is None:
    return None
  raise ValueError("CSV %s has no %s column; expected one of %s, found %s."
                   % (path, what, names, header))


def load_csv(path: str) -> Tuple[List[float], List[float]]:
  """``(times, watts)`` float lists from a meter log (see module doc)."""
  with open(path) as f:
    rows = [r for r in csv.reader(f) if r]
  if len(rows) < 2:
    raise ValueError("CSV %s: expected a header row and readings, found %d rows."
                     % (path, len(rows)))
  header, body = rows[0], rows[1:]
  t_col = _pick(header, TIME_COLUMNS, "time", path)
  p_col = _pick(header, POWER_COLUMNS, None, path)
  if p_col is None:
    v_col = _pick(header, VOLT_COLUMNS, "power or voltage", path)
    a_col = _pick(header, AMP_COLUMNS, "current", path)
  times, watts = [], []
  for n, row in enumerate(body, start=2):
    try:
      times.append(parse_time(row[t_col]))  # type: ignore[index]  # required: found
      if p_col is not None:
        watts.append(float(row[p_col]))
      else:
        watts.append(float(row[v_col]) * float(row[a_col]))  # type: ignore[index]
    except (ValueError, IndexError) as e:
      raise ValueError("CSV %s line %d: %s" % (path, n, e))
  return times, watts


def slice_window(times: Sequence[float], watts: Sequence[float], start: float,
                 end: float) -> Tuple[List[float], List[float]]:
  """Rows with ``start <= t <= end``, sorted by time."""
  pairs = sorted((t, w) for t, w in zip(times, watts) if start <= t <= end)
  return [p[0] for p in pairs], [p[1] for p in pairs]


class UsbMeterCsv(base.PowerSource):
  """A CSV log written by the meter's own software during the run."""

  name = "usb_meter"
  polled = False

  def __init__(self, csv_path: str, clock_offset_s: float = 0.0) -> None:
    self.csv_path = csv_path
    self.clock_offset_s = float(clock_offset_s)

  def read_w(self) -> Optional[float]:
    raise NotImplementedError("usb_meter CSV logs are read after the run "
                              "(trace_between), not polled.")

  def trace_between(self, wall_start: float, wall_end: float) -> Tuple[List[float], List[float]]:
    times, watts = load_csv(self.csv_path)
    times = [t + self.clock_offset_s for t in times]
    return slice_window(times, watts, wall_start, wall_end)

  def describe(self) -> Dict[str, Any]:
    return {"power_source": self.name, "csv_path": self.csv_path,
            "clock_offset_s": self.clock_offset_s}


def parse_line(line: str, fields: str = "watts") -> Optional[float]:
  """Watts from one ASCII meter line, or None when it holds no reading."""
  numbers = [float(x) for x in _NUMBER.findall(line)]
  if fields == "watts":
    return numbers[0] if numbers else None
  if fields == "volts_amps":
    return numbers[0] * numbers[1] if len(numbers) >= 2 else None
  raise errors.invalid_value("fields", "'watts' or 'volts_amps'", fields)


class SerialMeter(base.PowerSource):
  """Reads a serial meter in a background thread, stamping each line."""

  name = "usb_meter"
  polled = False

  def __init__(self, port: str, baudrate: int = 115200, fields: str = "watts",
               clock_offset_s: float = 0.0,
               serial_factory: Optional[Callable[..., Any]] = None) -> None:
    parse_line("", fields)  # validates `fields`
    if serial_factory is None:
      try:
        # pyserial: optional, imported only for a USB meter.
        import serial
      except ImportError:
        raise ImportError("power_source=usb_meter with port= needs pyserial: "
                          "pip install pyserial")
      serial_factory = serial.serial_for_url
    self.port, self.fields = port, fields
    self.clock_offset_s = float(clock_offset_s)
    self._serial = serial_factory(port, baudrate=int(baudrate), timeout=0.1)
    self._times = []  # type: List[float]
    self._watts = []  # type: List[float]
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, name="usb-meter")
    self._thread.daemon = True
    self._thread.start()

  def _loop(self) -> None:
    while not self._stop.is_set():
      raw = self._serial.readline()
      if not raw:
        continue
      stamp = time.time()
      watts = parse_line(raw.decode("ascii", "replace"), self.fields)
      if watts is not None:
        with self._lock:
          self._times.append(stamp + self.clock_offset_s)
          self._watts.append(watts)

  def read_w(self) -> Optional[float]:
    with self._lock:
      return self._watts[-1] if self._watts else None

  def trace_between(self, wall_start: float, wall_end: float) -> Tuple[List[float], List[float]]:
    with self._lock:
      return slice_window(list(self._times), list(self._watts), wall_start, wall_end)

  def describe(self) -> Dict[str, Any]:
    return {"power_source": self.name, "port": self.port, "fields": self.fields}

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=1.0)
    self._serial.close()
