"""Tests of tea_keras.dnas.graph: channel dependencies worked out from the graph."""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tea_keras import network
from tea_keras.dnas import graph
from tea_keras.dnas import seeds
from tea_keras.dnas import supernet
from tests.tea_keras.dnas import fixtures


def _spec(channel_graph, name):
  return next(s for s in channel_graph.specs if s.name == name)


class AnalyzeTest(tf.test.TestCase):

  def test_analyze_add_inputs_share_one_mask_in_resnet8(self):
    """The stem and the first stack's second conv meet in an identity add;
    the second and third stacks' second convs meet their shortcut convs."""
    g = graph.analyze(seeds.resnet8_v05())
    groups = {grp.producers for grp in g.groups}
    self.assertEqual(groups, {
        ("stem_conv", "stack1_conv2"), ("stack1_conv1",), ("stack2_conv1",),
        ("stack2_conv2", "stack2_shortcut"), ("stack3_conv1",),
        ("stack3_conv2", "stack3_shortcut")})
    self.assertAllEqual(_spec(g, "stem_conv").out_index, _spec(g, "stack1_conv2").out_index)
    self.assertAllEqual(_spec(g, "stack3_conv2").out_index,
                        _spec(g, "stack3_shortcut").out_index)

  def test_analyze_add_inputs_are_one_mask_variable(self):
    """One variable per group in the supernet: pruning a channel of it
    removes that channel from both sides of the add in the export."""
    net = supernet.make_supernet(fixtures.residual_model())
    names = [v.path.split("/")[-1] for v in net.mask_variables]
    self.assertEqual(names, ["mask_stem", "mask_conv1"])
    shared = net.mask_variables[0]
    shared.assign(np.array([1, 0, 1, 0, 0, 1, 1, 0], dtype="float32"))
    self.assertEqual(net.channels()["stem"], 4)
    self.assertEqual(net.channels()["conv2"], 4)

  def test_analyze_concatenate_concatenates_masks_and_depthwise_follows_input(self):
    g = graph.analyze(fixtures.concat_model())
    conv_a = _spec(g, "conv_a").out_index
    dw = _spec(g, "dw_c")
    self.assertAllEqual(dw.in_index, conv_a)
    self.assertAllEqual(dw.out_index, conv_a)  # multiplier 1
    sep = _spec(g, "sep_b")
    self.assertAllEqual(sep.in_index, conv_a)
    self.assertAllEqual(_spec(g, "conv_d").in_index, np.concatenate([sep.out_index, conv_a]))

  def test_analyze_depthwise_multiplier_repeats_each_input_channel(self):
    inputs = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 1, name="a")(inputs)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = layers.Conv2D(2, 1, name="b")(x)
    g = graph.analyze(keras.Model(inputs, layers.GlobalAveragePooling2D()(x)))
    a = _spec(g, "a").out_index
    self.assertAllEqual(_spec(g, "dw").out_index, np.repeat(a, 2))

  def test_analyze_flatten_tiles_channels_over_positions(self):
    """Flatten of a 3x3x7 map: Keras' channels-last order, 9 copies of the
    7 channels; the dense layer reads 63 features."""
    g = graph.analyze(fixtures.concat_model())
    add_channels = _spec(g, "conv_d").out_index
    self.assertAllEqual(_spec(g, "logits").in_index, np.tile(add_channels, 9))

  def test_analyze_logits_and_inputs_are_never_pruned(self):
    g = graph.analyze(fixtures.concat_model())
    self.assertNotIn("logits", graph.producers_of(g))
    self.assertAllEqual(_spec(g, "logits").out_index, [g.const_index] * 4)
    self.assertAllEqual(_spec(g, "conv_a").in_index, [g.const_index] * 3)

  def test_analyze_softmax_over_channels_is_never_pruned(self):
    """A soft-max over a hidden layer's channels mixes them: its input is
    tied to the constant, so that layer gets no mask."""
    inputs = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 1, name="a")(inputs)
    x = layers.Activation("softmax", name="sm")(x)
    x = layers.Conv2D(5, 1, name="b")(x)
    x = layers.GlobalAveragePooling2D()(x)
    g = graph.analyze(keras.Model(inputs, layers.Dense(2)(x)))
    self.assertEqual(graph.producers_of(g), ["b"])

  def test_analyze_refuses_unsupported_layers_naming_them(self):
    inputs = keras.Input((4, 4, 4))
    cases = {
        "reshape": layers.Reshape((16, 4), name="reshape")(inputs),
        "grouped": layers.Conv2D(4, 1, groups=2, name="grouped")(inputs),
    }
    for name, out in cases.items():
      with self.assertRaisesRegex(ValueError, "Invalid value for argument `model`.*%s" % name):
        graph.analyze(keras.Model(inputs, out))
    cell_net = network.build_network("identity(prev)+identity(prev_prev)", 1, 2)
    with self.assertRaisesRegex(ValueError, "cell_0.*Cell.*seeds.cell_network"):
      graph.analyze(cell_net)


if __name__ == "__main__":
  tf.test.main()
