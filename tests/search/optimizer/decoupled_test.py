"""Tests for search/optimizer/decoupled.py: groups, costs, decoupled PESMO."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import decoupled, design, pesmo
from search.optimizer import gp as gplib

CARDS = (4, 4, 3, 3)
FAST = {"num_samples": 2, "burn_in": 5, "max_pareto": 8, "num_features": 200,
        "target": "pareto_set"}
SCREEN = dict(FAST, target="screen")


def _table():
  grid = np.meshgrid(*[np.arange(c) for c in CARDS], indexing="ij")
  rows = np.stack([g.ravel() for g in grid], axis=1).astype(float)
  space = design.DesignSpace([design.Variable("v%d" % i, "categorical", cardinality=c)
                              for i, c in enumerate(CARDS)]).with_candidates(rows)
  return space, rows


def _objectives(x):
  """error-like f1 against two hardware-like costs f2, f3 (conflicting)."""
  x = np.atleast_2d(x)
  cost = 1.0 + x[:, 0] + 0.5 * x[:, 2]
  return np.stack([3.0 / cost + 0.2 * x[:, 1], cost + 0.1 * x[:, 3],
                   2.0 * cost + 0.3 * x[:, 3]], axis=1)


def _observations(rows, n_full=6, n_hw=14, seed=0):
  """``n_full`` complete rows, then ``n_hw`` rows with only f2, f3 known."""
  idx = np.random.default_rng(seed).permutation(rows.shape[0])[:n_full + n_hw]
  x = rows[idx]
  y = _objectives(x)
  y[n_full:, 0] = np.nan
  return x, y


GROUPS = decoupled.ObjectiveGroups.parse("f1=10,f2+f3=1", ["f1", "f2", "f3"])


class DecoupledPESMOTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.space, self.rows = _table()
    self.x, self.y = _observations(self.rows)

  def test_acquisition_group_values_sum_to_the_coupled_acquisition(self):
    # Every objective known at every point: the decoupled path (known mask,
    # per-objective training index) must give the coupled acquisition, and
    # the groups' values must sum to it (PESMO eq. 10).
    x = self.x[:12]
    y = _objectives(x)
    gps = []
    for k in range(3):
      model = gplib.ObjectiveGP(self.space.groups, kernel="rbf")
      theta = np.concatenate([np.full(4, np.log(1.5)), [0.0, np.log(1e-4), 0.0]])
      model.samples = [model._condition(theta, self.space.encode(x),  # pylint: disable=protected-access
                                        (y[:, k] - y[:, k].mean()) / y[:, k].std())]
      gps.append(model)
    rng = np.random.default_rng(0)
    # Sampled Pareto sets never hold an observed point (``sample_pareto_set``).
    unseen = [i for i, k in enumerate(self.space.keys(self.rows))
              if k not in set(self.space.keys(x))]
    psets = [self.rows[unseen[5:130:50]]]
    coupled = pesmo.PESMOAcquisition(gps, self.space, x, rng, pareto_sets=psets)
    dec = pesmo.PESMOAcquisition(gps, self.space, x, rng, pareto_sets=psets,
                                 known=np.ones((3, 12), bool),
                                 train_index=[np.arange(12)] * 3)
    per = dec.per_objective(self.rows)
    groups = np.stack([per[:, list(m)].sum(1) for m in GROUPS.members], axis=1)
    self.assertAllClose(groups.sum(1), coupled(self.rows), atol=1e-10)
    self.assertAllClose(per, coupled.per_objective(self.rows), atol=1e-10)

  def test_propose_is_the_brute_force_best_row_and_group_per_cost_on_a_table(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    proposal = strategy.propose(self.x, self.y)
    per = strategy.last_acquisition.per_objective(self.rows)
    keys = self.space.keys(self.rows)
    known_f1 = set(self.space.keys(self.x[np.isfinite(self.y[:, 0])]))
    known_hw = set(self.space.keys(self.x))
    best, best_value = None, -np.inf
    for i, key in enumerate(keys):  # every (row, group) pair, one by one
      for g, (members, cost, done) in enumerate(zip(GROUPS.members, GROUPS.costs,
                                                     (known_f1, known_hw))):
        value = sum(per[i, k] for k in members) / cost
        if key not in done and value > best_value:
          best, best_value = (i, g), value
    self.assertAllEqual(proposal.point, self.rows[best[0]])
    self.assertEqual(proposal.group, best[1])
    self.assertAllClose(proposal.value, best_value, rtol=1e-9)

  def test_propose_screen_is_the_brute_force_best_training_measured_cheap_group_first(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **SCREEN)
    proposal = strategy.propose(self.x, self.y)
    per = strategy.last_acquisition.per_objective(self.rows)
    keys = self.space.keys(self.rows)
    known_f1 = set(self.space.keys(self.x[np.isfinite(self.y[:, 0])]))
    known_hw = set(self.space.keys(self.x))
    # The costly group (f1, cost 10) decides where: its value per cost, row by row.
    best, best_value = None, -np.inf
    for i, key in enumerate(keys):
      if key not in known_f1 and per[i, 0] / 10.0 > best_value:
        best, best_value = i, per[i, 0] / 10.0
    self.assertAllEqual(proposal.point, self.rows[best])
    self.assertAllClose(proposal.value, best_value, rtol=1e-9)
    # There the cheap group goes first when it is not known yet.
    self.assertEqual(proposal.group, 0 if keys[best] in known_hw else 1)

  def test_propose_screen_trains_where_the_cheap_group_is_known(self):
    # f2+f3 known on every row, f1 on 6: the only thing left is training.
    y = _objectives(self.rows)
    y[6:, 0] = np.nan
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **SCREEN)
    proposal = strategy.propose(self.rows, y)
    self.assertEqual(proposal.group, 0)
    self.assertNotIn(self.space.keys(proposal.point)[0], set(self.space.keys(self.rows[:6])))

  def test_propose_screen_waits_for_a_pending_cheap_group(self):
    x, y = _observations(self.rows, n_full=8, n_hw=0)   # no row with f2+f3 alone
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **SCREEN)
    first = strategy.propose(x, y)
    self.assertEqual(first.group, 1)
    again = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **SCREEN)
    second = again.propose(x, y, {"f2+f3": first.point[None]})
    # Neither the pending measurement again nor a training before it is back.
    self.assertNotEqual(self.space.keys(second.point)[0], self.space.keys(first.point[None])[0])

  def test_make_decoupled_strategy_refuses_an_unknown_target(self):
    with self.assertRaisesRegex(ValueError, r"Invalid value for option `target`\. Expected one "
                                r"of screen, pareto_set\. Received target='hv'"):
      decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, target="hv")

  def test_fit_conditions_each_gp_on_the_rows_where_its_objective_is_known(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    strategy.propose(self.x, self.y)
    counts = [model._x.shape[0] for model in strategy.pesmo.gps]  # pylint: disable=protected-access
    self.assertEqual(counts, [6, 20, 20])

  def test_propose_never_returns_a_known_or_pending_pair(self):
    space, rows = self.space, self.rows
    # All rows but two have f2+f3; f1 is known on all but those two and one more.
    y = _objectives(rows)
    x = rows.copy()
    y[:3, 1:] = np.nan
    y[:3, 0] = np.nan
    y[3, 0] = np.nan
    keep = np.isfinite(y).any(1)
    x, y = x[keep], y[keep]   # rows 0-2 unseen; row 3 has only f2+f3
    pending = [rows[[0]], rows[[1]]]   # f1 pending at row 0, f2+f3 at row 1
    strategy = decoupled.make_decoupled_strategy("pesmo", space, GROUPS, seed=1, **FAST)
    proposal = strategy.propose(x, y, pending)
    allowed = {(space.keys(rows[[1]])[0], 0), (space.keys(rows[[2]])[0], 0),
               (space.keys(rows[[3]])[0], 0), (space.keys(rows[[0]])[0], 1),
               (space.keys(rows[[2]])[0], 1)}
    self.assertIn((space.keys(proposal.point)[0], proposal.group), allowed)

  def test_acquisition_pareto_sets_may_hold_points_known_in_part(self):
    # A sampled Pareto point whose f2, f3 are known (f1 not) stays in the set;
    # the EP joint then holds it once (as a Pareto point), not twice.
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    known = GROUPS.known(self.y)
    gps = strategy.fit(self.x, self.y, known, [np.zeros((0, 4))] * 2)
    points, mask = strategy._joint_points(self.x, known, [np.zeros((0, 4))] * 2)  # pylint: disable=protected-access
    partial = self.x[10:12]   # f1 unknown there
    acq = pesmo.PESMOAcquisition(gps, self.space, points, np.random.default_rng(0),
                                 known=mask, pareto_sets=[partial, partial])
    self.assertLen(acq.states, 2)
    joint_keys = [row.tobytes() for row in np.round(acq.states[0].joint, 9)]  # encoded rows
    self.assertLen(set(joint_keys), len(joint_keys))
    self.assertTrue(np.all(np.isfinite(acq.per_objective(self.rows[:20]))))

  def test_propose_chooses_the_cheap_group_when_the_other_costs_far_more(self):
    costly = decoupled.ObjectiveGroups(GROUPS.names, GROUPS.members, (1e6, 1.0), 3)
    x, y = _observations(self.rows, n_full=8, n_hw=0)
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, costly, seed=0, **FAST)
    self.assertEqual(strategy.propose(x, y).group, 1)
    cheap_f1 = decoupled.ObjectiveGroups(GROUPS.names, GROUPS.members, (1.0, 1e6), 3)
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, cheap_f1, seed=0, **FAST)
    self.assertEqual(strategy.propose(x, y).group, 0)

  def test_propose_keeps_to_the_allowed_groups_even_when_another_is_far_cheaper(self):
    # Group 1 costs a millionth of group 0: unrestricted, it wins (the test above).
    costly = decoupled.ObjectiveGroups(GROUPS.names, GROUPS.members, (1e6, 1.0), 3)
    x, y = _observations(self.rows, n_full=8, n_hw=0)
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, costly, seed=0, **FAST)
    proposal = strategy.propose(x, y, allowed=[0])
    self.assertEqual(proposal.group, 0)
    self.assertTrue(np.isfinite(proposal.value))
    self.assertEqual(strategy.propose(x, y, allowed=["f2+f3"]).group, 1)
    # Too few observations: the uniform proposal is for an allowed group too.
    self.assertEqual(strategy.propose(x[:1], y[:1], allowed=[1]).group, 1)
    with self.assertRaisesRegex(ValueError, "Expected None or at least one group"):
      strategy.propose(x, y, allowed=[])

  def test_propose_screen_keeps_to_the_allowed_groups(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **SCREEN)
    trained = set(self.space.keys(self.x[np.isfinite(self.y[:, 0])]))
    measured = set(self.space.keys(self.x))
    train = strategy.propose(self.x, self.y, allowed=["f1"])
    self.assertEqual(train.group, 0)
    # a screened design: f2+f3 measured, f1 not
    self.assertIn(self.space.keys(train.point)[0], measured - trained)
    measure = strategy.propose(self.x, self.y, allowed=[1])
    self.assertEqual(measure.group, 1)
    self.assertNotIn(self.space.keys(measure.point)[0], measured)

  def test_propose_divides_by_costs_predicted_from_recorded_durations(self):
    free = decoupled.ObjectiveGroups(GROUPS.names, GROUPS.members, None, 3)
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, free, seed=0, **FAST)
    trained = np.isfinite(self.y[:, 0])
    durations = np.stack([np.where(trained, 40.0 + self.x[:, 0], np.nan),
                          np.full(self.x.shape[0], 2.0)], axis=1)
    proposal = strategy.propose(self.x, self.y, durations=durations)
    costs = strategy.group_costs(self.rows)
    # A constant duration is predicted as that constant everywhere.
    self.assertAllClose(costs[:, 1], np.full(self.rows.shape[0], 2.0), rtol=1e-3)
    # At the trained rows the training durations (40 + v0 s) are recovered to
    # within 2 %; v0 is categorical, so an unseen value of it is predicted
    # from the others (the prior mean of log duration), not extrapolated.
    self.assertAllClose(strategy.group_costs(self.x[trained])[:, 0], durations[trained, 0],
                        rtol=0.02)
    self.assertBetween(float(np.min(costs[:, 0])), 38.0, 45.0)
    self.assertBetween(float(np.max(costs[:, 0])), 38.0, 45.0)
    # The proposal's value is its group's acquisition over its predicted cost.
    per = strategy.last_acquisition.per_objective(proposal.point[None])[0]
    gain = per[0] if proposal.group == 0 else per[1] + per[2]
    self.assertAllClose(proposal.value,
                        gain / strategy.group_costs(proposal.point)[0, proposal.group],
                        rtol=1e-9)

  @parameterized.named_parameters(("none", None), ("wrong_shape", np.zeros((3, 2))))
  def test_propose_without_fixed_costs_needs_durations(self, durations):
    free = decoupled.ObjectiveGroups(GROUPS.names, GROUPS.members, None, 3)
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, free, seed=0, **FAST)
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `durations`\. "
                                r"Expected \(20, 2\) recorded seconds"):
      strategy.propose(self.x, self.y, durations=durations)

  def test_fit_pending_reduces_its_groups_acquisition_at_the_pending_point(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    strategy.propose(self.x, self.y)
    known = GROUPS.known(self.y)
    none = [np.zeros((0, 4))] * 2
    psets = strategy.last_acquisition.pareto_sets
    unseen = np.array([r for r, k in zip(self.rows, self.space.keys(self.rows))
                       if k not in set(self.space.keys(self.x))])
    before = self._group_values(strategy, known, none, psets, unseen)
    point = unseen[int(np.argmax(before[:, 1]))][None]  # the best hardware measurement
    after = self._group_values(strategy, known, [none[0], point], psets, point)
    at = int(np.argmax(before[:, 1]))
    # time+energy pending there: its value falls to a small fraction. The
    # error group keeps a positive value there (its GP is not conditioned on
    # the pending point; its term moves through the EP candidate factors,
    # which couple the objectives).
    self.assertGreater(before[at, 1], 1e-3)
    self.assertLess(after[0, 1], 0.2 * before[at, 1])
    self.assertGreater(after[0, 0], 1e-3)

  def _group_values(self, strategy, known, pending, psets, points):
    gps = strategy.fit(self.x, self.y, known, pending)
    joint, mask = strategy._joint_points(self.x, known, pending)  # pylint: disable=protected-access
    acq = pesmo.PESMOAcquisition(gps, self.space, joint, np.random.default_rng(0),
                                 known=mask, pareto_sets=psets)
    per = acq.per_objective(points)
    return np.stack([per[:, 0], per[:, 1] + per[:, 2]], axis=1)

  def test_propose_is_uniform_until_every_group_has_two_observations(self):
    x, y = _observations(self.rows, n_full=1, n_hw=6)
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    proposal = strategy.propose(x, y)
    self.assertEqual(proposal.group, 0)
    # It completes a row whose f2+f3 are known.
    self.assertIn(self.space.keys(proposal.point)[0], set(self.space.keys(x[1:])))
    self.assertTrue(np.isnan(proposal.value))

  def test_propose_refuses_bad_arguments_before_any_work(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    with self.assertRaisesRegex(ValueError, "one row per design"):
      strategy.propose(np.vstack([self.x, self.x[:1]]), np.vstack([self.y, self.y[:1]]))
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `pending`\. "
                                r"Expected 2 entries .* Received 1 entries"):
      strategy.propose(self.x, self.y, [None])
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `pending`\. Expected "
                                r"keys among the group names .* Received pending keys="
                                r"\['time'\]"):
      strategy.propose(self.x, self.y, {"time": self.rows[:1]})
    self.assertIsNone(strategy.last_acquisition)  # nothing was fitted
    with self.assertRaisesRegex(ValueError, "Unknown options"):
      decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, trust_region=True)
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `name`\. Expected one "
                                r"of pesmo, qhvkg\. Received name='parego'"):
      decoupled.make_decoupled_strategy("parego", self.space, GROUPS)
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `groups`\. Expected an "
                                r"ObjectiveGroups"):
      decoupled.make_decoupled_strategy("pesmo", self.space, "f1=1,f2+f3=1")

  def test_propose_takes_pending_by_group_name(self):
    strategy = decoupled.make_decoupled_strategy("pesmo", self.space, GROUPS, seed=0, **FAST)
    point = self.x[np.isnan(self.y[:, 0])][:1]  # f1 unknown there
    proposal = strategy.propose(self.x, self.y, {"f1": point})
    self.assertFalse(proposal.group == 0 and
                     self.space.keys(proposal.point)[0] == self.space.keys(point)[0])


if __name__ == "__main__":
  tf.test.main()
