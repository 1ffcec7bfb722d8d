"""Power sources behind one interface (``base.PowerSource``), one module each.

Device-side code: standard library (and numpy) only, Python 3.6 syntax. The
vendor packages (``pynvml``, ``serial``) are imported inside their modules
when a source is created. ``create(name, **kwargs)`` builds a source by name.
"""

from typing import Any

from .. import devices
from .. import errors
from . import base
from . import ina3221
from . import none
from . import nvml
from . import rapl
from . import usb_meter

NAMES = devices.POWER_SOURCES


def create(name: str, **kwargs: Any) -> base.PowerSource:
  """A ``PowerSource`` by name: nvml|ina3221|rapl|usb_meter|none.

  Keyword arguments go to the source's constructor (e.g. ``root`` for the
  sysfs readers, ``device_index`` for NVML, ``port`` or ``csv_path`` for the
  USB meter).
  """
  if name == "nvml":
    return nvml.NvmlPower(**kwargs)
  if name == "ina3221":
    return ina3221.Ina3221Power(**kwargs)
  if name == "rapl":
    return rapl.RaplPower(**kwargs)
  if name == "usb_meter":
    return usb_meter.create(**kwargs)
  if name == "none":
    return none.NoPower(**kwargs)
  raise errors.invalid_value("power_source", "one of %s" % "|".join(NAMES), name)
