"""Tests of tea_keras.dnas.export: the plain model equals the masked supernet."""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tea_keras.dnas import export
from tea_keras.dnas import seeds
from tea_keras.dnas import supernet
from tests.tea_keras.dnas import fixtures


def _prepared(seed, rng):
  fixtures.randomize_batch_norms(seed, rng)
  net = supernet.make_supernet(seed)
  fixtures.random_masks(net, rng)
  return net


class ExportTest(tf.test.TestCase):

  def _check_outputs(self, seed, input_shape, rng):
    net = _prepared(seed, rng)
    found = export.export_model(net)
    x = rng.normal(size=(3,) + input_shape).astype("float32")
    self.assertAllClose(found(x, training=False), net(x, training=False), atol=1e-5, rtol=1e-5)
    return net, found

  def test_export_equals_supernet_outputs_on_resnet8(self):
    self._check_outputs(seeds.resnet8_v05(), (32, 32, 3), np.random.default_rng(0))

  def test_export_equals_supernet_outputs_with_concat_depthwise_separable(self):
    rng = np.random.default_rng(1)
    for _ in range(2):
      self._check_outputs(fixtures.concat_model(), (6, 6, 3), rng)

  def test_export_has_pruned_widths_and_no_mask_layers(self):
    net, found = self._check_outputs(fixtures.concat_model(), (6, 6, 3),
                                     np.random.default_rng(2))
    seed_types = {type(layer) for layer in fixtures.concat_model().layers}
    self.assertTrue({type(layer) for layer in found.layers} <= seed_types)
    self.assertFalse(any("mask" in w.path for w in found.weights))
    widths = {layer.name: layer.output.shape[-1] for layer in found.layers}
    for name, alive in net.channels().items():
      self.assertEqual(widths[name], alive)
    self.assertEqual(widths["conv_d"], widths["conv_e"])  # one mask across the add

  def test_export_keeps_one_channel_per_layer_when_every_mask_drops(self):
    seed = fixtures.concat_model()
    net = supernet.make_supernet(seed)
    for v in net.mask_variables:
      v.assign(np.full(v.shape, -1.0, dtype="float32"))
    found = export.export_model(net)
    widths = {layer.name: layer.output.shape[-1] for layer in found.layers}
    self.assertEqual([widths[n] for n in ("conv_a", "sep_b", "dw_c", "conv_d", "logits")],
                     [1, 1, 1, 1, 4])
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 3)).astype("float32")
    self.assertAllClose(found(x, training=False), net(x, training=False), atol=1e-5)

  def test_export_leaves_the_seed_untouched(self):
    seed = fixtures.residual_model()
    before = [w.copy() for w in seed.get_weights()]
    net = supernet.make_supernet(seed)
    fixtures.random_masks(net, np.random.default_rng(4))
    net.step_layers[0].kernel.assign(np.zeros(net.step_layers[0].kernel.shape))
    export.export_model(net)
    for a, b in zip(before, seed.get_weights()):
      self.assertAllEqual(a, b)

  def test_export_with_a_flatten_dense_hidden_layer(self):
    """A hidden dense layer after a 2x2 Flatten: its rows for pruned
    channels go; its own units are searched too."""
    inputs = keras.Input((4, 4, 2))
    x = layers.Conv2D(5, 3, strides=2, padding="same", name="conv")(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(6, activation="relu", name="hidden")(x)
    x = layers.Dropout(0.5)(x)
    seed = keras.Model(inputs, layers.Dense(3, name="logits")(x))
    net, found = self._check_outputs(seed, (4, 4, 2), np.random.default_rng(5))
    self.assertEqual(found.get_layer("hidden").kernel.shape,
                     (4 * net.channels()["conv"], net.channels()["hidden"]))


if __name__ == "__main__":
  tf.test.main()
