"""Check a measuring machine before a search: ``python3 -m deploy.device.selfcheck``.

Run it on the board (or the GPU server) that will measure, as the agent
would run there, or from the search host against a running agent (the host's
``python -m deploy.selfcheck``, which adds ``--device_url`` through the
host-side agent client)::

  python3 -m deploy.device.selfcheck --device=jetson --flagfile=flags/paper_jetson_tx2.cfg
  python3 -m deploy.device.selfcheck --device=gpu --gpu_index=0 --json=selfcheck.json
  python -m deploy.selfcheck --device_url=http://127.0.0.1:8470 --token_file=token.txt \\
      --flagfile=flags/paper_movidius.cfg

What it does, locally:

1. probes every runtime and power source of the device kind as the search's
   handshake does (``deploy.device.capabilities``): versions, what each reads, the
   precisions each deploys here (TensorRT: the builder's fast FP16/INT8);
2. on a fresh thread (the agent's situation: it serves each request on a
   thread of its own), builds, loads and times a tiny bundled CNN
   (``deploy.device.selfcheck_model``) on each runtime that reads ONNX, and
   compares its logits with NumPy's (the deployed numerics, e.g. MYRIAD's
   FP16);
3. reads the power source idle for ``--idle_s``, then under that model's
   load for ``--load_s``, and says whether the threshold (``--threshold_w``,
   else the paper's for the kind) lies between them; if not, it suggests
   the midpoint of this board's idle and loaded power (a tiny model may not
   load a big GPU: the protocol then falls back to the host clock);
4. where the source has an energy counter (NVML on Volta and newer:
   ``nvmlDeviceGetTotalEnergyConsumption``), compares the integral of the
   sampled power with the counter over the same window;
5. prints a table and, for each ``--flagfile``, a verdict: can this machine
   run that experiment (its runtime, precisions, power source and energy,
   batch rule)? It exits 1 when one cannot run, or (without a flagfile)
   when the device's default runtime does not work; 0 otherwise.

Against an agent (``--device_url``) the same questions are asked of its
health answer, and the model is measured through it, on each runtime,
with the protocol (the agent's idle padding and load give the power).

Device-side module: Python 3.6 syntax, standard library + numpy (+ the
runtimes being checked).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import capabilities
from . import device_main
from . import devices
from . import protocol
from . import selfcheck_model

BATCH = 16
#: relative agreement of the integrated power with an energy counter that counts as agreeing
COUNTER_TOLERANCE = 0.1


def _images(count: int, seed: int = 1) -> np.ndarray:
  rng = np.random.RandomState(seed)
  return rng.standard_normal((count,) + selfcheck_model.INPUT_SHAPE).astype(np.float32)


def _on_fresh_thread(fn: Callable[[], Any]) -> Any:
  """``fn()``'s value, run on a new thread; its exception re-raised here."""
  box = {}

  def run() -> None:
    try:
      box["value"] = fn()
    except BaseException as e:  # pylint: disable=broad-except  (re-raised below)
      box["error"] = e
  thread = threading.Thread(target=run, name="selfcheck-request")
  thread.start()
  thread.join()
  if "error" in box:
    raise box["error"]
  return box["value"]


def time_runtime(device: str, runtime: str, model_path: str, images: np.ndarray, batch_size: int,
                 min_s: float = 0.5, work_dir: Optional[str] = None) -> Dict[str, Any]:
  """Load ``model_path`` on ``runtime`` and time its batches, on a fresh
  thread. Returns ``{"load_s", "batches", "ms_per_batch", "images_per_s",
  "max_abs_diff", "error"}``."""
  options = {}
  if runtime == "tensorrt":
    options["engine_cache_dir"] = os.path.join(work_dir or tempfile.gettempdir(), "engines")

  def work() -> Dict[str, Any]:
    start = time.monotonic()
    rt = device_main.build_runtime(device, runtime, model_path, batch_size, **options)
    try:
      load_s = time.monotonic() - start
      batch = np.ascontiguousarray(images[:batch_size])
      logits = np.asarray(rt.predict(batch))[:len(batch)]
      count, start = 0, time.monotonic()
      while count < 3 or time.monotonic() - start < min_s:
        rt.predict(batch)
        count += 1
      elapsed = time.monotonic() - start
    finally:
      rt.close()
    diff = float(np.max(np.abs(logits - selfcheck_model.reference_logits(batch))))
    return {"load_s": load_s, "batches": count, "ms_per_batch": 1000.0 * elapsed / count,
            "images_per_s": count * len(batch) / elapsed, "max_abs_diff": diff, "error": None}
  try:
    return _on_fresh_thread(work)
  except Exception as e:  # pylint: disable=broad-except  (reported in the table)
    return {"load_s": None, "batches": 0, "ms_per_batch": None, "images_per_s": None,
            "max_abs_diff": None, "error": "%s: %s" % (type(e).__name__, e)}


class _Load(object):
  """The model's batches run in a loop on a thread until stopped."""

  def __init__(self, runtime: Any, batch: np.ndarray) -> None:
    self.runtime, self.batch = runtime, batch
    self._stop = threading.Event()
    self.thread = threading.Thread(target=self._run, name="selfcheck-load")
    self.error = None  # type: Optional[Exception]

  def _run(self) -> None:
    try:
      while not self._stop.is_set():
        self.runtime.predict(self.batch)
    except Exception as e:  # pylint: disable=broad-except  (reported by stop())
      self.error = e

  def __enter__(self) -> "_Load":
    self.thread.start()
    return self

  def __exit__(self, *exc: Any) -> None:
    self._stop.set()
    self.thread.join()
    if self.error is not None:
      raise self.error


def _trace(power: Any, seconds: float,
           interval_s: float) -> Tuple[protocol.Trace, Tuple[float, float]]:
  """``(trace, (t0, t1))``: the source's samples over ``seconds`` and the
  window on the trace's clock."""
  clock = time.monotonic
  offset = time.time() - clock()
  sampler = protocol.Sampler(power, interval_s, clock).start() if power.polled else None
  t0 = clock()
  time.sleep(seconds)
  t1 = clock()
  if sampler is not None:
    return sampler.stop(), (t0, t1)
  time.sleep(min(1.0, seconds))  # let a log source write its last readings
  wall_t, watts = power.trace_between(t0 + offset, t1 + offset)
  return protocol.Trace(np.asarray(wall_t) - offset, watts, None, offset), (t0, t1)


def _window_stats(trace: protocol.Trace,
                  window: Tuple[float, float]) -> Tuple[Optional[float], int]:
  inside = (trace.t >= window[0]) & (trace.t <= window[1]) & ~np.isnan(trace.p)
  if inside.sum() < 1:
    return None, 0
  return float(np.median(trace.p[inside])), int(inside.sum())


def check_power(device: str, answer: Dict[str, Any], power_options: Optional[Dict[str, Any]],
                runtime_name: str, model_path: str, threshold_w: Optional[float],
                idle_s: float = 2.0, load_s: float = 3.0, interval_s: float = 0.02,
                work_dir: Optional[str] = None) -> Dict[str, Any]:
  """Idle and loaded power, the threshold's verdict and the energy counter
  cross-check (module doc, 3-4)."""
  out = {"source": answer["name"], "readable": bool(answer["readable"]),
         "error": answer.get("error"), "idle_w": None, "load_w": None,
         "threshold_w": threshold_w, "separates": None, "suggested_threshold_w": None,
         "integrated_j": None, "counter_j": None, "counter_ratio": None, "samples": 0}
  if not answer["readable"] or answer["name"] == "none":
    return out
  power = device_main.build_power(answer["name"], device, **(power_options or {}))
  options = {}
  if runtime_name == "tensorrt":
    options["engine_cache_dir"] = os.path.join(work_dir or tempfile.gettempdir(), "engines")
  try:
    idle_trace, idle_window = _trace(power, idle_s, interval_s)
    out["idle_w"], idle_n = _window_stats(idle_trace, idle_window)

    def loaded() -> Tuple[protocol.Trace, Tuple[float, float]]:
      rt = device_main.build_runtime(device, runtime_name, model_path, BATCH, **options)
      try:
        with _Load(rt, _images(BATCH)):
          return _trace(power, load_s, interval_s)
      finally:
        rt.close()
    load_trace, load_window = _on_fresh_thread(loaded)
  finally:
    power.close()
  margin = 0.1 * (load_window[1] - load_window[0])  # ramps at both ends left out
  inner = (load_window[0] + margin, load_window[1] - margin)
  out["load_w"], load_n = _window_stats(load_trace, inner)
  out["samples"] = idle_n + load_n
  if len(load_trace) >= 2:
    out["integrated_j"] = protocol.trapezoid_energy(load_trace, inner[0], inner[1])
    out["counter_j"] = protocol.counter_energy(load_trace, inner[0], inner[1])
  return judge(out)


def judge(out: Dict[str, Any]) -> Dict[str, Any]:
  """The counter's agreement and the threshold's verdict of a power check:
  ``separates`` when idle < threshold < load; else, when the load raises the
  power measurably (by 2%), the midpoint of idle and load is suggested."""
  if out["integrated_j"] and out["counter_j"]:
    out["counter_ratio"] = out["integrated_j"] / out["counter_j"]
  idle, load, threshold = out["idle_w"], out["load_w"], out["threshold_w"]
  if idle is not None and load is not None:
    if threshold is not None:
      out["separates"] = bool(idle < threshold < load)
    if load > idle * 1.02 and (threshold is None or not out["separates"]):
      out["suggested_threshold_w"] = 0.5 * (idle + load)
  return out


def check_local(device: str, power_source: str = devices.AUTO,
                power_options: Optional[Dict[str, Any]] = None, threshold_w: Optional[float] = None,
                idle_s: float = 2.0, load_s: float = 3.0,
                interval_s: float = 0.02) -> Dict[str, Any]:
  """The self-check of this machine as device ``device`` (a JSON-able dict)."""
  kind = devices.device(device)
  # A device check: the runtimes that can run on a board (not the host's Keras).
  answer = capabilities.probe(device, power_source, power_options,
                              [r for r in kind.runtimes if not devices.runtime(r).host_only])
  work_dir = tempfile.mkdtemp(prefix="tea-selfcheck-")
  try:
    model = selfcheck_model.write(os.path.join(work_dir, "selfcheck.onnx"))
    batch = BATCH
    images = _images(batch)
    for name, runtime_answer in answer["runtimes"].items():
      if runtime_answer["available"] and "onnx" in runtime_answer["reads"]:
        runtime_answer["timing"] = time_runtime(device, name, model, images, batch,
                                                work_dir=work_dir)
    default = _working_runtime(answer)
    threshold = threshold_w if threshold_w is not None else devices.paper_threshold_w(device)
    answer["power_check"] = (check_power(device, answer["power"], power_options, default, model,
                                         threshold, idle_s, load_s, interval_s, work_dir)
                             if default else None)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  answer["mode"] = "local"
  return answer


def _working_runtime(answer: Dict[str, Any]) -> Optional[str]:
  """The first runtime of the kind whose timing passed (None: none did)."""
  for name in devices.device(answer["device"]).runtimes:
    timing = (answer["runtimes"].get(name) or {}).get("timing")
    if timing and timing["error"] is None:
      return name
  return None


# -- experiments -----------------------------------------------------------------
def read_flagfile(path: str, _stack: Tuple[str, ...] = ()) -> Dict[str, str]:
  """``{flag: value}`` of a flagfile (``--name=value`` lines, ``#`` comments,
  ``--flagfile=`` includes resolved beside the including file; later wins).

  Read here rather than by absl: the device side runs on the board without
  absl (standard library only), and includes are resolved as the host's
  ``search.flags.expand_flagfiles`` resolves them."""
  if not os.path.isfile(path):
    raise ValueError("--flagfile=%s: no such file." % path)
  if os.path.realpath(path) in _stack:
    raise ValueError("--flagfile=%s includes itself." % path)
  out = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("--"):
        continue
      name, _, value = line[2:].partition("=")
      if name == "flagfile":
        local = os.path.join(os.path.dirname(path), os.path.basename(value))
        out.update(read_flagfile(local if os.path.isfile(local) else value,
                                 _stack + (os.path.realpath(path),)))
      else:
        out[name] = value
  return out


def verdict(answer: Dict[str, Any], flags: Dict[str, str],
            name: str = "experiment") -> Dict[str, Any]:
  """``{"experiment", "runs": bool, "reasons": [...], "warnings": [...]}``:
  whether the checked machine can measure what ``flags`` (a flagfile's
  values) asks."""
  reasons, warnings = [], []
  kind = answer["device"]
  wanted = flags.get("device", "cpu")
  if wanted != devices.REMOTE and wanted != kind:
    reasons.append("it measures on --device=%s; this machine was checked as %s"
                   % (wanted, kind))
  runtime = flags.get("runtime") or devices.default_runtime(kind)
  r = answer["runtimes"].get(runtime)
  if r is None:
    reasons.append("runtime=%s does not measure on a %s" % (runtime, kind))
  elif not r["available"]:
    reasons.append("runtime=%s is not available: %s" % (runtime, r["error"]))
  else:
    timing = r.get("timing") or {}
    if timing.get("error"):
      reasons.append("runtime=%s failed to run the check model: %s" % (runtime, timing["error"]))
    precisions = [p for p in flags.get("precisions", "fp32").split(",") if p]
    missing = [p for p in precisions if p not in r.get("precisions", precisions)]
    if missing:
      reasons.append("runtime=%s cannot deploy %s here (it deploys %s)"
                     % (runtime, ",".join(missing), ",".join(r.get("precisions", []))))
  power = answer.get("power_check") or {}
  objectives = flags.get("objectives", "error,time,energy").split(",")
  source = flags.get("power_source", devices.AUTO)
  readable = bool(answer["power"]["readable"]) and answer["power"]["name"] != "none"
  if "energy" in objectives and flags.get("optional_energy") not in ("true", "True", "1", ""):
    if not readable:
      reasons.append("energy is an objective but no power source reads here (%s)"
                     % (answer["power"].get("error") or "none configured"))
    elif source not in (devices.AUTO, answer["power"]["name"]):
      reasons.append("it asks for power_source=%s; this machine reads %s"
                     % (source, answer["power"]["name"]))
  threshold = flags.get("power_threshold_w")
  if threshold and power.get("idle_w") is not None and power.get("load_w") is not None:
    value = float(threshold)
    if not power["idle_w"] < value < power["load_w"]:
      warnings.append("its threshold %.3g W does not separate idle (%.3g W) from the check "
                      "model's load (%.3g W): small models will be timed by the host clock"
                      % (value, power["idle_w"], power["load_w"]))
  images = int(flags.get("measure_images", 5000))
  batch = int(flags.get("measure_batch_size", 100))
  if kind in devices.STATIC_BATCH and images % batch:
    reasons.append("%s runs whole batches: --measure_images=%d is not a multiple of "
                   "--measure_batch_size=%d" % (kind, images, batch))
  agent_data = answer.get("agent_data") or {}
  if agent_data.get("images") is not None and agent_data["images"] < images:
    reasons.append("the agent holds %d images; it measures --measure_images=%d"
                   % (agent_data["images"], images))
  return {"experiment": name, "runs": not reasons, "reasons": reasons, "warnings": warnings}


# -- output ------------------------------------------------------------------------
def _fmt(value: Optional[float], spec: str = "%.3g") -> str:
  return "-" if value is None else spec % value


def render(answer: Dict[str, Any], verdicts: Sequence[Dict[str, Any]]) -> List[str]:
  """The report as text lines (module doc, 5)."""
  lines = ["tea-keras self-check: %s (%s)%s" % (
      answer["device"], answer.get("platform", "?"),
      " through the agent at %s" % answer["agent"] if answer.get("agent") else ""), ""]
  header = "%-12s %-9s %-24s %-15s %8s %10s %11s  %s" % (
      "runtime", "usable", "version", "precisions", "load s", "ms/batch", "max |diff|", "note")
  lines += [header, "-" * len(header)]
  for name, r in sorted(answer["runtimes"].items()):
    timing = r.get("timing") or {}
    note = r.get("error") or timing.get("error") or r.get("compute_note") or ""
    lines.append("%-12s %-9s %-24s %-15s %8s %10s %11s  %s" % (
        name, "yes" if r["available"] and not timing.get("error") else "NO",
        str(r.get("version"))[:24], ",".join(r.get("precisions") or []) or "-",
        _fmt(timing.get("load_s"), "%.2f"), _fmt(timing.get("ms_per_batch"), "%.2f"),
        _fmt(timing.get("max_abs_diff"), "%.1e"), note[:160]))
  power = answer.get("power_check")
  lines.append("")
  if power is None or not power["readable"] or power["source"] == "none":
    lines.append("power: %s (%s): energy cannot be measured here" % (
        answer["power"]["name"], answer["power"].get("error") or "no power source reads"))
  else:
    lines.append("power: %s, idle %s W, under load %s W (%d samples)" % (
        power["source"], _fmt(power["idle_w"]), _fmt(power["load_w"]), power["samples"]))
    if power["threshold_w"] is not None:
      lines.append("  threshold %s W %s" % (_fmt(power["threshold_w"]),
                                            "separates them" if power["separates"] else
                                            "does NOT separate them"))
    if power["suggested_threshold_w"] is not None:
      lines.append("  suggested threshold for this board: %s W (midpoint of idle and load)"
                   % _fmt(power["suggested_threshold_w"]))
    if power["counter_j"]:
      lines.append("  energy: integrated %s J, counter %s J (ratio %s)" % (
          _fmt(power["integrated_j"]), _fmt(power["counter_j"]), _fmt(power["counter_ratio"])))
    else:
      lines.append("  energy counter: none on this source (the integral is not cross-checked)")
  if verdicts:
    lines += ["", "experiments:"]
    for v in verdicts:
      lines.append("  %-40s %s" % (v["experiment"], "can run here" if v["runs"] else
                                   "CANNOT run here"))
      lines += ["    - " + r for r in v["reasons"]] + ["    ! " + w for w in v["warnings"]]
  return lines


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description="Check that this machine (or an agent) can "
                              "measure what a search asks, before the search.")
  p.add_argument("--device", default="cpu", choices=list(devices.DEVICES),
                 help="the device kind this machine measures as (local check)")
  p.add_argument("--power_source", default=devices.AUTO,
                 choices=(devices.AUTO,) + devices.POWER_SOURCES)
  p.add_argument("--rail", default=None, help="ina3221 rail label(s)")
  p.add_argument("--gpu_index", type=int, default=None, help="nvml device index")
  p.add_argument("--usb_csv", default=None, help="usb_meter: timestamped CSV log")
  p.add_argument("--usb_port", default=None, help="usb_meter: serial port")
  p.add_argument("--power_root", default=None, help="sysfs root for ina3221/rapl")
  p.add_argument("--threshold_w", type=float, default=None,
                 help="threshold to check (default: the paper's for the kind)")
  p.add_argument("--idle_s", type=float, default=2.0, help="seconds of idle power read")
  p.add_argument("--load_s", type=float, default=3.0, help="seconds of power under load")
  p.add_argument("--device_url", default=None, help="check a running agent instead")
  p.add_argument("--token_file", default=None, help="the agent's token (with --device_url)")
  p.add_argument("--ca_file", default=None, help="PEM of an https:// agent's certificate")
  p.add_argument("--flagfile", action="append", default=[],
                 help="an experiment to give a verdict on (repeatable)")
  p.add_argument("--json", default=None, help="also write the full report to this file")
  return p


def main(argv: Optional[Sequence[str]] = None,
         check_agent: Optional[Callable[..., Dict[str, Any]]] = None) -> int:
  """``check_agent(url, token, ca_file, threshold_w)``: the remote check, given by the
  host's ``python -m deploy.selfcheck`` (the agent client is host-side)."""
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    flagfiles = [(path, read_flagfile(path)) for path in args.flagfile]
    if args.device_url:
      if check_agent is None:
        parser.error("--device_url: check an agent from the search host with python -m "
                     "deploy.selfcheck (the agent client is host-side)")
      if not args.token_file:
        parser.error("--device_url needs --token_file")
      with open(args.token_file) as f:
        token = f.read().strip()
      answer = check_agent(args.device_url, token, args.ca_file, args.threshold_w)
    else:
      devices.check_power_source(args.device, args.power_source)
      answer = check_local(args.device, args.power_source,
                           device_main.power_options(args), args.threshold_w,
                           args.idle_s, args.load_s)
  except (ValueError, OSError) as e:
    sys.stderr.write("selfcheck: error: %s\n" % e)
    return 2
  verdicts = [verdict(answer, flags, os.path.basename(path)) for path, flags in flagfiles]
  answer["verdicts"] = verdicts
  print("\n".join(render(answer, verdicts)))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(answer, f, indent=2, sort_keys=True, default=str)
  if verdicts:
    return 0 if all(v["runs"] for v in verdicts) else 1
  default = devices.default_runtime(answer["device"])
  timing = (answer["runtimes"].get(default) or {}).get("timing") or {}
  ok = answer["runtimes"].get(default, {}).get("available") and not timing.get("error")
  if not ok:
    sys.stderr.write("selfcheck: the device's default runtime (%s) does not work here.\n"
                     % default)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
