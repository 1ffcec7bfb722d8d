"""Cross-check of search/optimizer/ep.py and the PESMO acquisition against
BoTorch's ``qMultiObjectivePredictiveEntropySearch`` (the ``bench`` extra), on
fixed Pareto sets and fixed GP hyperparameters, where both compute the same
quantity:

  * the training-phase EP posterior over f at [training inputs, Pareto set]
    (observation-Pareto and Pareto-Pareto factors): the same factor graph, so
    the same EP fixed point;
  * the acquisition with one Pareto point per sample and without observation
    factors, unclipped: BoTorch's test phase computes the candidate sites
    from the GP predictive and keeps only the Pareto-Pareto training sites
    (none for one point), which is then exactly our test phase.
"""

import unittest

import numpy as np
import tensorflow as tf

from search.optimizer import design, ep, pesmo
from search.optimizer import gp as gplib

try:
  import torch  # pylint: disable=g-import-not-at-top
  from botorch.models import SingleTaskGP  # pylint: disable=g-import-not-at-top
  from botorch.acquisition.multi_objective import (  # pylint: disable=g-import-not-at-top
      predictive_entropy_search as botorch_pes)
  _BOTORCH_ERROR = None
except ImportError as e:  # the `bench` extra is not installed
  _BOTORCH_ERROR = e

_X = np.array([0.0, 0.3, 0.55, 0.7, 1.0])[:, None]
_Y = np.stack([np.array([0.9, 0.3, -0.1, -0.2, -0.6]),
               np.array([-0.8, -0.1, 0.1, 0.4, 0.9])], axis=1)


def _botorch_model(x, y, lengthscale, noise):
  """Two-output SingleTaskGP with fixed hyperparameters: RBF kernel of unit
  amplitude (BoTorch's default kernel has no outputscale), zero mean, no
  outcome transform."""
  model = SingleTaskGP(torch.tensor(x), torch.tensor(y), outcome_transform=None)
  model.covar_module.lengthscale = torch.full_like(model.covar_module.lengthscale, lengthscale)
  model.likelihood.noise = torch.full_like(model.likelihood.noise, noise)
  model.mean_module.constant = torch.zeros_like(model.mean_module.constant)
  return model.eval()


def _our_gps(space, x, y, lengthscale, noise, copies):
  """The same GPs as ``ObjectiveGP``s holding one fixed hyperparameter sample
  (``copies`` times: one per Pareto set)."""
  gps = []
  for k in range(y.shape[1]):
    model = gplib.ObjectiveGP(space.groups, kernel="rbf", min_noise=1e-8)
    theta = np.array([np.log(lengthscale), 0.0, np.log(noise), 0.0])
    model.samples = [model._condition(theta, space.encode(x), y[:, k])] * copies
    gps.append(model)
  return gps


@unittest.skipIf(_BOTORCH_ERROR is not None,
                 "BoTorch is not installed (pip install -e \".[bench]\"): %s" % _BOTORCH_ERROR)
class BoTorchCrossCheckTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    torch.set_default_dtype(torch.float64)

  def test_training_ep_posterior_equals_botorch(self):
    pareto = np.array([[[0.12], [0.45], [0.85]], [[0.2], [0.5], [0.9]]])
    model = _botorch_model(_X, _Y, 0.25, 0.05)
    jitter = 1e-8
    acq = botorch_pes.qMultiObjectivePredictiveEntropySearch(
        model, torch.tensor(pareto), maximize=False, max_ep_iterations=2000,
        ep_jitter=jitter, test_jitter=jitter, threshold=1e-9)
    with torch.no_grad():
      nat_mean, nat_cov, prior_mean, prior_cov = botorch_pes._initialize_predictive_matrices(
          acq.augmented_X, model, observation_noise=False, jitter=jitter, natural=True)
      post_nat_mean, post_nat_cov = botorch_pes._update_marginals(
          nat_mean, nat_cov, acq._omega_f_nat_mean.clone(), acq._omega_f_nat_cov.clone(),
          N=_X.shape[0], P=pareto.shape[1])
      bt_cov = torch.linalg.inv(post_nat_cov)
      bt_mean = torch.einsum("...ij,...j->...i", bt_cov, post_nat_mean)
    m = _X.shape[0]
    for s in range(pareto.shape[0]):
      mean, cov = prior_mean[s].numpy(), prior_cov[s].numpy()
      result = ep.run_ep(mean, cov, m, max_iter=2000, tol=1e-10)
      self.assertTrue(result["converged"])
      self.assertAllClose(result["mean"], bt_mean[s].numpy(), atol=1e-5)
      self.assertAllClose(result["cov"], bt_cov[s].numpy(), atol=1e-5)
      # The check sees the observation factors: without them EP lands elsewhere.
      old = ep.run_ep(mean[:, m:], cov[:, m:, m:], 0, max_iter=2000, tol=1e-10)
      self.assertGreater(np.max(np.abs(old["mean"] - bt_mean[s].numpy()[:, m:])), 0.01)

  def test_acquisition_equals_botorch_for_single_point_pareto_sets(self):
    x = np.array([0.0, 0.1, 0.22, 0.35])[:, None]
    y = np.stack([np.array([3.0, 2.6, 2.9, 3.2]), np.array([3.1, 3.4, 2.8, 3.0])], axis=1)
    pareto = np.array([[[0.7]], [[0.85]], [[0.6]]])
    lengthscale, noise = 0.2, 1e-4
    acq = botorch_pes.qMultiObjectivePredictiveEntropySearch(
        _botorch_model(x, y, lengthscale, noise), torch.tensor(pareto), maximize=False,
        max_ep_iterations=500, ep_jitter=1e-9, test_jitter=1e-9, threshold=1e-8)
    grid = np.linspace(0.4, 1.0, 13)[:, None]
    with torch.no_grad():
      expected = acq(torch.tensor(grid)[:, None, :]).numpy()
    space = design.continuous_space([(0.0, 1.0)])
    ours = pesmo.PESMOAcquisition(_our_gps(space, x, y, lengthscale, noise, 3), space, x,
                                  np.random.default_rng(0), pareto_sets=list(pareto),
                                  max_observed=0, clip_negative_sites=False)
    self.assertGreater(np.max(expected), 0.05)
    self.assertAllClose(ours(grid), expected, atol=1e-3, rtol=0.02)


if __name__ == "__main__":
  tf.test.main()
