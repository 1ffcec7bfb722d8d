"""Seed networks for the channel search, as functional models it accepts.

* ``resnet8_v05()``: ResNet-8 of MLPerf Tiny's image-classification benchmark,
  version 0.5 (mlcommons/tiny, ``v0.5/training/image_classification/
  keras_model.py``, ``resnet_v1_eembc``), layer for layer: a 3x3 stem of 16
  filters, three residual stacks of 16, 32 and 64 filters (two 3x3
  convolutions each, the second and third stacks starting at stride 2 with a
  1x1 stride-2 convolution on the shortcut), 8x8 average pooling, flatten,
  dense. As v0.5 defines it: every convolution has a bias (Keras' default),
  ``he_normal`` initialization and an L2(1e-4) kernel regularizer; batch norms
  have Keras' defaults; the dense layer has neither regularizer nor (with
  ``logits=False``) anything but a softmax. ``logits=True`` (default) drops
  the softmax, the tea-keras convention (training uses ``from_logits``); the
  counts are the same. Counts (``tests/tea_keras/dnas/seeds_test.py`` has the
  arithmetic): 78,666 parameters by ``count_params()`` (78,186 trainable),
  of which 77,360 are convolution and dense kernels (the issue's "77,360
  weights": biases and batch norms left out), and 12,501,632 MACs.
* ``cell_network(genotype, num_cells, filters, **kwargs)``: the network of
  ``tea_keras.network.build_network`` with each ``Cell`` layer inlined into
  the functional graph (``flatten_cell_network``), the same layers, weights
  and outputs, so that ``tea_keras.dnas.graph`` sees the convolutions a
  ``Cell`` hides. Built on ``build_network`` itself, so it follows whatever
  that builds (live cells only, its naming); it reads the ``Cell``'s built
  sub-layers (``prev_prev_proj``, ``prev_proj``, ``block_ops``,
  ``output_blocks``) and ``ops.FactorizedReduction``'s (``relu``, ``path1``,
  ``shift``, ``crop``, ``path2``, ``bn``). Drop-path is refused (build the
  seed with ``drop_path_rate=0``).
"""

import keras
import numpy as np
from keras import layers

from tea_keras import cells as cells_lib
from tea_keras import ops as ops_lib

RESNET8_V05_FILTERS = (16, 32, 64)


def _conv(filters, kernel_size, strides, weight_decay, name):
  reg = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None
  return layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                       kernel_initializer="he_normal", kernel_regularizer=reg, name=name)


def _stack(x, filters, strides, weight_decay, name, inner=None):
  """One residual stack of ``resnet_v1_eembc`` (module doc); ``inner``: the
  width of its first convolution (``filters`` by default)."""
  y = _conv(filters if inner is None else inner, 3, strides, weight_decay, name + "_conv1")(x)
  y = layers.BatchNormalization(name=name + "_bn1")(y)
  y = layers.Activation("relu", name=name + "_relu1")(y)
  y = _conv(filters, 3, 1, weight_decay, name + "_conv2")(y)
  y = layers.BatchNormalization(name=name + "_bn2")(y)
  if strides != 1:
    x = _conv(filters, 1, strides, weight_decay, name + "_shortcut")(x)
  x = layers.Add(name=name + "_add")([x, y])
  return layers.Activation("relu", name=name + "_relu")(x)


def resnet8_v05(num_classes=10, input_shape=(32, 32, 3), weight_decay=1e-4, logits=True,
                name="resnet8_v05", filters=RESNET8_V05_FILTERS, inner_filters=None):
  """ResNet-8 of MLPerf Tiny v0.5 (module doc); outputs logits unless
  ``logits=False`` (then softmax probabilities, as the reference).
  ``filters``: the three stacks' widths (v0.5: 16, 32, 64; a uniformly
  scaled ResNet-8 is the baseline of a channel search); the stem has the
  first stack's width (its output is added to that stack's). ``inner_filters``:
  the widths of each stack's first convolution (default: ``filters``), the
  only convolutions whose width no residual add ties: with ``filters`` they
  are the six free widths of a channel search on ResNet-8."""
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
    raise ValueError("Invalid value for argument `num_classes`. Expected an integer >= 2. "
                     "Received num_classes=%r" % (num_classes,))
  filters = tuple(int(f) for f in filters)
  if len(filters) != 3 or min(filters) < 1:
    raise ValueError("Invalid value for argument `filters`. Expected three positive widths. "
                     "Received filters=%r" % (filters,))
  inner = filters if inner_filters is None else tuple(int(f) for f in inner_filters)
  if len(inner) != 3 or min(inner) < 1:
    raise ValueError("Invalid value for argument `inner_filters`. Expected three positive "
                     "widths (or None). Received inner_filters=%r" % (inner_filters,))
  inputs = keras.Input(shape=input_shape, name="images")
  x = _conv(filters[0], 3, 1, weight_decay, "stem_conv")(inputs)
  x = layers.BatchNormalization(name="stem_bn")(x)
  x = layers.Activation("relu", name="stem_relu")(x)
  for i, width in enumerate(filters):
    x = _stack(x, width, 1 if i == 0 else 2, weight_decay, "stack%d" % (i + 1), inner[i])
  x = layers.AveragePooling2D(pool_size=int(np.amin(x.shape[1:3])), name="avg_pool")(x)
  x = layers.Flatten(name="flatten")(x)
  outputs = layers.Dense(num_classes, activation=None if logits else "softmax",
                         kernel_initializer="he_normal", name="logits")(x)
  return keras.Model(inputs, outputs, name=name)


# -- cell networks ----------------------------------------------------------------
def _copy(layer, x, name=None):
  """Call a fresh copy of ``layer`` (named ``name``) on ``x``, with its weights."""
  config = layer.get_config()
  if name is not None:
    config["name"] = name
  new = layer.__class__.from_config(config)
  y = new(x)
  if layer.weights:
    new.set_weights(layer.get_weights())
  return y


def _inline(layer, x, prefix):
  """``layer`` (a block op, a projection) as flat layers on ``x``."""
  if isinstance(layer, keras.Sequential):
    for sub in layer.layers:
      x = _copy(sub, x, "%s_%s" % (prefix, sub.name))
    return x
  if isinstance(layer, ops_lib.FactorizedReduction):
    name = "%s_%s" % (prefix, layer.name)
    x = _copy(layer.relu, x, name + "_relu")
    a = _copy(layer.path1, x, name + "_path1")
    b = _copy(layer.crop, _copy(layer.shift, x, name + "_shift"), name + "_crop")
    b = _copy(layer.path2, b, name + "_path2")
    x = layers.Concatenate(axis=-1, name=name + "_concat")([a, b])
    return _copy(layer.bn, x, name + "_bn")
  return _copy(layer, x, "%s_%s" % (prefix, layer.name))


def _inline_cell(cell, inputs):
  """The outputs of ``cell`` on ``inputs`` (``[prev_prev, prev]``, entries
  may be None), as flat layers."""
  if cell.drop_path is not None:
    raise ValueError("Invalid value for argument `model`. Expected cells without drop-path "
                     "(build the seed with drop_path_rate=0). Received cell %r with "
                     "drop_path_rate=%r" % (cell.name, cell.drop_path_rate))
  read = {i for blk in cell.genotype.blocks for i in (blk.input1, blk.input2) if i < 2}
  states = [_inline(proj, x, cell.name) if i in read else None
            for i, (proj, x) in enumerate(zip((cell.prev_prev_proj, cell.prev_proj), inputs))]
  for b, (block, (op1, op2)) in enumerate(zip(cell.genotype.blocks, cell.block_ops)):
    y1 = _inline(op1, states[block.input1], cell.name)
    y2 = _inline(op2, states[block.input2], cell.name)
    states.append(layers.Add(name="%s_b%d_add" % (cell.name, b))([y1, y2]))
  outputs = [states[2 + b] for b in cell.output_blocks]
  if len(outputs) == 1:
    return outputs[0]
  return layers.Concatenate(axis=-1, name=cell.name + "_concat")(outputs)


def flatten_cell_network(model):
  """``model`` (of ``tea_keras.network.build_network``) with every ``Cell``
  inlined: a functional model of the same layers and weights (module doc)."""
  inputs = keras.Input(shape=model.input_shape[1:], name=model.layers[0].name)
  values = {id(model.inputs[0]): inputs}
  for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
    for node in model._nodes_by_depth[depth]:  # pylint: disable=protected-access
      layer = node.operation
      if node.is_input or layer is None:
        continue
      if isinstance(layer, cells_lib.Cell):
        args = [None if x is None else values[id(x)] for x in node.arguments.args[0]]
        y = _inline_cell(layer, args)
      else:
        y = _copy(layer, values[id(node.arguments.keras_tensors[0])])
      values[id(node.outputs[0])] = y
  return keras.Model(inputs, values[id(model.outputs[0])], name=model.name + "_flat")


def cell_network(genotype, num_cells, filters, **kwargs):
  """``flatten_cell_network(network.build_network(genotype, num_cells,
  filters, **kwargs))``."""
  from tea_keras import network  # pylint: disable=import-outside-toplevel
  return flatten_cell_network(network.build_network(genotype, num_cells, filters, **kwargs))
