"""Tests for search/optimizer/objective_groups.py: groups, costs, merged observations."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from search.optimizer import design
from search.optimizer import objective_groups as og

NAMES = ["error", "latency_ms", "energy_mj"]


class ObjectiveGroupsTest(tf.test.TestCase, parameterized.TestCase):

  def test_parse_joins_objectives_measured_together(self):
    groups = og.ObjectiveGroups.parse("error=30,latency_ms+energy_mj=1", NAMES)
    self.assertEqual(groups.names, ("error", "latency_ms+energy_mj"))
    self.assertEqual(groups.members, ((0,), (1, 2)))
    self.assertEqual(groups.costs, (30.0, 1.0))
    self.assertEqual(groups.coupled_cost(), 31.0)
    self.assertEqual(groups.index("latency_ms+energy_mj"), 1)

  def test_parse_without_costs_leaves_them_to_be_predicted(self):
    groups = og.ObjectiveGroups.parse(["error", "latency_ms+energy_mj"], NAMES)
    self.assertIsNone(groups.costs)

  @parameterized.named_parameters(
      ("unknown_objective", "error=30,time+energy_mj=1",
       r"Expected objectives among error, latency_ms, energy_mj joined by '\+'; unknown "
       r"\['time'\]\. Received groups='error=30,time\+energy_mj=1'"),
      ("objective_in_two_groups", "error=30,error+latency_ms+energy_mj=1",
       r"Expected every objective in exactly one group; 'error' is in \['error', "
       r"'error\+latency_ms\+energy_mj'\]\. Received groups="),
      ("objective_in_none", "error=30,latency_ms=1",
       r"Expected every objective in exactly one group; 'energy_mj' is in none\. Received groups='error=30,latency_ms=1'"),
      ("zero_cost", "error=0,latency_ms+energy_mj=1",
       r"Expected each group's cost \(=COST\) a positive number\. Received groups="),
      ("some_costs", "error=3,latency_ms+energy_mj", r"Expected a cost \(=COST\) for every group or "
       r"for none"))
  def test_parse_refuses_bad_groups_naming_the_argument(self, spec, message):
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `groups`\. " +
                                message):
      og.ObjectiveGroups.parse(spec, NAMES)

  @parameterized.named_parameters(
      ("objective_in_two_groups", ((0, 1), (1, 2)), (1.0, 1.0),
       r"`groups`\. Expected every objective 0\.\.2 in exactly one non-empty group, one name "
       r"per group; objectives in two groups: \[1\], in none: none, unknown: none\. Received "
       r"groups=\(\(0, 1\), \(1, 2\)\)"),
      ("unknown_objective", ((0,), (1, 2, 3)), (1.0, 1.0), r"`groups`\. .* unknown: \[3\]\. "
       r"Received groups=\(\(0,\), \(1, 2, 3\)\)"),
      ("negative_cost", ((0,), (1, 2)), (1.0, -2.0),
       r"`costs`\. Expected 2 positive finite numbers \(one per group\) or None \(predicted "
       r"from recorded durations\)\. Received costs=\(1\.0, -2\.0\)"))
  def test_init_refuses_bad_groups_and_costs(self, members, costs, message):
    with self.assertRaisesRegex(ValueError, "Invalid value for argument " + message):
      og.ObjectiveGroups(("a", "b"), members, costs, 3)

  def test_index_refuses_an_unknown_group(self):
    groups = og.ObjectiveGroups.parse("error=30,latency_ms+energy_mj=1", NAMES)
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `group`\. Expected one "
                                r"of error, latency_ms\+energy_mj \(or 0\.\.1\)\. Received "
                                r"group='time'"):
      groups.index("time")

  def test_known_refuses_a_group_known_in_part(self):
    groups = og.ObjectiveGroups.parse("f1=10,f2+f3=1", ["f1", "f2", "f3"])
    y = np.array([[1.0, 2.0, 3.0], [1.0, np.nan, np.nan], [np.nan, 2.0, np.nan]])
    with self.assertRaisesRegex(ValueError, "row 2 knows part of group 'f2\\+f3'"):
      groups.known(y)
    self.assertAllEqual(groups.known(y[:2]), [[True, True], [True, False]])


class MergeGroupObservationsTest(tf.test.TestCase):

  def test_merge_group_observations_puts_one_design_on_one_row(self):
    space = design.DesignSpace([design.Variable("a", "categorical", cardinality=5)])
    groups = og.ObjectiveGroups.parse("error=30,latency_ms+energy_mj=1", NAMES)
    hw_x = np.array([[0.0], [1.0], [2.0], [3.0]])
    hw_y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    err_x, err_y = np.array([[2.0], [4.0]]), np.array([[0.5], [0.25]])
    x, y, d = og.merge_group_observations(
        space, groups, {"error": (err_x, err_y), "latency_ms+energy_mj": (hw_x, hw_y)},
        durations={"error": [600.0, 700.0], "latency_ms+energy_mj": [2.0, 2.0, 3.0, 3.0]})
    self.assertAllEqual(x[:, 0], [2.0, 4.0, 0.0, 1.0, 3.0])
    self.assertAllClose(y, [[0.5, 3.0, 30.0], [0.25, np.nan, np.nan], [np.nan, 1.0, 10.0],
                            [np.nan, 2.0, 20.0], [np.nan, 4.0, 40.0]])
    self.assertAllClose(d, [[600.0, 3.0], [700.0, np.nan], [np.nan, 2.0], [np.nan, 2.0],
                            [np.nan, 3.0]])

  def test_merge_group_observations_refuses_an_unknown_group(self):
    space = design.DesignSpace([design.Variable("a", "categorical", cardinality=5)])
    groups = og.ObjectiveGroups.parse("error=30,latency_ms+energy_mj=1", NAMES)
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `per_group`\. Expected "
                                r"keys among the group names \['error', 'latency_ms\+energy_mj'"
                                r"\]\. Received per_group keys=\['latency_ms'\]"):
      og.merge_group_observations(space, groups, {"latency_ms": (np.zeros((1, 1)),
                                                                 np.zeros((1, 1)))})


class DurationModelTest(tf.test.TestCase):

  def test_duration_model_refuses_non_positive_durations(self):
    space = design.DesignSpace([design.Variable("a", "categorical", cardinality=5)])
    with self.assertRaisesRegex(ValueError, r"Invalid value for argument `durations`\. Expected "
                                r"positive seconds \(NaN where not recorded\)\. Received min -1"):
      og.DurationModel(space).fit(np.zeros((3, 1)), [1.0, -1.0, np.nan])

  def test_duration_model_predicts_the_median_with_few_durations(self):
    space = design.DesignSpace([design.Variable("a", "categorical", cardinality=5)])
    model = og.DurationModel(space).fit(np.array([[0.0], [1.0], [2.0]]), [4.0, np.nan, 6.0])
    self.assertAllClose(model(np.array([[3.0], [4.0]])), [5.0, 5.0])


if __name__ == "__main__":
  tf.test.main()
