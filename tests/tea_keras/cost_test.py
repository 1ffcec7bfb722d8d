"""Tests for tea_keras/cost.py: the analytic counts against the built model and
against the weights of its ONNX export (``tests/tea_keras/onnx_params.py``)."""

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
from tests.tea_keras import onnx_params


def without_input(genotype, dropped):
  """``genotype`` with every read of cell input ``dropped`` (0 ``prev_prev``,
  1 ``prev``) moved to the other cell input: a cell that never reads it."""
  vector = genotype.to_vector()
  vector = [1 - v if p % 4 < 2 and v == dropped else v for p, v in enumerate(vector)]
  return space.Genotype.from_vector(vector, genotype.concat)


def export_cases(count, seed):
  """``count`` seeded ``(genotype, num_cells)``: uniform cells, every fifth one
  rewritten never to read ``prev`` (every other cell of its network dead) and
  every fifth never to read ``prev_prev``; N alternates 1, 2; some concat=all."""
  rng = np.random.default_rng(seed)
  for i in range(count):
    genotype = space.sample(rng)
    if i % 5 in (1, 2):
      genotype = without_input(genotype, {1: 1, 2: 0}[i % 5])
    if i % 7 == 3:
      genotype = dataclasses.replace(genotype, concat="all")
    yield genotype, 1 + i % 2


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
    self.assertEqual(got["macs"], expected["flops"])
    self.assertEqual(got["peak_activation_bytes"], expected["peak_activation_bytes"])

  @parameterized.parameters((1, 1), (1, 2), (0, 1))
  def test_genotype_cost_matches_built_model_when_a_cell_input_is_unread(self, dropped, n):
    genotype = without_input(space.sample(np.random.default_rng(40 + n)), dropped)
    expected = _profiled(genotype, n, 4)
    got = cost.genotype_cost(genotype, n, 4)
    self.assertEqual((got["params"], got["macs"], got["peak_activation_bytes"]),
                     (expected["params"], expected["flops"], expected["peak_activation_bytes"]))

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

  def _assert_params_equal_onnx(self, cases, filters=4):
    """The cost model's params against the exported file's, every case; the
    mismatches listed at once (genotype, N, cost, ONNX)."""
    rows = []
    for i, (genotype, num_cells) in enumerate(cases):
      model = network.build_network(genotype, num_cells, filters, name="net%d" % i)
      rows.append((genotype.to_string(), num_cells,
                   cost.genotype_cost(genotype, num_cells, filters)["params"],
                   onnx_params.exported_params(model, self.get_temp_dir(), seed=i)))
      del model
    mismatches = [row for row in rows if row[2] != row[3]]
    self.maxDiff = None
    self.assertEqual(mismatches, [], msg="%d of %d differ (genotype, N, cost, onnx)"
                     % (len(mismatches), len(rows)))

  def test_genotype_cost_params_equal_onnx_weights(self):
    rng = np.random.default_rng(5)
    self._assert_params_equal_onnx([(without_input(space.sample(rng), 1), 1),
                                    (without_input(space.sample(rng), 0), 1)])

  @pytest.mark.slow
  def test_genotype_cost_params_equal_onnx_weights_of_50_genotypes(self):
    self._assert_params_equal_onnx(list(export_cases(50, seed=29)))

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
