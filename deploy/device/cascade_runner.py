"""Run an adaptive cascade of classifiers on the device (LEANets run time).

A cascade directory, written by ``python -m search.cascades.build``, holds
``cascade.json`` and one ONNX model per stage (``stages/stage<k>.onnx``),
ordered by measured cost. Stage k answers an image when its confidence is at
least its threshold t_k; otherwise the image goes on to stage k + 1; the last
stage always answers. ``cascade.json`` lists the threshold vectors of the
front (``points``), each with its predicted error and expected time and
energy per image, so one is picked at run time by a budget::

  python3 -m deploy.device.run_cascade --cascade=DIR --data=images.npy --max_energy_per_image_j=0.002
  python3 -m deploy.device.run_cascade --cascade=DIR --data=images.npy --max_error=0.3 --labels=y.npy

``CascadeRuntime`` has the ``Runtime`` interface (``predict(batch)`` ->
logits), so the measurement protocol times a cascade as it times one model:
``deploy.device.device_main.build_runtime(device, runtime, DIR, ...)`` returns one (each stage loaded by that
runtime), hence ``python -m deploy.measure --model=DIR`` and the device scripts
(``python3 -m deploy.device.cpu.measure --model=DIR``) measure it. ``pack``/``unpack``
zip a cascade and check a received zip, as the agent does with an upload of
format ``cascade`` (``deploy.device.agent``; ``deploy.device.devices.FORMATS``), and
``python -m deploy.measure --model=CASCADE.zip`` takes the zip too.

Confidence (``confidence``): the largest softmax probability
(``max_softmax``), or the difference of the two largest (``margin``, the
"score margin" of Park et al. 2015). A threshold of 1 means the stage never
answers (so thresholds of 1 reproduce the last stage alone, 0 the first).

ONNX Runtime stages run without thread spinning (``allow_spinning=False`` of
``deploy.device.runtimes.onnxruntime_runtime``): each stage's session owns a thread
pool whose threads spin-wait after a run, and with the stages taking turns
the idle ones' spinning threads took the cores from the one running
(measured here: two sessions alternated cost 36% more than their sum; with
spinning off, their sum).

References:
  N. K. Jayakodi, S. Belakaria, A. Deshwal, J. R. Doppa. "Design and
  Optimization of Energy-Accuracy Tradeoff Networks for Mobile Platforms via
  Pretrained Deep Models", ACM Transactions on Embedded Computing Systems
  19(1), article 4, 2020 (LEANets).
  E. Park, D. Kim, S. Kim, Y.-D. Kim, G. Kim, S. Yoon, S. Yoo. "Big/little
  deep neural network for ultra low power inference", CODES+ISSS 2015.

Device-side module: Python 3.6 syntax, standard library + numpy + the
runtime (through ``deploy.device.runtimes``).
"""

import json
import math
import os
import time
import zipfile
from typing import Any, Dict, IO, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import agent_uploads
from . import devices
from . import errors
from . import runtimes
from .runtimes import base

CASCADE_FILE = agent_uploads.CASCADE_FILE  # also devices.FORMATS["cascade"].suffix
FORMAT_NAME = "tea-keras-cascade"
FORMAT_VERSION = 1
CONFIDENCES = ("max_softmax", "margin")
# What unpack() lets a received zip expand to (the agent's upload bound is its own).
MAX_UNPACKED_BYTES = 1 << 30


# -- the decision rule (the search's evaluation imports these) ----------------
def softmax(logits: Any) -> np.ndarray:
  """Softmax over the last axis in float64 (stable: max subtracted)."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def confidence(logits: Any, kind: str = "max_softmax") -> np.ndarray:
  """(N,) float64 confidence in [0, 1) of (N, classes) logits; see module doc.
  Capped at the largest float below 1, so that a threshold of 1 answers none
  and every threshold outcome is reached by a threshold equal to some image's
  confidence (or 1): the search's exact grid relies on it."""
  if kind not in CONFIDENCES:
    raise errors.invalid_value("kind", "one of %s" % "|".join(CONFIDENCES), kind)
  p = softmax(logits)
  if kind == "max_softmax":
    conf = p.max(axis=-1)
  else:
    top2 = np.partition(p, p.shape[-1] - 2, axis=-1)[..., -2:]
    conf = top2[..., 1] - top2[..., 0]
  return np.clip(conf, 0.0, np.nextafter(1.0, 0.0))


def answers(conf: np.ndarray, threshold: float) -> np.ndarray:
  """(N,) bool: which images a stage with ``threshold`` answers (conf >= t;
  a threshold >= 1 answers none)."""
  conf = np.asarray(conf)
  if float(threshold) >= 1.0:
    return np.zeros(conf.shape, bool)
  return conf >= float(threshold)


# -- the directory ----------------------------------------------------------------
def is_cascade(path: str) -> bool:
  """Whether ``path`` is a cascade directory or its ``cascade.json``."""
  path = str(path)
  if os.path.isdir(path):
    return os.path.isfile(os.path.join(path, CASCADE_FILE))
  return os.path.basename(path) == CASCADE_FILE and os.path.isfile(path)


def load_spec(path: str) -> Tuple[str, Dict[str, Any]]:
  """``(directory, spec dict)`` of a cascade directory or ``cascade.json``,
  after checking the spec's types (``check_spec``) and that every stage's
  file is there; ``ModelLoadError`` (a ValueError) naming the field
  otherwise."""
  path = str(path)
  json_path = os.path.join(path, CASCADE_FILE) if os.path.isdir(path) else path
  if not os.path.isfile(json_path):
    raise base.ModelLoadError("%r is not a cascade: expected a directory holding %s "
                              "(written by python -m search.cascades.build)." % (path, CASCADE_FILE))
  with open(json_path) as f:
    try:
      spec = json.load(f)
    except ValueError as e:
      raise base.ModelLoadError("%s is not JSON: %s" % (json_path, e))
  check_spec(spec, json_path)
  directory = os.path.dirname(os.path.abspath(json_path))
  for k, stage in enumerate(spec["stages"]):
    if not os.path.isfile(os.path.join(directory, stage["file"])):
      raise base.ModelLoadError("%s: stage %d's model %s is missing."
                                % (json_path, k + 1, stage["file"]))
  return directory, spec


def _invalid(where: str, field: str, expected: str, value: Any) -> base.ModelLoadError:
  return base.ModelLoadError(errors.invalid_field(where, field, expected, value))


def _number(value: Any, low: float = 0.0, high: Optional[float] = None) -> bool:
  """Whether ``value`` is a finite JSON number in [low, high]."""
  return (isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value) and low <= value <= (float("inf") if high is None else high))


def check_spec(spec: Any, where: str = CASCADE_FILE) -> None:
  """ModelLoadError naming the field unless ``spec`` (``cascade.json``'s
  object) has the format and version, a ``confidence`` of CONFIDENCES, a
  non-empty list of stages each naming a relative file, and a non-empty list
  of points each with one threshold in [0, 1] per stage but the last, an
  ``error`` in [0, 1] and, where given, costs per image >= 0
  (``time_s_per_image``, ``energy_j_per_image``; null: not measured)."""
  if not isinstance(spec, dict):
    raise _invalid(where, "cascade", "a JSON object", spec)
  if spec.get("format") != FORMAT_NAME or spec.get("version") != FORMAT_VERSION:
    raise base.ModelLoadError("%s: expected format %r version %d, found %r version %r."
                              % (where, FORMAT_NAME, FORMAT_VERSION, spec.get("format"),
                                 spec.get("version")))
  if spec.get("confidence", "max_softmax") not in CONFIDENCES:
    raise _invalid(where, "confidence", "one of %s" % "|".join(CONFIDENCES),
                   spec.get("confidence"))
  stages, points = spec.get("stages"), spec.get("points")
  if not isinstance(stages, list) or not stages:
    raise _invalid(where, "stages", "a non-empty list of {\"file\": ...}", stages)
  if not isinstance(points, list) or not points:
    raise _invalid(where, "points", "a non-empty list of {\"thresholds\": [...], "
                   "\"error\": ...}", points)
  for k, stage in enumerate(stages):
    name = stage.get("file") if isinstance(stage, dict) else None
    if not isinstance(name, str) or not agent_uploads.safe_member(name):
      raise base.ModelLoadError("%s: stage %d must name its model as a relative path under the "
                                "cascade (\"file\"); found %r." % (where, k + 1, name))
  for i, point in enumerate(points):
    _check_point(where, i, point, len(stages))


def _check_point(where: str, i: int, point: Any, num_stages: int) -> None:
  """One point of ``check_spec``."""
  field = "points[%d]" % i
  if not isinstance(point, dict):
    raise _invalid(where, field, "a JSON object", point)
  thresholds = point.get("thresholds")
  if not isinstance(thresholds, list) or len(thresholds) != num_stages - 1:
    raise base.ModelLoadError("%s: point %d has %s thresholds; expected %d (one per stage "
                              "but the last)." % (where, i, len(thresholds) if isinstance(
                                  thresholds, list) else "no list of", num_stages - 1))
  for t in thresholds:
    if not _number(t, 0.0, 1.0):
      raise base.ModelLoadError("%s: point %d has threshold %r; expected numbers in [0, 1]."
                                % (where, i, t))
  if not _number(point.get("error"), 0.0, 1.0):
    raise _invalid(where, field + ".error", "a number in [0, 1] (the point's error)",
                   point.get("error"))
  for key in ("time_s_per_image", "energy_j_per_image"):
    if point.get(key) is not None and not _number(point[key]):
      raise _invalid(where, "%s.%s" % (field, key), "a finite number >= 0, or null (not "
                     "measured)", point[key])


def choose_point(points: Sequence[Dict[str, Any]], max_energy_per_image_j: Optional[float] = None,
                 max_time_per_image_s: Optional[float] = None,
                 max_error: Optional[float] = None) -> int:
  """Index of the point to run: under the budgets per image given
  (``max_energy_per_image_j``, ``max_time_per_image_s``), the lowest error;
  with only ``max_error``, the cheapest (energy, else time) within it; with
  no bound, the lowest error. A ValueError says what the front can reach
  otherwise."""
  bounds = (("energy_j_per_image", max_energy_per_image_j, "max_energy_per_image_j"),
            ("time_s_per_image", max_time_per_image_s, "max_time_per_image_s"),
            ("error", max_error, "max_error"))
  ok = list(range(len(points)))
  for key, bound, name in bounds:
    if bound is None:
      continue
    values = [points[i].get(key) for i in ok]  # type: List[Any]
    if any(v is None for v in values):
      raise ValueError("`%s`: this cascade has no %s (not measured)." % (name, key))
    kept = [i for i, v in zip(ok, values) if v <= bound]
    if not kept:
      raise errors.invalid_value(name,
                                 "at least %.6g, the lowest %s of the points within the other "
                                 "bounds" % (min(values), key), bound)
    ok = kept
  by = "energy_j_per_image" if all(points[i].get("energy_j_per_image") is not None
                                   for i in ok) else "time_s_per_image"
  cost = dict((i, float("inf") if points[i].get(by) is None else points[i][by]) for i in ok)
  if max_error is not None and max_energy_per_image_j is None and max_time_per_image_s is None:
    return min(ok, key=lambda i: (cost[i], points[i]["error"]))
  return min(ok, key=lambda i: (points[i]["error"], cost[i]))


# -- the runner -------------------------------------------------------------------
class CascadeRuntime(base.Runtime):
  """A cascade behind the ``Runtime`` interface (see module doc).

  ``runtime``: the runtime each stage is loaded with; ``point`` (an index of
  ``spec["points"]``) or the budgets of ``choose_point`` pick the thresholds;
  ``stage_options`` go to every stage's runtime. ``stage_images`` counts the
  images each stage has run on; ``last_stages`` is the answering stage of
  each image of the last batch.
  """
  fixed_batch_size = None

  def __init__(self, model_path: str, device: str = "cpu", runtime: str = "onnxruntime",
               point: Optional[int] = None, max_energy_per_image_j: Optional[float] = None,
               max_time_per_image_s: Optional[float] = None, max_error: Optional[float] = None,
               **stage_options: Any) -> None:
    super(CascadeRuntime, self).__init__(model_path, device)
    if not devices.reads_format(runtime, "cascade"):
      readers = [r for r in devices.RUNTIMES if devices.reads_format(r, "cascade")]
      raise errors.invalid_value("runtime", "a runtime that reads its ONNX stages (%s)"
                                 % "|".join(readers), runtime, where="for a cascade")
    self.directory, self.spec = load_spec(model_path)
    points = self.spec["points"]
    if point is None:
      point = choose_point(points, max_energy_per_image_j, max_time_per_image_s, max_error)
    if not 0 <= int(point) < len(points):
      raise errors.invalid_value("point", "an index in [0, %d]" % (len(points) - 1,), point)
    self.point_index, self.point = int(point), points[int(point)]
    self.thresholds = [float(t) for t in self.point["thresholds"]]
    self.kind = self.spec.get("confidence", "max_softmax")
    self.name = runtime
    if runtime == "onnxruntime":  # the stages take turns on the cores: see module doc
      stage_options.setdefault("allow_spinning", False)
    self.stages = []
    try:
      for k, stage in enumerate(self.spec["stages"]):
        path = os.path.join(self.directory, stage["file"])
        try:
          self.stages.append(runtimes.create(runtime, path, device, **stage_options))
        except base.ModelLoadError as e:  # named by the stage, not the cascade
          raise base.ModelLoadError("cascade stage %d (%s): %s"
                                    % (k + 1, stage["file"], str(e).replace(path, stage["file"])))
    except Exception:
      self.close()
      raise
    self.stage_images = [0] * len(self.stages)
    self.last_stages = np.zeros(0, np.int64)

  def _run(self, rt: base.Runtime, x: np.ndarray) -> np.ndarray:
    """Logits of ``x`` by one stage (padded/split to a fixed batch if it has one)."""
    fixed = rt.fixed_batch_size
    if not fixed or len(x) == fixed:
      return np.asarray(rt.predict(x))
    parts = []
    for i in range(0, len(x), fixed):
      chunk = x[i:i + fixed]
      pad = fixed - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      parts.append(np.asarray(rt.predict(chunk))[:fixed - pad])
    return np.concatenate(parts)

  def predict(self, batch: Any) -> np.ndarray:
    """Logits of the answering stage of each image of ``batch``."""
    batch = np.asarray(batch, np.float32)
    pending = np.arange(len(batch))
    out, last = None, np.full(len(batch), -1, np.int64)
    for s, rt in enumerate(self.stages):
      x = batch if s == 0 else batch[pending]
      logits = self._run(rt, x)
      if out is None:
        out = np.empty((len(batch),) + logits.shape[1:], logits.dtype)
      self.stage_images[s] += len(pending)
      if s == len(self.stages) - 1:
        done = np.ones(len(pending), bool)
      else:
        done = answers(confidence(logits, self.kind), self.thresholds[s])
      out[pending[done]] = logits[done]
      last[pending[done]] = s
      pending = pending[~done]
      if not len(pending):
        break
    self.last_stages = last
    return out  # type: ignore[return-value]  # the first stage ran

  def describe(self) -> Dict[str, Any]:
    out = super(CascadeRuntime, self).describe()
    total = float(self.stage_images[0]) or 1.0
    out["cascade"] = {
        "point": self.point_index, "thresholds": self.thresholds, "confidence": self.kind,
        "stages": [s["file"] for s in self.spec["stages"]],
        "stage_runtimes": [rt.describe() for rt in self.stages],
        "stage_images": list(self.stage_images),
        "reach_fractions": [n / total for n in self.stage_images],
        "predicted": dict((k, self.point.get(k)) for k in
                          ("error", "time_s_per_image", "energy_j_per_image"))}
    return out

  def close(self) -> None:
    for rt in self.stages:
      rt.close()
    self.stages = []


# -- a cascade as one upload ------------------------------------------------------
def pack(cascade_path: str, zip_path: Union[str, IO[bytes]]) -> Union[str, IO[bytes]]:
  """Zip ``cascade.json`` and the stage files of a cascade; returns ``zip_path``."""
  directory, spec = load_spec(cascade_path)
  with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(os.path.join(directory, CASCADE_FILE), CASCADE_FILE)
    for stage in spec["stages"]:
      z.write(os.path.join(directory, stage["file"]), stage["file"])
  return zip_path


def unpack(zip_path: str, dest: str, max_bytes: int = MAX_UNPACKED_BYTES) -> str:
  """Extract a packed cascade into ``dest`` after checking it holds only
  ``cascade.json`` and the stage files it names (relative paths, at most
  ``max_bytes`` unpacked, counted while unpacking: the agent's checks,
  ``deploy.device.agent_uploads.unpack_cascade``); returns ``dest``. ValueError
  (or ``ModelLoadError``, a ValueError, for a bad spec) otherwise."""
  if not os.path.isdir(dest):
    os.makedirs(dest)
  try:
    agent_uploads.unpack_cascade(zip_path, dest, max_bytes)
  except agent_uploads.BadRequest as e:
    raise ValueError("%s: %s" % (zip_path, e))
  load_spec(dest)
  return dest


def classify(rt: base.Runtime, images: np.ndarray,
             batch_size: int) -> Tuple[np.ndarray, np.ndarray, float]:
  """(predicted classes, answering stage per image, seconds) over ``images``."""
  preds, stages = [], []
  start = time.time()
  for i in range(0, len(images), int(batch_size)):
    preds.append(np.argmax(rt.predict(images[i:i + int(batch_size)]), axis=-1))
    stages.append(rt.last_stages)  # type: ignore[attr-defined]  # a CascadeRuntime
  seconds = time.time() - start
  return np.concatenate(preds), np.concatenate(stages), seconds
