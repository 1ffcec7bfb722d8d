"""Tests for search/optimizer/kernels.py."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from scipy import special
from scipy.spatial import distance

from search.optimizer import kernels


def _matern_bessel(r, amplitude, nu=2.5):
  """The general Matern kernel through the modified Bessel function K_nu
  (Rasmussen and Williams 2006, eq. 4.14), amplitude at r = 0."""
  s = np.sqrt(2.0 * nu) * np.where(r > 0, r, 1.0)
  value = amplitude * 2.0 ** (1.0 - nu) / special.gamma(nu) * s ** nu * special.kv(nu, s)
  return np.where(r > 0, value, amplitude)


class KernelsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("matrix", (40, 30)), ("vector", (7,)), ("cube", (3, 4, 5)),
                                  ("scalar", ()))
  def test_kernel_from_sqdist_matches_bessel_matern_and_rbf(self, shape):
    rng = np.random.default_rng(0)
    r2 = np.asarray(rng.random(shape) * 9.0)
    keep = r2.copy()
    self.assertAllClose(kernels.kernel_from_sqdist(r2, 1.7, "matern52"),
                        _matern_bessel(np.sqrt(r2), 1.7), rtol=1e-10, atol=1e-12)
    self.assertAllClose(kernels.kernel_from_sqdist(r2, 1.7, "rbf"), 1.7 * np.exp(-r2 / 2.0),
                        rtol=1e-12)
    self.assertAllEqual(r2, keep)  # the input is not written to

  def test_kernel_from_sqdist_is_bitwise_the_textbook_expression(self):
    # The in-place evaluation must not change a single value (runs are
    # reproduced exactly across versions).
    r2 = np.random.default_rng(1).random((200, 50)) * 9.0
    r2[0, 0] = -1e-15   # rounding below zero: clamped
    s5r = np.sqrt(5.0) * np.sqrt(np.maximum(r2, 0.0))
    self.assertAllEqual(kernels.kernel_from_sqdist(r2, 1.3, "matern52"),
                        1.3 * (1.0 + s5r + 5.0 / 3.0 * r2) * np.exp(-s5r))
    self.assertAllEqual(kernels.kernel_from_sqdist(r2, 1.3, "rbf"), 1.3 * np.exp(-0.5 * r2))

  def test_scaled_sqdist_matches_scipy_cdist(self):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(20, 6))
    self.assertAllClose(kernels.scaled_sqdist(a, b), distance.cdist(a, b, "sqeuclidean"),
                        atol=1e-12)
    self.assertAllGreaterEqual(kernels.scaled_sqdist(a, a), 0.0)

  def test_kernel_from_sqdist_unknown_kind_names_argument(self):
    with self.assertRaisesRegex(ValueError, "argument `kernel`.*'cosine'"):
      kernels.kernel_from_sqdist(np.zeros(2), 1.0, "cosine")


if __name__ == "__main__":
  tf.test.main()
