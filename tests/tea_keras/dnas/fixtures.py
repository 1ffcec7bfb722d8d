"""Small seed models and helpers shared by the DNAS tests."""

import keras
from keras import layers


def concat_model(input_shape=(6, 6, 3), num_classes=4):
  """Conv-BN-ReLU, then a separable (multiplier 2) and a depthwise branch
  concatenated, a 1x1 conv summed with a conv of the image (a residual add
  across two producers), max pooling to 3x3, Flatten (not 1x1) and a dense
  layer: every rule of ``tea_keras.dnas.graph`` but the soft-max."""
  inputs = keras.Input(shape=input_shape, name="images")
  x = layers.Conv2D(6, 3, padding="same", name="conv_a")(inputs)
  x = layers.BatchNormalization(name="bn_a")(x)
  x = layers.ReLU(name="relu_a")(x)
  sep = layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, name="sep_b")(x)
  dw = layers.DepthwiseConv2D(3, padding="same", name="dw_c")(x)
  dw = layers.BatchNormalization(name="bn_c")(dw)
  cat = layers.Concatenate(name="cat")([sep, dw])
  y = layers.Conv2D(7, 1, name="conv_d")(cat)
  z = layers.Conv2D(7, 3, padding="same", use_bias=False, name="conv_e")(inputs)
  x = layers.Add(name="add")([y, z])
  x = layers.Activation("relu", name="relu_add")(x)
  x = layers.MaxPooling2D(2, name="pool")(x)
  x = layers.Flatten(name="flatten")(x)
  outputs = layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name="concat_net")


def residual_model(input_shape=(8, 8, 3), num_classes=3, width=8):
  """Conv-BN-ReLU, a residual block (two convs, identity add), global
  average pooling, dense logits."""
  inputs = keras.Input(shape=input_shape, name="images")
  x = layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
  x = layers.BatchNormalization(name="stem_bn")(x)
  x = layers.ReLU(name="stem_relu")(x)
  y = layers.Conv2D(width, 3, padding="same", name="conv1")(x)
  y = layers.BatchNormalization(name="bn1")(y)
  y = layers.ReLU(name="relu1")(y)
  y = layers.Conv2D(width, 3, padding="same", name="conv2")(y)
  y = layers.BatchNormalization(name="bn2")(y)
  x = layers.ReLU(name="relu")(layers.Add(name="add")([x, y]))
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  outputs = layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name="residual_net")


def randomize_batch_norms(model, rng):
  """Non-trivial gamma, beta and moving statistics, so that exports that
  slice them wrongly show it."""
  for layer in model.layers:
    if isinstance(layer, layers.BatchNormalization):
      layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if i in (0, 3)
                         else rng.normal(0, 0.3, w.shape).astype(w.dtype)
                         for i, w in enumerate(layer.get_weights())])


def random_masks(supernet, rng, low=0.0, high=1.0):
  """Masks uniform in [low, high): about half the channels pruned."""
  for v in supernet.mask_variables:
    v.assign(rng.uniform(low, high, v.shape).astype(v.dtype))


def randomize_weights(model, rng):
  """Every weight random (variances and gammas positive), nested layers'
  included."""
  for w in model.weights:
    name = w.path.split("/")[-1]
    if name in ("gamma", "moving_variance"):
      w.assign(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
    else:
      w.assign(rng.normal(0.0, 0.3, w.shape).astype(w.dtype))
