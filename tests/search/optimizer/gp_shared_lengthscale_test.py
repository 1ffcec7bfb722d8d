"""search/optimizer/gp.py's grouped lengthscales against GPy's product of
per-block kernels over ``active_dims`` (GPy can share one lengthscale across a
one-hot block that way; gp.py's docstring says why the NumPy GP stays)."""

import numpy as np
import tensorflow as tf

from search.optimizer import design
from search.optimizer import gp as gplib


class SharedLengthscaleTest(tf.test.TestCase):

  def test_grouped_rbf_equals_gpy_product_of_block_kernels(self):
    import GPy  # pylint: disable=import-outside-toplevel
    space = design.DesignSpace([design.Variable("a", "categorical", cardinality=4),
                                design.Variable("b", "categorical", cardinality=3),
                                design.Variable("c", "continuous", bounds=(0.0, 2.0))])
    rng = np.random.default_rng(0)
    x = space.encode(space.sample(rng, 30))
    y = rng.normal(size=30)
    lengths, amp, noise = np.array([0.7, 1.6, 0.4]), 1.3, 0.05
    ours = gplib.ObjectiveGP(space.groups, kernel="rbf")
    theta = np.concatenate([np.log(lengths), [np.log(amp), np.log(noise), 0.0]])
    kernels = []
    for g, length in enumerate(lengths):
      dims = [int(i) for i in np.flatnonzero(space.groups == g)]
      k = GPy.kern.RBF(len(dims), variance=amp if g == 0 else 1.0, lengthscale=length,
                       active_dims=dims, name="v%d" % g)
      kernels.append(k)
    reference = GPy.models.GPRegression(x, y[:, None], GPy.kern.Prod(kernels),
                                        noise_var=noise)
    self.assertAllClose(ours.log_posterior(theta, x, y) - ours.log_prior(theta),
                        reference.log_likelihood(), atol=1e-6)
    xt = space.encode(space.sample(rng, 5))
    mean, var = ours._condition(theta, x, y).predict(xt)  # pylint: disable=protected-access
    ref_mean, ref_var = reference.predict_noiseless(xt)
    self.assertAllClose(mean, ref_mean[:, 0], atol=1e-6)
    self.assertAllClose(var, ref_var[:, 0], atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
