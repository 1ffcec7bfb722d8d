"""One measurement: a runtime, a power source and images through the
protocol of ``deploy.device.protocol`` (warm-up, idle padding, repeats, analysis).

``run_measurement`` is shared by the host CLI (``deploy.measure``), the
device scripts (``deploy/{cpu,gpu,jetson,myriad}``) and the agent, and
returns the issue's JSON object. Device-side module: Python 3.6 syntax,
standard library + numpy.
"""

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import contention
from . import devices
from . import errors
from . import protocol
from . import trace_plot

DEFAULT_REPEATS = 3
DEFAULT_WARMUP_BATCHES = 5


def make_batches(images: np.ndarray, batch_size: int,
                 fixed_batch_size: Optional[int] = None) -> List[np.ndarray]:
  """Contiguous float32 batches of ``batch_size``; the last one is padded
  with zeros when the runtime needs a fixed batch (TensorRT/MYRIAD)."""
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.float32:
    raise errors.invalid_value("images", "float32 NHWC normalized images (N, H, W, C)",
                               shown="dtype=%s shape=%s" % (images.dtype, images.shape))
  if int(batch_size) < 1:
    raise errors.invalid_value("batch_size", "a positive integer", batch_size)
  if fixed_batch_size and fixed_batch_size != batch_size:
    raise ValueError("The model was built for batch %d; received batch_size=%d. "
                     "Re-export with the batch size you measure at."
                     % (fixed_batch_size, batch_size))
  batches = []
  for i in range(0, len(images), batch_size):
    batch = np.ascontiguousarray(images[i:i + batch_size])
    if fixed_batch_size and len(batch) < batch_size:
      pad = np.zeros((batch_size - len(batch),) + batch.shape[1:], np.float32)
      batch = np.concatenate([batch, pad])
    batches.append(batch)
  return batches


def predict_top1(runtime: Any, images: np.ndarray, batch_size: int) -> List[int]:
  """Untimed argmax per image of ``runtime`` on ``images`` (a list of ints):
  the deployed artifact's own predictions, on the device. A runtime compiled
  for a fixed batch (MYRIAD, a static TensorRT engine) gets whole batches,
  the last one padded, whose padding is dropped from the answer."""
  out = []  # type: List[int]
  for batch in make_batches(images, int(batch_size), runtime.fixed_batch_size):
    scores = np.asarray(runtime.predict(batch))
    take = min(len(scores), len(images) - len(out))
    out.extend(int(k) for k in np.argmax(scores.reshape(len(scores), -1), axis=-1)[:take])
  return out


def choose_threshold(device: str, threshold_w: Optional[float]) -> Tuple[Optional[float], str]:
  """(threshold_w or None, source): user value, the paper's per-device
  value, or None = decided from the trace (``protocol.auto_threshold``)."""
  if threshold_w is not None:
    if not threshold_w > 0:
      raise errors.invalid_value("threshold_w", "positive watts", threshold_w)
    return float(threshold_w), "user"
  if devices.paper_threshold_w(device) is not None:
    return devices.paper_threshold_w(device), "paper"
  return None, "auto"


def _run_once(runtime: Any, power: Any, batches: Sequence[np.ndarray], interval_s: float,
              idle_s: float,
              clock: Callable[[], float]) -> Tuple[protocol.Trace, Tuple[float, float], Any]:
  """Run all batches once with idle padding; returns (trace, host window)."""
  sampler = None
  if power.measures_power and power.polled:
    sampler = protocol.Sampler(power, interval_s, clock).start()
  wall_offset = time.time() - clock()
  time.sleep(idle_s)
  meter = contention.CpuMeter().start()
  h0 = clock()
  for batch in batches:
    runtime.predict(batch)
  h1 = clock()
  cpu = meter.stop()
  time.sleep(idle_s)
  if sampler is not None:
    trace = sampler.stop()
  elif power.measures_power:
    end = clock()
    wall_t, watts = power.trace_between(h0 - idle_s + wall_offset, end + wall_offset)
    trace = protocol.Trace(np.asarray(wall_t) - wall_offset, watts, None, wall_offset)
  else:
    trace = protocol.Trace([], [], None, wall_offset)
  return trace, (h0, h1), cpu


def analyze(trace: protocol.Trace, window: Tuple[float, float], threshold_w: Optional[float],
            merge_gap_s: float = protocol.DEFAULT_MERGE_GAP_S,
            min_run_s: float = protocol.DEFAULT_MIN_RUN_S) -> Dict[str, Any]:
  """Time, energy, idle power of one run (see ``deploy.device.protocol``)."""
  host_time = window[1] - window[0]
  out = {"host_time_s": host_time, "time_s": host_time, "time_source": "host_clock",
         "energy_j": None, "counter_energy_j": None, "idle_power_w": None,
         "samples": 0, "threshold_w": threshold_w, "span": None, "warning": None}
  if len(trace) == 0:
    return out
  if threshold_w is None:
    threshold_w = protocol.auto_threshold(trace, window)
    out["threshold_w"] = threshold_w
  span = None
  if threshold_w is not None:
    span = protocol.segment_working(trace, threshold_w, merge_gap_s, min_run_s, window)
  if span is None:
    out["warning"] = ("no working span above threshold %s W; time from the host "
                      "clock, energy over the host window" % threshold_w)
    t0, t1 = window
    inside = (trace.t >= t0) & (trace.t <= t1)
    out["samples"] = int(inside.sum())
  else:
    t0, t1 = span[0], span[1]
    out.update(time_s=t1 - t0, time_source="power_threshold", span=span,
               samples=span[3] - span[2] + 1)
  if len(trace) >= 2:
    out["energy_j"] = protocol.trapezoid_energy(trace, t0, t1)
    out["counter_energy_j"] = protocol.counter_energy(trace, t0, t1)
  out["idle_power_w"] = protocol.idle_baseline(trace, span)
  return out


def run_measurement(runtime: Any, power: Any, images: np.ndarray, device: str,
                    batch_size: int = 100, threshold_w: Optional[float] = None,
                    sample_interval_s: float = protocol.DEFAULT_SAMPLE_INTERVAL_S,
                    repeats: int = DEFAULT_REPEATS, warmup_batches: int = DEFAULT_WARMUP_BATCHES,
                    idle_s: Optional[float] = None, trace_dir: Optional[str] = None,
                    merge_gap_s: float = protocol.DEFAULT_MERGE_GAP_S,
                    min_run_s: float = protocol.DEFAULT_MIN_RUN_S,
                    progress: Optional[Callable[..., Any]] = None,
                    clock: Callable[[], float] = time.monotonic,
                    contention_policy: str = contention.DEFAULT_POLICY,
                    contention_threshold: float = contention.DEFAULT_THRESHOLD,
                    max_remeasures: int = contention.DEFAULT_MAX_REMEASURES,
                    remeasure_pause_s: float = contention.DEFAULT_PAUSE_S) -> Dict[str, Any]:
  """Measure ``runtime`` on ``images``; returns the result dict.

  Contention (``deploy.device.contention``): each repeat records the share of the
  machine that other processes used while it was timed; a contended repeat
  is re-measured, flagged or refused per ``contention_policy``.
  """
  devices.device(device)  # a clear error for an unknown kind
  contention.check_policy(contention_policy, contention_threshold, max_remeasures)
  if int(repeats) < 1 or int(warmup_batches) < 0:
    raise ValueError("Expected repeats >= 1 and warmup_batches >= 0. Received "
                     "repeats=%r warmup_batches=%r" % (repeats, warmup_batches))
  threshold, threshold_source = choose_threshold(device, threshold_w)
  batches = make_batches(images, int(batch_size), runtime.fixed_batch_size)
  if idle_s is None:
    idle_s = max(1.0, 3.0 * power.averaging_window_s) if power.measures_power else 0.0
  started = time.time()
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  for i in range(int(warmup_batches)):
    runtime.predict(batches[i % len(batches)])
  runs, remeasured = [], 0
  for r in range(int(repeats)):
    for attempt in range(int(max_remeasures) + 1):
      trace, window, cpu = _run_once(runtime, power, batches, sample_interval_s, idle_s,
                                     clock)
      busy = contention.is_contended(cpu["other_cpu_share"], contention_threshold)
      if not busy or contention_policy != "remeasure" or attempt == int(max_remeasures):
        break
      remeasured += 1
      time.sleep(remeasure_pause_s)
    if busy and contention_policy == "refuse":
      raise contention.ContentionError(
          "Other processes used %.0f%% of this machine's CPUs while repeat %d was timed "
          "(threshold %.0f%%); measure when the machine is quiet, or use "
          "contention_policy=remeasure|warn." % (100 * cpu["other_cpu_share"], r + 1,
                                                  100 * contention_threshold))
    stats = analyze(trace, window, threshold, merge_gap_s, min_run_s)
    stats.update(process_cpu_s=cpu["own_cpu_s"], other_cpu_share=cpu["other_cpu_share"],
                 contended=busy)
    if busy:
      note = ("contended measurement: other processes used %.0f%% of the CPUs while a repeat "
              "was timed (after %d re-measurement(s)); its time is not comparable with quiet "
              "ones" % (100 * cpu["other_cpu_share"], attempt))
      stats["warning"] = "; ".join(w for w in (stats["warning"], note) if w)
    if power.measures_power and len(trace) < 2:
      stats["warning"] = ("%s returned fewer than 2 power samples in the run's window; "
                          "energy is not available" % power.name)
    runs.append((trace, window, stats))
    if progress is not None:
      progress(r + 1, int(repeats), time.time() - started)
  result = _assemble(runs, power, runtime, device, images, batch_size, threshold,
                     threshold_source, sample_interval_s, warmup_batches, idle_s)
  shares = [a["other_cpu_share"] for _, _, a in runs if a["other_cpu_share"] is not None]
  result.update(contended=any(a["contended"] for _, _, a in runs),
                other_cpu_share=max(shares) if shares else None, remeasured=remeasured,
                contention_policy=contention_policy, contention_threshold=contention_threshold,
                time_cv=(result["time_s_stats"] or {}).get("cv"))
  result["started_at"], result["finished_at"] = started, time.time()
  result["loadavg_at_start"] = list(load) if load else None
  if trace_dir:
    _write_traces(trace_dir, runs, result)
  return result


# Which repeat a measurement reports: its fastest. Other processes on the
# machine only ever slow a repeat down, so the fastest is the one they touched
# least: on this 2-core box, under two busy-looping processes, the median of
# 3 repeats came out 5.7x its quiet value and the fastest 4.7x (BENCHMARKS.md,
# "Which repeat is reported"). Time and energy come from that one repeat, so
# that energy stays the integral over the reported span.
TIME_STATISTIC = "fastest repeat"


def _fastest_index(values: Sequence[float]) -> int:
  return int(np.argmin(values))


def _assemble(runs: Sequence[Tuple[protocol.Trace, Tuple[float, float], Dict[str, Any]]],
              power: Any, runtime: Any, device: str, images: np.ndarray, batch_size: int,
              threshold: Optional[float], threshold_source: str, interval_s: float,
              warmup_batches: int, idle_s: float) -> Dict[str, Any]:
  stats = [a for _, _, a in runs]
  m = _fastest_index([a["time_s"] for a in stats])
  best = stats[m]
  time_stats = protocol.summarize_repeats([a["time_s"] for a in stats])
  energy_stats = protocol.summarize_repeats([a["energy_j"] for a in stats])
  energy = best["energy_j"] if energy_stats else None
  time_s = float(best["time_s"])
  powers = [a["energy_j"] / a["time_s"] for a in stats
            if a["energy_j"] is not None and a["time_s"] > 0]
  warnings = list(power.warnings()) + sorted(set(a["warning"] for a in stats if a["warning"]))
  return {
      "time_s": time_s, "energy_j": energy, "images": int(len(images)),
      "batch_size": int(batch_size),
      "mean_power_w": float(np.median(powers)) if powers else None,
      "idle_power_w": best["idle_power_w"], "samples": best["samples"],
      "energy_above_idle_j": (energy - best["idle_power_w"] * time_s
                              if energy is not None and best["idle_power_w"] is not None
                              else None),
      "threshold_w": best["threshold_w"] if best["threshold_w"] is not None else threshold,
      "threshold_source": threshold_source, "power_source": power.name,
      "runtime": runtime.name, "device": device,
      "time_source": best["time_source"], "host_time_s": float(np.median([a["host_time_s"] for a in stats])),
      "counter_energy_j": best["counter_energy_j"],
      "power_averaging_s": power.averaging_window_s,
      "repeats": len(runs), "reported_repeat": m, "time_statistic": TIME_STATISTIC, "warmup_batches": int(warmup_batches),
      "sample_interval_s": float(interval_s), "idle_padding_s": float(idle_s),
      "time_s_stats": time_stats, "energy_j_stats": energy_stats,
      "host_time_s_stats": protocol.summarize_repeats([a["host_time_s"] for a in stats]),
      # CPU seconds this process used during each timed loop (all threads):
      # far below host_time_s x threads means other processes took the cores
      "process_cpu_s_stats": protocol.summarize_repeats([a["process_cpu_s"] for a in stats]),
      "power_info": power.describe(), "runtime_info": runtime.describe(),
      "warnings": warnings, "trace": None, "trace_png": None}


def _write_traces(trace_dir: str,
                  runs: Sequence[Tuple[protocol.Trace, Tuple[float, float], Dict[str, Any]]],
                  result: Dict[str, Any]) -> None:
  if not os.path.isdir(trace_dir):
    os.makedirs(trace_dir)
  paths = []
  for r, (trace, window, a) in enumerate(runs):
    path = os.path.join(trace_dir, "trace_repeat%d.csv" % r)
    protocol.write_trace_csv(path, trace, a["span"])
    paths.append(path)
  result["trace"] = paths[result["reported_repeat"]]
  result["traces"] = paths
  trace, window, a = runs[result["reported_repeat"]]
  if len(trace):
    png = os.path.join(trace_dir, "trace.png")
    if trace_plot.plot_trace(png, trace, a["span"], a["threshold_w"], window, result):
      result["trace_png"] = png
    else:
      result["warnings"].append("matplotlib is not installed: no trace PNG.")
  with open(os.path.join(trace_dir, "result.json"), "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
