"""Tests for search/benchmarks/problems.py: standard values of the benchmark functions."""

import numpy as np
import tensorflow as tf

from search.optimizer import pareto
from search.benchmarks import problems


class ProblemsTest(tf.test.TestCase):

  def test_branin_minimum_and_currin_value(self):
    x = np.array([[(np.pi + 5) / 15, 2.275 / 15]])
    self.assertAllClose(problems.branin_currin(x)[0, 0], 0.397887, atol=1e-5)
    # Currin at (0.5, 0.5): (1 - e^-1) * 1868.5 / 159.5.
    self.assertAllClose(problems.branin_currin(np.array([[0.5, 0.5]]))[0, 1],
                        (1 - np.exp(-1.0)) * 1868.5 / 159.5)

  def test_zdt2_front_reaches_max_hypervolume(self):
    x = np.zeros((4001, 6))
    x[:, 0] = np.linspace(0, 1, 4001)
    p = problems.make_problem("zdt2")
    hv = pareto.hypervolume(p.evaluate(x), p.ref_point)
    self.assertAllClose(hv, p.max_hypervolume, atol=1e-3)

  def test_zdt1_front_reaches_max_hypervolume(self):
    x = np.zeros((4001, 6))
    x[:, 0] = np.linspace(0, 1, 4001)
    p = problems.make_problem("zdt1")
    self.assertAllClose(p.evaluate(x[:3])[:, 1], 1.0 - np.sqrt(x[:3, 0]))
    hv = pareto.hypervolume(p.evaluate(x), p.ref_point)
    self.assertAllClose(hv, p.max_hypervolume, atol=1e-3)

  def test_dtlz2_front_is_unit_sphere(self):
    rng = np.random.default_rng(0)
    x = rng.random((50, 6))
    x[:, 2:] = 0.5
    f = problems.dtlz2(x)
    self.assertAllClose(np.linalg.norm(f, axis=1), np.ones(50))
    self.assertAllClose(problems.make_problem("dtlz2").max_hypervolume, 0.80740, atol=1e-5)

  def test_cell_synthetic_is_seeded_and_valid(self):
    p = problems.make_problem("cell_synthetic")
    x = p.space.sample(1, 64)
    y = p.evaluate(x)
    self.assertEqual(y.shape, (64, 3))
    self.assertTrue(np.all((y[:, 0] > 0) & (y[:, 0] < 1)))
    self.assertTrue(np.all(y[:, 1:] > 0))
    self.assertAllClose(y, problems.make_problem("cell_synthetic").evaluate(x))
    self.assertNotAllClose(y, problems.make_problem("cell_synthetic", 1).evaluate(x))
    self.assertIsNone(p.max_hypervolume)

  def test_cell_synthetic_has_cross_block_interactions(self):
    fn = problems.CellSynthetic(0)
    i, j, _ = fn.pairs[0]
    self.assertNotEqual(i // 4, j // 4)
    base = np.zeros((1, 20))
    def delta(x, pos):
      moved = x.copy()
      moved[0, pos] = 1
      return fn(moved) - fn(x)
    other = base.copy()
    other[0, j] = 1
    self.assertNotAllClose(delta(base, i), delta(other, i))

  def test_unknown_problem_raises(self):
    with self.assertRaisesRegex(ValueError, "Expected one of branin_currin"):
      problems.make_problem("zdt3")


if __name__ == "__main__":
  tf.test.main()
