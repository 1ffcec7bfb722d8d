"""Tests for search/optimizer/hvkg.py: decoupled qHVKG (BoTorch) on a finite set."""

import unittest

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import decoupled, hvkg, pareto
from search.optimizer.botorch_strategy import model_inputs
from tests.search.optimizer.decoupled_test import GROUPS, _objectives, _table  # the same 144-row table

try:
  import botorch  # noqa: F401  # pylint: disable=unused-import
  import torch
except ImportError:  # the optional `bench` extra
  torch = None

NEEDS_BOTORCH = unittest.skipIf(torch is None, "BoTorch (the `bench` extra) is not installed")
FAST = {"num_fantasies": 4, "num_inner": 12, "log_objectives": [False, True, True]}


class BatchHypervolumeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 2, 3)
  def test_batch_hypervolume_matches_pareto_hypervolume(self, k):
    rng = np.random.default_rng(k)
    points = rng.random((30, 9, k))
    points[:5, 0] = 1.5  # beyond the reference in every objective: adds nothing
    ref = np.full(k, 1.2)
    expected = [pareto.hypervolume(p, ref) if k > 1 else ref[0] - min(p.min(), ref[0])
                for p in points]
    self.assertAllClose(hvkg.batch_hypervolume(points, ref, chunk=7), expected, atol=1e-12)

  def test_front_layers_takes_whole_layers_first(self):
    means = np.array([[0.0, 3.0], [3.0, 0.0], [1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    self.assertEqual(sorted(hvkg.front_layers(means, 3)), [0, 1, 2])
    self.assertEqual(sorted(hvkg.front_layers(means, 4)), [0, 1, 2, 3])
    self.assertLen(hvkg.front_layers(means, 2), 2)


@NEEDS_BOTORCH
class DecoupledHVKGTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.space, self.rows = _table()

  def _observations(self, n_full=6, n_hw=14, seed=0):
    idx = np.random.default_rng(seed).permutation(self.rows.shape[0])[:n_full + n_hw]
    x = self.rows[idx]
    y = _objectives(x)
    y[n_full:, 0] = np.nan
    return x, y

  def test_registry_holds_qhvkg(self):
    self.assertIs(decoupled.DECOUPLED_STRATEGIES["qhvkg"], hvkg.DecoupledHVKGStrategy)

  def test_fantasy_means_match_botorch_conditioning(self):
    # Eq. (1) against BoTorch's own conditioning on one fantasized observation.
    x, y = self._observations(n_full=10, n_hw=0)
    strategy = decoupled.make_decoupled_strategy("qhvkg", self.space, GROUPS, seed=0, **FAST)
    torch.manual_seed(0)
    model = strategy.fit(torch, x, strategy.modelled(y), GROUPS.known(y),
                         [np.zeros((0, 4))] * 2)[0]
    inner, pool = self.rows[[1, 50, 100]], self.rows[[7, 77]]
    mean, cov_s, (var, noisy), mean_c = strategy.moments(torch, model, inner, pool)
    eps = np.array([-1.3, 0.4])
    got = hvkg.fantasy_means(np.concatenate([np.tile(mean[:3], (2, 1)), mean_c[:, None]], 1),
                             np.concatenate([cov_s, var[:, None]], 1), noisy, eps)
    for c in range(2):
      zc = torch.tensor(model_inputs(self.space, pool[c:c + 1]), dtype=torch.float64)
      z = torch.tensor(model_inputs(self.space, np.vstack([inner, pool[c:c + 1]])),
                       dtype=torch.float64)
      for f, e in enumerate(eps):
        observed = torch.tensor([[mean_c[c] + np.sqrt(noisy[c]) * e]], dtype=torch.float64)
        with torch.no_grad():
          conditioned = model.condition_on_observations(zc, observed).posterior(z).mean
        self.assertAllClose(got[c, f], conditioned[:, 0].numpy(), atol=1e-6)

  def test_propose_never_repeats_a_known_or_pending_pair(self):
    x, y = self._observations()
    strategy = decoupled.make_decoupled_strategy("qhvkg", self.space, GROUPS, seed=0, **FAST)
    pending = {"f1": x[6:9], "f2+f3": np.zeros((0, 4))}
    for _ in range(4):
      proposal = strategy.propose(x, y, pending)
      key = self.space.keys(proposal.point[None])[0]
      name = GROUPS.names[proposal.group]
      taken = set(self.space.keys(pending[name])) if pending[name].shape[0] else set()
      known = GROUPS.known(y)[:, proposal.group]
      taken |= {k for k, ok in zip(self.space.keys(x), known) if ok}
      self.assertNotIn(key, taken)
      pending[name] = np.vstack([pending[name], proposal.point[None]])

  def test_propose_chooses_error_when_hardware_is_known_everywhere(self):
    # Every row's hardware measured (the hardware GPs trained on all 144
    # rows): measuring it again teaches nothing, so its HVKG is ~0 even at
    # a tenth of error's cost, and the strategy must train.
    x = self.rows
    y = _objectives(x)
    trained = np.random.default_rng(1).permutation(x.shape[0])[:6]
    y[np.setdiff1d(np.arange(x.shape[0]), trained), 0] = np.nan
    strategy = decoupled.make_decoupled_strategy("qhvkg", self.space, GROUPS, seed=0, **FAST)
    proposal = strategy.propose(x, y)
    self.assertEqual(GROUPS.names[proposal.group], "f1")
    values = strategy.last_values
    self.assertGreater(values[:, 0].max(), 0.0)
    self.assertLess(np.abs(values[:, 1]).max(), 0.05 * values[:, 0].max())

  def test_values_lower_where_a_group_is_already_known(self):
    # Scored on every row, the known ones included: training a row whose
    # error is known (posterior variance ~ noise) is worth less than the best
    # untrained row, and re-measuring known hardware less than new hardware.
    x, y = self._observations(n_full=8, n_hw=20)
    strategy = decoupled.make_decoupled_strategy("qhvkg", self.space, GROUPS, seed=0, **FAST)
    t, known = strategy.modelled(y), GROUPS.known(y)
    rng = np.random.default_rng(0)
    models = strategy.fit(torch, x, t, known, [np.zeros((0, 4))] * 2)
    inner = strategy.inner_set(torch, models, self.rows)
    values = strategy.values(torch, models, self.rows, inner,
                             strategy.reference_point(t, known), rng)
    row_keys = self.space.keys(self.rows)
    for g in range(2):
      done = {k for k, ok in zip(self.space.keys(x), known[:, g]) if ok}
      at_known = np.array([k in done for k in row_keys])
      self.assertLess(values[at_known, g].max(), values[~at_known, g].max())

  def test_constructor_refuses_bad_options(self):
    with self.assertRaisesRegex(ValueError, "reference_point"):
      decoupled.make_decoupled_strategy("qhvkg", self.space, GROUPS, reference_point=[1, 2])
    with self.assertRaisesRegex(ValueError, "Unknown options"):
      decoupled.make_decoupled_strategy("qhvkg", self.space, GROUPS, max_pareto=3)


if __name__ == "__main__":
  tf.test.main()
