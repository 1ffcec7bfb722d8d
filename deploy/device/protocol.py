"""The TEA-DNN measurement protocol (Cai et al., 2018, section IV-B).

References:
  Cai, L., Barneche, A.-M., Herbout, A., Foo, C. S., Lin, J., Chandrasekhar,
  V. R., Aly, M. M. S. "TEA-DNN: the Quest for Time-Energy-Accuracy
  Co-optimized Deep Neural Networks", arXiv:1811.12065, 2018, section IV-B
  and Fig. 4.

The paper runs the model over the validation images at batch 100 while a
sampler polls power every 20 ms, splits the trace into *working* and *idle*
with a power threshold (TITAN X 80 W, Jetson TX2 1 W, Movidius NCS 0.45 W),
takes the working span as the inference time and the integral of power over
it as the energy. This module holds the pieces as small functions:

1. ``Sampler``: a thread polling ``PowerSource.read_sample`` on an absolute
   schedule (no drift), producing a ``Trace`` of (t [s], P [W], counter [J]).
2. ``segment_working``: threshold -> contiguous runs -> merge gaps shorter
   than ``merge_gap_s`` (dips between batches) -> drop merged runs with less
   than ``min_run_s`` of above-threshold samples (idle noise spikes, even
   several close together) -> keep runs overlapping the host-timed inference
   window -> span from the first kept run to the last, with each edge placed
   at the linearly interpolated threshold crossing. A spike closer than
   ``merge_gap_s`` to the real run is absorbed into it (inherent ambiguity).
3. ``trapezoid_energy``: E = integral_{t0}^{t1} P(t) dt by the trapezoid rule
   on the samples inside [t0, t1] plus P linearly interpolated at t0 and t1.
   Error: O(dt^2 * |P''|) inside the span; at a step edge the crossing
   interpolation bounds the error by about dt * step / 2 per edge.
4. ``idle_baseline``: median power of the samples outside the span.
5. ``summarize_repeats``: median and spread (min, max, std, CV) of repeats.

Failure modes written down: a threshold above the working power (no span:
``segment_working`` returns None and the caller falls back to the host clock
with a warning); a source averaging over ~1 s (NVML on Ampere+) smears the
edges by that window; a sampling interval longer than the run gives < 2
working samples (energy then unreliable; reported through ``samples``).

Device-side module: Python 3.6 syntax, standard library + numpy only.
"""

import csv
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import errors

# The paper's per-device thresholds (section IV-B) live in deploy.device.devices.
DEFAULT_SAMPLE_INTERVAL_S = 0.02
DEFAULT_MERGE_GAP_S = 0.25
DEFAULT_MIN_RUN_S = 0.1


class Trace(object):
  """A power trace: times ``t`` (s, monotonic clock), watts ``p`` and the
  optional energy counter ``counter_j`` (NaN where absent), all float64
  arrays of one length. ``wall_offset`` converts t to wall-clock seconds."""

  def __init__(self, t: Any, p: Any, counter_j: Any = None, wall_offset: float = 0.0) -> None:
    self.t = np.asarray(t, dtype=np.float64)
    self.p = np.asarray(p, dtype=np.float64)
    if counter_j is None:
      counter_j = np.full(self.t.shape, np.nan)
    self.counter_j = np.asarray(counter_j, dtype=np.float64)
    if not (self.t.shape == self.p.shape == self.counter_j.shape) or self.t.ndim != 1:
      raise ValueError("Trace arrays must be 1-D of one length; received t%s p%s "
                       "counter%s." % (self.t.shape, self.p.shape, self.counter_j.shape))
    self.wall_offset = float(wall_offset)

  def __len__(self) -> int:
    return int(self.t.size)


class Sampler(object):
  """Polls ``source.read_sample()`` every ``interval_s`` in a thread.

  Ticks are scheduled at ``t0 + k * interval_s`` so the sampling does not
  drift; a late tick is taken at once and the schedule skips missed slots.
  Use as a context manager or call ``start()`` / ``stop()`` (returns the
  ``Trace``)."""

  def __init__(self, source: Any, interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
               clock: Callable[[], float] = time.monotonic) -> None:
    if not interval_s > 0:
      raise errors.invalid_value("sample_interval_s", "a positive number of seconds", interval_s)
    self.source, self.interval_s, self.clock = source, float(interval_s), clock
    self._t = []  # type: List[float]
    self._p = []  # type: List[float]
    self._c = []  # type: List[float]
    self._stop = threading.Event()
    self._thread = None  # type: Optional[threading.Thread]
    self._error = None  # type: Optional[Exception]

  def _loop(self) -> None:
    try:
      self.source.read_sample()  # prime: counter sources (RAPL) report power
    except Exception as e:       # since the previous read, which may be stale
      self._error = e
      return
    next_tick = self.clock()
    while not self._stop.is_set():
      before = self.clock()
      try:
        power, counter = self.source.read_sample()
      except Exception as e:  # surfaced by stop()
        self._error = e
        return
      self._t.append(0.5 * (before + self.clock()))  # stamp: middle of the read
      self._p.append(np.nan if power is None else power)
      self._c.append(np.nan if counter is None else counter)
      next_tick += self.interval_s
      now = self.clock()
      if next_tick < now:
        next_tick = now
      self._stop.wait(next_tick - now)

  def start(self) -> "Sampler":
    self._wall_offset = time.time() - self.clock()
    self._thread = threading.Thread(target=self._loop, name="power-sampler")
    self._thread.daemon = True
    self._thread.start()
    return self

  def stop(self) -> Trace:
    self._stop.set()
    self._thread.join()  # type: ignore[union-attr]  # started
    if self._error is not None:
      raise self._error
    return Trace(self._t, self._p, self._c, self._wall_offset)

  def __enter__(self) -> "Sampler":
    return self.start()

  def __exit__(self, *exc: Any) -> None:
    if not self._stop.is_set():
      self._stop.set()
      self._thread.join()  # type: ignore[union-attr]  # started


def runs_above(p: np.ndarray, threshold_w: float) -> List[Tuple[int, int]]:
  """Index runs ``[(i0, i1), ...]`` (inclusive) where ``p > threshold_w``."""
  above = np.concatenate([[False], np.asarray(p) > threshold_w, [False]])
  edges = np.flatnonzero(np.diff(above.astype(np.int8)))
  return [(int(a), int(b) - 1) for a, b in zip(edges[0::2], edges[1::2])]


def merge_runs(t: np.ndarray, runs: Sequence[Tuple[int, int]],
               merge_gap_s: float) -> List[Tuple[int, int]]:
  """Merge runs whose gap ``t[next_start] - t[prev_end]`` is <= merge_gap_s."""
  merged = []  # type: List[Tuple[int, int]]
  for run in runs:
    if merged and t[run[0]] - t[merged[-1][1]] <= merge_gap_s:
      merged[-1] = (merged[-1][0], run[1])
    else:
      merged.append(run)
  return merged


def crossing_time(t: np.ndarray, p: np.ndarray, i_below: int, i_above: int,
                  threshold_w: float) -> float:
  """Time where P crosses ``threshold_w`` between samples i_below and i_above,
  by linear interpolation (the sample time itself when out of range)."""
  n = len(t)
  if not (0 <= i_below < n) or p[i_below] >= threshold_w or np.isnan(p[i_below]):
    return float(t[i_above])
  frac = (threshold_w - p[i_below]) / (p[i_above] - p[i_below])
  return float(t[i_below] + frac * (t[i_above] - t[i_below]))


def segment_working(trace: Trace, threshold_w: float, merge_gap_s: float = DEFAULT_MERGE_GAP_S,
                    min_run_s: float = DEFAULT_MIN_RUN_S,
                    within: Optional[Tuple[float, float]] = None
                    ) -> Optional[Tuple[float, float, int, int]]:
  """Working span ``(t_start, t_end, i_first, i_last)`` of a trace, or None.

  ``within``: optional ``(t0, t1)`` host-timed inference window; only runs
  overlapping it count (idle spikes away from the run are ignored), and the
  minimum active time becomes ``min(min_run_s, (t1 - t0) / 2)`` so that a
  run shorter than ``min_run_s`` is still found inside its window.
  ``i_first``/``i_last`` index the first/last working samples.
  """
  t, p = trace.t, trace.p
  above = p > threshold_w
  dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
  runs = merge_runs(t, runs_above(p, threshold_w), merge_gap_s)
  if within is not None:
    runs = [r for r in runs if t[r[1]] >= within[0] and t[r[0]] <= within[1]]
    min_run_s = min(min_run_s, 0.5 * (within[1] - within[0]))
  runs = [r for r in runs if np.count_nonzero(above[r[0]:r[1] + 1]) * dt >= min_run_s]
  if not runs:
    return None
  i0, i1 = runs[0][0], runs[-1][1]
  t_start = crossing_time(t, p, i0 - 1, i0, threshold_w)
  t_end = crossing_time(t, p, i1 + 1, i1, threshold_w)
  return t_start, t_end, i0, i1


def interp_at(t: np.ndarray, y: np.ndarray, when: float) -> float:
  """y linearly interpolated at time ``when`` (clamped to the trace)."""
  return float(np.interp(when, t, y))


def trapezoid_energy(trace: Trace, t_start: float, t_end: float) -> float:
  """Joules: trapezoid integral of P over [t_start, t_end] (module doc, 3)."""
  if t_end < t_start:
    raise ValueError("Invalid window: t_end %.6f < t_start %.6f." % (t_end, t_start))
  t, p = trace.t, trace.p
  keep = (t > t_start) & (t < t_end) & ~np.isnan(p)
  valid = ~np.isnan(p)
  ts = np.concatenate([[t_start], t[keep], [t_end]])
  ps = np.concatenate([[interp_at(t[valid], p[valid], t_start)], p[keep],
                       [interp_at(t[valid], p[valid], t_end)]])
  return float(np.sum(0.5 * (ps[1:] + ps[:-1]) * np.diff(ts)))


def counter_energy(trace: Trace, t_start: float, t_end: float) -> Optional[float]:
  """Joules from the energy counter over [t_start, t_end], or None."""
  valid = ~np.isnan(trace.counter_j)
  if valid.sum() < 2:
    return None
  t, c = trace.t[valid], trace.counter_j[valid]
  return interp_at(t, c, t_end) - interp_at(t, c, t_start)


def idle_baseline(trace: Trace, span: Optional[Tuple[float, float, int, int]]) -> Optional[float]:
  """Median watts of the samples outside the working span (None if none)."""
  p = trace.p
  mask = ~np.isnan(p)
  if span is not None:
    inside = np.zeros(p.shape, dtype=bool)
    inside[span[2]:span[3] + 1] = True
    mask &= ~inside
  return float(np.median(p[mask])) if mask.any() else None


def auto_threshold(trace: Trace, window: Tuple[float, float]) -> Optional[float]:
  """Midpoint between the idle median (samples outside the host window) and
  the working median (inside): for sources with no paper threshold (CPU)."""
  t, p = trace.t, trace.p
  inside = (t >= window[0]) & (t <= window[1]) & ~np.isnan(p)
  outside = ((t < window[0]) | (t > window[1])) & ~np.isnan(p)
  if not inside.any() or not outside.any():
    return None
  return float(0.5 * (np.median(p[inside]) + np.median(p[outside])))


def summarize_repeats(values: Sequence[Optional[float]]) -> Optional[Dict[str, Any]]:
  """Median and spread of repeated measurements (None entries ignored)."""
  vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
  if vals.size == 0:
    return None
  mean = float(vals.mean())
  std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
  return {"median": float(np.median(vals)), "min": float(vals.min()),
          "max": float(vals.max()), "mean": mean, "std": std,
          "cv": std / mean if mean else None, "n": int(vals.size),
          "values": [float(v) for v in vals]}


def write_trace_csv(path: str, trace: Trace,
                    span: Optional[Tuple[float, float, int, int]] = None) -> str:
  """Raw trace as CSV: t_s (from the first sample), wall_time_s, power_w,
  energy_counter_j (empty when absent), working (0/1)."""
  t0 = trace.t[0] if len(trace) else 0.0
  working = np.zeros(len(trace), dtype=int)
  if span is not None:
    working[span[2]:span[3] + 1] = 1
  with open(path, "w") as f:
    out = csv.writer(f)
    out.writerow(["t_s", "wall_time_s", "power_w", "energy_counter_j", "working"])
    for i in range(len(trace)):
      c = trace.counter_j[i]
      out.writerow(["%.6f" % (trace.t[i] - t0), "%.6f" % (trace.t[i] + trace.wall_offset),
                    "" if np.isnan(trace.p[i]) else "%.6f" % trace.p[i],
                    "" if np.isnan(c) else "%.6f" % c, working[i]])
  return path


def read_trace_csv(path: str) -> Trace:
  """Inverse of ``write_trace_csv`` (times relative to the first sample)."""
  t, p, c = [], [], []
  with open(path) as f:
    for row in csv.DictReader(f):
      t.append(float(row["t_s"]))
      p.append(float(row["power_w"]) if row["power_w"] else np.nan)
      c.append(float(row["energy_counter_j"]) if row["energy_counter_j"] else np.nan)
  return Trace(t, p, c)
