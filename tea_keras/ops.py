"""The eight block operations of the TEA-DNN space, as a registry of builders.

Each builder ``(filters, stride, regularizer, name) -> keras.layers.Layer``
returns a layer that maps a ``filters``-wide hidden state to a ``filters``-wide
output at ``stride``. Conventions follow TF-slim's NASNet/PNASNet utilities:

* ReLU-conv-BN ordering for every convolution;
* separable convolutions are stacked twice (the first at ``stride``), as in
  ``nasnet_utils._stacked_separable_conv``;
* identity at stride 2 becomes ReLU-conv1x1(stride 2)-BN (slim's ``none``
  op with a stride), so every op of a block yields the same shape;
* max pooling is 3x3, ``same`` padding; its width already equals ``filters``
  because cell inputs are projected first.
"""

import keras
from keras import layers

from tea_keras import errors
from tea_keras import recipes

# TF-slim ``nasnet_cifar_arg_scope``: batch-norm decay 0.9, epsilon 1e-5 (the
# 0.9997 of the ImageNet scopes leaves the moving statistics near their
# initial values after a 10-epoch search-time training). The numbers live in
# the recipe (``tea_keras.recipes.Recipe``), which training applies to every
# batch-norm layer; networks built outside training get the same defaults.
BN_MOMENTUM = recipes.Recipe.bn_momentum
BN_EPSILON = recipes.Recipe.bn_epsilon


def batch_norm(name):
  return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def relu_conv_bn(filters, kernel_size, stride, regularizer, name):
  """ReLU -> Conv(k x k, stride, no bias) -> BN."""
  return keras.Sequential([
      layers.ReLU(name=name + "_relu"),
      layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False,
                    kernel_regularizer=regularizer, name=name + "_conv"),
      batch_norm(name + "_bn"),
  ], name=name)


def stacked_separable(filters, kernel_size, stride, regularizer, name):
  """(ReLU -> SepConv -> BN) x 2, the first at ``stride``."""
  stack = []
  for i, s in enumerate((stride, 1)):
    stack += [
        layers.ReLU(name="%s_relu%d" % (name, i)),
        layers.SeparableConv2D(filters, kernel_size, strides=s, padding="same", use_bias=False,
                               depthwise_regularizer=regularizer,
                               pointwise_regularizer=regularizer,
                               name="%s_sep%d" % (name, i)),
        batch_norm("%s_bn%d" % (name, i)),
    ]
  return keras.Sequential(stack, name=name)


def max_pool(filters, stride, regularizer, name):
  del filters, regularizer  # width-preserving
  return layers.MaxPooling2D(3, strides=stride, padding="same", name=name)


def identity(filters, stride, regularizer, name):
  if stride == 1:
    return layers.Identity(name=name)
  return relu_conv_bn(filters, 1, stride, regularizer, name)


OPS = {
    "max3x3": max_pool,
    "identity": identity,
    "sep3x3": lambda f, s, r, n: stacked_separable(f, 3, s, r, n),
    "conv3x3": lambda f, s, r, n: relu_conv_bn(f, 3, s, r, n),
    "sep5x5": lambda f, s, r, n: stacked_separable(f, 5, s, r, n),
    "conv5x5": lambda f, s, r, n: relu_conv_bn(f, 5, s, r, n),
    "sep7x7": lambda f, s, r, n: stacked_separable(f, 7, s, r, n),
    "conv7x7": lambda f, s, r, n: relu_conv_bn(f, 7, s, r, n),
}


def build_op(op_name, filters, stride, regularizer=None, name=None):
  """Build the layer for ``op_name`` (one of ``tea_keras.space.OPS``)."""
  if op_name not in OPS:
    raise errors.invalid_value("op_name", "one of %s" % ", ".join(OPS), op_name)
  if stride not in (1, 2):
    raise errors.invalid_value("stride", "1 or 2", stride)
  return OPS[op_name](filters, stride, regularizer, name or op_name)


class FactorizedReduction(layers.Layer):
  """Halve the resolution of a hidden state without losing half the pixels.

  NASNet's factorized reduction: ReLU, then two stride-2 1x1 paths, the
  second shifted by one pixel, each with ``filters // 2`` outputs,
  concatenated and batch-normalized.
  """

  def __init__(self, filters, regularizer=None, **kwargs):
    super().__init__(**kwargs)
    if filters < 2:
      raise errors.invalid_value("filters", "an integer >= 2", filters)
    self.filters = filters
    half = filters // 2
    self.relu = layers.ReLU()
    self.path1 = layers.Conv2D(half, 1, strides=2, use_bias=False, kernel_regularizer=regularizer)
    self.shift = layers.ZeroPadding2D(((0, 1), (0, 1)))
    self.crop = layers.Cropping2D(((1, 0), (1, 0)))
    self.path2 = layers.Conv2D(filters - half, 1, strides=2, use_bias=False,
                               kernel_regularizer=regularizer)
    self.bn = batch_norm(None)

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    self.path1.build(input_shape)
    self.path2.build(input_shape)
    half = lambda d: None if d is None else -(-d // 2)
    self.bn.build(input_shape[:1] + (half(input_shape[1]), half(input_shape[2]), self.filters))
    super().build(input_shape)

  def call(self, x):
    x = self.relu(x)
    a = self.path1(x)
    b = self.path2(self.crop(self.shift(x)))
    return self.bn(keras.ops.concatenate([a, b], axis=-1))


class DropPath(layers.Layer):
  """Drops a whole branch per example with probability ``rate`` at training
  time, rescaling kept branches by ``1 / (1 - rate)``. Identity at inference."""

  def __init__(self, rate=0.0, seed=None, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise errors.invalid_value("rate", "a float in [0, 1)", rate)
    self.rate = rate
    self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, x, training=None):
    if not training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (keras.ops.shape(x)[0], 1, 1, 1)
    mask = keras.ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator))
    return x / keep * mask
