"""Jetson on-board INA3221 power monitors through sysfs.

Two layouts are read, rails are discovered by their label:

* JetPack 4.x ``ina3221x`` iio driver (TX1/TX2/Nano/Xavier on L4T 32)::

    /sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1/rail_name_0   "VDD_IN"
    /sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1/in_power0_input  mW

* upstream ``ina3221`` hwmon driver (L4T 34+/JetPack 5+, mainline)::

    /sys/class/hwmon/hwmonN/name          "ina3221"
    /sys/class/hwmon/hwmonN/in1_label     "VDD_IN"
    /sys/class/hwmon/hwmonN/in1_input     bus voltage, mV
    /sys/class/hwmon/hwmonN/curr1_input   current, mA

  power = in_input * curr_input / 1e6 watts.

The default rail is the board input (``VDD_IN`` on TX2/Xavier NX/Orin,
``POM_5V_IN`` on Nano), i.e. the whole module as the paper measures it.
The INA3221 itself averages over its conversion window (a few ms with the
L4T defaults), far below a 20 ms sampling interval.
"""

import glob
import os
from typing import Any, Dict, List, Optional, Sequence

from .. import errors
from . import base

DEFAULT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "VDD_IN_TOTAL")


class Rail(object):
  """One labelled INA3221 channel."""

  def __init__(self, label: str, layout: str, files: Sequence[str]) -> None:
    self.label = label
    self.layout = layout
    self.files = files      # iio: (power_mW,); hwmon: (voltage_mV, current_mA)

  def read_w(self) -> float:
    if self.layout == "iio":
      return base.read_number(self.files[0]) / 1000.0
    return base.read_number(self.files[0]) * base.read_number(self.files[1]) / 1e6


def _iio_rails(root: str) -> List[Rail]:
  rails = []
  pattern = os.path.join(root, "sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*")
  for name_path in sorted(glob.glob(pattern)):
    channel = name_path.rsplit("_", 1)[1]
    power = os.path.join(os.path.dirname(name_path), "in_power%s_input" % channel)
    if os.path.exists(power):
      rails.append(Rail(base.read_text(name_path), "iio", (power,)))
  return rails


def _hwmon_dirs(root: str) -> List[str]:
  patterns = [os.path.join(root, "sys/class/hwmon/hwmon*"),
              os.path.join(root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")]
  seen, dirs = set(), []
  for pattern in patterns:
    for d in sorted(glob.glob(pattern)):
      real = os.path.realpath(d)
      name = os.path.join(d, "name")
      if real in seen or not os.path.exists(name):
        continue
      seen.add(real)
      if base.read_text(name).startswith("ina3221"):
        dirs.append(d)
  return dirs


def _hwmon_rails(root: str) -> List[Rail]:
  rails = []
  for d in _hwmon_dirs(root):
    for label_path in sorted(glob.glob(os.path.join(d, "in*_label"))):
      channel = os.path.basename(label_path)[2:-len("_label")]
      volts = os.path.join(d, "in%s_input" % channel)
      amps = os.path.join(d, "curr%s_input" % channel)
      if os.path.exists(volts) and os.path.exists(amps):
        rails.append(Rail(base.read_text(label_path), "hwmon", (volts, amps)))
  return rails


def discover(root: str = "/") -> Dict[str, Rail]:
  """All labelled rails of both layouts, ``{label: Rail}``."""
  rails = {}  # type: Dict[str, Rail]
  for rail in _iio_rails(root) + _hwmon_rails(root):
    rails.setdefault(rail.label, rail)
  return rails


class Ina3221Power(base.PowerSource):
  """Power of one rail, or the sum of several (``rail="VDD_CPU,VDD_GPU"``)."""

  name = "ina3221"

  def __init__(self, rail: Optional[str] = None, root: str = "/") -> None:
    found = discover(root)
    if not found:
      raise base.PowerSourceError(
          "No INA3221 rails found under %s. Expected the JetPack 4.x iio layout "
          "(sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_N) or the hwmon "
          "layout (sys/class/hwmon/hwmon*/in*_label with name 'ina3221')." % root)
    if rail is None:
      chosen = [r for r in DEFAULT_RAILS if r in found][:1]
      if not chosen:
        raise base.PowerSourceError(
            "No board input rail (%s) among the INA3221 rails %s; pass rail=NAME."
            % ("|".join(DEFAULT_RAILS), sorted(found)))
    else:
      chosen = [r.strip() for r in rail.split(",") if r.strip()]
      missing = [r for r in chosen if r not in found]
      if missing or not chosen:
        raise errors.invalid_value("rail", "labels among %s" % (sorted(found),), rail)
    self.rails = [found[r] for r in chosen]

  def read_w(self) -> float:
    return sum(r.read_w() for r in self.rails)

  def describe(self) -> Dict[str, Any]:
    return {"power_source": self.name,
            "rails": [r.label for r in self.rails],
            "layout": self.rails[0].layout}
