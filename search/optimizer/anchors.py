"""BoTorch anchors: qLogNEHVI, qLogNParEGO and PES on the benchmark problems.

  python -m search.optimizer.anchors --problem=zdt1 --strategy=qlognehvi \\
      --seeds=5 --out=runs/anchors/zdt1_qlognehvi.json

The same problems (``search.optimizer.problems``), the same seeded initial
points (``benchmark.initial_design``), the same budgets and the same scoring
(``benchmark.quality``: log10 hypervolume gap, or hypervolume where the
optimum is unknown) as ``python -m search.optimizer.benchmark``, and the same
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
    acquisition maximized without gradients as BoTorch recommends.
Continuous spaces: ``optimize_acqf`` with ``--num_restarts`` L-BFGS-B starts
from ``--raw_samples`` points. Spaces with a finite candidate set (the
tabular problem): the acquisition on every row not yet evaluated (one-hot
inputs of ``space.encode``), the best row proposed.

References:
  S. Daulton, M. Balandat, E. Bakshy. "Parallel Bayesian Optimization of
  Multiple Noisy Objectives with Expected Hypervolume Improvement",
  NeurIPS 2021. S. Ament, S. Daulton, D. Eriksson, M. Balandat, E. Bakshy.
  "Unexpected Improvements to Expected Improvement for Bayesian
  Optimization", NeurIPS 2023. J. Knowles, "ParEGO", IEEE TEVC 10(1), 2006.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

# pylint: disable=wrong-import-position
import json
import sys
import time

import numpy as np
from absl import app, flags

from search.optimizer import benchmark

STRATEGIES = ("qlognehvi", "qlognparego", "pes")
FLAGS = flags.FLAGS


def import_botorch():
  """(torch, botorch) or an ImportError saying how to install them."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import botorch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("search.optimizer.anchors needs BoTorch and PyTorch (the `bench` "
                      "extra): pip install -e \".[bench]\". Import error: %s" % (e,)) from e
  return torch, botorch


def _candidate_set(space):
  """The (N, d) finite candidate rows of ``space``, or None."""
  return getattr(space, "candidates", None)


def check_supported(problem, strategy: str):
  """ValueError (before any work) for a strategy/space pair not supported."""
  if strategy not in STRATEGIES:
    raise ValueError("Invalid value for argument `strategy`. Expected one of %s. Received %r."
                     % (", ".join(STRATEGIES), strategy))
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

  def __init__(self, space):
    self.space = space
    self.continuous = space.all_continuous and _candidate_set(space) is None

  def to_model(self, x):
    if self.continuous:
      return (x - self.space.lower) / (self.space.upper - self.space.lower)
    return self.space.encode(x)

  def from_unit(self, u):
    return self.space.lower + np.clip(u, 0.0, 1.0) * (self.space.upper - self.space.lower)


def fit_model(torch, train_x, train_y):
  """Multi-output SingleTaskGP on (n, D) inputs and (n, M) outcomes to maximize."""
  from botorch.fit import fit_gpytorch_mll  # pylint: disable=import-outside-toplevel
  from botorch.models import SingleTaskGP  # pylint: disable=import-outside-toplevel
  from botorch.models.transforms.outcome import Standardize  # pylint: disable=import-outside-toplevel
  from gpytorch.mlls import ExactMarginalLogLikelihood  # pylint: disable=import-outside-toplevel
  x = torch.tensor(train_x, dtype=torch.float64)
  y = torch.tensor(train_y, dtype=torch.float64)
  model = SingleTaskGP(x, y, outcome_transform=Standardize(m=y.shape[-1]))
  fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
  return model


def make_acquisition(torch, strategy, model, train_x, ref_point, settings):
  """The BoTorch acquisition (module doc); ``ref_point`` in maximization units."""
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
  pareto_sets, _ = sample_optimal_points(
      model=model, bounds=bounds, num_samples=settings["pes_pareto_sets"],
      num_points=settings["pes_pareto_points"], optimizer=random_search_optimizer,
      optimizer_kwargs={"pop_size": 2000, "max_tries": 10})
  return qMultiObjectivePredictiveEntropySearch(model, pareto_sets)


def maximize(torch, strategy, acq, inputs, excluded_keys, settings):
  """Native (d,) maximizer of ``acq``: optimize_acqf on the unit cube, or the
  best unevaluated row of the candidate set."""
  if inputs.continuous:
    from botorch.optim import optimize_acqf  # pylint: disable=import-outside-toplevel
    d = inputs.space.dim
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    options = {"batch_limit": 5, "maxiter": 200}
    if strategy == "pes":
      options = {"with_grad": False, "maxiter": settings["pes_maxiter"]}
    cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=settings["num_restarts"],
                            raw_samples=settings["raw_samples"], options=options)
    return inputs.from_unit(cand.detach().numpy()[0])
  rows = _candidate_set(inputs.space)
  free = np.array([k not in excluded_keys for k in inputs.space.keys(rows)])
  rows = rows[free]
  z = torch.tensor(inputs.to_model(rows), dtype=torch.float64)
  with torch.no_grad():
    values = torch.cat([acq(z[i:i + 2048].unsqueeze(-2)) for i in range(0, z.shape[0], 2048)])
  return rows[int(torch.argmax(values))]


def run_one(problem, strategy: str, budget: int, seed: int, settings, progress=None):
  """One seeded run from ``benchmark.initial_design``; the benchmark's record."""
  torch, _ = import_botorch()
  torch.manual_seed(seed)
  inputs = _Inputs(problem.space)
  x = benchmark.initial_design(problem, seed)[:budget]
  y = problem.evaluate(x)
  scores = [benchmark.quality(problem, y[:i + 1]) for i in range(x.shape[0])]
  ref = -_scoring_space(problem, np.asarray(problem.ref_point, dtype=float)[None])[0]
  fit, acq_s = [], []
  while x.shape[0] < budget:
    start = time.perf_counter()
    model = fit_model(torch, inputs.to_model(x), -_scoring_space(problem, y))
    fit.append(time.perf_counter() - start)
    start = time.perf_counter()
    acq = make_acquisition(torch, strategy, model, inputs.to_model(x), ref, settings)
    point = maximize(torch, strategy, acq, inputs, set(problem.space.keys(x)), settings)
    acq_s.append(time.perf_counter() - start)
    x = np.vstack([x, point])
    y = np.vstack([y, problem.evaluate(point[None])])
    scores.append(benchmark.quality(problem, y))
    if progress:
      progress(x.shape[0])
  record = {"seed": seed, _metric(problem): scores, "fit_seconds": fit,
            "acquisition_seconds": acq_s}
  if getattr(problem, "table", None) is not None:
    record["rows"] = [int(i) for i in problem.table.rows(x)]
  return record


def _metric(problem) -> str:
  """The JSON key of the problem's figure (as the benchmark writes it)."""
  default = "hypervolume" if problem.max_hypervolume is None else "log_hv_gap"
  return getattr(problem, "metric", None) or default


def _scoring_space(problem, y):
  """Objectives in the space the problem is scored in: a table's modelled
  space (log of its ``log_objectives``, where its hypervolume fraction is
  computed), raw values otherwise (the benchmark scores raw hypervolume)."""
  table = getattr(problem, "table", None)
  return table.transform(y) if table is not None else np.asarray(y, dtype=float)


DEFAULT_SETTINGS = {"num_restarts": 10, "raw_samples": 512, "mc_samples": 128,
                    "pes_pareto_sets": 10, "pes_pareto_points": 10, "pes_maxiter": 50}


def run_anchor(problem, strategy: str, budget=None, seeds: int = 5, first_seed: int = 0,
               settings=None):
  """The benchmark JSON for one (problem, strategy) over ``seeds`` runs."""
  settings = dict(DEFAULT_SETTINGS, **(settings or {}))
  check_supported(problem, strategy)
  import_botorch()
  budget = budget or benchmark.DEFAULT_BUDGET.get(problem.name)
  if not budget:
    raise ValueError("Invalid value for argument `budget`. Expected a positive integer "
                     "(problem %r has no default). Received %r." % (problem.name, budget))
  progress = benchmark.Progress(seeds * max(budget - problem.num_initial, 0),
                                "%s/%s" % (problem.name, strategy))
  runs = [run_one(problem, strategy, budget, s, settings, progress.step)
          for s in range(first_seed, first_seed + seeds)]
  sys.stderr.write("\n")
  result = {"problem": problem.name, "strategy": strategy, "budget": budget, "runs": runs,
            "settings": settings}
  if getattr(problem, "table", None) is not None:
    result["table"] = problem.table.describe()
  return result


def define_flags():
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_enum("problem", "branin_currin",
                    ["branin_currin", "zdt1", "zdt2", "dtlz2", "table"],
                    "Benchmark problem (search.optimizer.problems).")
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
  flags.DEFINE_string("out", None, "Output JSON path.")
  flags.DEFINE_integer("num_restarts", 10, "optimize_acqf restarts.", lower_bound=1)
  flags.DEFINE_integer("raw_samples", 512, "optimize_acqf raw samples.", lower_bound=1)
  flags.DEFINE_integer("threads", 1, "PyTorch intra-op threads.", lower_bound=1)


def main(argv):
  del argv
  from search.optimizer.problems import make_problem  # pylint: disable=import-outside-toplevel
  # The benchmark's own table-flag checks (same flag names), so both CLIs
  # build the same problem from the same command line.
  problem = make_problem(FLAGS.problem, **benchmark._problem_args())  # pylint: disable=protected-access
  check_supported(problem, FLAGS.strategy)
  torch, botorch = import_botorch()
  torch.set_num_threads(FLAGS.threads)
  result = run_anchor(problem, FLAGS.strategy, FLAGS.budget, FLAGS.seeds, FLAGS.first_seed,
                      {"num_restarts": FLAGS.num_restarts, "raw_samples": FLAGS.raw_samples})
  result["versions"] = {"botorch": botorch.__version__, "torch": torch.__version__}
  key = _metric(problem)
  final = [r[key][-1] for r in result["runs"]]
  print("%s %s budget=%d seeds=%d median final %s = %.4f  (per seed: %s)" % (
      FLAGS.problem, FLAGS.strategy, result["budget"], FLAGS.seeds, key,
      float(np.median(final)), ", ".join("%.4f" % f for f in final)))
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump(result, f)


if __name__ == "__main__":
  define_flags()
  app.run(main)
