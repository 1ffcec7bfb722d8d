"""Exact evaluation of adaptive cascades and the search for their thresholds.

An adaptive cascade (LEANets) runs classifiers of increasing cost and stops at
the first one confident enough. With S stages, a threshold vector
``t in [0, 1]^(S-1)`` and, for validation image n and stage s,

  c[s, n]   the confidence of stage s (``deploy.device.cascade_runner.confidence``: largest
            softmax probability, or the top-2 margin), in [0, 1),
  ok[s, n]  whether stage s classifies image n correctly,
  tau_s     the measured time per image of stage s (``time_s / images`` of
            its measurement), e_s its energy per image (``energy_j / images``),

stage s < S answers image n when ``c[s, n] >= t_s`` (``deploy.device.cascade_runner.answers``;
``t_s = 1`` answers none) and the last stage answers the rest. With a(n) the
answering stage of image n and r_s = (1/N) #{n : a(n) >= s} the fraction of
images that reach stage s (r_1 = 1):

  error(t)  = (1/N) sum_n [not ok[a(n), n]]
  time(t)   = sum_s r_s tau_s        (expected time per image)
  energy(t) = sum_s r_s e_s          (expected energy per image)

Cost model (an assumption, checked by measuring: BENCHMARKS.md "Cascades"):
a stage costs per image what it cost per image in its measurement at the
measurement's batch size B, whatever number of images reaches it; the softmax
and the gathering of deferred images cost nothing. Later stages see smaller
batches, so where a call has a fixed cost the measured time is above that
prediction. With a per-call cost ``a_s`` (``call_time_s``: measured from the
stage's per-image cost at two batch sizes, ``per_call_cost``) a call on n
images costs ``a_s + b_s n`` with ``b_s = tau_s - a_s / B``, and with the N
images run in order in batches of B, q_s = (1/N) #{batches holding an image
that reaches stage s}:

  time(t)   = sum_s [r_s b_s + q_s a_s]     (= sum_s r_s tau_s when a_s = 0)

(energy keeps the per-image model). On a device compiled for one static
batch (MYRIAD: ``deploy.device.devices.STATIC_BATCH``) the runner pads every call
to a whole batch, so a call costs the same whatever number of images reaches
the stage: ``a_s = tau_s B``, ``b_s = 0`` (``static_batch_calls``), and
time(t) = sum_s q_s tau_s B.

Exact front (``grid``): the outcome depends on t_s only through the set
``{n : c[s, n] >= t_s}``, which changes only at the confidences of stage s, so
the vectors whose coordinates are among each stage's distinct confidences
(and 1) reach every outcome any threshold vector reaches: their
non-dominated set is the true front. When the grid would exceed
``max_evaluations`` vectors each axis is thinned to quantiles (then it is
not exact, and ``grid`` says so).

Threshold search (``search_thresholds``): the thresholds form the continuous
design space [0, 1]^(S-1); the project's strategies (``search.optimizer``:
PESMO, ParEGO, random) propose vectors, each evaluated exactly, minimizing
(error, time[, energy]) with costs modelled in log space. The figure of merit
is the hypervolume fraction ``HV(found) / HV(grid front)`` against the
reference point ``search.optimizer.pareto.reference_point`` of the grid front.

References:
  N. K. Jayakodi, S. Belakaria, A. Deshwal, J. R. Doppa. "Design and
  Optimization of Energy-Accuracy Tradeoff Networks for Mobile Platforms via
  Pretrained Deep Models", ACM Transactions on Embedded Computing Systems
  19(1), article 4, 2020 (the cascade, its thresholds tuned by multi-objective
  Bayesian optimization, one threshold vector per trade-off picked at run time).
  E. Park et al. "Big/little deep neural network for ultra low power
  inference", CODES+ISSS 2015 (the top-2 score margin as the confidence).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from deploy.device import cascade_runner as runner
from search.optimizer import design
from search.optimizer import pareto
from search.optimizer import strategies
from tea_keras import errors as errors_lib

OBJECTIVE_KEYS = {"error": "error", "time": "time_s", "energy": "energy_j"}
# Memory bound of one evaluation chunk: (vectors x images) entries.
_CHUNK_ENTRIES = 1 << 22


@dataclasses.dataclass(frozen=True)
class CascadeData:
  """What an evaluation needs (see module doc for the symbols).

  confidence: (S, N) float, c[s, n]. correct: (S, N) bool, ok[s, n].
  time_s: (S,) tau_s, seconds per image. energy_j: (S,) e_s, joules per image,
  or None when a stage was measured without a power instrument.
  call_time_s: (S,) a_s >= 0, seconds per call, with ``batch_size`` B (the
  batch of ``time_s``'s measurement and of the run); None: the per-image model.
  """
  confidence: np.ndarray
  correct: np.ndarray
  time_s: np.ndarray
  energy_j: Optional[np.ndarray] = None
  call_time_s: Optional[np.ndarray] = None
  batch_size: Optional[int] = None

  def __post_init__(self) -> None:
    conf = np.asarray(self.confidence, np.float64)
    correct = np.asarray(self.correct, bool)
    if conf.ndim != 2 or conf.shape[0] < 2 or correct.shape != conf.shape:
      raise errors_lib.invalid_value("confidence", "(stages >= 2, images) confidences and "
                                     "`correct` of the same shape",
                                     shown="shapes %s and %s." % (conf.shape, correct.shape))
    if not np.all((conf >= 0) & (conf < 1)):
      raise errors_lib.invalid_value("confidence",
                                     "values in [0, 1) (deploy.device.cascade_runner.confidence)")
    object.__setattr__(self, "confidence", conf)
    object.__setattr__(self, "correct", correct)
    for name in ("time_s", "energy_j"):
      value = getattr(self, name)
      if value is None:
        continue
      value = np.asarray(value, np.float64).reshape(-1)
      if value.shape != (conf.shape[0],) or not np.all(np.isfinite(value) & (value > 0)):
        raise errors_lib.invalid_value(name, "%d positive per-image costs (one per stage)"
                                       % conf.shape[0], value)
      object.__setattr__(self, name, value)
    if self.call_time_s is not None:
      self._check_calls(conf.shape[0])

  def _check_calls(self, num_stages: int) -> None:
    calls = np.asarray(self.call_time_s, np.float64).reshape(-1)
    if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
      raise errors_lib.invalid_value("batch_size", "a positive integer with call_time_s",
                                     self.batch_size)
    if calls.shape != (num_stages,) or not np.all((calls >= 0) & (
        calls <= self.time_s * self.batch_size)):
      raise errors_lib.invalid_value("call_time_s", "%d per-call costs in [0, time_s * "
                                     "batch_size]" % (num_stages,), calls)
    object.__setattr__(self, "call_time_s", calls)

  @property
  def num_stages(self) -> int:
    return self.confidence.shape[0]

  @property
  def num_images(self) -> int:
    return self.confidence.shape[1]

  @property
  def objectives(self) -> tuple[str, ...]:
    """("error", "time") plus "energy" when every stage has an energy."""
    return ("error", "time") + (("energy",) if self.energy_j is not None else ())

  def subset(self, index: Any) -> CascadeData:
    """The same cascade on images ``index`` (e.g. the measured ones)."""
    index = np.asarray(index, int)
    return dataclasses.replace(self, confidence=self.confidence[:, index],
                               correct=self.correct[:, index])


def per_call_cost(time_s: float, small_time_s: float, batch_size: int,
                  small_batch_size: int) -> float:
  """a_s of the module doc from a stage's per-image cost at two batch sizes
  (tau at B = a/B + b, at b_small = a/b_small + b), clamped to [0, tau * B]."""
  a = (small_time_s - time_s) / (1.0 / small_batch_size - 1.0 / batch_size)
  return float(min(max(a, 0.0), time_s * batch_size))


def static_batch_calls(time_s: Sequence[float], batch_size: int) -> list[float]:
  """``call_time_s`` of stages measured on a static-batch device at batch
  ``batch_size``: every call runs, padded, and costs a whole batch."""
  return [float(t) * int(batch_size) for t in time_s]


def call_fractions(stage: np.ndarray, num_stages: int, batch_size: int) -> np.ndarray:
  """(K, S) q_s of the module doc: the fraction of the images (in order, in
  batches of ``batch_size``) per batch in which some image reaches stage s."""
  num_images = stage.shape[1]
  starts = np.arange(0, num_images, batch_size)
  out = np.empty((stage.shape[0], num_stages))
  for s in range(num_stages):
    reached = np.add.reduceat((stage >= s).astype(np.int64), starts, axis=1) > 0
    out[:, s] = reached.sum(axis=1) / float(num_images)
  return out


def from_logits(logits: Sequence[np.ndarray], labels: np.ndarray, time_s: Any, energy_j: Any = None,
                kind: str = "max_softmax", call_time_s: Any = None,
                batch_size: int | None = None) -> CascadeData:
  """``CascadeData`` from each stage's (N, classes) logits and the labels."""
  labels = np.asarray(labels).reshape(-1)
  conf, correct = [], []
  for s, z in enumerate(logits):
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[0] != labels.shape[0]:
      raise ValueError("Invalid value for argument `logits`: stage %d has shape %s; "
                       "expected (%d, classes)." % (s, z.shape, labels.shape[0]))
    conf.append(runner.confidence(z, kind))
    correct.append(np.argmax(z, axis=-1) == labels)
  return CascadeData(np.stack(conf), np.stack(correct), time_s, energy_j, call_time_s,
                     batch_size)


def check_thresholds(thresholds: Any, num_stages: int) -> np.ndarray:
  """(K, S-1) float thresholds in [0, 1]; a clear ValueError otherwise."""
  t = np.asarray(thresholds, np.float64)
  if t.ndim == 1:
    t = t[None, :]
  if t.ndim != 2 or t.shape[1] != num_stages - 1 or not np.all(np.isfinite(t)) or \
      np.any((t < 0) | (t > 1)):
    raise errors_lib.invalid_value("thresholds",
                                   "vectors of %d values in [0, 1] (one per stage but the last)"
                                   % (num_stages - 1,),
                                   shown="shape %s." % (np.shape(thresholds),))
  return t


def answering_stage(data: CascadeData, thresholds: np.ndarray) -> np.ndarray:
  """(K, N) int: the stage that answers each image under each vector."""
  t = check_thresholds(thresholds, data.num_stages)
  stage = np.full((t.shape[0], data.num_images), data.num_stages - 1, np.int64)
  still_open = np.ones(stage.shape, bool)
  for s in range(data.num_stages - 1):
    col = t[:, s:s + 1]
    here = (data.confidence[s][None, :] >= col) & (col < 1.0)  # = runner.answers
    stage[still_open & here] = s
    still_open &= ~here
  return stage


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """Exact objectives of K threshold vectors (module doc): thresholds (K, S-1);
  error, time_s, energy_j (K,) per image (energy None without energies);
  exit_fractions (K, S) images answered by each stage; reach (K, S) r_s."""
  thresholds: np.ndarray
  error: np.ndarray
  time_s: np.ndarray
  energy_j: Optional[np.ndarray]
  exit_fractions: np.ndarray
  reach: np.ndarray

  def objective_matrix(self, objectives: Sequence[str]) -> np.ndarray:
    """(K, m) values of ``objectives`` (names of ``OBJECTIVE_KEYS``)."""
    return np.stack([getattr(self, OBJECTIVE_KEYS[o]) for o in objectives], axis=1)


def evaluate(data: CascadeData, thresholds: Any) -> Evaluation:
  """``Evaluation`` of threshold vectors (K, S-1), exactly, in chunks."""
  t = check_thresholds(thresholds, data.num_stages)
  chunk = max(1, _CHUNK_ENTRIES // max(data.num_images, 1))
  errors, exits, calls = [], [], []
  cols = np.arange(data.num_images)[None, :]
  for i in range(0, t.shape[0], chunk):
    stage = answering_stage(data, t[i:i + chunk])
    errors.append((~data.correct[stage, cols]).mean(axis=1))
    exits.append(np.stack([(stage == s).mean(axis=1) for s in range(data.num_stages)], 1))
    if data.call_time_s is not None:
      calls.append(call_fractions(stage, data.num_stages, data.batch_size))  # type: ignore[arg-type]
  exit_fractions = np.concatenate(exits) if exits else np.zeros((0, data.num_stages))
  reach = np.cumsum(exit_fractions[:, ::-1], axis=1)[:, ::-1]
  time_s = reach @ data.time_s
  if calls:
    a = data.call_time_s
    time_s = reach @ (data.time_s - a / data.batch_size) + np.concatenate(calls) @ a  # type: ignore[operator]
  return Evaluation(
      thresholds=t, error=np.concatenate(errors) if errors else np.zeros(0),
      time_s=time_s,
      energy_j=None if data.energy_j is None else reach @ data.energy_j,
      exit_fractions=exit_fractions, reach=reach)


# -- the exact front ----------------------------------------------------------------
def breakpoints(data: CascadeData, stage: int) -> np.ndarray:
  """The thresholds of stage ``stage`` that reach all its outcomes: its
  distinct confidences and 1 (ascending)."""
  return np.unique(np.append(data.confidence[stage], 1.0))


def grid(data: CascadeData, max_evaluations: int = 200000) -> tuple[np.ndarray, bool]:
  """``(thresholds (K, S-1), exact)``: every combination of breakpoints, or
  per-axis quantiles of them when that would exceed ``max_evaluations``."""
  axes = [breakpoints(data, s) for s in range(data.num_stages - 1)]
  exact = float(np.prod([len(a) for a in axes])) <= max_evaluations
  if not exact:
    per_axis = max(2, int(max_evaluations ** (1.0 / len(axes))))
    axes = [a if len(a) <= per_axis else
            a[np.unique(np.round(np.linspace(0, len(a) - 1, per_axis)).astype(int))]
            for a in axes]
  mesh = np.meshgrid(*axes, indexing="ij")
  return np.stack([m.ravel() for m in mesh], axis=1), exact


def front_mask(y: np.ndarray) -> np.ndarray:
  """Non-dominated rows of ``y`` (n, m), minimized; the same answer as
  ``search.optimizer.pareto.non_dominated_mask`` (duplicates of a front row
  all kept) in O(n log n) for m = 2, level by level for m = 3 and by blocks
  against the running front for m > 3, for the grid's hundreds of thousands
  of rows.

  Lexicographic order puts every dominator of a row before it; rows equal to
  it do not dominate it, hence the work on distinct rows.
  """
  y = np.asarray(y, np.float64)
  if y.ndim != 2 or not np.all(np.isfinite(y)):
    raise errors_lib.invalid_value("y", "a finite (n, m) array",
                                   shown="shape %s." % (np.shape(y),))
  if not len(y):
    return np.zeros(0, bool)
  unique, inverse = np.unique(y, axis=0, return_inverse=True)
  inverse = inverse.reshape(-1)
  if y.shape[1] == 1:
    keep = unique[:, 0] == unique[0, 0]
  elif y.shape[1] == 2:
    keep = _front2(unique)
  elif y.shape[1] == 3:
    keep = _front3(unique)
  else:
    keep = _skyline(unique)
  return keep[inverse]


def _front2(pairs: np.ndarray) -> np.ndarray:
  """Non-dominated mask of distinct (n, 2) rows sorted lexicographically."""
  prior_min = np.minimum.accumulate(np.concatenate([[np.inf], pairs[:-1, 1]]))
  return pairs[:, 1] < prior_min


def _front3(unique: np.ndarray) -> np.ndarray:
  """Non-dominated mask of distinct (n, 3) rows sorted lexicographically, one
  level of the first objective at a time: a row survives when its level's
  (y1, y2) front keeps it and no survivor of a lower level has y1 and y2 both
  no larger (a staircase query: the least y2 among survivors with y1 <= its y1)."""
  keep = np.zeros(len(unique), bool)
  stair = np.zeros((0, 2))
  starts = np.flatnonzero(np.concatenate([[True], unique[1:, 0] != unique[:-1, 0]]))
  for lo, hi in zip(starts, np.append(starts[1:], len(unique))):
    rows = unique[lo:hi, 1:]
    alive = _front2(rows)
    if len(stair):
      at = np.searchsorted(stair[:, 0], rows[:, 0], side="right") - 1
      least = np.where(at >= 0, stair[np.maximum(at, 0), 1], np.inf)
      alive &= least > rows[:, 1]
    keep[lo:hi] = alive
    merged = np.vstack([stair, rows[alive]])
    merged = merged[np.lexsort((merged[:, 1], merged[:, 0]))]
    stair = merged[_front2(merged)] if len(merged) else merged
  return keep


def _skyline(unique: np.ndarray, block: int = 512) -> np.ndarray:
  """Non-dominated mask of distinct rows sorted lexicographically."""
  keep = np.zeros(len(unique), bool)
  front = unique[:0]
  for start in range(0, len(unique), block):
    rows = unique[start:start + block]
    alive = ~np.any(np.all(front[None, :, :] <= rows[:, None, :], axis=2), axis=1)
    inside = np.all(rows[None, :, :] <= rows[:, None, :], axis=2)  # [i, j]: j <= i
    np.fill_diagonal(inside, False)
    alive &= ~np.any(inside, axis=1)
    keep[start:start + block] = alive
    front = np.vstack([front, rows[alive]])
  return keep


# -- the threshold search -------------------------------------------------------------
def threshold_space(num_stages: int) -> design.DesignSpace:
  """The design space [0, 1]^(S-1), variables ``t1..t{S-1}``."""
  return design.continuous_space([(0.0, 1.0)] * (num_stages - 1),
                                 names=["t%d" % (s + 1) for s in range(num_stages - 1)])


def search_thresholds(data: CascadeData, strategy: str, evaluations: int = 50, seed: int = 0,
                      num_initial: int = 5, objectives: Sequence[str] | None = None,
                      progress: Callable[[int, int], object] | None = None
                      ) -> tuple[Evaluation, float]:
  """Threshold vectors found by a ``search.optimizer`` strategy.

  The first ``num_initial`` vectors are uniform draws seeded by ``seed``
  (the same for every strategy), then ``strategy`` (a name of
  ``search.optimizer.strategies.STRATEGIES``) proposes one at a time until
  ``evaluations``; ``progress(vectors evaluated, evaluations)`` is called
  after each. Returns ``(Evaluation of all vectors in order, seconds)``.
  """
  objectives = tuple(objectives or data.objectives)
  if int(evaluations) < 1 or int(num_initial) < 1:
    raise errors_lib.invalid_value(
        "evaluations", "evaluations >= 1 and num_initial >= 1",
        shown="evaluations=%r num_initial=%r" % (evaluations, num_initial))
  space = threshold_space(data.num_stages)
  chooser = strategies.make_strategy(strategy, space, len(objectives), seed=seed,
                                     log_objectives=[o != "error" for o in objectives])
  start = time.perf_counter()
  x = space.sample(np.random.default_rng(seed), min(int(num_initial), int(evaluations)))
  y = evaluate(data, x).objective_matrix(objectives)
  while len(x) < int(evaluations):
    if progress:
      progress(len(x), int(evaluations))
    point = chooser.propose(x, y)
    x = np.vstack([x, point[None, :]])
    y = np.vstack([y, evaluate(data, point[None, :]).objective_matrix(objectives)])
  if progress:
    progress(len(x), int(evaluations))
  return evaluate(data, x), time.perf_counter() - start


def hypervolume_fraction(y: np.ndarray, front_y: np.ndarray) -> float:
  """``HV(y) / HV(front_y)`` against ``pareto.reference_point(front_y)``."""
  ref = pareto.reference_point(front_y)
  best = pareto.hypervolume(front_y, ref)
  return float(pareto.hypervolume(y, ref) / best) if best > 0 else float("nan")


# -- choosing the stages ----------------------------------------------------------------
def choose_stages(errors: Any, costs: Any, max_stages: int = 3) -> list[int]:
  """Indices of the stages, cheapest first: the (error, cost) front of the
  candidates; when it has more than ``max_stages`` models, its cheapest and
  its most accurate and, between them, the models closest to even steps in
  log cost."""
  errors, costs = np.asarray(errors, float), np.asarray(costs, float)
  if int(max_stages) < 2:
    raise errors_lib.invalid_value("max_stages", "at least 2", max_stages)
  on_front = np.flatnonzero(front_mask(np.stack([errors, costs], axis=1)))
  order = on_front[np.lexsort((errors[on_front], costs[on_front]))]
  # equal (error, cost) duplicates: keep one
  _, first = np.unique(np.stack([errors[order], costs[order]], 1), axis=0, return_index=True)
  order = order[np.sort(first)]
  if len(order) <= int(max_stages):
    return [int(i) for i in order]
  logc = np.log(costs[order])
  chosen = [0, len(order) - 1]
  for target in np.linspace(logc[0], logc[-1], int(max_stages))[1:-1]:
    free = [k for k in range(len(order)) if k not in chosen]
    chosen.append(min(free, key=lambda k: abs(logc[k] - target)))
  return [int(order[k]) for k in sorted(chosen)]


# -- the front handed to the run time -------------------------------------------------
def centre_thresholds(data: CascadeData, thresholds: np.ndarray) -> np.ndarray:
  """Each threshold moved to the middle of the interval of thresholds with the
  same outcome on ``data`` (between two consecutive confidences of its
  stage; 1 when it answers no image), so a confidence that moves a little
  on the device does not flip an image. Same evaluation as ``thresholds``."""
  t = check_thresholds(thresholds, data.num_stages).copy()
  for s in range(data.num_stages - 1):
    values = np.unique(data.confidence[s])
    at = np.searchsorted(values, t[:, s], side="left")   # first confidence >= t
    none = (t[:, s] >= 1.0) | (at >= len(values))
    hi = values[np.minimum(at, len(values) - 1)]
    lo = np.where(at > 0, values[np.maximum(at - 1, 0)], 0.0)
    mid = 0.5 * (lo + hi)
    ok = (mid > lo) & (mid <= hi) | ((at == 0) & (mid <= hi))
    t[:, s] = np.where(none, 1.0, np.where(ok, mid, hi))
  return t


def front_points(data: CascadeData, evaluations: Mapping[str, Evaluation],
                 test_data: CascadeData | None = None) -> list[dict[str, Any]]:
  """The front of every evaluated vector, one vector per distinct outcome.

  evaluations: ``{label: Evaluation}`` (the grid's, each strategy's).
  Returns dicts sorted by time: ``thresholds`` (centred), ``error``,
  ``time_s_per_image``, ``energy_j_per_image``, ``exit_fractions``,
  ``found_by`` (labels that reached the outcome) and, with ``test_data``
  (the same stages on held-out images), ``test_error`` and
  ``test_exit_fractions``.
  """
  objectives = data.objectives
  labels = [k for k, e in evaluations.items() if len(e.error)]
  if not labels:
    raise errors_lib.invalid_value("evaluations", "at least one evaluated threshold vector")
  y = np.vstack([evaluations[k].objective_matrix(objectives) for k in labels])
  t = np.vstack([evaluations[k].thresholds for k in labels])
  owner = np.concatenate([[k] * len(evaluations[k].error) for k in labels])
  keep = np.flatnonzero(front_mask(y))
  _, first = np.unique(y[keep], axis=0, return_index=True)
  chosen = keep[np.sort(first)]
  centred = evaluate(data, centre_thresholds(data, t[chosen]))
  test = evaluate(test_data, centred.thresholds) if test_data is not None else None
  points = []
  for j, i in enumerate(chosen):
    same = np.all(y == y[i], axis=1)
    point = {"thresholds": centred.thresholds[j].tolist(), "error": float(centred.error[j]),
             "time_s_per_image": float(centred.time_s[j]),
             "energy_j_per_image": (None if centred.energy_j is None
                                    else float(centred.energy_j[j])),
             "exit_fractions": centred.exit_fractions[j].tolist(),
             "found_by": sorted(set(owner[same].tolist()))}
    if test is not None:
      point.update(test_error=float(test.error[j]),
                   test_exit_fractions=test.exit_fractions[j].tolist())
    points.append(point)
  return sorted(points, key=lambda p: (p["time_s_per_image"], p["error"]))
