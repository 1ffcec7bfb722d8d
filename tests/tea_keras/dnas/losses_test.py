"""Tests of tea_keras.dnas.losses and of the supernet's training with them."""

import keras
import numpy as np
import tensorflow as tf

from tea_keras.dnas import export
from tea_keras.dnas import losses
from tea_keras.dnas import supernet
from tests.tea_keras.dnas import fixtures


class PenaltyTest(tf.test.TestCase):

  def test_size_and_cost_penalties_of_both_modes(self):
    self.assertEqual(float(losses.size_penalty(10.0, 4.0, "absolute")), 6.0)
    self.assertEqual(float(losses.size_penalty(2.0, 4.0, "absolute")), 2.0)
    self.assertEqual(float(losses.size_penalty(10.0, 4.0, "hinge")), 6.0)
    self.assertEqual(float(losses.size_penalty(2.0, 4.0, "hinge")), 0.0)
    self.assertEqual(float(losses.cost_penalty(5.0, 0.0, "absolute")), 5.0)
    self.assertEqual(float(losses.cost_penalty(5.0, 3.0, "hinge")), 2.0)
    self.assertEqual(float(losses.cost_penalty(2.0, 3.0, "hinge")), 0.0)

  def test_ramp_strength_is_linear_then_one(self):
    self.assertEqual([losses.ramp_strength(e, 4) for e in range(6)],
                     [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    self.assertEqual(losses.ramp_strength(0, 0), 1.0)

  def test_complexity_loss_rejects_bad_arguments(self):
    for kwargs, arg in (({"mode": "l2"}, "mode"), ({"cost_target": 5.0}, "cost_target"),
                        ({"lambda_size": -1.0}, "lambda_size"), ({"cost": 3}, "cost"),
                        ({"precision": "bf16"}, "precision")):
      with self.assertRaisesRegex(ValueError, "Invalid value for argument `%s`" % arg):
        losses.ComplexityLoss(**dict({"size_target": 10, "lambda_size": 1.0}, **kwargs))
    with self.assertRaisesRegex(ValueError, "Invalid value for argument `epochs`"):
      losses.StrengthRamp(losses.ComplexityLoss(10, 1.0), -1)


class GradientTest(tf.test.TestCase):

  def test_ste_gradient_equals_finite_differences_of_the_relaxed_mask(self):
    """What is compared: with ``theta`` the real-valued mask vector fed to
    the network in place of the binarized masks (``Supernet.forward`` and
    the size/cost functions of ``theta``),

        L(theta) = CE(forward(x, theta)) + lambda_M |params(theta) - M_t|
                   + lambda_E macs(theta),

    the gradient of ``L(theta(alpha))`` with respect to mask ``alpha_j``
    that the straight-through estimator gives equals ``dL/dtheta_j`` at
    ``theta = binarize(alpha)``, estimated by central differences of
    ``L`` in ``theta_j`` (float64, step 1e-6), for pruned (theta_j = 0)
    and kept (theta_j = 1) channels alike; keep-alive masks get 0."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
      rng = np.random.default_rng(0)
      seed = fixtures.concat_model()
      fixtures.randomize_batch_norms(seed, rng)
      loss = losses.ComplexityLoss(size_target=50, lambda_size=1e-3, lambda_cost=1e-5)
      net = supernet.make_supernet(seed, complexity=loss)
      fixtures.random_masks(net, rng)
      self.assertEqual(net.compute_dtype, "float64")
      x = rng.normal(size=(4, 6, 6, 3))
      y = np.array([0, 1, 2, 3])

      def total(theta):
        logits = net.forward(x, theta, training=False)
        task = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True))
        return task + loss.terms(net, theta)[0]

      with tf.GradientTape() as tape:
        value = total(net.theta())
      grads = tape.gradient(value, net.mask_variables)
      theta0 = net.theta_numpy()
      self.assertTrue(0 < theta0[:-1].sum() < theta0.size - 1)  # some pruned, some kept
      eps = 1e-6
      for group, grad in zip(net.channel_graph.groups, grads):
        for i in range(group.size):
          if i in group.keep_alive:
            self.assertEqual(float(grad[i]), 0.0)
            continue
          step = np.zeros_like(theta0)
          step[group.offset + i] = eps
          fd = (float(total(theta0 + step)) - float(total(theta0 - step))) / (2 * eps)
          self.assertAllClose(float(grad[i]), fd, rtol=1e-5, atol=1e-8)
    finally:
      keras.config.set_floatx(floatx)
      keras.config.set_dtype_policy(policy)

  def test_hinge_term_has_no_gradient_under_its_target(self):
    seed = fixtures.residual_model()
    for target, expect_zero in ((10 * seed.count_params(), True), (10, False)):
      loss = losses.ComplexityLoss(size_target=target, lambda_size=1.0, mode="hinge")
      net = supernet.make_supernet(seed, complexity=loss)
      with tf.GradientTape() as tape:
        term = loss.terms(net)[0]
      grads = tape.gradient(term, net.mask_variables)
      total = sum(float(tf.reduce_sum(tf.abs(g))) for g in grads)
      if expect_zero:
        self.assertEqual(total, 0.0)
      else:
        self.assertGreater(total, 0.0)


class TrainingTest(tf.test.TestCase):

  def test_training_with_a_strong_size_loss_moves_the_size_to_its_target(self):
    """Eight steps of Adam with a strong lambda_M (ramped over the first of
    two epochs) on random data: the binarized size ends below the seed's
    and closer to the target; the logs carry the size."""
    rng = np.random.default_rng(0)
    seed = fixtures.residual_model()
    start = seed.count_params()
    target = 0.3 * start
    loss = losses.ComplexityLoss(size_target=target, lambda_size=1e-2)
    net = supernet.make_supernet(seed, complexity=loss)
    net.compile(optimizer=keras.optimizers.Adam(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=32)
    history = net.fit(x, y, batch_size=8, epochs=2, verbose=0,
                      callbacks=[losses.StrengthRamp(loss, 2)])
    size = float(net.size())
    self.assertLess(size, start)
    self.assertLess(abs(size - target), abs(start - target))
    self.assertEqual(float(loss.strength), 1.0)
    self.assertLen(history.history["size"], 2)
    self.assertEqual(export.export_model(net).count_params(), size)


class MaskSpeedTest(tf.test.TestCase):

  def test_mask_speed_keeps_theta_and_scales_the_adam_step_of_the_masks(self):
    """With ``mask_speed`` k the masks are stored as alpha / k: the binarized
    masks and every count are those of alpha, and one Adam step (whose size
    does not depend on the gradient's scale) moves alpha k times as far."""
    rng = np.random.default_rng(1)
    seed = fixtures.residual_model()
    nets = [supernet.make_supernet(seed, mask_speed=k) for k in (1.0, 10.0)]
    alphas = [rng.uniform(0.2, 0.9, size=g.size) for g in nets[0].channel_graph.groups]
    for net in nets:
      for group, alpha in enumerate(alphas):
        net.set_mask_values(group, alpha)
      for got, alpha in zip(net.mask_values(), alphas):
        self.assertAllClose(got, alpha, atol=1e-6)
    self.assertAllEqual(nets[0].theta_numpy(), nets[1].theta_numpy())
    self.assertEqual(float(nets[0].size()), float(nets[1].size()))
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0])
    moved = []
    for net in nets:
      optimizer = keras.optimizers.Adam(1e-3)
      with tf.GradientTape() as tape:
        logits = net(x, training=True)
        value = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True)) + 1e-4 * keras.ops.cast(net.size(), "float32")
      grads = tape.gradient(value, net.mask_variables)
      before = net.mask_values()
      optimizer.apply_gradients(zip(grads, net.mask_variables))
      moved.append(np.concatenate([a - b for a, b in zip(net.mask_values(), before)]))
    live = np.abs(moved[0]) > 1e-5
    self.assertGreater(int(np.sum(live)), 0)
    self.assertAllClose(moved[1][live] / moved[0][live], np.full(int(np.sum(live)), 10.0),
                        rtol=1e-2)

  def test_mask_speed_must_be_positive(self):
    for bad in (0, -1.0, True, "fast"):
      with self.assertRaisesRegex(ValueError, "mask_speed"):
        supernet.make_supernet(fixtures.residual_model(), mask_speed=bad)


if __name__ == "__main__":
  tf.test.main()
