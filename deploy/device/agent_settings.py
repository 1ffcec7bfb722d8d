"""The settings of a measure request to the agent (``deploy.device.agent``, whose
docstring tables them): their types and bounds, their checks (400 before the
model is loaded), and the helpers of two settings' results: ``top1``
(``predictions``) and the data hash health reports.

Device-side module: Python 3.6 syntax, standard library + numpy.
"""

import collections
import json
import math
from typing import Any, Dict, List, Optional

from . import contention
from . import devices
from . import errors
from . import session
from . import tensorrt_build
from .agent_uploads import BadRequest


# kind: int (a JSON integer, not a bool), float (a finite JSON number) or str;
# low/high: inclusive bounds (None: none; num_images: the agent's images);
# threshold_w's low bound is exclusive (> 0).
Setting = collections.namedtuple("Setting", "kind low high")
SETTINGS = {"runtime": Setting(str, None, None), "batch_size": Setting(int, 1, 10000),
            "num_images": Setting(int, 1, None), "repeats": Setting(int, 1, 100),
            "warmup_batches": Setting(int, 0, 1000), "threshold_w": Setting(float, 0.0, None),
            "sample_interval_s": Setting(float, 0.001, 10.0),
            "idle_s": Setting(float, 0.0, 60.0), "precision": Setting(str, None, None),
            "contention_policy": Setting(str, None, None),
            "cascade_point": Setting(int, 0, None),
            "max_energy_per_image_j": Setting(float, 0.0, None),
            "max_time_per_image_s": Setting(float, 0.0, None),
            "max_error": Setting(float, 0.0, None), "predictions": Setting(bool, None, None)}
# Settings that pick a cascade's point, and the CascadeRuntime argument each sets.
CASCADE_SETTINGS = {"cascade_point": "point", "max_energy_per_image_j": "max_energy_per_image_j",
                    "max_time_per_image_s": "max_time_per_image_s", "max_error": "max_error"}
# Old names of the per-image budgets (a search's max_time_s/max_energy_j are totals).
RENAMED = {"max_time_s": "max_time_per_image_s", "max_energy_j": "max_energy_per_image_j"}
PRECISIONS = tensorrt_build.PRECISIONS
CHOICES = {"precision": PRECISIONS, "contention_policy": contention.POLICIES}


def _expected(key: str, spec: Any, high: Optional[float]) -> str:
  if spec.kind is bool:
    return "a JSON boolean (true or false)"
  if spec.kind is int:
    return ("a JSON integer in %d..%d" % (spec.low, high) if high is not None
            else "a JSON integer >= %d" % spec.low)
  if spec.kind is float and high is None:
    return "a finite number > %g" % spec.low
  if spec.kind is float:
    return "a finite number in [%g, %g]" % (spec.low, high)  # type: ignore[str-format]
  return "one of %s" % (list(CHOICES[key]),) if key in CHOICES else "a string"


def check_setting(key: str, value: Any, high: Optional[float] = None) -> Any:
  """``value`` of setting ``key`` (a float setting as float), or BadRequest 400."""
  spec, given = SETTINGS[key], value
  high = spec.high if high is None else high
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if spec.kind is bool:
    ok = isinstance(value, bool)
  elif spec.kind is int:
    ok = (number and isinstance(value, int) and value >= spec.low and
          (high is None or value <= high))
  elif spec.kind is float:
    try:
      value = float(value) if number else None
    except OverflowError:  # an integer past the float range
      value = None
    ok = (value is not None and math.isfinite(value) and
          (value > spec.low if high is None else spec.low <= value <= high))
  else:
    ok = isinstance(value, str) and (key not in CHOICES or value in CHOICES[key])
  if not ok:
    raise BadRequest(400, errors.message(key, _expected(key, spec, high), noun="setting",
                                         shown="%s=%s" % (key, json.dumps(given)[:100])))
  return value


def parse_settings(text: Optional[str], fmt: str, device: str,
                   num_images: Optional[int] = None) -> Dict[str, Any]:
  """Validated measurement settings from the X-Measure-Settings header;
  ``num_images``: the images the agent holds (the bound of that setting)."""
  try:
    raw = json.loads(text or "{}")
  except ValueError as e:
    raise BadRequest(400, "X-Measure-Settings is not JSON: %s" % e)
  if not isinstance(raw, dict):
    raise BadRequest(400, "X-Measure-Settings must be a JSON object.")
  renamed = sorted(set(raw) & set(RENAMED))
  if renamed:
    key = renamed[0]
    raise BadRequest(400, "Invalid setting `%s`. Expected `%s`: a cascade's budget per image "
                          "(a search's `%s` is the total for its --measure_images images). "
                          "Received %s=%s" % (key, RENAMED[key], key, key,
                                              json.dumps(raw[key])[:100]))
  unknown = sorted(set(raw) - set(SETTINGS))
  if unknown:
    raise BadRequest(400, "Unknown settings %s; expected some of %s."
                     % (unknown[:20], sorted(SETTINGS)))
  out = {}
  for key, value in sorted(raw.items()):
    if value is not None:
      out[key] = check_setting(key, value, num_images if key == "num_images" else None)
  picks = sorted(set(out) & set(CASCADE_SETTINGS))
  if picks and fmt != "cascade":
    raise BadRequest(400, "Settings %s apply to a cascade; this upload is %s." % (picks, fmt))
  readers = [r for r in devices.device(device).runtimes if devices.reads_format(r, fmt)]
  runtime = out.setdefault("runtime", readers[0] if readers else None)
  if runtime not in readers:
    raise BadRequest(400, "runtime=%s cannot run a %s artifact on %s; expected one of %s."
                     % (runtime, fmt, device, readers))
  return out


def top1(runtime: Any, images: Any, batch_size: int) -> List[int]:
  """Untimed argmax per image of ``runtime`` on ``images`` (a list of ints;
  whole batches for a static-batch runtime: ``session.predict_top1``)."""
  return session.predict_top1(runtime, images, batch_size)


def cascade_options(settings: Dict[str, Any]) -> Dict[str, Any]:
  """The ``CascadeRuntime`` arguments (point, budgets) of checked settings."""
  return dict((arg, settings[key]) for key, arg in CASCADE_SETTINGS.items() if key in settings)
