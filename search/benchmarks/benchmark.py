"""Optimizer benchmark: strategies on standard multi-objective problems.

  python -m search.benchmarks.benchmark --problem=branin_currin --strategy=pesmo \\
      --budget=36 --seeds=5 --out=runs/bench/branin_currin_pesmo.json
  python -m search.benchmarks.benchmark --problem=cell_synthetic --strategy=pesmo \\
      --time_proposal_at=400
  python -m search.benchmarks.benchmark --problem=table --table=FILE.csv \\
      --variables=COL,... --objectives=COL,... [--log_objectives=COL,...] \\
      --strategy=pesmo --budget=100 --seeds=10
  python -m search.benchmarks.benchmark --problem=table ... \
      --strategies=pesmo,qlognehvi,random --out=runs/bench/table_{strategy}.json

``--strategies`` runs several strategies one after another on the same seeds
(one JSON each; a strategy whose optional package is missing, e.g.
``qlognehvi`` without BoTorch, is refused before any run).
Each run starts from ``problem.num_initial`` points (2(d+1) scrambled Sobol
points for the continuous problems, 10 uniform cells for ``cell_synthetic``)
and then proposes one point at a time; ``--budget`` counts all evaluations.
``--problem=table`` reads any CSV of evaluated designs
(``search.benchmarks.table``: one categorical column per variable, one numeric
column per minimized objective); its runs start from 10 uniform rows
(``--num_initial``), may only propose rows of the table and are scored by the
hypervolume fraction of the table's true front. JSON written to ``--out``::

  {"problem", "strategy", "budget", "runs": [{"seed", "log_hv_gap" (or
   "hypervolume" when the optimum is unknown, "hypervolume_fraction" for a
   table): one per evaluation, "fit_seconds", "acquisition_seconds": one per
   proposal, "rows" (tables): the table rows evaluated, in order}],
   "table" (tables): path, columns, reference point, front size}

Public pieces for other runners (``search.benchmarks.anchors``):
``make_problem(name, **kwargs)`` (``search.benchmarks.problems``),
``initial_design(problem, seed)`` (alias ``initial_points``) and
``quality(problem, y)`` (alias ``score``; its name is ``problem.metric``).

``--bounds=OBJ=VALUE,...`` (raw units; table objectives by column name,
other problems ``f1``..``fK``) sets measured budgets (upper bounds): PESMO
gets them as ``objective_bounds`` (``search.optimizer.feasibility``) unless
``--nobounds_to_strategy``; ParEGO and random ignore them. The score counts
only the evaluations that meet every bound: for a table, the hypervolume
fraction of its true FEASIBLE front (brute force over the rows that meet the
bounds, same reference point as without bounds; metric
``feasible_hypervolume_fraction``), otherwise the hypervolume of the
feasible evaluations (``feasible_hypervolume``). Each run records
``feasible_evaluations`` (all) and ``feasible_proposals`` (after the
initial design); the JSON records ``bounds``, ``bounds_to_strategy`` and,
for a table, ``feasible_rows`` and ``feasible_front_size``. Refused before
any run: an unknown objective, a value that is not a finite number, an
objective given twice, a non-positive bound on a log objective, and (tables) bounds that no row meets
or whose feasible rows do not dominate the reference point.

``--evaluation=coupled|decoupled --costs=GROUP=COST,... --cost_budget=C``
instead runs at equal COST (``search.benchmarks.costed``): objectives joined
by ``+`` in ``--costs`` are measured together, a coupled evaluation costs the
sum, a decoupled one (``--strategy=pesmo`` or ``qhvkg``) the group the strategy
chooses; the initial design is evaluated coupled; the JSON lists every
evaluation with its row, group, cost, cumulative cost and the figure on the
rows whose every objective is known; a stopped seed resumes from
``<out>.seed<N>.pkl``. Bad costs, ``decoupled`` with a strategy that
cannot decouple and ``coupled`` with one that only decouples (``qhvkg``),
are refused before any run.

``--summarize=FOLDER`` prints the median final figures of the JSON files in
FOLDER and writes one PNG per problem there; for costed JSON files, per
strategy the median and worst seed at budgets worth 30, 50 and 100 coupled
evaluations, and ``costed_<problem>_<costs>.png`` (median figure against cost);
for costed table runs, where the rows completed by proposals lie against the
table's reference point (``costed.placement``; runs recorded without
``initial_evaluations`` skip ``--num_initial`` initial rows). With
``--reach=LABEL@TRAININGS`` (e.g. ``'coupled qlognehvi@100'``) also, per
costed strategy, the cost in trainings at which its median figure, and each
seed's, first reaches LABEL's median at TRAININGS trainings
(``costed.cost_to_reach``).

``--time_proposal_at=N`` instead times one proposal with N uniform
observations (a cold strategy, then a warm second proposal with N+1); it
prints wall seconds (fit, acquisition, total) and the process CPU seconds,
which stay meaningful when other jobs share the cores.

BLAS threads default to 1 (set before numpy is imported): on a shared
2-core machine multi-threaded Cholesky of small matrices is 10-20x slower.
"""

from __future__ import annotations

import glob
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

# pylint: disable=wrong-import-position
import json
import sys
import time

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats
from absl import app, flags

from search.optimizer import feasibility
from search.optimizer.pareto import hypervolume, non_dominated_mask
from search.benchmarks import costed
from search.benchmarks.problems import Problem, initial_design, make_problem, quality
from search.optimizer.decoupled import DECOUPLED_STRATEGIES
from search.optimizer.strategies import STRATEGIES, check_available, make_strategy

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_enum("problem", "branin_currin",
                    ["branin_currin", "zdt1", "zdt2", "dtlz2", "cell_synthetic", "table"],
                    "Benchmark problem.")
  flags.DEFINE_string("table", None, "--problem=table: the CSV file (one row per design).")
  flags.DEFINE_list("variables", None, "--problem=table: the design-variable columns "
                    "(categorical).")
  flags.DEFINE_list("objectives", None, "--problem=table: the objective columns "
                    "(minimized).")
  flags.DEFINE_list("log_objectives", [], "--problem=table: objectives modelled (and "
                    "scored) in log space; strictly positive.")
  flags.DEFINE_integer("num_initial", 10, "--problem=table: uniform initial rows per run.",
                       lower_bound=1)
  flags.DEFINE_enum("strategy", "pesmo", sorted(set(STRATEGIES) | set(DECOUPLED_STRATEGIES)),
                    "Strategy (qlognehvi: BoTorch, the bench extra: pip install -e "
                    "\".[bench]\"; qhvkg: BoTorch, --evaluation=decoupled only).")
  flags.DEFINE_list("strategies", None, "Several strategies, run one after another on the "
                    "same seeds (instead of --strategy); --out must then hold {strategy}, "
                    "e.g. --out=runs/bench/table_{strategy}.json.")
  flags.DEFINE_integer("budget", None, "Evaluations per run, initial ones included "
                       "(default: 36 branin_currin, 44 zdt2/dtlz2, 60 cell_synthetic).",
                       lower_bound=2)
  flags.DEFINE_integer("seeds", 5, "Number of runs (seeds 0..seeds-1).", lower_bound=1)
  flags.DEFINE_integer("first_seed", 0, "First seed.", lower_bound=0)
  flags.DEFINE_string("out", None, "Output JSON path.")
  flags.DEFINE_string("strategy_options", "{}", "JSON object of strategy options, e.g. "
                      "'{\"max_pareto\": 50}' (see the strategy's docstring).")
  flags.DEFINE_string("summarize", None, "Instead of running: a folder of benchmark JSON "
                      "files; prints the median final figures per problem and strategy and "
                      "writes one PNG per problem (median curve per strategy) there.")
  flags.DEFINE_string("reach", None, "With --summarize: LABEL@TRAININGS, e.g. 'coupled "
                      "qlognehvi@100': per costed strategy, the cost (in trainings) at which "
                      "its median figure, and each seed's, first reaches LABEL's median at "
                      "TRAININGS trainings.")
  flags.DEFINE_list("bounds", [], "Measured budgets OBJ=VALUE,... (raw units; table "
                    "objectives by column name, otherwise f1..fK): the score counts only "
                    "evaluations that meet them; PESMO models them (see "
                    "--bounds_to_strategy).")
  flags.DEFINE_bool("bounds_to_strategy", True, "With --bounds: give them to PESMO as "
                    "objective_bounds. False: PESMO proposes unconstrained (the score still "
                    "counts only feasible evaluations).")
  flags.DEFINE_integer("time_proposal_at", None, "Only time one proposal at this many "
                       "observations.", lower_bound=2)
  flags.DEFINE_integer("gp_fit_check", None, "Instead of running: fit PESMO's GPs (the GP "
                       "options of --strategy_options) to this many uniform points per seed "
                       "and print each objective's Spearman rank correlation between the "
                       "posterior mean and the truth on --gp_check_holdout other points.",
                       lower_bound=2)
  flags.DEFINE_enum("evaluation", None, list(costed.EVALUATIONS), "Instead of --budget "
                    "evaluations: a run with evaluation costs (search.benchmarks.costed). "
                    "coupled: every objective measured at each evaluation (any strategy); "
                    "decoupled: the strategy chooses one group of --costs per evaluation "
                    "(pesmo, qhvkg).")
  flags.DEFINE_list("costs", None, "--evaluation: GROUP=COST,... with GROUP objectives (table "
                    "columns, otherwise f1..fK) joined by '+' (measured together), e.g. "
                    "error=30,latency_ms+energy_mj=1; a coupled evaluation costs the sum.")
  flags.DEFINE_float("cost_budget", None, "--evaluation: cost per run, the initial design "
                     "(evaluated coupled) included; never exceeded.")
  flags.DEFINE_float("checkpoint_seconds", 30.0, "--evaluation: a running seed's checkpoint "
                     "(<out>.seed<N>.pkl) is rewritten after an evaluation once this many "
                     "seconds have passed.", lower_bound=0.0)
  flags.DEFINE_integer("gp_check_holdout", 200, "--gp_fit_check: held-out points per seed.",
                       lower_bound=3)


DEFAULT_BUDGET = {"branin_currin": 36, "zdt1": 44, "zdt2": 44, "dtlz2": 44, "cell_synthetic": 60,
                  "table": 100}


initial_points, score = initial_design, quality


def objective_names(problem: Problem) -> list[str]:
  """The names ``--bounds`` uses: a table's objective columns, else f1..fK."""
  if problem.table is not None:
    return list(problem.table.objectives)
  return ["f%d" % (k + 1) for k in range(problem.num_objectives)]


def parse_bounds(entries: Sequence[str], problem: Problem) -> list[float | None]:
  """``["latency_ms=4", ...]`` -> K entries (None or a float, raw units);
  ``ValueError`` naming the entry and what was expected."""
  names = objective_names(problem)
  bounds: list[float | None] = [None] * len(names)
  for entry in entries or ():
    name, sep, value = str(entry).partition("=")
    name = name.strip()
    if not sep or name not in names:
      raise ValueError("Invalid value for flag `--bounds`: %r. Expected OBJECTIVE=VALUE with "
                       "OBJECTIVE one of %s." % (entry, ", ".join(names)))
    if bounds[names.index(name)] is not None:
      raise ValueError("Invalid value for flag `--bounds`: %r is bounded twice." % name)
    try:
      bounds[names.index(name)] = float(value)
    except ValueError:
      bounds[names.index(name)] = np.nan
    if not np.isfinite(bounds[names.index(name)]):  # type: ignore[arg-type]
      raise ValueError("Invalid value for flag `--bounds`: %r. Expected a finite number "
                       "after %s=." % (entry, name))
  logs = problem.log_objectives or (False,) * len(names)
  feasibility.check_bounds(bounds, len(names), logs)  # positive on log objectives
  return bounds


def with_bounds(problem: Problem, bounds: Sequence[float | None]) -> tuple[Problem, dict[str, Any]]:
  """``problem`` scored on its feasible evaluations only (module doc);
  returns (problem, info dict for the JSON)."""
  info: dict[str, Any]
  info = {"bounds": {n: b for n, b in zip(objective_names(problem), bounds) if b is not None}}
  if problem.table is not None:
    table = problem.table
    mask = feasibility.feasible_rows(table.y, bounds)
    if not np.any(mask):
      raise ValueError("Invalid value for flag `--bounds`: no row of the table %r meets %s."
                       % (table.path, info["bounds"]))
    modelled = table.transform(table.y[mask])
    front = modelled[non_dominated_mask(modelled)]
    max_hv = hypervolume(front, table.reference)
    if not max_hv > 0:
      raise ValueError("Invalid value for flag `--bounds`: none of the %d rows of %r that meet "
                       "%s dominates the reference point %s, so the feasible hypervolume is "
                       "undefined." % (int(mask.sum()), table.path, info["bounds"],
                                       table.ref_point.tolist()))
    info.update(feasible_rows=int(mask.sum()), feasible_front_size=int(front.shape[0]),
                feasible_max_hypervolume_modelled=float(max_hv))
    fn = lambda y: hypervolume(table.transform(y[feasibility.feasible_rows(y, bounds)]),
                               table.reference) / max_hv
    return dataclasses.replace(problem, score=fn, metric="feasible_hypervolume_fraction"), info
  fn = lambda y: hypervolume(y[feasibility.feasible_rows(y, bounds)], problem.ref_point)
  return dataclasses.replace(problem, score=fn, metric="feasible_hypervolume"), info


def run_one(problem: Problem, strategy_name: str, budget: int, seed: int,
            progress: Callable[..., object] | None = None,
            bounds: Sequence[float | None] | None = None, bounds_to_strategy: bool = True,
            **options: Any) -> dict[str, Any]:
  """One run; returns the run's JSON record. PESMO gets the problem's
  reference point (its trust regions are centred on the points that
  contribute hypervolume), as does qLogNEHVI (its hypervolume's), and ``bounds`` (K entries, None or
  a raw upper bound; score them with ``with_bounds``) as ``objective_bounds``
  when ``bounds_to_strategy``; every strategy gets the problem's
  ``log_objectives`` unless ``options`` sets them."""
  if strategy_name in ("pesmo", "qlognehvi") and "reference_point" not in options:
    options = dict(options, reference_point=[float(r) for r in problem.ref_point])
  if (strategy_name == "pesmo" and bounds is not None and bounds_to_strategy
      and "objective_bounds" not in options):
    options = dict(options, objective_bounds=list(bounds))
  if problem.log_objectives and "log_objectives" not in options:
    options = dict(options, log_objectives=list(problem.log_objectives))
  strategy = make_strategy(strategy_name, problem.space, problem.num_objectives, seed=seed,
                           **options)
  x = initial_design(problem, seed)[:budget]
  y = problem.evaluate(x)
  scores = [quality(problem, y[:i + 1]) for i in range(x.shape[0])]
  fit, acq = [], []
  while x.shape[0] < budget:
    point = strategy.propose(x, y)
    x = np.vstack([x, point])
    y = np.vstack([y, problem.evaluate(point[None])])
    scores.append(quality(problem, y))
    fit.append(strategy.timings["fit_seconds"])
    acq.append(strategy.timings["acquisition_seconds"])
    if progress:
      progress(x.shape[0])
  record: dict[str, Any]
  record = {"seed": seed, problem.metric: scores, "fit_seconds": fit,  # type: ignore[dict-item]
            "acquisition_seconds": acq}
  if bounds is not None:
    ok = feasibility.feasible_rows(y, bounds)
    record.update(feasible_evaluations=int(ok.sum()),
                  feasible_proposals=int(ok[min(problem.num_initial, budget):].sum()))
  if problem.table is not None:
    record["rows"] = [int(i) for i in problem.table.rows(x)]
  return record


class Progress:
  """Prints ``done/total`` with an ETA to stderr."""

  def __init__(self, total: int, label: str) -> None:
    self.total, self.label, self.start, self.done = total, label, time.time(), 0

  def step(self, *unused: object) -> None:
    self.done += 1
    elapsed = time.time() - self.start
    eta = elapsed / self.done * (self.total - self.done)
    sys.stderr.write("\r%s %d/%d proposals, %.0fs elapsed, ETA %.0fs   "
                     % (self.label, self.done, self.total, elapsed, eta))
    sys.stderr.flush()


def run_benchmark(problem_name: str, strategy_name: str, budget: int | None = None, seeds: int = 5,
                  first_seed: int = 0, problem_args: dict[str, Any] | None = None,
                  on_run: Callable[[dict[str, Any]], object] | None = None,
                  bounds: Sequence[str] | None = None, bounds_to_strategy: bool = True,
                  **options: Any) -> dict[str, Any]:
  """The benchmark JSON of ``seeds`` runs (``problem_args``: ``make_problem``'s;
  ``bounds``: ``--bounds`` entries, see the module doc);
  ``on_run(partial_json)`` is called after each finished run."""
  problem = make_problem(problem_name, **(problem_args or {}))
  budget = budget or DEFAULT_BUDGET[problem_name]
  progress = Progress(seeds * max(budget - problem.num_initial, 0),
                      "%s/%s" % (problem_name, strategy_name))
  out: dict[str, Any]
  out = {"problem": problem_name, "strategy": strategy_name, "budget": budget, "runs": []}
  if problem.table is not None:
    out["table"] = problem.table.describe()
  values = None
  if bounds:
    values = parse_bounds(bounds, problem)
    problem, info = with_bounds(problem, values)
    out.update(info, bounds_to_strategy=bool(bounds_to_strategy and strategy_name == "pesmo"))
  for s in range(first_seed, first_seed + seeds):
    out["runs"].append(run_one(problem, strategy_name, budget, s, progress.step, values,
                               bounds_to_strategy, **options))
    if on_run:
      on_run(out)
  sys.stderr.write("\n")
  return out


def time_proposal(problem_name: str, strategy_name: str, n: int, seed: int = 0,
                  problem_args: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
  """Times a cold proposal at ``n`` observations and a warm one at ``n + 1``."""
  problem = make_problem(problem_name, **(problem_args or {}))
  x = problem.space.sample(np.random.default_rng(seed), n + 1)
  y = problem.evaluate(x)
  strategy = make_strategy(strategy_name, problem.space, problem.num_objectives, seed=seed,
                           **options)
  out = {}
  for label, count in (("cold", n), ("warm", n + 1)):
    start, cpu = time.perf_counter(), time.process_time()
    strategy.propose(x[:count], y[:count])
    out[label] = dict(strategy.timings, total_seconds=time.perf_counter() - start,
                      cpu_seconds=time.process_time() - cpu, observations=count)
  return out


def gp_fit_check(problem_name: str, n: int, seeds: int = 5, first_seed: int = 0, holdout: int = 200,
                 problem_args: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
  """How well PESMO's GP ranks unseen designs: per seed, ``n`` uniform
  training points and ``holdout`` other uniform points; per objective, the
  Spearman correlation between the posterior mean (averaged over the
  hyperparameter samples) and the true values on the held-out points. A rank
  statistic, so the GP's monotone output transforms do not matter. Returns
  ``{"spearman": [[per objective] per seed], "median": [per objective],
  "lengthscales": [[per objective: mean over samples, per variable] per seed]}``."""
  problem = make_problem(problem_name, **(problem_args or {}))
  if problem.log_objectives and "log_objectives" not in options:  # as run_one
    options = dict(options, log_objectives=list(problem.log_objectives))
  rhos, lengths = [], []
  for seed in range(first_seed, first_seed + seeds):
    size = problem.space.candidates.shape[0] if problem.space.candidates is not None else None
    if size is not None and size < n + 3:
      raise ValueError("Invalid value for argument `gp_fit_check`: %d training points and "
                       "at least 3 held-out ones need %d designs; %s has %d."
                       % (n, n + 3, problem_name, size))
    x = problem.space.sample(np.random.default_rng(seed), n + holdout, min_count=n + 3)
    y = problem.evaluate(x)
    strategy: Any
    strategy = make_strategy("pesmo", problem.space, problem.num_objectives, seed=seed,
                             **options)
    z = problem.space.encode(x)
    row, row_l = [], []
    for k, model in enumerate(strategy.gps):
      model.fit(z[:n], y[:n, k])
      mean = np.mean([s.predict(z[n:])[0] for s in model.samples], axis=0)
      row.append(float(stats.spearmanr(mean, y[n:, k])[0]))
      row_l.append(np.mean([np.exp(s.theta[:model.num_groups]) for s in model.samples],
                           axis=0).tolist())
    rhos.append(row)
    lengths.append(row_l)
  return {"problem": problem_name, "n": n, "holdout": holdout, "options": options,
          "seeds": list(range(first_seed, first_seed + seeds)), "spearman": rhos,
          "median": np.median(rhos, axis=0).tolist(), "lengthscales": lengths}


METRICS = {"log_hv_gap": "log10 HV gap", "hypervolume": "hypervolume",
           "hypervolume_fraction": "HV fraction of the true front",
           "feasible_hypervolume": "hypervolume of the feasible evaluations",
           "feasible_hypervolume_fraction": "HV fraction of the true feasible front"}
# Metrics where a smaller figure is better (the others: larger is better).
LOWER_IS_BETTER = frozenset({"log_hv_gap"})


def worst_seed(metric: str, seeds: Sequence[int], finals: Any) -> tuple[int, float]:
  """(seed, final figure) of the worst run: the largest ``metric`` when
  ``metric`` is in ``LOWER_IS_BETTER``, else the smallest (the first such
  seed on ties)."""
  finals = np.asarray(finals, dtype=float)
  if finals.size == 0 or finals.size != len(seeds):
    raise ValueError("Invalid arguments to worst_seed. Expected one final figure per seed "
                     "(at least one). Received %d seeds and %d figures."
                     % (len(seeds), finals.size))
  i = int(np.argmax(finals) if metric in LOWER_IS_BETTER else np.argmin(finals))
  return int(seeds[i]), float(finals[i])


def summarize(folder: str) -> dict[str, dict[str, tuple[float, int, int, float]]]:
  """Median final figure per (problem, strategy) over the JSON files in
  ``folder``, the runs of one (problem, strategy, options, budget) merged
  across files by seed (per-seed files, resumed runs); writes
  ``<problem>.png`` (median curve per strategy) there. A strategy run with
  options is labelled ``strategy {options}``. Returns {problem: {strategy:
  (median final, number of runs, worst seed, its final figure)}} (worst:
  ``worst_seed``); a seed found twice with different figures is a
  ValueError naming both files."""
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  merged: dict[Any, Any] = {}  # (problem, label, budget) -> (metric, {seed: (series, path)})
  for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    with open(path) as f:
      data = json.load(f)
    if (not isinstance(data, dict) or "runs" not in data or not data["runs"]
        or "evaluation" in data):  # costed runs: costed.summarize_costed
      continue
    key = next(k for k in METRICS if k in data["runs"][0])
    options = data.get("strategy_options") or {}
    label = data["strategy"] + (" " + json.dumps(options, sort_keys=True) if options else "")
    entry = merged.setdefault((data["problem"], label, data.get("budget")), (key, {}))
    for run in data["runs"]:
      seen = entry[1].get(run["seed"])
      if seen is not None and seen[0] != run[key]:
        raise ValueError("Conflicting runs for %s/%s seed %d in %s and %s: expected one "
                         "figure per seed." % (data["problem"], label, run["seed"], seen[1],
                                               path))
      entry[1][run["seed"]] = (run[key], path)
  table: dict[str, dict[str, tuple[float, int, int, float]]] = {}
  curves: dict[Any, Any] = {}
  for (problem, label, _), (key, by_seed) in sorted(merged.items(), key=str):
    seeds = sorted(by_seed)
    series = np.array([by_seed[s][0] for s in seeds])
    table.setdefault(problem, {})[label] = ((float(np.median(series[:, -1])), series.shape[0])
                                            + worst_seed(key, seeds, series[:, -1]))
    curves.setdefault(problem, {})[label] = (key, np.median(series, 0))
  for problem, by_strategy in curves.items():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for strategy, (key, curve) in sorted(by_strategy.items()):
      ax.plot(np.arange(1, curve.size + 1), curve, label=strategy)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("median " + METRICS[key])
    ax.set_title(problem)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(folder, problem + ".png"))
    plt.close(fig)
  return table


def _problem_args(fv: Any) -> dict[str, Any]:
  """make_problem's keyword arguments from the table flags of the parsed flags
  ``fv`` (checked)."""
  table_flags = {"table": fv.table, "variables": fv.variables,
                 "objectives": fv.objectives}
  if fv.problem != "table":
    given = [k for k, v in table_flags.items() if v] + (["log_objectives"]
                                                        if fv.log_objectives else [])
    if given:
      raise app.UsageError("--%s apply only to --problem=table." % ", --".join(given))
    return {}
  missing = [k for k, v in table_flags.items() if not v]
  if missing:
    raise app.UsageError("--problem=table needs --%s." % ", --".join(missing))
  return dict(table_flags, log_objectives=fv.log_objectives,
              num_initial=fv.num_initial)


def _costed_arguments(problem: Any) -> Any:
  """The checked ``--evaluation`` flags: ``ObjectiveGroups`` (ValueError otherwise)."""
  costed.check_evaluation(FLAGS.evaluation, FLAGS.strategy)
  try:
    costed.check_strategy_available(FLAGS.evaluation, FLAGS.strategy)
  except ImportError as e:
    raise ValueError(str(e)) from e
  given = [n for n in ("bounds", "time_proposal_at", "gp_fit_check", "budget")
           if getattr(FLAGS, n)]
  if given:
    raise ValueError("Invalid flags: --%s cannot be combined with --evaluation (its runs "
                     "stop at --cost_budget)." % ", --".join(given))
  groups = costed.parse_costs(FLAGS.costs, problem)
  if FLAGS.cost_budget is None or not FLAGS.cost_budget >= groups.coupled_cost():
    raise ValueError("Invalid value for flag `--cost_budget`. Expected a number at least the "
                     "cost of one coupled evaluation (%g). Received %r."
                     % (groups.coupled_cost(), FLAGS.cost_budget))
  return groups


def _run_costed(problem: Any, groups: Any, options: dict[str, Any]) -> None:
  """--evaluation: the costed runs, their JSON and a one-line summary per seed."""
  result = costed.run_costed_benchmark(problem, FLAGS.strategy, FLAGS.evaluation, groups,
                                       FLAGS.cost_budget, FLAGS.seeds, FLAGS.first_seed,
                                       options, FLAGS.out, FLAGS.checkpoint_seconds)
  seeds = range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)
  for run in (r for r in result["runs"] if r["seed"] in seeds):  # this command's seeds
    last = run["evaluations"][-1] if run["evaluations"] else {}
    counts: dict[str, int] = {}
    for e in run["evaluations"]:
      counts[e["group"]] = counts.get(e["group"], 0) + 1
    seconds = run["proposal_seconds"]
    print("%s %s seed %d: final %s %.4f at cost %.0f; evaluations %s; %.2f s per proposal "
          "(median of %d)" % (FLAGS.evaluation, FLAGS.strategy, run["seed"],
                              result["metric"], last.get(result["metric"], 0.0),
                              last.get("cumulative_cost", 0.0), json.dumps(counts),
                              float(np.median(seconds)) if seconds else 0.0, len(seconds)))


def _parse_reach(spec: str) -> tuple[str, int]:
  """``--reach``'s (label, trainings); a UsageError naming the flag otherwise."""
  label, _, count = spec.rpartition("@")
  if not label or not count.isdigit() or int(count) < 1:
    raise app.UsageError("Invalid value for flag `--reach`: expected LABEL@TRAININGS, e.g. "
                         "'coupled qlognehvi@100'. Received %r." % (spec,))
  return label.strip(), int(count)


def main(argv: Sequence[str]) -> None:
  del argv
  if FLAGS.reach and not FLAGS.summarize:
    raise app.UsageError("--reach needs --summarize=FOLDER.")
  if FLAGS.summarize:
    if FLAGS.reach:
      _parse_reach(FLAGS.reach)  # before reading any file
    problem: Any  # a name here, a Problem below
    for problem, by_strategy in sorted(summarize(FLAGS.summarize).items()):
      print(problem + ": " + ", ".join(
          "%s median %.4f, worst %.4f (seed %d) (%d runs)" % (s, v, w, ws, n)
          for s, (v, n, ws, w) in sorted(by_strategy.items())))
    merged = costed.load_costed(FLAGS.summarize)   # read once for both tables
    table = costed.summarize_costed(FLAGS.summarize, merged=merged)
    for line in costed.format_summary(table) + costed.format_seeds_below(
        costed.seeds_below(table)):
      print(line)
    for line in costed.format_placement(costed.placement(FLAGS.summarize, FLAGS.num_initial,
                                                         merged)):
      print(line)
    if FLAGS.reach:
      reference, trainings = _parse_reach(FLAGS.reach)
      try:
        reach = costed.cost_to_reach(merged, reference, trainings)
      except ValueError as e:
        raise app.UsageError(str(e)) from e
      for line in costed.format_reach(reach, reference, trainings):
        print(line)
    return
  options = json.loads(FLAGS.strategy_options)
  if not isinstance(options, dict):
    raise app.UsageError("--strategy_options must be a JSON object, got %r."
                         % FLAGS.strategy_options)
  problem_args = _problem_args(FLAGS)
  try:  # bad tables, bounds and costs are refused here, before any run
    problem = make_problem(FLAGS.problem, **problem_args)
    if FLAGS.bounds:
      with_bounds(problem, parse_bounds(FLAGS.bounds, problem))
    if FLAGS.evaluation:
      groups = _costed_arguments(problem)
  except ValueError as e:
    sys.exit("search.benchmarks.benchmark: %s" % e)
  if FLAGS.evaluation:
    _run_costed(problem, groups, options)
    return
  names = _strategy_names()
  for name in names:
    if FLAGS.bounds and name != "pesmo":
      sys.stderr.write("note: --strategy=%s ignores --bounds when proposing; only the score "
                       "uses them.\n" % name)
  if FLAGS.gp_fit_check:
    try:
      result = gp_fit_check(FLAGS.problem, FLAGS.gp_fit_check, FLAGS.seeds, FLAGS.first_seed,
                            FLAGS.gp_check_holdout, problem_args, **options)
    except ValueError as e:
      sys.exit("search.benchmarks.benchmark: %s" % e)
    if FLAGS.out:
      os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
      with open(FLAGS.out, "w") as f:
        json.dump(result, f)
    for seed, row in zip(result["seeds"], result["spearman"]):
      print("seed %d: Spearman %s" % (seed, ", ".join("%.3f" % r for r in row)))
    print("%s n=%d holdout=%d: median Spearman per objective %s" % (
        FLAGS.problem, FLAGS.gp_fit_check, FLAGS.gp_check_holdout,
        ", ".join("%.3f" % r for r in result["median"])))
    return
  if FLAGS.time_proposal_at:
    for name in names:
      result = time_proposal(FLAGS.problem, name, FLAGS.time_proposal_at,
                             problem_args=problem_args, **options)
      print(json.dumps(dict(result, strategy=name), indent=1))
    return
  for name in names:
    _run_and_print(name, problem_args, options)


def _strategy_names() -> list[str]:
  """--strategies (checked: known, installed, --out with {strategy}) or [--strategy]."""
  names = FLAGS.strategies or [FLAGS.strategy]
  unknown = [n for n in names if n not in STRATEGIES]
  decoupled_only = [n for n in unknown if n in DECOUPLED_STRATEGIES]
  if decoupled_only:
    raise app.UsageError("--strategy=%s decouples evaluations: run it with "
                         "--evaluation=decoupled --costs=... --cost_budget=...."
                         % decoupled_only[0])
  if unknown:
    raise app.UsageError("--strategies: unknown %s; expected some of %s."
                         % (", ".join(unknown), ", ".join(sorted(STRATEGIES))))
  if len(names) > 1 and FLAGS.out and "{strategy}" not in FLAGS.out:
    raise app.UsageError("--strategies names %d strategies: --out must hold {strategy} (one "
                         "file each), got %r." % (len(names), FLAGS.out))
  for name in names:  # before any run: a missing optional package is one clear line
    try:
      check_available(name)
    except ImportError as e:
      sys.exit("search.benchmarks.benchmark: %s" % e)
  return names


def _run_and_print(name: str, problem_args: dict[str, Any], options: dict[str, Any]) -> None:
  """One strategy's ``--seeds`` runs: written to ``--out`` after each seed
  (a cut-short run keeps its finished seeds), the final figures printed."""
  out = FLAGS.out.replace("{strategy}", name) if FLAGS.out else None
  def write(result: dict[str, Any]) -> None:
    if out:
      os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
      with open(out, "w") as f:
        json.dump(dict(result, strategy_options=options), f)
  result = run_benchmark(FLAGS.problem, name, FLAGS.budget, FLAGS.seeds,
                         FLAGS.first_seed, problem_args, on_run=write, bounds=FLAGS.bounds,
                         bounds_to_strategy=FLAGS.bounds_to_strategy, **options)
  key = next(k for k in METRICS if k in result["runs"][0])
  final = [r[key][-1] for r in result["runs"]]
  q1, q3 = np.percentile(final, [25, 75])
  worst = worst_seed(key, [r["seed"] for r in result["runs"]], final)
  seconds = [f + a for r in result["runs"] for f, a in zip(r["fit_seconds"],
                                                           r["acquisition_seconds"])]
  print("%s %s budget=%d seeds=%d median final %s = %.4f (IQR %.4f-%.4f), worst %.4f "
        "(seed %d)  (per seed: %s); %.2f s per proposal (mean wall)" % (
            FLAGS.problem, name, result["budget"], FLAGS.seeds, METRICS[key],
            float(np.median(final)), q1, q3, worst[1], worst[0],
            ", ".join("%.4f" % f for f in final),
            float(np.mean(seconds)) if seconds else 0.0))
  if FLAGS.bounds:
    print("feasible evaluations per seed: %s" % ", ".join(
        str(r["feasible_evaluations"]) for r in result["runs"]))


if __name__ == "__main__":
  define_flags()
  app.run(main)
