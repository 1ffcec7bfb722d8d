"""ParEGO (Knowles, 2006) on GPyOpt, with constant-liar pending points.

References:
  Knowles, J. "ParEGO: a hybrid algorithm with on-line landscape approximation
  for expensive multiobjective optimization problems", IEEE Transactions on
  Evolutionary Computation 10(1), 2006.
  Ginsbourger, D., Le Riche, R., Carraro, L. "Kriging is well-suited to
  parallelize optimization", 2010 (constant liar).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.optimizer.base import (Strategy, Timer, maximize_acquisition, new_random_points,
                                   observed_front)


def chebyshev_scalarize(y: np.ndarray, weights: np.ndarray, rho: float = 0.05) -> np.ndarray:
  """ParEGO's augmented Chebyshev scalarization (Knowles 2006, eq. 2) of (n, m)
  objectives normalized to [0, 1] by their observed range: (n,) values
  ``max_k(w_k y_k) + rho * sum_k w_k y_k``."""
  low, high = y.min(axis=0), y.max(axis=0)
  scaled = (y - low) / np.where(high > low, high - low, 1.0)
  weighted = scaled * weights
  return weighted.max(axis=1) + rho * weighted.sum(axis=1)


def _import_gpyopt() -> Any:
  """GPyOpt, or an ImportError carrying the real import error and what to do."""
  try:
    # GPyOpt: ~4 s to import (GPy), needed only by ParEGO.
    import GPyOpt  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    if getattr(e, "name", None) == "pkg_resources" or "pkg_resources" in str(e):
      hint = ("GPyOpt 1.2.6 imports pkg_resources, which setuptools >= 81 no longer "
              "ships: pip install 'setuptools<81' (tea-keras declares it)")
    else:
      hint = "pip install 'GPyOpt>=1.2.6'"
    raise ImportError("ParEGO needs GPyOpt, whose import failed: %s: %s. %s."
                      % (type(e).__name__, e, hint)) from e
  return GPyOpt


class ParEGOStrategy(Strategy):
  """ParEGO (Knowles 2006) on GPyOpt: each call draws a weight vector uniformly
  from the simplex, scalarizes the objectives (``chebyshev_scalarize``) and
  proposes the expected-improvement maximizer of GPyOpt's GP (categorical
  variables one-hot encoded by GPyOpt). Options: ``rho`` (0.05)."""

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return ("rho", "log_objectives")

  def _domain(self) -> list[dict[str, Any]]:
    domain = []
    for var in self.space.variables:
      if var.kind == "categorical":
        domain.append({"name": var.name, "type": "categorical",
                       "domain": tuple(range(int(var.cardinality)))})
      else:
        domain.append({"name": var.name, "type": "continuous", "domain": var.bounds})
    return domain

  def _propose(self, x: np.ndarray, y: np.ndarray, pending: np.ndarray) -> np.ndarray:
    excluded = set(self.space.keys(np.vstack([x, pending])))
    if x.shape[0] < 2:
      return new_random_points(self.space, self.rng, excluded, 1)[0]
    GPyOpt = _import_gpyopt()  # pylint: disable=invalid-name
    logs = self.options.get("log_objectives") or [False] * self.num_objectives
    y = np.where(np.asarray(logs, dtype=bool), np.log(np.maximum(y, 1e-300)), y)
    weights = self.rng.dirichlet(np.ones(self.num_objectives))
    target = chebyshev_scalarize(y, weights, self.options.get("rho", 0.05))[:, None]
    np.random.seed(int(self.rng.integers(2 ** 31)))  # GPyOpt draws from numpy's global RNG
    if pending.shape[0]:
      # Constant liar (Ginsbourger et al. 2010, CL-mean): pending points enter
      # the GP at the mean scalarized value, so EI collapses around them.
      x = np.vstack([x, pending])
      target = np.vstack([target, np.full((pending.shape[0], 1), target.mean())])
    with Timer() as fit_timer:
      bo = GPyOpt.methods.BayesianOptimization(
          f=None, domain=self._domain(), X=x, Y=target, acquisition_type="EI",
          normalize_Y=True, exact_feval=False, de_duplication=True)
    with Timer() as acq_timer:
      if self.space.candidates is not None:
        point = self._maximize_feasible(bo, x[:x.shape[0] - pending.shape[0]], y, excluded)
      else:
        point = bo.suggest_next_locations(pending_X=pending if pending.shape[0] else None)[0]
        point = np.where(self.space.categorical, np.round(point), point)
        if self.space.restricted and not self.space.feasible(point)[0]:
          point = self._maximize_feasible(bo, x[:x.shape[0] - pending.shape[0]], y, excluded)
    self.timings = {"fit_seconds": fit_timer.seconds, "acquisition_seconds": acq_timer.seconds}
    return point

  def _maximize_feasible(self, bo: Any, x: np.ndarray, y: np.ndarray,
                         excluded: set[bytes]) -> np.ndarray:
    """Restricted spaces: GPyOpt's own optimizer searches the whole box, so
    its EI is maximized here over the feasible set instead (every candidate
    when the set is small, else a feasible pool around the observed front;
    ``base.maximize_acquisition``)."""
    if bo.model.model is None:
      bo._update_model(bo.normalization_type)  # pylint: disable=protected-access
    def expected_improvement(points: np.ndarray) -> np.ndarray:
      # GPyOpt's acquisition_function is -EI on its (one-hot) model inputs.
      return -bo.acquisition.acquisition_function(bo.space.unzip_inputs(points)).ravel()
    return maximize_acquisition(expected_improvement, self.space, self.rng,
                                observed_front(x, y), excluded)
