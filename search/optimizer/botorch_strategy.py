"""qLogNEHVI (BoTorch) as a strategy of the library: ``make_strategy("qlognehvi", ...)``.

References:
  S. Ament, S. Daulton, D. Eriksson, M. Balandat, E. Bakshy. "Unexpected
  Improvements to Expected Improvement for Bayesian Optimization", NeurIPS
  2023 (qLogNEHVI).
  S. Daulton, M. Balandat, E. Bakshy. "Parallel Bayesian Optimization of
  Multiple Noisy Objectives with Expected Hypervolume Improvement", NeurIPS
  2021 (qNEHVI: pending points as ``X_pending``, the pruned baseline).
  BoTorch's ``MixedSingleTaskGP`` and its ``CategoricalKernel``
  (k(x, x') = exp(-mean_v [x_v != x'_v] / l_v), one lengthscale per
  categorical variable) for categorical and mixed spaces.

The strongest coupled method of the benchmarks (BENCHMARKS.md, "Tabular
problem"), as a strategy a search can use. BoTorch is an optional extra
(``pip install -e ".[bench]"``): this module imports it only inside
functions, so the registry (``search.optimizer.strategies``) imports without
it; constructing the strategy, or ``check_available()``, raises an
``ImportError`` that names the extra and quotes the real import error.

The model: one multi-output GP on native coordinates. Categorical variables
enter as their integer codes under BoTorch's categorical kernel (the 20
variables of the TEA-DNN cell, ``search.cellspace``: one lengthscale each, no
one-hot); continuous variables are scaled to [0, 1] (BoTorch's default RBF
kernel, summed and multiplied with the categorical one in a mixed space); an
all-continuous space gets a ``SingleTaskGP`` on the unit cube. Outputs: the
``log_objectives`` are log-transformed, all objectives negated (BoTorch
maximizes) and standardized; hyperparameters by ``fit_gpytorch_mll`` (MAP
under BoTorch's default priors) at each proposal, noise learned.

The acquisition: ``qLogNoisyExpectedHypervolumeImprovement``, ``mc_samples``
Sobol QMC samples, ``prune_baseline``, pending points as ``X_pending`` (so
the improvement of a point is counted jointly with the pending ones, and a
pending point itself gains nothing), and the ``reference_point`` (raw units;
default: BoTorch's ``infer_reference_point`` on the observed values).
Maximized, q = 1, by ``base.maximize_acquisition`` over feasible points not
observed nor pending: every remaining row of a candidate set of at most
``exhaustive_limit`` rows (scored 128 rows per call); otherwise a pool of
``acq_pool`` uniform feasible points plus mutations of the observed front,
the ``refine`` best refined by hill climbing over one-value neighbours (the
cell space) or bounded Powell search (continuous). An unrestricted
all-continuous box uses BoTorch's ``optimize_acqf`` (L-BFGS-B from
``raw_samples`` raw samples, ``num_restarts`` restarts) instead.

Reproducibility: each proposal draws from generators seeded by (seed, number
of observations, number of pending points) alone, inside
``torch.random.fork_rng`` (PyTorch's global state is left as it was), so a
run is reproducible and a resumed search, which builds a fresh strategy
(``search.loop``), proposes what the uninterrupted one would have.

Threads: a proposal runs PyTorch and BLAS on ``threads`` threads (default 1,
restored afterwards; ``search.benchmarks.benchmark`` sets one thread for the
process anyway): the matrices are small (n observations), and on a shared
machine more threads cost several times the CPU (measured here: a fit on 10
points took 3x the CPU on PyTorch's default threads while other jobs ran).

Failure modes: ``fit_gpytorch_mll`` retries a failed fit (BoTorch's
``OptimizationWarning``); when every retry fails (``ModelFittingError``) a
``RuntimeWarning`` says so and the proposal comes from the last parameters
tried, rather than stopping a search. Cost (BENCHMARKS.md, "qLogNEHVI as a strategy"): the fit
grows as O(n^3) per L-BFGS step, the acquisition with the Pareto front of the
observations (box decompositions per MC sample).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np
import threadpoolctl

from search.optimizer.design import DesignSpace
from search.optimizer.base import (Strategy, Timer, maximize_acquisition, new_random_points,
                                   observed_front)

INSTALL_HINT = "pip install -e \".[bench]\""


def import_botorch() -> Any:
  """``torch``, or an ImportError naming the extra and quoting the real error.

  BoTorch and PyTorch are imported here, not at module level: they are an
  optional extra, and the registry must import without them."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import botorch  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
    import gpytorch  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    raise ImportError("--strategy=qlognehvi needs BoTorch and PyTorch (the `bench` extra): "
                      "%s. Import error: %s: %s" % (INSTALL_HINT, type(e).__name__, e)) from e
  return torch


def model_inputs(space: DesignSpace, x: Any) -> np.ndarray:
  """(n, d) native points -> the GP's inputs: each design's canonical
  representative (``DesignSpace.canonical``: a cell's two orders of a block's
  branches are one design, hence one input), categorical codes as they are,
  continuous variables scaled to [0, 1]."""
  x = space.canonical(np.asarray(x, dtype=float).reshape(-1, space.dim))
  cont = ~space.categorical
  out = x.copy()
  span = space.upper[cont] - space.lower[cont]
  out[:, cont] = (x[:, cont] - space.lower[cont]) / np.where(span > 0, span, 1.0)
  return out


def to_maximize(y: Any, logs: Any) -> np.ndarray:
  """(n, K) raw objectives to minimize -> BoTorch's outcomes to maximize
  (log where ``logs``; those must be positive)."""
  y = np.asarray(y, dtype=float)
  return -np.where(logs, np.log(np.where(logs, y, 1.0)), y)


def fit_model(torch: Any, space: DesignSpace, x: np.ndarray, targets: np.ndarray) -> Any:
  """A fitted multi-output GP on native (n, d) ``x`` and (n, K) ``targets``
  (to maximize): ``MixedSingleTaskGP`` when ``space`` has categorical
  variables, else ``SingleTaskGP``; ``Standardize`` outcomes."""
  # pylint: disable=import-outside-toplevel
  from botorch.exceptions.errors import ModelFittingError
  from botorch.fit import fit_gpytorch_mll
  from botorch.models import MixedSingleTaskGP, SingleTaskGP
  from botorch.models.transforms.outcome import Standardize
  from gpytorch.mlls import ExactMarginalLogLikelihood
  tx = torch.tensor(model_inputs(space, x), dtype=torch.float64)
  ty = torch.tensor(targets, dtype=torch.float64)
  cat_dims = [int(i) for i in np.flatnonzero(space.categorical)]
  if cat_dims:
    model = MixedSingleTaskGP(tx, ty, cat_dims=cat_dims,
                              outcome_transform=Standardize(m=ty.shape[-1]))
  else:
    model = SingleTaskGP(tx, ty, outcome_transform=Standardize(m=ty.shape[-1]))
  try:
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
  except ModelFittingError as e:  # every retry failed: go on with the last parameters
    warnings.warn("qlognehvi: the GP fit failed (%s); proposing with its last "
                  "hyperparameters." % (e,), RuntimeWarning)
  return model


def score(torch: Any, acq: Any, z: Any, batch: int = 128) -> np.ndarray:
  """(N,) values of a q = 1 acquisition at (N, D) model inputs, ``batch``
  rows per call (larger batches fall out of cache; BENCHMARKS.md)."""
  z = torch.as_tensor(z, dtype=torch.float64)
  with torch.no_grad():
    return torch.cat([acq(z[i:i + batch].unsqueeze(-2))
                      for i in range(0, z.shape[0], batch)]).numpy()


class QLogNEHVIStrategy(Strategy):
  """qLogNEHVI behind the ``Strategy`` interface (module doc). Options:
  ``log_objectives`` (K bools), ``reference_point`` (K raw values, positive
  for the log objectives), ``mc_samples`` (128), ``exhaustive_limit``
  (2,048 rows), ``acq_pool`` (500), ``refine`` (3), ``num_restarts`` (10),
  ``raw_samples`` (512), ``threads`` (1)."""

  DEFAULTS = {"mc_samples": 128, "exhaustive_limit": 2048, "acq_pool": 500, "refine": 3,
              "num_restarts": 10, "raw_samples": 512, "threads": 1}

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return ("log_objectives", "reference_point") + tuple(cls.DEFAULTS)

  @classmethod
  def check_available(cls) -> None:
    """Raises the ``ImportError`` of ``import_botorch`` when BoTorch is missing."""
    import_botorch()

  def __init__(self, space: DesignSpace, num_objectives: int, seed: int = 0,
               **options: Any) -> None:
    super().__init__(space, num_objectives, seed, **options)
    import_botorch()
    logs = options.get("log_objectives") or [False] * self.num_objectives
    if len(logs) != self.num_objectives:
      raise ValueError("Invalid value for option `log_objectives`. Expected %d booleans. "
                       "Received %r." % (self.num_objectives, logs))
    self.logs = np.array([bool(v) for v in logs])
    ref = options.get("reference_point")
    if ref is not None and (np.ndim(ref) != 1 or len(ref) != self.num_objectives
                            or not np.all(np.isfinite(ref))
                            or np.any(np.asarray(ref, dtype=float)[self.logs] <= 0)):
      raise ValueError("Invalid value for option `reference_point`. Expected %d finite "
                       "numbers, positive for the log objectives. Received %r."
                       % (self.num_objectives, ref))
    self.reference = (None if ref is None else
                      to_maximize(np.asarray(ref, dtype=float)[None], self.logs)[0])
    self.settings = dict(self.DEFAULTS, **{k: v for k, v in options.items()
                                          if k in self.DEFAULTS})

  def _propose(self, x: np.ndarray, y: np.ndarray, pending: np.ndarray) -> np.ndarray:
    excluded = set(self.space.keys(np.vstack([x, pending])))
    seed = [int(self.seed), x.shape[0], pending.shape[0]]
    rng = np.random.default_rng(seed)
    if x.shape[0] < 2:
      return new_random_points(self.space, rng, excluded, 1)[0]
    if np.any(y[:, self.logs] <= 0):
      raise ValueError("Invalid value for argument `observed_y`: the log objectives must be "
                       "positive. Received minimum %s." % (y[:, self.logs].min(axis=0),))
    torch = import_botorch()
    with torch_threads(torch, int(self.settings["threads"])), torch.random.fork_rng():
      torch.manual_seed(int(rng.integers(2 ** 62)))
      with Timer() as fit_timer:
        targets = to_maximize(y, self.logs)
        model = fit_model(torch, self.space, x, targets)
      with Timer() as acq_timer:
        acq = self.acquisition(torch, model, x, targets, pending)
        point = self._maximize(torch, acq, x, y, excluded, rng)
    self.timings = {"fit_seconds": fit_timer.seconds, "acquisition_seconds": acq_timer.seconds}
    return point

  def acquisition(self, torch: Any, model: Any, x: np.ndarray, targets: np.ndarray,
                  pending: np.ndarray) -> Any:
    """qLogNEHVI of ``model`` with the observed ``x`` as baseline (module doc)."""
    # pylint: disable=import-outside-toplevel
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement)
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.utils.multi_objective.hypervolume import infer_reference_point
    ref = (torch.tensor(self.reference, dtype=torch.float64) if self.reference is not None
           else infer_reference_point(torch.tensor(targets, dtype=torch.float64)))
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([int(self.settings["mc_samples"])]),
                                    seed=int(torch.randint(2 ** 31 - 1, ()).item()))
    x_pending = (torch.tensor(model_inputs(self.space, pending), dtype=torch.float64)
                 if pending.shape[0] else None)
    return qLogNoisyExpectedHypervolumeImprovement(
        model, ref_point=ref.tolist(), sampler=sampler, prune_baseline=True,
        X_baseline=torch.tensor(model_inputs(self.space, x), dtype=torch.float64),
        X_pending=x_pending)

  def _maximize(self, torch: Any, acq: Any, x: np.ndarray, y: np.ndarray, excluded: set,
                rng: np.random.Generator) -> np.ndarray:
    space, settings = self.space, self.settings
    if space.all_continuous and not space.restricted:
      from botorch.optim import optimize_acqf  # pylint: disable=import-outside-toplevel
      bounds = torch.stack([torch.zeros(space.dim), torch.ones(space.dim)]).double()
      cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=settings["num_restarts"],
                              raw_samples=settings["raw_samples"],
                              options={"batch_limit": 5, "maxiter": 200})
      u = np.clip(cand.detach().numpy()[0], 0.0, 1.0)
      return space.lower + u * (space.upper - space.lower)
    values = lambda c: score(torch, acq, model_inputs(space, c))
    return maximize_acquisition(values, space, rng, observed_front(x, y), excluded,
                                pool_size=int(settings["acq_pool"]),
                                refine=int(settings["refine"]),
                                exhaustive_limit=int(settings["exhaustive_limit"]))


@contextlib.contextmanager
def torch_threads(torch: Any, count: int) -> Iterator[None]:
  """PyTorch's intra-op threads and the BLAS threads set to ``count``, then restored."""
  before = torch.get_num_threads()
  torch.set_num_threads(count)
  try:
    with threadpoolctl.threadpool_limits(limits=count):
      yield
  finally:
    torch.set_num_threads(before)
