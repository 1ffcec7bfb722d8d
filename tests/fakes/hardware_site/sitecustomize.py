"""Activates the hardware fakes of ``tea_fake_hardware`` in every Python
process started with this folder on PYTHONPATH and ``TEA_FAKE_HARDWARE`` set
(the search, its spawned trial workers, the agent). Test-only."""

import os

if os.environ.get("TEA_FAKE_HARDWARE"):
  import tea_fake_hardware
  tea_fake_hardware.install(os.environ["TEA_FAKE_HARDWARE"])
