"""DenseNet (L=40, k=12), the Table II baseline of the paper.

Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, the
CIFAR variant without bottleneck or compression: a 3x3 stem of 16 filters,
three dense blocks of ``(L - 4) / 3 = 12`` layers (BN-ReLU-conv3x3 with ``k``
outputs, concatenated onto the running feature map), transitions
BN-ReLU-conv1x1-avgpool2 between blocks, then BN-ReLU-global pool-dense.
Published size: about 1.0 M parameters.
"""

import keras
from keras import layers

from tea_keras import errors

BN_EPSILON = 1.001e-5


def _bn_relu(x, name):
  x = layers.BatchNormalization(epsilon=BN_EPSILON, name=name + "_bn")(x)
  return layers.ReLU(name=name + "_relu")(x)


def build_densenet(depth=40, growth_rate=12, num_classes=10, input_shape=(32, 32, 3),
                   weight_decay=0.0, initial_filters=16, name=None):
  """DenseNet of ``depth`` layers, growth rate ``growth_rate`` (logits out).

  ``weight_decay`` is TF-slim's scale, as in ``tea_keras.network``.
  """
  if not isinstance(depth, int) or depth < 7 or (depth - 4) % 3:
    raise errors.invalid_value("depth", "an integer >= 7 with (depth - 4) divisible by 3", depth)
  if not isinstance(growth_rate, int) or growth_rate < 1:
    raise errors.invalid_value("growth_rate", "a positive integer", growth_rate)
  reg = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
  conv = lambda f, k, n: layers.Conv2D(f, k, padding="same", use_bias=False,
                                       kernel_regularizer=reg, name=n)
  layers_per_block = (depth - 4) // 3
  inputs = keras.Input(shape=input_shape, name="images")
  x = conv(initial_filters, 3, "stem_conv")(inputs)
  for block in range(3):
    for i in range(layers_per_block):
      prefix = "block%d_layer%d" % (block, i)
      y = conv(growth_rate, 3, prefix + "_conv")(_bn_relu(x, prefix))
      x = layers.Concatenate(name=prefix + "_concat")([x, y])
    if block < 2:
      prefix = "transition%d" % block
      x = conv(x.shape[-1], 1, prefix + "_conv")(_bn_relu(x, prefix))
      x = layers.AveragePooling2D(2, name=prefix + "_pool")(x)
  x = _bn_relu(x, "final")
  x = layers.GlobalAveragePooling2D(name="global_pool")(x)
  logits = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
  return keras.Model(inputs, logits, name=name or "densenet%d_k%d" % (depth, growth_rate))


def build_densenet40(num_classes=10, input_shape=(32, 32, 3), weight_decay=0.0):
  """DenseNet L=40, k=12 (the paper's Table II baseline)."""
  return build_densenet(40, 12, num_classes, input_shape, weight_decay)
