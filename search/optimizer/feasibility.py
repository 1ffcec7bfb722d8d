"""Measured budgets in PESMO: upper bounds on objectives known only after measurement.

References:
  E. C. Garrido-Merchan, D. Hernandez-Lobato. "Predictive entropy search for
  multi-objective Bayesian optimization with constraints", Neurocomputing 361,
  2019 (PESMOC; arXiv:1609.01051).
  M. A. Gelbart, J. Snoek, R. P. Adams. "Bayesian optimization with unknown
  constraints", UAI 2014 (the probability of feasibility, section 3).
  J. R. Gardner, M. J. Kusner, Z. Xu, K. Q. Weinberger, J. P. Cunningham.
  "Bayesian optimization with inequality constraints", ICML 2014 (constrained
  EI = EI x Pr[c(x) <= b], eq. 3-4).

Problem (PESMOC's eq. 1, with its constraints c_j(x) >= 0 written here as
c_k(x) = b_k - f_k(x)): minimize f_1..f_K subject to f_k(x) <= b_k for the
bounded objectives k (time <= --max_time_s, energy <= --max_energy_j). The
constraints ARE objectives, so their GPs are the objectives' GPs: no extra
model is fitted, and infeasible observations stay in the GPs' data.

What is PESMOC here and what is not:
  * As PESMOC: each sampled Pareto set X*_s is the Pareto set of the sampled
    functions restricted to the points where the SAMPLED functions satisfy
    the bounds (the feasible Pareto set of the draw; ``feasible_mask``). A
    draw with no feasible point gives an empty set: that sample adds no
    information (PESMO's rule for an empty set).
  * NOT PESMOC: PESMOC's EP also conditions on "every x* in X* is feasible"
    and "any other point is infeasible or does not dominate X*" (a
    disjunction of constraint and dominance factors), for the observed, Pareto
    and candidate points. Here EP keeps PESMO's dominance factors only, and
    the constraint terms are replaced by weighting the acquisition with the
    probability of feasibility (Gelbart et al.; Gardner et al. eq. 4):

      PoF(x) = 1/S sum_s prod_{k bounded} Phi((b_k - mu_k^s(x)) / sqrt(v_k^s(x)))

    with mu_k^s, v_k^s the latent predictive mean and variance of GP k under
    hyperparameter sample s (samples of the K objectives paired by index, as
    PESMO pairs them), all in the GP's modelled units: a raw bound b goes
    through the same transform as the objective (log for log-modelled
    objectives, then the GP's standardization; ``model_bounds``). The latent
    f, not the noisy y, is bounded, as in PESMOC. alpha_c(x) = PoF(x) alpha(x)
    is zero where a budget is surely violated and PESMO's value where it is
    surely met.
  * The anchors of acquisition maximization (mutation seeds, trust-region
    centres) are the feasible observed points (``feasible_rows``); with none
    yet, the observed points closest to feasibility (the non-dominated ones in
    the bounded objectives alone).

Numerics: v is floored at 1e-12 (as ``GPSample.predict``), so at a noiseless
observed point PoF is a step at the bound. Phi is ``scipy.special.ndtr``,
accurate in both tails; a product of many small factors may underflow to 0,
which only ties candidates that are all surely infeasible.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from scipy import special

from search.optimizer import errors
from search.optimizer.design import DesignSpace
from search.optimizer.gp import ObjectiveGP
from search.optimizer.pareto import non_dominated_mask


def check_bounds(bounds: Any, num_objectives: int,
                 log_objectives: Sequence[bool]) -> Optional[list]:
  """Validated ``objective_bounds`` option: None, or K entries each None or a
  finite number (> 0 for log-modelled objectives). Returns a list or None."""
  if bounds is None:
    return None
  expected = ("%d entries (one per objective), each null or a finite number, positive for "
              "log-modelled objectives" % num_objectives)
  if np.ndim(bounds) != 1 or len(bounds) != num_objectives:
    raise errors.invalid_option("objective_bounds", expected, shown="%r." % (bounds,))
  out: list[float | None] = []
  for k, b in enumerate(bounds):
    if b is None:
      out.append(None)
      continue
    try:
      value = float(b)
    except (TypeError, ValueError):
      value = np.nan
    if isinstance(b, bool) or not np.isfinite(value) or (log_objectives[k] and value <= 0):
      raise errors.invalid_option("objective_bounds", expected,
                                  shown="%r (entry %d)." % (bounds, k))
    out.append(value)
  if all(b is None for b in out):
    return None
  return out


def model_bounds(gps: list[ObjectiveGP], bounds: Sequence[Optional[float]]) -> np.ndarray:
  """(K,) bounds in each fitted GP's modelled units (log if the GP models log
  values, then standardized); +inf where unbounded."""
  return np.array([np.inf if b is None else float(gp.standardize(np.array([b]))[0])
                   for gp, b in zip(gps, bounds)])


def feasible_mask(values: np.ndarray, bounds_model: np.ndarray) -> np.ndarray:
  """(C,) whether (C, K) function values (modelled units) meet every bound."""
  return np.all(np.asarray(values) <= np.asarray(bounds_model)[None, :], axis=1)


def feasible_rows(y: np.ndarray, bounds: Sequence[Optional[float]]) -> np.ndarray:
  """(n,) whether raw (n, K) observations meet every raw bound."""
  raw = np.array([np.inf if b is None else b for b in bounds], float)
  return np.all(np.asarray(y, float) <= raw[None, :], axis=1)


def probability_of_feasibility(mean: np.ndarray, var: np.ndarray,
                               bounds_model: np.ndarray) -> np.ndarray:
  """(C,) prod_k Phi((b_k - mean_k) / sqrt(var_k)) over bounded k, for one
  hyperparameter sample; ``mean``, ``var``: (K, C) latent predictive moments."""
  bounds_model = np.asarray(bounds_model, float)
  out = np.ones(np.shape(mean)[1])
  for k in np.flatnonzero(np.isfinite(bounds_model)):
    out = out * special.ndtr((bounds_model[k] - mean[k]) / np.sqrt(np.maximum(var[k], 1e-12)))
  return out


def averaged_pof(gps: list[ObjectiveGP], bounds_model: np.ndarray, z: np.ndarray) -> np.ndarray:
  """(C,) PoF at (C, D) encoded points, averaged over the paired
  hyperparameter samples of the fitted ``gps`` (module doc)."""
  num = min(len(gp.samples) for gp in gps)
  total = np.zeros(z.shape[0])
  bounded = np.isfinite(bounds_model)
  for s in range(num):
    mean, var = np.zeros((len(gps), z.shape[0])), np.ones((len(gps), z.shape[0]))
    for k in np.flatnonzero(bounded):
      mean[k], var[k] = gps[k].samples[s].predict(z)
    total += probability_of_feasibility(mean, var, bounds_model)
  return total / num


def anchor_rows(y: np.ndarray, bounds: Sequence[Optional[float]]) -> np.ndarray:
  """(n,) mask of the observations the acquisition maximizer starts from:
  the feasible ones; with none, the non-dominated ones in the bounded
  objectives alone (the closest to feasibility)."""
  feasible = feasible_rows(y, bounds)
  if np.any(feasible):
    return feasible
  cols = [k for k, b in enumerate(bounds) if b is not None]
  return non_dominated_mask(np.asarray(y, float)[:, cols])


def penalized(y: np.ndarray, bounds: Sequence[Optional[float]]) -> np.ndarray:
  """Raw (n, K) ``y`` with each infeasible row replaced by the observed
  per-objective maximum plus one (dominated by every row: never a trust
  region success, ``trust_region.TrustRegion.update``)."""
  y = np.array(y, float)
  bad = ~feasible_rows(y, bounds)
  if np.any(bad):
    y[bad] = np.max(y, axis=0) + 1.0
  return y


class FeasibilityWeighted:
  """``PoF(x) * acquisition(x)`` (module doc), keeping the wrapped
  acquisition's ``pareto_sets`` and ``per_objective`` (each scaled by PoF).

  Args:
    acquisition: a ``PESMOAcquisition`` built with feasible Pareto sets.
    gps: the fitted objective GPs it was built on.
    space: the ``DesignSpace`` (to encode native points).
    bounds_model: (K,) ``model_bounds``.
  """

  def __init__(self, acquisition: Any, gps: list[ObjectiveGP], space: DesignSpace,
               bounds_model: np.ndarray) -> None:
    self.acquisition, self.gps, self.space = acquisition, gps, space
    self.bounds_model = np.asarray(bounds_model, float)
    self.pareto_sets = acquisition.pareto_sets

  def pof(self, x: np.ndarray) -> np.ndarray:
    return averaged_pof(self.gps, self.bounds_model, self.space.encode(x))

  def per_objective(self, x: np.ndarray) -> np.ndarray:
    return self.acquisition.per_objective(x) * self.pof(x)[:, None]

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return self.acquisition(x) * self.pof(x)
