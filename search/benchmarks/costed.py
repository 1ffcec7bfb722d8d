"""Benchmarks with evaluation costs: coupled and decoupled strategies at equal cost.

  python -m search.benchmarks.benchmark --problem=table --table=FILE.csv \\
      --variables=... --objectives=error,latency_ms,energy_mj \\
      --log_objectives=latency_ms,energy_mj --evaluation=decoupled \\
      --costs=error=30,latency_ms+energy_mj=1 --cost_budget=930 \\
      --strategy=pesmo --seeds=2 --out=runs/cost/pesmo_dec30.json

``--costs``: the objective groups (objectives joined by ``+`` are measured
together, ``objective_groups.ObjectiveGroups``) and what one measurement of
each costs. A COUPLED evaluation (``--evaluation=coupled``, any strategy of
``strategies.make_strategy``) measures every group and costs the sum; a
DECOUPLED one (``--evaluation=decoupled``, a strategy of
``decoupled.DECOUPLED_STRATEGIES``: ``pesmo``, ``qhvkg``) measures the group the
strategy chooses. Every run starts with the problem's initial design
(``problems.initial_design``, the same rows as the evaluation-count
benchmark) evaluated coupled, its cost counted, then proposes until the next
evaluation would exceed ``--cost_budget`` (the budget is never exceeded; a
decoupled run stops at the first proposal whose group does not fit). The
figure of merit (the problem's metric, the HV fraction on a table) is
computed after every evaluation on the rows whose EVERY objective is known,
so a hardware measurement alone adds nothing until that design is trained.

JSON (``--out``, rewritten after every seed; a seed stopped midway resumes
from its checkpoint ``<out>.seed<N>.pkl``: the pickled strategy and run
state, written after an evaluation once ``checkpoint_seconds`` have passed
since the last one, so the resumed seed makes the same evaluations as an
uninterrupted one)::

  {"problem", "strategy", "evaluation", "groups": [names], "costs": [...],
   "coupled_cost", "cost_budget", "metric", "strategy_options", "table"
   (tables), "runs": [{"seed", "evaluations": [{"row" (tables) or "x",
   "group" (a group name, or "all": a coupled evaluation), "cost",
   "cumulative_cost", METRIC}], "initial_evaluations" (how many of them
   are the initial design), "fit_seconds", "acquisition_seconds",
   "proposal_seconds" (one each per proposal), "load_average": {"start",
   "end"}}]}

``figure_at_cost(run, metric, cost)`` reads a run's figure at a cumulative
cost; ``summarize_costed`` prints, per strategy, the median and the worst
seed at budgets worth 30, 50 and 100 coupled evaluations (trainings) and
plots the median figure against cost. ``placement`` (tables) says where
the rows completed by the strategies' proposals lie against the table's
reference point: inside it on the cheap groups' objectives (the hardware),
and on every objective (what the hypervolume counts). ``cost_to_reach``
says at which cost each strategy's median (and each seed) first reaches a
reference strategy's median figure at a given budget. ``seeds_below`` lists,
per strategy and budget, the seeds that end below random's median and those
below random's run from the same initial design (issue 33's worst-seed bar).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from search.benchmarks.problems import Problem, initial_design, quality
from search.optimizer.decoupled import (DECOUPLED_STRATEGIES, check_decoupled_available,
                                        make_decoupled_strategy)
from search.optimizer.objective_groups import ObjectiveGroups
from search.optimizer.strategies import STRATEGIES, check_available, make_strategy

COUPLED, DECOUPLED = "coupled", "decoupled"
EVALUATIONS = (COUPLED, DECOUPLED)
_TOLERANCE = 1e-9


def objective_names(problem: Problem) -> list[str]:
  """A table's objective columns, else f1..fK (as ``--bounds``)."""
  if problem.table is not None:
    return list(problem.table.objectives)
  return ["f%d" % (k + 1) for k in range(problem.num_objectives)]


def parse_costs(spec: str | Sequence[str], problem: Problem) -> ObjectiveGroups:
  """``--costs`` (``"error=30,latency_ms+energy_mj=1"`` or its list) ->
  ``ObjectiveGroups`` with a fixed positive cost per group; ``ValueError``
  for an unknown objective, an objective in two groups or none, a missing or
  non-positive cost."""
  if not spec:
    raise ValueError("Invalid value for flag `--costs`. Expected GROUP=COST,... with GROUP "
                     "objectives among %s joined by '+'. Received an empty value."
                     % ", ".join(objective_names(problem)))
  try:
    groups = ObjectiveGroups.parse(spec, objective_names(problem))
  except ValueError as e:
    raise ValueError(str(e).replace("argument `groups`", "flag `--costs`")) from None
  if groups.costs is None:
    raise ValueError("Invalid value for flag `--costs`. Expected a cost (=COST) for every "
                     "group. Received %r." % (spec,))
  return groups


def check_evaluation(evaluation: str, strategy: str) -> None:
  """``ValueError`` unless ``strategy`` can run with ``evaluation``."""
  if evaluation not in EVALUATIONS:
    raise ValueError("Invalid value for flag `--evaluation`. Expected one of %s. Received %r."
                     % (", ".join(EVALUATIONS), evaluation))
  if evaluation == DECOUPLED and strategy not in DECOUPLED_STRATEGIES:
    raise ValueError("Invalid value for flag `--strategy`: %r cannot decouple evaluations. "
                     "Expected one of %s with --evaluation=decoupled (or "
                     "--evaluation=coupled)." % (strategy, ", ".join(sorted(DECOUPLED_STRATEGIES))))
  if evaluation == COUPLED and strategy not in STRATEGIES:
    raise ValueError("Invalid value for flag `--strategy`: %r has no coupled form. Expected "
                     "one of %s with --evaluation=coupled (or --evaluation=decoupled)."
                     % (strategy, ", ".join(sorted(STRATEGIES))))


def check_strategy_available(evaluation: str, strategy: str) -> None:
  """The ``ImportError`` naming what to install when ``strategy`` (checked by
  ``check_evaluation``) needs a missing optional package (BoTorch)."""
  if evaluation == DECOUPLED:
    check_decoupled_available(strategy)
  else:
    check_available(strategy)


class CostedRun:
  """One seeded run's state (picklable, for checkpoints): the designs seen
  (one row each, NaN where a group is not measured) and the evaluations."""

  def __init__(self, problem: Problem, seed: int) -> None:
    self.seed = seed
    self.x = np.zeros((0, problem.space.dim))
    self.y = np.zeros((0, problem.num_objectives))
    self.evaluations: list[dict[str, Any]] = []
    self.fit: list[float] = []
    self.acq: list[float] = []
    self.seconds: list[float] = []
    self.cost = 0.0
    self.load = {"start": list(os.getloadavg())}
    self.done = False
    self.initial = 0   # evaluations of the initial design

  def measure(self, problem: Problem, groups: ObjectiveGroups, point: Any,
              group: Optional[int]) -> None:
    """Measures ``group`` (an index, or None: every group) at ``point``."""
    members = range(problem.num_objectives) if group is None else groups.members[group]
    truth = problem.evaluate(np.asarray(point)[None])[0]
    key = problem.space.keys(np.asarray(point)[None])[0]
    keys = problem.space.keys(self.x) if self.x.shape[0] else []
    if key in keys:
      i = keys.index(key)
    else:
      i = self.x.shape[0]
      self.x = np.vstack([self.x, point])
      self.y = np.vstack([self.y, np.full(problem.num_objectives, np.nan)])
    if np.all(np.isfinite(self.y[i, list(members)])):
      raise ValueError("Invalid proposal: group %s is already known at %r."
                       % ("all" if group is None else groups.names[group], list(point)))
    self.y[i, list(members)] = truth[list(members)]
    cost = groups.coupled_cost() if group is None else float(groups.costs[group])  # type: ignore[index]  # fixed costs
    self.cost += cost
    entry: dict[Any, Any] = {"group": "all" if group is None else groups.names[group], "cost": cost,
             "cumulative_cost": self.cost, problem.metric: complete_figure(problem, self.y)}
    if problem.table is not None:
      entry["row"] = int(problem.table.rows(np.asarray(point)[None])[0])
    else:
      entry["x"] = [float(v) for v in point]
    self.evaluations.append(entry)

  def record(self) -> dict[str, Any]:
    return {"seed": self.seed, "evaluations": self.evaluations,
            "initial_evaluations": getattr(self, "initial", None),  # None: an older checkpoint
            "fit_seconds": self.fit,
            "acquisition_seconds": self.acq, "proposal_seconds": self.seconds,
            "load_average": dict(self.load, end=list(os.getloadavg()))}


def complete_figure(problem: Problem, y: np.ndarray) -> float:
  """The problem's figure on the rows of ``y`` (n, K) whose every objective
  is known (0 when none is)."""
  complete = np.all(np.isfinite(y), axis=1)
  return float(quality(problem, y[complete])) if complete.any() else 0.0


def make_costed_strategy(problem: Problem, name: str, evaluation: str, groups: ObjectiveGroups,
                         seed: int, options: Optional[dict[str, Any]]) -> Any:
  """The coupled (``strategies``) or decoupled strategy, with the problem's
  reference point (PESMO, decoupled qHVKG) and log objectives as
  ``benchmark.run_one`` gives them."""
  options = dict(options or {})
  if name in ("pesmo", "qhvkg") and "reference_point" not in options:
    options["reference_point"] = [float(r) for r in problem.ref_point]
  if problem.log_objectives and "log_objectives" not in options:
    options["log_objectives"] = list(problem.log_objectives)
  if evaluation == DECOUPLED:
    return make_decoupled_strategy(name, problem.space, groups, seed=seed, **options)
  return make_strategy(name, problem.space, problem.num_objectives, seed=seed, **options)


def run_costed(problem: Problem, name: str, evaluation: str, groups: ObjectiveGroups,
               cost_budget: float, seed: int, options: Optional[dict[str, Any]] = None,
               state: Optional[tuple[Any, CostedRun]] = None,
               checkpoint: Optional[Callable[[Any, CostedRun], None]] = None,
               progress: Optional[Callable[[CostedRun], None]] = None) -> dict[str, Any]:
  """One run (module doc); returns its record. ``state``: a (strategy,
  CostedRun) pair from a checkpoint to continue; ``checkpoint(strategy,
  run)`` and ``progress(run)`` are called after every evaluation."""
  if state is None:
    strategy = make_costed_strategy(problem, name, evaluation, groups, seed, options)
    run = CostedRun(problem, seed)
    for point in initial_design(problem, seed):
      if run.cost + groups.coupled_cost() > cost_budget + _TOLERANCE:
        break
      run.measure(problem, groups, point, None)
    run.initial = len(run.evaluations)
    if checkpoint:
      checkpoint(strategy, run)
  else:
    strategy, run = state
  cheapest = min(groups.costs) if evaluation == DECOUPLED else groups.coupled_cost()  # type: ignore[arg-type]  # fixed costs
  while not run.done:
    if run.cost + cheapest > cost_budget + _TOLERANCE:
      run.done = True
      break
    start = time.perf_counter()
    if evaluation == DECOUPLED:
      proposal = strategy.propose(run.x, run.y)
      point, group, cost = proposal.point, proposal.group, float(groups.costs[proposal.group])  # type: ignore[index]  # fixed costs
    else:
      point, group, cost = strategy.propose(run.x, run.y), None, groups.coupled_cost()
    run.seconds.append(time.perf_counter() - start)
    run.fit.append(strategy.timings["fit_seconds"])
    run.acq.append(strategy.timings["acquisition_seconds"])
    if run.cost + cost > cost_budget + _TOLERANCE:
      run.done = True
      break
    run.measure(problem, groups, point, group)
    if checkpoint:
      checkpoint(strategy, run)
    if progress:
      progress(run)
  return run.record()


def figure_at_cost(run: dict[str, Any], metric: str, cost: float) -> float:
  """The figure after the last evaluation whose cumulative cost is at most
  ``cost`` (0 before any)."""
  value = 0.0
  for e in run["evaluations"]:
    if e["cumulative_cost"] > cost + _TOLERANCE:
      break
    value = e[metric]
  return value


class CostProgress:
  """Cost spent of the total over all seeds, with an ETA on stderr (from the
  cost rate since the first proposal: the initial design costs much and
  takes no time)."""

  def __init__(self, total_cost: float, label: str) -> None:
    self.total, self.label, self.start, self.base = total_cost, label, time.time(), 0.0
    self.first: Optional[tuple[float, float]] = None  # (time, cost) at the first call:
    # the rate excludes the initial design

  def seed_done(self, cost: float) -> None:
    self.base += cost

  def __call__(self, run: CostedRun) -> None:
    done, now = self.base + run.cost, time.time()
    elapsed = now - self.start
    if self.first is None:
      self.first = (now, done)
    rate = (done - self.first[1]) / max(now - self.first[0], _TOLERANCE)
    eta = (self.total - done) / rate if rate > 0 else float("nan")
    sys.stderr.write("\r%s seed %d: cost %.0f, all seeds %.0f/%.0f, %.0fs elapsed, ETA %.0fs   "
                     % (self.label, run.seed, run.cost, done, self.total, elapsed, eta))
    sys.stderr.flush()


def _header(problem: Problem, name: str, evaluation: str, groups: ObjectiveGroups,
            cost_budget: float, options: Optional[dict[str, Any]]) -> dict[str, Any]:
  out = {"problem": problem.name, "strategy": name, "evaluation": evaluation,
         "groups": list(groups.names), "costs": [float(c) for c in groups.costs],  # type: ignore[union-attr]  # fixed costs
         "coupled_cost": groups.coupled_cost(), "cost_budget": float(cost_budget),
         "metric": problem.metric, "strategy_options": dict(options or {}), "runs": []}
  if problem.table is not None:
    out["table"] = problem.table.describe()
  return out


def _resumed(out: Optional[str], fresh: dict[str, Any]) -> dict[str, Any]:
  """``fresh`` with the runs already in ``out`` (same settings, else a ValueError)."""
  if not out or not os.path.exists(out):
    return fresh
  with open(out) as f:
    old = json.load(f)
  for key in ("problem", "strategy", "evaluation", "groups", "costs", "cost_budget",
              "strategy_options", "table"):
    if json.loads(json.dumps(fresh.get(key))) != old.get(key):
      raise ValueError("Invalid value for flag `--out`: %s holds runs with %s=%r; this "
                       "command has %r. Use another --out." % (out, key, old.get(key),
                                                               fresh.get(key)))
  return dict(fresh, runs=old["runs"])


def run_costed_benchmark(problem: Problem, name: str, evaluation: str, groups: ObjectiveGroups,
                         cost_budget: float, seeds: int, first_seed: int = 0,
                         options: Optional[dict[str, Any]] = None, out: Optional[str] = None,
                         checkpoint_seconds: float = 30.0) -> dict[str, Any]:
  """``seeds`` runs (module doc), resumed from ``out`` and its checkpoints."""
  check_evaluation(evaluation, name)
  result = _resumed(out, _header(problem, name, evaluation, groups, cost_budget, options))
  done = {r["seed"] for r in result["runs"]}
  todo = [s for s in range(first_seed, first_seed + seeds) if s not in done]
  progress = CostProgress(len(todo) * cost_budget, "%s/%s/%s" % (problem.name, evaluation, name))
  for seed in todo:
    pkl = "%s.seed%d.pkl" % (out, seed) if out else None
    state = None
    if pkl and os.path.exists(pkl):
      with open(pkl, "rb") as f:
        state = pickle.load(f)
    last = [time.time()]

    def checkpoint(strategy: Any, run: CostedRun, pkl: Optional[str] = pkl,
                   last: list[float] = last) -> None:
      if pkl and time.time() - last[0] >= checkpoint_seconds:
        _atomic_write(pkl, pickle.dumps((strategy, run)))
        last[0] = time.time()

    record = run_costed(problem, name, evaluation, groups, cost_budget, seed, options, state,
                        checkpoint, progress)
    progress.seed_done(record["evaluations"][-1]["cumulative_cost"]
                       if record["evaluations"] else 0.0)
    result["runs"] = sorted(result["runs"] + [record], key=lambda r: r["seed"])
    if out:
      _atomic_write(out, json.dumps(result).encode())
      if os.path.exists(pkl):  # type: ignore[arg-type]  # set with out
        os.remove(pkl)  # type: ignore[arg-type]  # set with out
  sys.stderr.write("\n")
  return result


def _atomic_write(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def label(result: dict[str, Any]) -> str:
  """``"decoupled pesmo"`` (plus its options when any)."""
  options = result.get("strategy_options") or {}
  return "%s %s%s" % (result["evaluation"], result["strategy"],
                      " " + json.dumps(options, sort_keys=True) if options else "")


def load_costed(folder: str
                ) -> dict[tuple[str, str, str], tuple[dict[str, Any], dict[int, Any]]]:
  """{(problem, costs key, label): (a result header, {seed: run})} from the
  costed JSON files in ``folder`` (files without ``"evaluation"`` skipped);
  a seed found twice with different evaluations is a ValueError."""
  import glob  # pylint: disable=import-outside-toplevel
  merged: dict[tuple[str, str, str], tuple[dict[str, Any], dict[int, Any]]] = {}
  for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    with open(path) as f:
      data = json.load(f)
    if not isinstance(data, dict) or "evaluation" not in data:
      continue
    costs = ",".join("%s=%g" % (n, c) for n, c in zip(data["groups"], data["costs"]))
    entry = merged.setdefault((data["problem"], costs, label(data)), (data, {}))
    for run in data["runs"]:
      seen = entry[1].get(run["seed"])
      if seen is not None and seen["evaluations"] != run["evaluations"]:
        raise ValueError("Conflicting runs for %s seed %d in %s: expected one run per seed."
                         % (label(data), run["seed"], path))
      entry[1][run["seed"]] = run
  return merged


def summarize_costed(folder: str, trainings: Sequence[int] = (30, 50, 100),
                     merged: Optional[dict[Any, Any]] = None) -> dict[Any, Any]:
  """Per (problem, costs) and strategy, the median and worst seed figure at
  budgets worth ``trainings`` coupled evaluations (None past a run's
  budget); writes ``costed_<problem>_<costs>.png`` (median figure against
  cost, in coupled evaluations) into ``folder``. Returns {(problem, costs):
  {label: {trainings: (median, worst, per-seed list, seeds)}}}."""
  merged = load_costed(folder) if merged is None else merged
  table: dict[tuple[str, str], dict[str, Any]] = {}
  for (problem, costs, name), (header, runs) in sorted(merged.items()):
    row: dict[int, Optional[tuple[float, float, list[float], list[int]]]] = {}
    for t in trainings:
      cost = t * header["coupled_cost"]
      if cost > header["cost_budget"] + _TOLERANCE:
        row[t] = None
        continue
      values = [figure_at_cost(runs[s], header["metric"], cost) for s in sorted(runs)]
      row[t] = (float(np.median(values)), float(np.min(values)), values, sorted(runs))
    table.setdefault((problem, costs), {})[name] = row
  for (problem, costs), _ in table.items():
    _plot(folder, problem, costs, {k[2]: v for k, v in merged.items()
                                   if k[:2] == (problem, costs)})
  return table


def _plot(folder: str, problem: str, costs: str,
          by_label: dict[str, tuple[dict[str, Any], dict[int, Any]]]) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6, 4))
  metric = None
  for name, (header, runs) in sorted(by_label.items()):
    metric = header["metric"]
    grid = np.linspace(0, header["cost_budget"], 200)
    curves = np.array([_figures_at_costs(runs[s], metric, grid) for s in sorted(runs)])
    ax.plot(grid / header["coupled_cost"], np.median(curves, 0),
            label="%s (%d seeds)" % (name, curves.shape[0]))
  ax.set_xlabel("cost (in coupled evaluations: trainings)")
  ax.set_ylabel("median " + str(metric).replace("_", " "))
  ax.set_title("%s, costs %s" % (problem, costs), fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in costs)
  fig.savefig(os.path.join(folder, "costed_%s_%s.png" % (problem, safe)))
  plt.close(fig)


def format_summary(table: dict[Any, Any]) -> list:
  """Printable lines of ``summarize_costed``'s table."""
  lines = []
  for (problem, costs), by_label in sorted(table.items()):
    for name, row in sorted(by_label.items()):
      parts = []
      for t, cell in sorted(row.items()):
        parts.append("%d trainings: %s" % (t, "beyond the budget" if cell is None else
                                           "median %.4f, worst %.4f (%d seeds: %s)"
                                           % (cell[0], cell[1], len(cell[2]), ", ".join(
                                               "%d %.4f" % sv for sv in zip(cell[3], cell[2])))))
      lines.append("%s [%s] %s: %s" % (problem, costs, name, "; ".join(parts)))
  return lines


def seeds_below(table: dict[Any, Any], baseline: str = "coupled random"
                ) -> dict[tuple[str, str], dict[str, dict[int, tuple[float, list, list, int]]]]:
  """Issue 33's worst-seed bar from ``summarize_costed``'s table: per
  (problem, costs) holding ``baseline``, per other strategy and budget both
  reach, ``(baseline's median, seeds whose figure is below that median,
  seeds below the baseline's run of the same seed, seeds)``. The same seed
  means the same initial design (``problems.initial_design``), so the second
  list compares each run with the baseline started from the same rows."""
  out: dict[tuple[str, str], dict[str, dict[int, tuple[float, list, list, int]]]] = {}
  for key, by_label in sorted(table.items()):
    base = by_label.get(baseline)
    if base is None:
      continue
    for name, row in sorted(by_label.items()):
      if name == baseline:
        continue
      for t, cell in sorted(row.items()):
        ref = base.get(t)
        if cell is None or ref is None:
          continue
        same = dict(zip(ref[3], ref[2]))
        pairs = list(zip(cell[3], cell[2]))
        out.setdefault(key, {}).setdefault(name, {})[t] = (
            ref[0], [s for s, v in pairs if v < ref[0]],
            [s for s, v in pairs if s in same and v < same[s]], len(pairs))
  return out


def format_seeds_below(table: dict[Any, Any], baseline: str = "coupled random") -> list:
  """Printable lines of ``seeds_below``'s table."""
  lines = []
  seeds = lambda ss: "" if not ss else " (seed%s %s)" % ("s" if len(ss) > 1 else "",
                                                        ", ".join(str(s) for s in ss))
  for (problem, costs), by_label in sorted(table.items()):
    for name, row in sorted(by_label.items()):
      lines.append("%s [%s] %s against %s: %s" % (problem, costs, name, baseline, "; ".join(
          "%d trainings: %d of %d seeds below its median %.4f%s, %d below its run of the "
          "same seed%s" % (t, len(low), n, median, seeds(low), len(paired), seeds(paired))
          for t, (median, low, paired, n) in sorted(row.items()))))
  return lines


def _figures_at_costs(run: dict[str, Any], metric: str, costs: np.ndarray) -> np.ndarray:
  """``figure_at_cost`` at each of ``costs`` at once."""
  spent = np.array([e["cumulative_cost"] for e in run["evaluations"]], dtype=float)
  values = np.array([0.0] + [e[metric] for e in run["evaluations"]], dtype=float)
  return values[np.searchsorted(spent, np.asarray(costs) + _TOLERANCE, side="right")]


def trainings_in(run: dict[str, Any], groups: Sequence[str], costs: Sequence[float],
                 upto: int) -> int:
  """Trainings among ``run``'s first ``upto`` evaluations: coupled ones
  (group ``"all"``) and those of the costliest group."""
  costly = groups[int(np.argmax(costs))]
  return sum(1 for e in run["evaluations"][:upto] if e["group"] in ("all", costly))


def cost_to_reach(merged: dict[tuple[str, str, str], tuple[dict[str, Any], dict[int, Any]]],
                  reference: str, trainings: int) -> dict[tuple[str, str], dict[str, Any]]:
  """How much cost each strategy needs to reach ``reference``'s median figure
  at a budget worth ``trainings`` coupled evaluations.

  ``merged``: ``load_costed``'s dict; ``reference``: a strategy label
  (``label``, e.g. ``"coupled qlognehvi"``). For each (problem, costs) that
  has the reference: its target figure, then per strategy label: the first
  cumulative cost at which the MEDIAN over seeds of the figure (a step
  function: ``figure_at_cost``) reaches the target, in coupled evaluations
  (None: not within the runs' budget), and per seed (seed, cost in coupled
  evaluations or None, trainings done by then or None). Returns
  {(problem, costs): {"target": float, "labels": {label: (median cost or
  None, [(seed, cost, trainings)], budget in coupled evaluations)}}}.
  A reference whose budget is below ``trainings`` is a ValueError."""
  out: dict[tuple[str, str], dict[str, Any]] = {}
  for (problem, costs, name), (header, runs) in sorted(merged.items()):
    if name != reference:
      continue
    cost = trainings * header["coupled_cost"]
    if cost > header["cost_budget"] + _TOLERANCE:
      raise ValueError("Invalid value for `--reach`: %s's runs on %s [%s] stop at cost %g, "
                       "below %d trainings (cost %g)." % (reference, problem, costs,
                                                          header["cost_budget"], trainings, cost))
    target = float(np.median([figure_at_cost(runs[s], header["metric"], cost)
                              for s in sorted(runs)]))
    labels: dict[str, Any] = {}
    for (p2, c2, other), (h2, runs2) in sorted(merged.items()):
      if (p2, c2) != (problem, costs):
        continue
      unit, metric = h2["coupled_cost"], h2["metric"]
      grid = np.array(sorted({e["cumulative_cost"] for r in runs2.values()
                              for e in r["evaluations"]}))
      medians = np.median([_figures_at_costs(runs2[s], metric, grid) for s in sorted(runs2)], 0)
      hit_at = np.flatnonzero(medians >= target)
      median_cost = float(grid[hit_at[0]] / unit) if hit_at.size else None
      seeds = []
      for s in sorted(runs2):
        hit = next((i for i, e in enumerate(runs2[s]["evaluations"]) if e[metric] >= target),
                   None)
        seeds.append((s, None if hit is None else
                      runs2[s]["evaluations"][hit]["cumulative_cost"] / unit,
                      None if hit is None else
                      trainings_in(runs2[s], h2["groups"], h2["costs"], hit + 1)))
      labels[other] = (median_cost, seeds, h2["cost_budget"] / unit)
    out[(problem, costs)] = {"target": target, "labels": labels}
  if not out:
    names = sorted({k[2] for k in merged})
    raise ValueError("Invalid value for `--reach`: no runs labelled %r. Expected one of: %s."
                     % (reference, ", ".join(names) or "(no costed runs)"))
  return out


def format_reach(table: dict[tuple[str, str], dict[str, Any]], reference: str,
                 trainings: int) -> list:
  """Printable lines of ``cost_to_reach``'s table."""
  lines = []
  for (problem, costs), entry in sorted(table.items()):
    lines.append("%s [%s] target: %s's median at %d trainings, %.4f"
                 % (problem, costs, reference, trainings, entry["target"]))
    for name, (median_cost, seeds, budget) in sorted(entry["labels"].items()):
      reached = [x for x in seeds if x[1] is not None]
      lines.append("  %s: median reaches it at %s; seeds reaching it %d of %d (%s)" % (
          name, "cost worth %.1f trainings" % median_cost if median_cost is not None
          else "no cost within the budget (%.0f trainings' worth)" % budget,
          len(reached), len(seeds), ", ".join(
              "%d: %s" % (s, "not within %.0f" % budget if c is None
                          else "%.1f (%d trained)" % (c, t)) for s, c, t in seeds)))
  return lines


_TABLES: dict[tuple[Any, ...], Any] = {}


def _table_of(header: dict[str, Any]) -> Any:
  """The header's table (cached), or None when the run is not on a table or
  its file is not on this machine."""
  desc = header.get("table")
  if not desc or not os.path.exists(desc["path"]):
    return None
  key = (desc["path"], tuple(desc["variables"]), tuple(desc["objectives"]),
         tuple(desc["log_objectives"]))
  if key not in _TABLES:
    from search.benchmarks.table import Table  # pylint: disable=import-outside-toplevel
    _TABLES[key] = Table(*key)
  return _TABLES[key]


def completed_rows(run: dict[str, Any], groups: Sequence[str], num_initial: int) -> list[int]:
  """Table rows in the order a proposal made them complete (every group
  known; a coupled evaluation, group ``"all"``, completes its row), the
  initial design's ``initial_evaluations`` (else ``num_initial``) skipped."""
  initial = run.get("initial_evaluations")
  initial = num_initial if initial is None else int(initial)
  known: dict[int, set] = {}
  out = []
  for i, e in enumerate(run["evaluations"]):
    have = known.setdefault(int(e["row"]), set())
    was = len(have) == len(groups)
    have.update(groups if e["group"] == "all" else [e["group"]])
    if i >= initial and not was and len(have) == len(groups):
      out.append(int(e["row"]))
  return out


def placement(folder: str, num_initial: int = 10, merged: Optional[dict[Any, Any]] = None
              ) -> dict[tuple[str, str], dict[str, tuple[int, int, int, float, int]]]:
  """Per (problem, costs) and strategy label, over all seeds of the table
  runs in ``folder`` (``load_costed``): (rows completed by proposals, how
  many lie inside the table's reference point on every objective of the
  groups other than the costliest, how many inside on every objective, the
  fraction of the table's rows inside on every objective among those inside
  on the cheap ones, seeds). Runs whose table file is not here are skipped.
  ``merged``: ``load_costed(folder)`` when the caller has it already."""
  out: dict[tuple[str, str], dict[str, tuple[int, int, int, float, int]]] = {}
  merged = load_costed(folder) if merged is None else merged
  for (problem, costs, name), (header, runs) in sorted(merged.items()):
    table = _table_of(header)
    if table is None:
      continue
    groups = ObjectiveGroups.parse(costs, table.objectives)   # costs: "error=30,a+b=1"
    costly = int(np.argmax(groups.costs))  # type: ignore[arg-type]  # fixed costs
    cheap = [k for g, members in enumerate(groups.members) if g != costly for k in members]
    inside = table.transform(table.y) < table.reference
    cheap_in = np.all(inside[:, cheap], axis=1)
    all_in = np.all(inside, axis=1)
    rows = [r for s in sorted(runs) for r in completed_rows(runs[s], header["groups"],
                                                            num_initial)]
    out.setdefault((problem, costs), {})[name] = (
        len(rows), int(cheap_in[rows].sum()), int(all_in[rows].sum()),
        float(all_in[cheap_in].mean()) if cheap_in.any() else float("nan"), len(runs))
  return out


def format_placement(table: dict[tuple[str, str], dict[str, tuple[int, int, int, float, int]]]
                     ) -> list:
  """Printable lines of ``placement``'s table."""
  lines = []
  for (problem, costs), by_label in sorted(table.items()):
    for name, (n, cheap, both, rate, seeds) in sorted(by_label.items()):
      lines.append("%s [%s] %s: %d rows completed by proposals (%d seeds), %d inside the "
                   "reference point on the cheap groups' objectives, %d (%.1f %% of those) on "
                   "every objective; the table's rate %.1f %%"
                   % (problem, costs, name, n, seeds, cheap, both,
                      100.0 * both / cheap if cheap else float("nan"), 100.0 * rate))
  return lines
