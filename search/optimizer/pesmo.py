"""PESMO: Predictive Entropy Search for Multi-objective optimization.

References:
  D. Hernandez-Lobato, J. M. Hernandez-Lobato, A. Shah, R. P. Adams.
  "Predictive Entropy Search for Multi-objective Bayesian Optimization",
  ICML 2016. Equation numbers below are the paper's.

The acquisition (eq. 3-4) is the expected reduction of the entropy of the
noisy observations y = (y_1..y_K) at x from learning the Pareto set X*:

  alpha(x) = H[p(y | D, x)] - E_{X*}[H[p(y | D, x, X*)]]
           ~= 1/S sum_s sum_k 0.5 log((v_k(x) + s2_k) / (v_k^{X*_s}(x) + s2_k))   (eq. 10)

with independent GPs per objective (so both entropies split over k, which
gives the decoupled per-objective values), S samples (one Pareto set per GP
hyperparameter sample, as Spearmint's PESM), v_k the GP predictive variance,
s2_k the noise variance and v_k^{X*} the variance after conditioning on X*
by expectation propagation (``search/optimizer/ep.py``, eq. 7-9).

Steps (each a function, called by the tests; steps 1-2 in
``search/optimizer/pareto_sampling.py``, re-exported here):
  1. ``sample_functions``: approximate posterior samples of every objective
     by random features (section 3.1; ``search/optimizer/random_features.py``).
  2. ``sample_pareto_set``: the Pareto set of the sampled objectives, on a
     candidate pool with local search (categorical spaces) or with pymoo's
     NSGA-II (continuous spaces), with points that coincide with evaluated
     ones removed (as Spearmint: the EP updates become singular there), at
     most ``max_pareto`` points.
  3. ``PESMOAcquisition``: for each sample, EP on the joint of the observed
     (and pending) points and the Pareto set, with the factors "no observed
     latent value and no other Pareto point dominates a Pareto point"
     (Spearmint's PESM and BoTorch's PES factor graph; observed points that
     cannot dominate any Pareto point are screened out, ``ep.select_observed``),
     then the candidate factors once per candidate (test phase) and the
     acquisition on any batch of candidates.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import linalg, optimize

from search.optimizer import ep
from search.optimizer import errors
from search.optimizer import feasibility
from search.optimizer.gp import ObjectiveGP, kernel_from_sqdist, scaled_sqdist
from search.optimizer.pareto_sampling import (  # noqa: F401 (re-exported)
    PARETO_EXHAUSTIVE_LIMIT, _evaluate, sample_functions, sample_pareto_set)
from search.optimizer import trust_region
from search.optimizer.trust_region import TrustRegion
from search.optimizer.base import (Strategy, Timer, maximize_acquisition,
                                   new_random_points, observed_front)
from search.optimizer.design import DesignSpace
from search.optimizer.random_features import SampledFunction


# Candidate sets up to this size are scored whole by the acquisition; larger
# ones use pools and Hamming-neighbourhood search. At the 15,625-row table,
# n = 90, 3 objectives, 10 hyperparameter samples, the acquisition on every
# row costs ~14 s CPU per proposal (the Woodbury solve over 30 Pareto points
# for each row): it does not fit a 100-evaluation budget on a 2-core machine.
EXHAUSTIVE_LIMIT = 5000
class _SampleState:
  """Per (hyperparameter sample, Pareto set): the GP samples of each
  objective, the EP joint (observed points that can dominate a Pareto point,
  then the Pareto points; ``ep.select_observed``) and its EP posterior.

  Args:
    gp_samples: one ``GPSample`` per objective, all conditioned on the same
      (n, D) encoded inputs (observed and pending points).
    pareto_encoded: (P, D) encoded Pareto points.
    observed_encoded: (n, D) the GP samples' training inputs.
    dominance_threshold, max_observed: ``ep.select_observed``'s settings
      (max_observed=0: Pareto-Pareto factors only, the model before issue 11).
    known: None (every objective observed at every observed point, each GP
      conditioned on exactly ``observed_encoded``: the coupled case) or (K, n)
      bools, objective k observed at point a (decoupled evaluations: each GP
      has its own training inputs, ``observed_encoded`` is their union). Then
      the posterior means at the observed points are predicted, the variance
      bound is the noise where k is observed and the prior variance where
      not, and observed points equal to a Pareto point are left out of the
      observed part of the joint (the Pareto point carries them).
    train_index: with ``known``, optional per objective the (n_k,) positions
      in ``observed_encoded`` of that GP's training inputs, in its training
      order: the posterior means there then come from the GP's own solve
      (m + y - noise alpha, O(n_k)) instead of a prediction (O(n_k^2 D)).
  """

  def __init__(self, gp_samples: Any, pareto_encoded: Any, observed_encoded: Any,
               dominance_threshold: float = 1e-4, max_observed: int = 60, known: Any = None,
               train_index: Any = None) -> None:
    self.gp_samples = gp_samples
    self.pareto = pareto_encoded
    k, p = len(gp_samples), pareto_encoded.shape[0]
    p_mean, p_var = np.zeros((k, p)), np.zeros((k, p))
    o_mean = np.zeros((k, observed_encoded.shape[0]))
    o_var = np.zeros_like(o_mean)
    for i, s in enumerate(gp_samples):
      p_mean[i], p_var[i] = s.predict(pareto_encoded)
      if known is None:
        # Posterior mean at the training inputs: m + K alpha = m + y - noise alpha.
        y_c = s.chol @ (s.chol.T @ s.alpha)
        o_mean[i] = s.mean + y_c - s.noise * s.alpha
        o_var[i] = s.noise  # an upper bound of the posterior variance there
      else:
        o_mean[i] = _observed_means(s, observed_encoded,
                                    None if train_index is None else train_index[i])
        o_var[i] = np.where(known[i], s.noise, s.amplitude)
    candidates = np.arange(observed_encoded.shape[0])
    if known is not None and p and candidates.size:
      pareto_keys = {row.tobytes() for row in np.ascontiguousarray(pareto_encoded)}
      candidates = np.array([a for a, row in enumerate(np.ascontiguousarray(observed_encoded))
                             if row.tobytes() not in pareto_keys], dtype=int)
    chosen = (candidates[ep.select_observed(o_mean[:, candidates], o_var[:, candidates],
                                            p_mean, p_var, dominance_threshold, max_observed)]
              if max_observed > 0 and candidates.size else np.zeros(0, int))
    self.joint = np.vstack([observed_encoded[chosen], pareto_encoded])
    self.num_observed = int(chosen.size)
    n = self.joint.shape[0]
    self.prior_mean, self.prior_cov = np.zeros((k, n)), np.zeros((k, n, n))
    self.prior_chol = np.zeros((k, n, n))
    self.v_joint = []
    for i, s in enumerate(gp_samples):
      ks = s.cross(self.joint)
      self.v_joint.append(s.project(ks))
      zj = self.joint / s.lengthscales
      mean = s.mean + ks.T @ s.alpha
      cov = (kernel_from_sqdist(scaled_sqdist(zj, zj), s.amplitude, s.kernel)
             - self.v_joint[-1].T @ self.v_joint[-1])                # as s.predict(full_cov)
      self.prior_mean[i] = mean
      self.prior_cov[i], self.prior_chol[i] = _jittered(0.5 * (cov + cov.T))
    self.ep = ep.run_ep(self.prior_mean, self.prior_cov, self.num_observed)
    m = self.num_observed
    self.pareto_mean = self.ep["mean"][:, m:]
    self.pareto_cov = self.ep["cov"][:, m:, m:]


def _observed_means(sample: Any, observed_encoded: np.ndarray,
                    train_index: Any = None) -> np.ndarray:
  """(n,) posterior means of ``sample`` at the observed points: at its
  training inputs (positions ``train_index``, in training order) from its
  own solve when it is exact, m + K alpha = m + y - noise alpha; elsewhere
  by prediction."""
  out = np.empty(observed_encoded.shape[0])
  rest = np.ones(out.size, dtype=bool)
  if train_index is not None and hasattr(sample, "chol"):
    index = np.asarray(train_index, dtype=int)
    y_c = sample.chol @ (sample.chol.T @ sample.alpha)
    out[index] = (sample.mean + y_c - sample.noise * sample.alpha)[:index.size]
    rest[index] = False
  if rest.any():
    out[rest] = sample.mean + sample.cross(observed_encoded[rest]).T @ sample.alpha
  return out


def _jittered(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(cov + jitter I, its lower Cholesky factor), jitter 1e-6 x max variance,
  grown 100x per failed Cholesky (nearly coincident joint points)."""
  scale = max(float(np.max(np.diag(cov))), 1e-12)
  for jitter in (1e-6, 1e-4, 1e-2):
    c = cov + jitter * scale * np.eye(cov.shape[0])
    try:
      return c, linalg.cholesky(c, lower=True, check_finite=False)
    except linalg.LinAlgError:
      continue
  raise ValueError("PESMO's EP joint covariance is not positive definite even with "
                   "jitter 1e-2 x max variance (n=%d)." % cov.shape[0])


def _candidate_moments(state: _SampleState, z: np.ndarray, cache: Any = None) -> Any:
  """GP (data) variance, and the marginals under the EP posterior of f_k at
  (C, D) candidates (``ep.candidate_marginals``). Returns var_data (K,C),
  mean_q (K,C), var_q (K,C), cross_q (K,C,P) (covariances with the Pareto points)."""
  k_count, c, n = len(state.gp_samples), z.shape[0], state.joint.shape[0]
  mean, var = np.zeros((k_count, c)), np.zeros((k_count, c))
  cross = np.zeros((k_count, c, n))
  for k, s in enumerate(state.gp_samples):
    if cache is not None and id(s) in cache:
      v, mean[k], var[k] = cache[id(s)]
    else:
      ks = s.cross(z)
      v = s.project(ks)
      mean[k] = s.mean + ks.T @ s.alpha
      var[k] = np.maximum(s.amplitude - np.sum(v * v, 0), 1e-12)
      if cache is not None and id(s) in cache.get("shared", ()):
        cache[id(s)] = (v, mean[k], var[k])
    kxj = kernel_from_sqdist(scaled_sqdist(z / s.lengthscales, state.joint / s.lengthscales),
                             s.amplitude, s.kernel)
    cross[k] = kxj - v.T @ state.v_joint[k]                       # (C, N)
  mean_q, var_q, cross_q = ep.candidate_marginals(state.ep, state.prior_mean,
                                                  state.prior_chol, mean, var, cross)
  return var, mean_q, var_q, cross_q


class PESMOAcquisition:
  """PESMO acquisition over fitted objective GPs.

  Args:
    gps: fitted ``ObjectiveGP`` per objective (same number of samples used:
      the minimum over objectives), conditioned on ``observed_x``.
    space: the ``DesignSpace``.
    observed_x: (n, d) native points already evaluated (and pending ones):
      the GPs' training inputs; EP conditions on their latent values not
      dominating the Pareto points (``search/optimizer/ep.py``).
    rng: numpy Generator.
    num_features, pool_size, max_pareto: Pareto-set sampling settings.
    pareto_sets: optional list of (P_s, d) native Pareto sets, one per
      hyperparameter sample, used instead of sampling them (tests, the
      BoTorch cross-check).
    dominance_threshold, max_observed: which observed points enter EP
      (``ep.select_observed``); max_observed=0 drops the observation factors.
    clip_negative_sites: clip negative test-phase site precisions and
      negative gains to 0 (default, as Spearmint); False computes BoTorch's
      unclipped quantity.
    known: None (coupled: every GP conditioned on all of ``observed_x``) or
      (K, n) bools, objective k observed at ``observed_x[a]`` (decoupled
      evaluations, ``search/optimizer/decoupled.py``; ``_SampleState``).
    train_index: with ``known``, optional: per objective the positions in
      ``observed_x`` of its GP's training inputs, in training order.
  """

  def __init__(self, gps: list[ObjectiveGP], space: DesignSpace, observed_x: np.ndarray,
               rng: np.random.Generator, num_features: int = 500, pool_size: int = 500,
               max_pareto: int = 30, pareto_sets: Sequence[np.ndarray] | None = None,
               dominance_threshold: float = 1e-4, max_observed: int = 60,
               clip_negative_sites: bool = True, known: Any = None,
               train_index: Any = None) -> None:
    self.space = space
    self.clip_negative_sites = bool(clip_negative_sites)
    self.num_objectives = len(gps)
    num = min(len(gp.samples) for gp in gps)
    if pareto_sets is not None and len(pareto_sets) != num:
      raise errors.invalid_value("pareto_sets", "%d sets (one per hyperparameter sample)" % (num,),
                                 shown="%d." % (len(pareto_sets),))
    observed_x = np.asarray(observed_x, dtype=float).reshape(-1, space.dim)
    observed_z = space.encode(observed_x)
    self.states = []
    self.pareto_sets = []
    for s in range(num):
      if pareto_sets is None:
        functions = sample_functions(gps, s, num_features, rng)
        pset = sample_pareto_set(functions, space, observed_x, rng, pool_size=pool_size,
                                 max_pareto=max_pareto)
      else:
        pset = np.asarray(pareto_sets[s], dtype=float).reshape(-1, space.dim)
      self.pareto_sets.append(pset)
      if pset.shape[0] == 0:
        continue  # every sampled Pareto point was already evaluated: no information
      self.states.append(_SampleState([gp.samples[s] for gp in gps], space.encode(pset),
                                      observed_z, dominance_threshold, max_observed, known,
                                      train_index))
    self.num_samples = num

  def per_objective(self, x: np.ndarray) -> np.ndarray:
    """(C, K) decoupled entropy reductions (nats) at native (C, d) points."""
    z = self.space.encode(x)
    total = None
    ids = [id(s) for state in self.states for s in state.gp_samples]
    # GP samples shared by several states (``ObjectiveGP.large_n_samples``) are
    # projected once; only those are kept (memory: n x C each).
    cache = {"shared": {i for i in ids if ids.count(i) > 1}}
    for state in self.states:
      var_data, mean_q, var_q, cross_q = _candidate_moments(state, z, cache)
      var_cond = ep.candidate_variances(state.pareto_mean, state.pareto_cov, mean_q, var_q,
                                        cross_q, self.clip_negative_sites)
      noise = np.array([s.noise for s in state.gp_samples])[:, None]
      gain = 0.5 * (np.log(var_data + noise) - np.log(var_cond + noise))
      if self.clip_negative_sites:
        gain = np.maximum(gain, 0.0)
      total = gain if total is None else total + gain
    if total is None:
      return np.zeros((z.shape[0], self.num_objectives))
    return (total / self.num_samples).T

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """(C,) acquisition values (sum over objectives, eq. 10)."""
    return np.sum(self.per_objective(x), axis=1)


class PESMOStrategy(Strategy):
  """PESMO behind the ``Strategy`` interface.

  Options (all optional):
    log_objectives: sequence of bools, model log(y_k) (strictly positive
      objectives: time, energy). Default: no log transform.
    gp_mode: "slice" (default) or "map"; num_samples (10), kernel ("matern52").
    lengthscale_prior: "lognormal" (default) or "dimension_scaled"
      (``ObjectiveGP``: Hvarfner et al. 2024, centred at long lengthscales
      that grow with the number of design variables).
    output_warping: "none" (default) or "yeo-johnson" (``ObjectiveGP``): a
      monotone power transform of each objective fitted to its observations;
      Pareto sets, and so PESMO's target, do not change under it.
    num_features (500), pool_size (500), max_pareto (30): Pareto sampling.
    acq_pool (500), refine (3): acquisition maximization.
    exhaustive_limit (``EXHAUSTIVE_LIMIT``), pareto_exhaustive_limit
      (``PARETO_EXHAUSTIVE_LIMIT``): a candidate set
      (``DesignSpace.with_candidates``) of at most this many rows is scored
      whole by the acquisition / by each sampled function (exact Pareto
      sets); larger sets use the pools, mutations and Hamming-neighbourhood
      hill climbing (``base.maximize_acquisition``).
    trust_region: "auto" (default: on in all-continuous spaces), true or
      false. When on, the acquisition is maximized only inside trust regions
      (``search/optimizer/trust_region.py``) around the observed points that contribute
      hypervolume; without it PESMO spends a 6-D budget on the corners of the
      box (DTLZ2: every proposal of a seed on a corner, no hypervolume gain).
      Categorical spaces keep the pool of random and mutated candidates.
    trust_region_length (0.2): initial side, in units of each range.
    trust_region_weights (false): scale the sides by the GP lengthscales
      (TuRBO's choice); the default cubes were better on DTLZ2, where weakly
      learned dimensions get long lengthscales and so the full range.
    reference_point: K objective values (raw units) bounding the region of
      interest; the trust regions use it to pick centres and to score
      successes (hypervolume gain). Default: none (non-dominance).
    pareto_in_reference (false): with a ``reference_point``, each sampled
      Pareto set keeps only the points whose sampled values dominate it (the
      front inside the region of interest: for a box ``f <= r`` that is the
      Pareto set of the in-box points), so the information gained is about
      the part of the front the hypervolume counts, the region qLogNEHVI is
      given by the same reference point. A draw with no point in the region
      keeps its whole Pareto set. Off by default: on DTLZ2 (a tuning
      problem) it was worse on 3 seeds of 3 (BENCHMARKS.md).
    objective_bounds: K entries, each null or an upper bound in RAW units of
      that objective (measured budgets: time, energy). Default: none. With
      bounds, PESMO follows ``search/optimizer/feasibility.py`` (PESMOC-style:
      feasible sampled Pareto sets, the acquisition weighted by the
      probability of feasibility, feasible observations as anchors).
  """

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return ("log_objectives", "gp_mode", "num_samples", "kernel", "num_features",
            "pool_size", "max_pareto", "acq_pool", "refine", "burn_in", "trust_region",
            "trust_region_length", "trust_region_weights", "reference_point",
            "exhaustive_limit", "pareto_exhaustive_limit", "objective_bounds",
            "output_warping", "pareto_in_reference", "lengthscale_prior")

  def __init__(self, space: DesignSpace, num_objectives: int, seed: int = 0,
               **options: Any) -> None:
    super().__init__(space, num_objectives, seed, **options)
    logs = options.get("log_objectives") or [False] * self.num_objectives
    if len(logs) != self.num_objectives:
      raise errors.invalid_option("log_objectives", "%d booleans" % (self.num_objectives,), logs)
    self.gps = [ObjectiveGP(space.groups, kernel=options.get("kernel", "matern52"),
                            mode=options.get("gp_mode", "slice"),
                            num_samples=options.get("num_samples", 10),
                            burn_in=options.get("burn_in", 60),
                            log_transform=bool(logs[k]),
                            output_warping=options.get("output_warping", "none"),
                            lengthscale_prior=options.get("lengthscale_prior", "lognormal"),
                            seed=seed * 1000 + k)
                for k in range(self.num_objectives)]
    self.last_acquisition: Any = None
    self.bounds = feasibility.check_bounds(options.get("objective_bounds"),
                                           self.num_objectives, logs)
    ref = options.get("reference_point")
    if ref is not None and (np.ndim(ref) != 1 or len(ref) != self.num_objectives
                            or not np.all(np.isfinite(ref))):
      raise errors.invalid_option("reference_point", "%d finite numbers" % (self.num_objectives,),
                                  ref)
    if ref is not None and any(log and r <= 0 for log, r in zip(logs, ref)):
      raise errors.invalid_option("reference_point",
                                  "positive values for the log-modelled objectives "
                                  "(log_objectives=%r)" % (list(logs),), ref)
    use_tr = options.get("trust_region", "auto")
    if use_tr not in (True, False, "auto"):
      raise errors.invalid_option("trust_region", 'true, false or "auto"', use_tr)
    self.trust_region = (
        TrustRegion(space, initial_length=options.get("trust_region_length", 0.2))
        if space.all_continuous and use_tr in (True, "auto") else None)
    if use_tr is True and self.trust_region is None:
      raise ValueError("Invalid value for option `trust_region`: trust regions need an "
                       "all-continuous space; received %r." % (space,))

  def _pareto_sets(self, gps: list[ObjectiveGP], seen: np.ndarray,
                   bounds_model: np.ndarray | None = None) -> list[np.ndarray]:
    """One sampled Pareto set per hyperparameter sample (``sample_pareto_set``
    with this strategy's options; feasible ones with ``bounds_model``; inside
    the reference point with ``pareto_in_reference``)."""
    region = self._region(gps, bounds_model)
    out = []
    for s in range(min(len(gp.samples) for gp in gps)):
      functions = sample_functions(gps, s, self.options.get("num_features", 500), self.rng)
      pset = self._sample_pareto(functions, seen, bounds_model if region is None else region)
      if region is not None and pset.shape[0] == 0:
        pset = self._sample_pareto(functions, seen, bounds_model)  # none in the region
      out.append(pset)
    return out

  def _sample_pareto(self, functions: Sequence[SampledFunction], seen: np.ndarray,
                     bounds: np.ndarray | None) -> np.ndarray:
    """``sample_pareto_set`` with this strategy's options."""
    return sample_pareto_set(
        functions, self.space, seen, self.rng, pool_size=self.options.get("pool_size", 500),
        max_pareto=self.options.get("max_pareto", 30),
        exhaustive_limit=self.options.get("pareto_exhaustive_limit", PARETO_EXHAUSTIVE_LIMIT),
        bounds=bounds)

  def _region(self, gps: list[ObjectiveGP], bounds_model: np.ndarray | None) -> np.ndarray | None:
    """Modelled-unit upper bounds of the region of interest (the reference
    point, met by the measured bounds too), or None."""
    ref = self.options.get("reference_point")
    if ref is None or not self.options.get("pareto_in_reference", False):
      return None
    region = feasibility.model_bounds(gps, [float(r) for r in ref])
    return region if bounds_model is None else np.minimum(region, bounds_model)

  def _lengthscales(self, gps: list[ObjectiveGP]) -> np.ndarray:
    """(d,) geometric mean over objectives of each GP's median lengthscale."""
    logs = [np.median(np.log([s.lengthscales for s in gp.samples]), axis=0) for gp in gps]
    return np.exp(np.mean(logs, axis=0))

  def _maximize_in_trust_region(self, acq: PESMOAcquisition | feasibility.FeasibilityWeighted,
                                gps: list[ObjectiveGP], x: np.ndarray, y: np.ndarray,
                                excluded: set[bytes]) -> np.ndarray:
    """Best feasible candidate inside the trust regions
    (``search/optimizer/trust_region.py``): uniform points in the boxes plus
    the sampled Pareto points that fall in them, then bounded Powell
    refinement of the best ``refine`` ones within their own box (a refined
    point that leaves the feasible set is dropped)."""
    tr = self.trust_region
    assert tr is not None
    ls = self._lengthscales(gps) if self.options.get("trust_region_weights", False) else None
    ref = self.options.get("reference_point")
    pool, lower, upper = tr.candidates(x, y, self.rng, self.options.get("acq_pool", 500), ls,
                                       ref)
    pareto = np.vstack(acq.pareto_sets) if acq.pareto_sets else np.zeros((0, x.shape[1]))
    if pareto.shape[0]:
      # Sampled Pareto points inside a box join the pool with that box's bounds.
      centers_lo, centers_hi = tr.boxes(trust_region.centers(x, y, ref), ls)
      inside = np.all((pareto[:, None] >= centers_lo[None] - 1e-12) &
                      (pareto[:, None] <= centers_hi[None] + 1e-12), axis=-1)
      hit = np.any(inside, axis=1)
      first = np.argmax(inside[hit], axis=1)
      pool = np.vstack([pool, pareto[hit]])
      lower = np.vstack([lower, centers_lo[first]])
      upper = np.vstack([upper, centers_hi[first]])
    keys = self.space.keys(pool)
    keep = np.array([k not in excluded for k in keys])
    if self.space.restricted:
      keep &= self.space.feasible(pool)
    if not np.any(keep):
      return new_random_points(self.space, self.rng, excluded, 1)[0]
    pool, lower, upper = pool[keep], lower[keep], upper[keep]
    values = acq(pool)
    order = np.argsort(-values)[:self.options.get("refine", 3)]
    best_x, best_v = pool[order[0]], values[order[0]]
    for i in order:
      lo, hi = lower[i], upper[i]
      res = optimize.minimize(lambda p, lo=lo, hi=hi: -acq(np.clip(p, lo, hi)[None])[0],
                              pool[i], method="Powell", bounds=list(zip(lo, hi)),
                              options={"maxfev": 80, "xtol": 1e-3})
      cand = np.clip(res.x, lo, hi)
      if (-res.fun > best_v and self.space.keys(cand)[0] not in excluded
          and self.space.feasible(cand)[0]):
        best_x, best_v = cand, -res.fun
    return best_x

  def _propose(self, x: np.ndarray, y: np.ndarray, pending: np.ndarray) -> np.ndarray:
    excluded = set(self.space.keys(np.vstack([x, pending])))
    if x.shape[0] < 2:
      return new_random_points(self.space, self.rng, excluded, 1)[0]
    with Timer() as fit_timer:
      z = self.space.encode(x)
      gps = [gp.fit(z, y[:, k]) for k, gp in enumerate(self.gps)]
      if pending.shape[0]:
        zp = self.space.encode(pending)
        gps = [gp.refit_with(zp, np.mean([s.predict(zp)[0] for s in gp.samples], axis=0))
               for gp in gps]
    with Timer() as acq_timer:
      seen = np.vstack([x, pending])
      bounds_model: Any
      bounds_model = None if self.bounds is None else feasibility.model_bounds(gps, self.bounds)
      acq: PESMOAcquisition | feasibility.FeasibilityWeighted
      acq = PESMOAcquisition(gps, self.space, seen, self.rng,
                             pareto_sets=self._pareto_sets(gps, seen, bounds_model))
      ax, ay, tr_y = x, y, y
      if self.bounds is not None:
        acq = feasibility.FeasibilityWeighted(acq, gps, self.space, bounds_model)
        rows = feasibility.anchor_rows(y, self.bounds)
        ax, ay, tr_y = x[rows], y[rows], feasibility.penalized(y, self.bounds)
      if self.trust_region is not None:
        self.trust_region.update(tr_y, self.options.get("reference_point"))
        point = self._maximize_in_trust_region(acq, gps, ax, ay, excluded)
      else:
        anchors = np.vstack([observed_front(ax, ay)] + acq.pareto_sets)
        point = maximize_acquisition(acq, self.space, self.rng, anchors, excluded,
                                     pool_size=self.options.get("acq_pool", 500),
                                     refine=self.options.get("refine", 3),
                                     exhaustive_limit=self.options.get("exhaustive_limit",
                                                                       EXHAUSTIVE_LIMIT))
    self.last_acquisition = acq
    self.timings = {"fit_seconds": fit_timer.seconds,
                    "acquisition_seconds": acq_timer.seconds}
    return point
