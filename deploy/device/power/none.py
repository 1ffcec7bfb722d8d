"""``none``: no power instrument. Time is measured; energy is reported as
unavailable (``energy_j: null``), never as zero."""

from typing import List, Optional

from . import base


class NoPower(base.PowerSource):
  name = "none"
  measures_power = False

  def read_w(self) -> Optional[float]:
    return None

  def warnings(self) -> List[str]:
    return ["power_source=none: energy is not measured (energy_j is null)."]
