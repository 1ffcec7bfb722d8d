"""BoTorch anchors: qLogNEHVI, qLogNParEGO and PES on the benchmark problems.

  python -m search.benchmarks.anchors --problem=zdt1 --strategy=qlognehvi \\
      --seeds=5 --out=runs/anchors/zdt1_qlognehvi.json

The same problems (``search.benchmarks.problems``), the same seeded initial
points (``benchmark.initial_design``), the same budgets and the same scoring
(``benchmark.quality``: log10 hypervolume gap, or hypervolume where the
optimum is unknown) as ``python -m search.benchmarks.benchmark``, and the same
JSON (``{"problem", "strategy", "budget", "runs": [{"seed", "log_hv_gap" (or
"hypervolume"), "fit_seconds", "acquisition_seconds"}]}``; on spaces with a
finite candidate set each run also lists the evaluated ``rows``), so
``benchmark --summarize`` reads both. Needs the ``bench`` extra
(``pip install -e ".[bench]"``: BoTorch on PyTorch).

The BoTorch setup is the one of BoTorch's multi-objective tutorials
(Daulton et al. 2021 and the ``multi_objective_bo`` tutorial), q = 1:
  * model: a multi-output ``SingleTaskGP`` (BoTorch's default priors and
    kernel) on inputs scaled to the unit cube, ``Standardize`` outcomes,
    fitted by maximum marginal likelihood (``fit_gpytorch_mll``) from
    scratch at every iteration; objectives negated (BoTorch maximizes) and
    not log-transformed (raw values, as the issue-4 anchors);
  * ``qlognehvi``: ``qLogNoisyExpectedHypervolumeImprovement`` (Ament et al.
    2023) with the problem's reference point, 128 Sobol QMC samples,
    ``prune_baseline``;
  * ``qlognparego``: ``qLogNParEGO`` (random Chebyshev weights per
    iteration, Knowles 2006, with log-noisy EI);
  * ``pes``: ``qMultiObjectivePredictiveEntropySearch`` (Garrido-Merchan and
    Hernandez-Lobato 2019) on 10 Pareto sets of 10 points from
    ``sample_optimal_points`` (random-feature paths, random search), its
    acquisition maximized without gradients as BoTorch recommends; where a
    sampled front has fewer than 10 points, 5, 2 or 1 per set
    (``sample_pareto_sets``; each run records ``pes_pareto_points``).
Continuous spaces: ``optimize_acqf`` with ``--num_restarts`` L-BFGS-B starts
from ``--raw_samples`` points. Spaces with a finite candidate set (the
tabular problem): the acquisition on every row not yet evaluated (one-hot
inputs of ``space.encode``, float64, encoded once per run), the best row
proposed; rows are scored 128 per call (``score_rows``: the values do not
depend on the batch, tested against one row per call).

``--out`` is written after every proposal and resumed: a command re-run with
the same ``--out`` keeps the seeds already there and continues a stopped seed
from its last proposal with the saved PyTorch RNG state (the same rows as an
uninterrupted run); a file from another problem, strategy, budget or
settings is refused. Each run records ``load_average`` (1/5/15 min) at its
start and end.

References:
  S. Daulton, M. Balandat, E. Bakshy. "Parallel Bayesian Optimization of
  Multiple Noisy Objectives with Expected Hypervolume Improvement",
  NeurIPS 2021. S. Ament, S. Daulton, D. Eriksson, M. Balandat, E. Bakshy.
  "Unexpected Improvements to Expected Improvement for Bayesian
  Optimization", NeurIPS 2023. J. Knowles, "ParEGO", IEEE TEVC 10(1), 2006.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

# pylint: disable=wrong-import-position
import json
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
from absl import app, flags, logging

from search.benchmarks import benchmark
from search.benchmarks.problems import make_problem
from tea_keras import errors
from tea_keras import files

STRATEGIES = ("qlognehvi", "qlognparego", "pes")
FLAGS = flags.FLAGS


def import_botorch() -> tuple[Any, Any]:
  """(torch, botorch) or an ImportError saying how to install them."""
  try:
    # torch/BoTorch: optional (the bench extra), imported only for the anchors.
    import torch  # pylint: disable=import-outside-toplevel
    import botorch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("search.benchmarks.anchors needs BoTorch and PyTorch (the `bench` "
                      "extra): pip install -e \".[bench]\". Import error: %s" % (e,)) from e
  return torch, botorch


def _candidate_set(space: Any) -> np.ndarray | None:
  """The (N, d) finite candidate rows of ``space``, or None."""
  return getattr(space, "candidates", None)


def check_supported(problem: Any, strategy: str) -> None:
  """ValueError (before any work) for a strategy/space pair not supported."""
  if strategy not in STRATEGIES:
    raise errors.invalid_value("strategy", "one of %s" % ", ".join(STRATEGIES), strategy)
  finite = _candidate_set(problem.space) is not None
  if not problem.space.all_continuous and not finite:
    raise ValueError("Invalid problem %r for the BoTorch anchors: expected a continuous "
                     "space or a finite candidate set (a table); received %r."
                     % (problem.name, problem.space))
  if strategy == "pes" and finite:
    raise ValueError("Invalid strategy 'pes' for problem %r: PES's Pareto-set sampler "
                     "needs a continuous box." % (problem.name,))


class _Inputs:
  """Native points <-> BoTorch model inputs: the unit cube for boxes,
  ``space.encode`` (one-hot) for candidate sets."""

  def __init__(self, space: Any) -> None:
    self.space = space
    self.continuous = space.all_continuous and _candidate_set(space) is None
    self._candidates: Any = None
    self.candidate_keys: Any = None

  def to_model(self, x: np.ndarray) -> np.ndarray:
    if self.continuous:
      return (x - self.space.lower) / (self.space.upper - self.space.lower)
    return self.space.encode(x)

  def candidates(self, torch: Any) -> Any:
    """The candidate rows and their float64 model inputs, encoded once."""
    if self._candidates is None:
      rows = _candidate_set(self.space)
      self.candidate_keys = self.space.keys(rows)
      self._candidates = rows, torch.tensor(self.to_model(rows), dtype=torch.float64)  # type: ignore[arg-type]
    return self._candidates

  def from_unit(self, u: np.ndarray) -> np.ndarray:
    return self.space.lower + np.clip(u, 0.0, 1.0) * (self.space.upper - self.space.lower)


def fit_model(torch: Any, train_x: Any, train_y: Any) -> Any:
  """Multi-output SingleTaskGP on (n, D) inputs and (n, M) outcomes to maximize."""
  # BoTorch: optional (the bench extra), imported only for the anchors.
  from botorch.fit import fit_gpytorch_mll  # pylint: disable=import-outside-toplevel
  from botorch.models import SingleTaskGP  # pylint: disable=import-outside-toplevel
  from botorch.models.transforms.outcome import Standardize  # pylint: disable=import-outside-toplevel
  from gpytorch.mlls import ExactMarginalLogLikelihood  # pylint: disable=import-outside-toplevel
  x = torch.tensor(train_x, dtype=torch.float64)
  y = torch.tensor(train_y, dtype=torch.float64)
  model = SingleTaskGP(x, y, outcome_transform=Standardize(m=y.shape[-1]))
  fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
  return model


def make_acquisition(torch: Any, strategy: str, model: Any, train_x: Any, ref_point: Any,
                     settings: dict[str, Any]) -> Any:
  """The BoTorch acquisition (module doc); ``ref_point`` in maximization units."""
  # BoTorch: optional (the bench extra), imported only for the anchors.
  from botorch.sampling import SobolQMCNormalSampler  # pylint: disable=import-outside-toplevel
  from botorch.acquisition.multi_objective import logei, parego  # pylint: disable=import-outside-toplevel
  x = torch.tensor(train_x, dtype=torch.float64)
  sampler = SobolQMCNormalSampler(sample_shape=torch.Size([settings["mc_samples"]]))
  if strategy == "qlognehvi":
    return logei.qLogNoisyExpectedHypervolumeImprovement(
        model, ref_point=list(ref_point), X_baseline=x, prune_baseline=True, sampler=sampler)
  if strategy == "qlognparego":
    return parego.qLogNParEGO(model, X_baseline=x, sampler=sampler, prune_baseline=True)
  from botorch.acquisition.multi_objective.predictive_entropy_search import (  # pylint: disable=import-outside-toplevel
      qMultiObjectivePredictiveEntropySearch)
  from botorch.acquisition.multi_objective.utils import (  # pylint: disable=import-outside-toplevel
      random_search_optimizer, sample_optimal_points)
  bounds = torch.stack([torch.zeros(x.shape[-1]), torch.ones(x.shape[-1])]).double()
  pareto_sets = sample_pareto_sets(
      lambda n: sample_optimal_points(
          model=model, bounds=bounds, num_samples=settings["pes_pareto_sets"], num_points=n,
          optimizer=random_search_optimizer,
          optimizer_kwargs={"pop_size": 2000, "max_tries": 10})[0],
      settings["pes_pareto_points"])
  acq = qMultiObjectivePredictiveEntropySearch(model, pareto_sets)
  acq.num_pareto_points = int(pareto_sets.shape[-2])  # type: ignore[assignment]
  return acq


def sample_pareto_sets(sample: Callable[[int], Any], num_points: int) -> Any:
  """``sample(n)`` (BoTorch's ``sample_optimal_points``: a (S, n, d) tensor of
  n Pareto points per sampled function), halving n while it fails.

  BoTorch needs the same n for every sample and raises "Only found k optimal
  points instead of n" when a sampled front has fewer than n points after its
  random search grew the population ``max_tries`` times: early in a run, a
  sampled BraninCurrin or ZDT2 front can have 5 or 6. Retrying with n // 2
  (down to 1) keeps PES running on those fronts with the points they have;
  any other error is raised as it is."""
  n = int(num_points)
  while True:
    try:
      return sample(n)
    except RuntimeError as e:
      if n <= 1 or "optimal points instead of" not in str(e):
        raise
      logging.warning("PES anchor: %s Retrying with %d Pareto points per sample.", e, n // 2)
      n //= 2


def maximize(torch: Any, strategy: str, acq: Any, inputs: _Inputs, excluded_keys: set[bytes],
             settings: dict[str, Any]) -> np.ndarray:
  """Native (d,) maximizer of ``acq``: optimize_acqf on the unit cube, or the
  best unevaluated row of the candidate set."""
  if inputs.continuous:
    # BoTorch: optional (the bench extra), imported only for the anchors.
    from botorch.optim import optimize_acqf  # pylint: disable=import-outside-toplevel
    d = inputs.space.dim
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    options: dict[str, Any] = {"batch_limit": 5, "maxiter": 200}
    if strategy == "pes":
      options = {"with_grad": False, "maxiter": settings["pes_maxiter"]}
    cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=settings["num_restarts"],
                            raw_samples=settings["raw_samples"], options=options)
    return inputs.from_unit(cand.detach().numpy()[0])
  rows, z = inputs.candidates(torch)
  free = np.array([k not in excluded_keys for k in inputs.candidate_keys])
  values = score_rows(torch, acq, z[torch.from_numpy(free)], settings["row_batch"])
  return rows[free][int(torch.argmax(values))]


def score_rows(torch: Any, acq: Any, z: Any, batch: int) -> Any:
  """(N,) acquisition value of each (N, D) model-input row as a q = 1 batch,
  ``batch`` rows per call, without autograd. Each row's value does not depend
  on the batch it is in (one shared set of QMC base samples, the baseline's
  cached root), so ``batch`` only sets the speed: 128 rows per call is 2.3x
  faster than 2,048 on one core (the (MC x rows x cells x objectives) tensors
  of qLogNEHVI then stay in cache; measured at 60 observations of the tabular
  problem, BENCHMARKS.md)."""
  with torch.no_grad():
    return torch.cat([acq(z[i:i + batch].unsqueeze(-2)) for i in range(0, z.shape[0], batch)])


def run_one(problem: Any, strategy: str, budget: int, seed: int, settings: dict[str, Any],
            progress: Callable[..., object] | None = None, resume: dict[str, Any] | None = None,
            checkpoint: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
  """One seeded run from ``benchmark.initial_design``; the benchmark's record.
  ``resume``: a ``checkpoint`` state of this seed to continue from (its points,
  timings and PyTorch RNG state, so the run goes on as if never stopped);
  ``checkpoint(state)`` is called after every proposal."""
  torch, _ = import_botorch()
  inputs = _Inputs(problem.space)
  if resume:
    x = np.asarray(resume["x"], dtype=float)
    fit, acq_s = resume["fit_seconds"], resume["acquisition_seconds"]
    pes_points = resume.get("pes_pareto_points", [])
    torch.set_rng_state(torch.tensor(resume["torch_rng_state"], dtype=torch.uint8))
    load = resume["load_average"]
  else:
    torch.manual_seed(seed)
    x, fit, acq_s = benchmark.initial_design(problem, seed)[:budget], [], []
    pes_points = []
    load = {"start": list(os.getloadavg())}
  # Pareto points per sampled set, per proposal (sample_pareto_sets): PES runs only.
  pes_record = {"pes_pareto_points": pes_points} if strategy == "pes" else {}
  y = problem.evaluate(x)
  scores = [benchmark.quality(problem, y[:i + 1]) for i in range(x.shape[0])]
  ref = -_scoring_space(problem, np.asarray(problem.ref_point, dtype=float)[None])[0]
  while x.shape[0] < budget:
    start = time.perf_counter()
    model = fit_model(torch, inputs.to_model(x), -_scoring_space(problem, y))
    fit.append(time.perf_counter() - start)
    start = time.perf_counter()
    acq = make_acquisition(torch, strategy, model, inputs.to_model(x), ref, settings)
    point = maximize(torch, strategy, acq, inputs, set(problem.space.keys(x)), settings)
    acq_s.append(time.perf_counter() - start)
    if strategy == "pes":
      pes_points.append(acq.num_pareto_points)
    x = np.vstack([x, point])
    y = np.vstack([y, problem.evaluate(point[None])])
    scores.append(benchmark.quality(problem, y))
    if checkpoint:
      checkpoint(dict({"seed": seed, "x": x.tolist(), "fit_seconds": fit,
                       "acquisition_seconds": acq_s,
                       "torch_rng_state": torch.get_rng_state().tolist(), "load_average": load},
                      **pes_record))
    if progress:
      progress(x.shape[0])
  record = dict({"seed": seed, _metric(problem): scores, "fit_seconds": fit,
                 "acquisition_seconds": acq_s,
                 "load_average": dict(load, end=list(os.getloadavg()))}, **pes_record)
  if getattr(problem, "table", None) is not None:
    record["rows"] = [int(i) for i in problem.table.rows(x)]
  return record


def _metric(problem: Any) -> str:
  """The JSON key of the problem's figure (as the benchmark writes it)."""
  default = "hypervolume" if problem.max_hypervolume is None else "log_hv_gap"
  return getattr(problem, "metric", None) or default


def _scoring_space(problem: Any, y: Any) -> np.ndarray:
  """Objectives in the space the problem is scored in: a table's modelled
  space (log of its ``log_objectives``, where its hypervolume fraction is
  computed), raw values otherwise (the benchmark scores raw hypervolume)."""
  table = getattr(problem, "table", None)
  return table.transform(y) if table is not None else np.asarray(y, dtype=float)


DEFAULT_SETTINGS = {"num_restarts": 10, "raw_samples": 512, "mc_samples": 128,
                    "pes_pareto_sets": 10, "pes_pareto_points": 10, "pes_maxiter": 50,
                    "row_batch": 128}


def run_anchor(problem: Any, strategy: str, budget: int | None = None, seeds: int = 5,
               first_seed: int = 0, settings: dict[str, Any] | None = None,
               out: str | None = None) -> dict[str, Any]:
  """The benchmark JSON for one (problem, strategy) over seeds ``first_seed``..
  If ``out`` is given the JSON is written there after every proposal and
  resumed from there: seeds already in it are kept, not re-run, and a seed
  stopped midway goes on from its last proposal (``"partial"`` in the file)."""
  settings = dict(DEFAULT_SETTINGS, **(settings or {}))
  check_supported(problem, strategy)
  torch, botorch = import_botorch()
  budget = budget or benchmark.DEFAULT_BUDGET.get(problem.name)
  if not budget:
    raise errors.invalid_value("budget",
                               "a positive integer (problem %r has no default)" % (problem.name,),
                               budget)
  result = {"problem": problem.name, "strategy": strategy, "budget": budget, "runs": [],
            "settings": settings,
            "versions": {"botorch": botorch.__version__, "torch": torch.__version__}}
  if getattr(problem, "table", None) is not None:
    result["table"] = problem.table.describe()
  if out and os.path.exists(out):
    result = _resumed(out, result)
  done = {r["seed"] for r in result["runs"]}
  todo = [s for s in range(first_seed, first_seed + seeds) if s not in done]
  _load_fused_kernel()  # BoTorch compiles its C++ qLogEHVI kernel once: not timed
  partial_seed = (result.get("partial") or {}).get("seed")
  left = [budget - (len(result["partial"]["x"]) if s == partial_seed else problem.num_initial)
          for s in todo]  # a stopped seed's proposals already made are not counted again
  progress = benchmark.Progress(sum(max(n, 0) for n in left),
                                "%s/%s" % (problem.name, strategy))
  for seed in todo:
    partial = result.get("partial")
    resume = partial if partial and partial["seed"] == seed else None
    checkpoint = None
    if out:
      def checkpoint(state: dict[str, Any]) -> None:
        result["partial"] = state
        _write_json(out, result)
    result["runs"].append(run_one(problem, strategy, budget, seed, settings, progress.step,
                                  resume, checkpoint))
    result["runs"].sort(key=lambda r: r["seed"])
    if (result.get("partial") or {}).get("seed") == seed:
      del result["partial"]
    if out:
      _write_json(out, result)
  sys.stderr.write("\n")
  return result


def _resumed(out: str, fresh: dict[str, Any]) -> dict[str, Any]:
  """The JSON in ``out`` if it holds runs of the same problem, strategy,
  budget, settings and table as ``fresh``; a ValueError otherwise."""
  with open(out) as f:
    old = json.load(f)
  speed_only = ("row_batch",)
  for key in ("problem", "strategy", "budget", "settings", "table"):
    a, b = old.get(key), json.loads(json.dumps(fresh.get(key)))
    if key == "settings":
      a, b = ({k: v for k, v in (d or {}).items() if k not in speed_only} for d in (a, b))
    if a != b:
      raise ValueError("Invalid value for argument `out`: %s holds runs with %s=%r; this "
                       "command has %s=%r. Use another --out to start afresh."
                       % (out, key, old.get(key), key, fresh.get(key)))
  old["settings"], old["versions"] = fresh["settings"], fresh["versions"]
  return old


def _write_json(path: str, data: Any) -> None:
  """Writes ``data`` to ``path`` atomically (a stopped run leaves the old file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  files.write_json(path, data)


def _load_fused_kernel() -> None:
  """Loads (compiles on first use) BoTorch's fused qLogEHVI kernel, if this
  BoTorch has one, so that no proposal's timing includes the compilation."""
  # BoTorch: optional (the bench extra), imported only for the anchors.
  from botorch.acquisition.multi_objective import logei  # pylint: disable=import-outside-toplevel
  loader = getattr(logei, "_try_load_fused_kernel", None)
  if loader:
    loader()


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_enum("problem", "branin_currin",
                    ["branin_currin", "zdt1", "zdt2", "dtlz2", "table"],
                    "Benchmark problem (search.benchmarks.problems).")
  flags.DEFINE_string("table", None, "--problem=table: the CSV (as the benchmark's flag).")
  flags.DEFINE_list("variables", None, "--problem=table: categorical variable columns.")
  flags.DEFINE_list("objectives", None, "--problem=table: objective columns (minimized).")
  flags.DEFINE_list("log_objectives", [], "--problem=table: objectives modelled in log.")
  flags.DEFINE_integer("num_initial", 10, "--problem=table: uniform initial rows.",
                       lower_bound=2)
  flags.DEFINE_enum("strategy", "qlognehvi", list(STRATEGIES), "BoTorch strategy.")
  flags.DEFINE_integer("budget", None, "Evaluations per run, initial ones included "
                       "(default: the benchmark's).", lower_bound=2)
  flags.DEFINE_integer("seeds", 5, "Number of runs (seeds first_seed..).", lower_bound=1)
  flags.DEFINE_integer("first_seed", 0, "First seed.", lower_bound=0)
  flags.DEFINE_string("out", None, "Output JSON path, written after every proposal; an "
                      "existing one is resumed (its seeds kept, a stopped seed continued).")
  flags.DEFINE_integer("num_restarts", 10, "optimize_acqf restarts.", lower_bound=1)
  flags.DEFINE_integer("raw_samples", 512, "optimize_acqf raw samples.", lower_bound=1)
  flags.DEFINE_integer("threads", 1, "PyTorch intra-op threads.", lower_bound=1)


def main(argv: Sequence[str]) -> None:
  del argv
  # The benchmark's own table-flag checks (same flag names), so both CLIs
  # build the same problem from the same command line.
  problem = make_problem(FLAGS.problem, **benchmark._problem_args(FLAGS))  # pylint: disable=protected-access
  check_supported(problem, FLAGS.strategy)
  torch, _ = import_botorch()
  torch.set_num_threads(FLAGS.threads)
  try:
    result = run_anchor(problem, FLAGS.strategy, FLAGS.budget, FLAGS.seeds, FLAGS.first_seed,
                        {"num_restarts": FLAGS.num_restarts, "raw_samples": FLAGS.raw_samples},
                        out=FLAGS.out)
  except ValueError as e:
    sys.exit("search.benchmarks.anchors: %s" % e)
  key = _metric(problem)
  runs = result["runs"]
  final = [r[key][-1] for r in runs]
  worst = benchmark.worst_seed(key, [r["seed"] for r in runs], final)
  print("%s %s budget=%d seeds %s median final %s = %.4f, worst %.4f (seed %d)  (per seed: %s)"
        % (FLAGS.problem, FLAGS.strategy, result["budget"], ",".join(str(r["seed"]) for r in runs),
           key, float(np.median(final)), worst[1], worst[0], ", ".join("%.4f" % f for f in final)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
