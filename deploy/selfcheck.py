"""Check that this machine, or a running agent, can measure what a search
asks, before the search (``deploy/README.md``)::

  python -m deploy.selfcheck --device=cpu --flagfile=flags/quickstart.cfg
  python -m deploy.selfcheck --device_url=http://127.0.0.1:8470 --token_file=token.txt \\
      --flagfile=flags/paper_movidius.cfg

The local check is the device side's (``deploy.device.selfcheck``, which the
board runs itself as ``python3 -m deploy.device.selfcheck``); this host-side
command adds ``--device_url``: the agent's health answer and the bundled model
measured through the agent client on each runtime that reads ONNX.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Any, Sequence

from deploy import agent_client
from deploy.device import devices
from deploy.device import selfcheck
from deploy.device import selfcheck_model

BATCH = selfcheck.BATCH


def check_agent(url: str, token: str, ca_file: str | None = None,
                threshold_w: float | None = None) -> dict[str, Any]:
  """The self-check of a running agent: its health answer, and the model
  measured through it on each runtime that reads ONNX."""
  client = agent_client.AgentClient(url, token, ca_file=ca_file, retries=1)
  health = client.health()
  answer = dict(health["capabilities"])
  answer["mode"], answer["agent"] = "agent", url
  answer["agent_data"] = dict((k, health.get(k)) for k in ("images", "data_sha256",
                                                           "calibration_images"))
  kind = answer["device"]
  threshold = threshold_w if threshold_w is not None else devices.paper_threshold_w(kind)
  count = min(BATCH, int(health.get("images") or BATCH))
  work_dir = tempfile.mkdtemp(prefix="tea-selfcheck-")
  power = None
  try:
    model = selfcheck_model.write(os.path.join(work_dir, "selfcheck.onnx"))
    for name, runtime_answer in answer["runtimes"].items():
      if not (runtime_answer["available"] and "onnx" in runtime_answer["reads"]):
        continue
      start = time.monotonic()
      try:
        result = client.measure(model, runtime=name, batch_size=count, num_images=count,
                                repeats=1, warmup_batches=2, contention_policy="warn")
      except Exception as e:  # pylint: disable=broad-except  (reported in the table)
        runtime_answer["timing"] = {"error": "%s: %s" % (type(e).__name__, e),
                                    "ms_per_batch": None, "load_s": None, "max_abs_diff": None}
        continue
      runtime_answer["timing"] = {
          "error": None, "load_s": time.monotonic() - start - result["time_s"],
          "ms_per_batch": 1000.0 * result["time_s"], "images_per_s": count / result["time_s"],
          "max_abs_diff": None, "time_source": result.get("time_source")}
      if power is None:
        power = _agent_power(result, threshold)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  answer["power_check"] = power
  return answer


def _agent_power(result: dict[str, Any], threshold: float | None) -> Any:
  idle, load = result.get("idle_power_w"), result.get("mean_power_w")
  out = {"source": result.get("power_source"), "readable": result.get("power_source") != "none",
         "error": None, "idle_w": idle, "load_w": load, "threshold_w": threshold,
         "separates": None, "suggested_threshold_w": None,
         "integrated_j": result.get("energy_j"), "counter_j": result.get("counter_energy_j"),
         "counter_ratio": None, "samples": result.get("samples", 0)}
  return selfcheck.judge(out)


def main(argv: Sequence[str] | None = None) -> int:
  return selfcheck.main(argv, check_agent=check_agent)


if __name__ == "__main__":
  sys.exit(main())
