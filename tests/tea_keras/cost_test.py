"""Tests for tea_keras/cost.py: the analytic counts against the built model."""

import dataclasses
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tea_keras import cost
from tea_keras import network
from tea_keras import profiling
from tea_keras import space


def _profiled(genotype, num_cells, filters):
  model = network.build_network(genotype, num_cells, filters)
  return profiling.profile_model(model)


class CostTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((0, 1, 8), (2, 2, 6), (3, 1, 5))
  def test_genotype_cost_matches_built_model(self, seed, num_cells, filters):
    genotype = space.sample(np.random.default_rng(100 + seed))
    expected = _profiled(genotype, num_cells, filters)
    got = cost.genotype_cost(genotype, num_cells, filters)
    self.assertEqual(got["params"], expected["params"])
    self.assertEqual(got["peak_activation_bytes"], expected["peak_activation_bytes"])

  def test_genotype_cost_concat_all_and_named_cell(self):
    for genotype in (space.resolve("pnasnet5"), dataclasses.replace(
        space.sample(np.random.default_rng(7)), concat="all")):
      expected = _profiled(genotype, 1, 6)
      got = cost.genotype_cost(genotype.to_string(), 1, 6)
      self.assertEqual((got["params"], got["peak_activation_bytes"]),
                       (expected["params"], expected["peak_activation_bytes"]))

  @pytest.mark.slow
  def test_genotype_cost_matches_many_random_cells(self):
    rng = np.random.default_rng(2024)
    for genotype in space.sample_many(rng, 60):
      expected = _profiled(genotype, 1, 8)
      got = cost.genotype_cost(genotype, 1, 8)
      self.assertEqual((got["params"], got["peak_activation_bytes"]),
                       (expected["params"], expected["peak_activation_bytes"]),
                       msg=genotype.to_string())

  def test_genotype_params_closed_form_equals_op_list(self):
    rng = np.random.default_rng(11)
    for genotype in space.sample_many(rng, 300):
      for n, f in ((1, 8), (2, 5)):
        self.assertEqual(cost.genotype_params(genotype, n, f),
                         cost.genotype_cost(genotype, n, f)["params"])

  def test_genotype_cost_rejects_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, "num_cells"):
      cost.genotype_cost(space.sample(0), 0, 8)
    with self.assertRaisesRegex(ValueError, "filters"):
      cost.genotype_cost(space.sample(0), 1, 1)

  def test_cost_module_imports_no_tensorflow(self):
    import subprocess  # pylint: disable=g-import-not-at-top
    code = ("import sys; from tea_keras import cost, space; cost.genotype_cost(space.sample(0), "
            "1, 8); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    self.assertEqual(out, "False")


if __name__ == "__main__":
  tf.test.main()
