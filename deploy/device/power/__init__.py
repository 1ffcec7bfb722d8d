"""Power sources behind one interface (``base.PowerSource``), one module each.

Device-side code: standard library (and numpy) only, Python 3.6 syntax. The
vendor packages (``pynvml``, ``serial``) are imported inside their modules
when a source is created. ``create(name, **kwargs)`` builds a source by name.
"""

from .. import devices

NAMES = devices.POWER_SOURCES


def create(name, **kwargs):
  """A ``PowerSource`` by name: nvml|ina3221|rapl|usb_meter|none.

  Keyword arguments go to the source's constructor (e.g. ``root`` for the
  sysfs readers, ``device_index`` for NVML, ``port`` or ``csv_path`` for the
  USB meter).
  """
  if name == "nvml":
    from . import nvml
    return nvml.NvmlPower(**kwargs)
  if name == "ina3221":
    from . import ina3221
    return ina3221.Ina3221Power(**kwargs)
  if name == "rapl":
    from . import rapl
    return rapl.RaplPower(**kwargs)
  if name == "usb_meter":
    from . import usb_meter
    return usb_meter.create(**kwargs)
  if name == "none":
    from . import none
    return none.NoPower(**kwargs)
  raise ValueError("Invalid value for argument `power_source`. Expected one of %s. "
                   "Received power_source=%r" % ("|".join(NAMES), name))
