"""Tests for search/optimizer/design.py."""

import subprocess
import sys

import numpy as np
import tensorflow as tf

from search import cellspace
from search.optimizer import design
from tea_keras import space as cell


class DesignTest(tf.test.TestCase):

  def test_cell_space_matches_genotype_encoding(self):
    s = cellspace.cell_space()
    self.assertEqual(s.dim, 20)
    self.assertAllEqual(s.cardinalities, cell.cardinalities())
    self.assertEqual(s.encoded_dim, sum(cell.cardinalities()))
    self.assertEqual(s.variables[6].name, "b1.op1")
    vector = cell.Genotype.parse(cell.NAMED["pnasnet5"]).to_vector()
    self.assertAllEqual(s.validate(vector)[0], vector)

  def test_encode_is_one_hot_per_categorical_and_scaled_continuous(self):
    s = design.DesignSpace([design.Variable("a", "categorical", cardinality=3),
                            design.Variable("b", "continuous", bounds=(2.0, 4.0))])
    z = s.encode(np.array([[2, 3.0], [0, 2.0]]))
    self.assertAllClose(z, [[0, 0, 1, 0.5], [1, 0, 0, 0.0]])
    self.assertAllEqual(s.groups, [0, 0, 0, 1])

  def test_sample_mutate_neighbours_stay_in_space(self):
    s = cellspace.cell_space()
    x = s.sample(0, 50)
    s.validate(x)
    m = s.mutate(x, 1, 40)
    s.validate(m)
    neigh = s.neighbours(x[0])
    self.assertEqual(neigh.shape[0], int(np.sum(s.cardinalities - 1)))
    self.assertAllEqual(np.sum(neigh != x[0], axis=1), np.ones(neigh.shape[0]))
    for row in neigh[:5]:
      cell.Genotype.from_vector(row.astype(int))

  def test_mutate_changes_at_least_one_value(self):
    s = cellspace.cell_space()
    x = s.sample(3, 1)
    m = s.mutate(x, 4, 100)
    self.assertTrue(np.all(np.sum(m != x[0], axis=1) >= 1))

  def test_keys_identify_equal_points(self):
    s = design.continuous_space([(0.0, 1.0)] * 2)
    keys = s.keys(np.array([[0.1, 0.2], [0.1, 0.2], [0.1, 0.3]]))
    self.assertEqual(keys[0], keys[1])
    self.assertNotEqual(keys[0], keys[2])

  def test_validate_names_variable_and_expectation(self):
    s = cellspace.cell_space()
    bad = np.zeros(20)
    bad[0] = 2  # block 0 has only 2 inputs
    with self.assertRaisesRegex(ValueError, r"'b0.input1' must be an integer in \[0, 1\]"):
      s.validate(bad)
    with self.assertRaisesRegex(ValueError, "Expected points with 20 coordinates"):
      s.validate(np.zeros(3))
    with self.assertRaisesRegex(ValueError, "Expected an integer >= 2"):
      design.Variable("v", "categorical", cardinality=1)
    with self.assertRaisesRegex(ValueError, "finite low < high"):
      design.Variable("v", "continuous", bounds=(1.0, 0.0))

  def test_optimizer_modules_do_not_import_tensorflow(self):
    code = ("import sys; import search.optimizer.strategies, search.optimizer.pesmo, search.benchmarks.benchmark, "
            "search.optimizer.design, search.cellspace; search.cellspace.cell_space(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    self.assertEqual(out.stdout.strip(), "False")


if __name__ == "__main__":
  tf.test.main()
