"""The TEA-DNN CIFAR network (paper Fig. 3(a), PNAS CIFAR setup).

stem conv 3x3 -> N cells -> stride-2 cell -> N cells -> stride-2 cell ->
N cells -> ReLU -> global average pooling -> dense logits.

Cell ``k`` reads the outputs of cells ``k - 2`` and ``k - 1`` (the stem before
cell 0): ``space.network_layout``, which this builder follows. Only the live
part is built (``space.live_cells``; why: ``tea_keras.space``, "Dead cells"):
a cell whose output reaches no logit is left out, and a cell gets no
projection of an input it does not read, so every weight of the model gets a
gradient and ``count_params`` is the weights of its export, as
``tea_keras.cost`` counts them. Cells keep their position's name
(``cell_2``, ``cell_3_reduce``), so a left-out cell leaves a gap.
``live_only=False`` builds every cell and projection (the network as built
before, whose dead part computes nothing that reaches the logits).

``filters`` (F) is the per-block width of the first stage; it doubles at each
stride-2 cell. The stem has ``stem_multiplier * F`` channels, as in TF-slim's
``pnasnet``/``nasnet`` CIFAR models.

Weight decay: ``weight_decay`` is TF-slim's ``l2_regularizer`` scale, i.e. the
loss gains ``weight_decay * sum(w**2) / 2`` over every convolution, depthwise,
pointwise and dense kernel (Keras ``L2(weight_decay / 2)``). Biases and
batch-norm parameters are not decayed.
"""

import keras
from keras import layers

from tea_keras import cells
from tea_keras import densenet  # noqa: F401  (registers its layers for load_model, if any)
from tea_keras import errors
from tea_keras import ops
from tea_keras import space


def _check_positive_int(name, value, minimum=1):
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise errors.invalid_value(name, "an integer >= %d" % (minimum,), value)


def build_network(genotype, num_cells, filters, num_classes=10, input_shape=(32, 32, 3),
                  weight_decay=0.0, drop_path_rate=0.0, stem_multiplier=3, name=None,
                  concat=None, live_only=True):
  """Build the cell network for ``genotype`` (a ``Genotype`` or its string).

  ``concat``: the cells' output rule (``space.CONCATS``), overriding the
  genotype's; None keeps it (``pnasnet5`` carries ``"all"``). ``live_only``:
  build only the live cells and projections (module doc).

  Inputs are float32 NHWC images, normalized per channel
  (``tea_keras.data.normalize``); outputs are logits ``(batch, num_classes)``.
  """
  if isinstance(genotype, str):
    genotype = space.Genotype.parse(genotype)
  genotype = cells.with_concat(genotype, concat)
  _check_positive_int("num_cells", num_cells)
  _check_positive_int("filters", filters, minimum=2)
  _check_positive_int("num_classes", num_classes, minimum=2)
  _check_positive_int("stem_multiplier", stem_multiplier)
  if weight_decay < 0:
    raise errors.invalid_value("weight_decay", "a float >= 0", weight_decay)
  reg = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
  inputs = keras.Input(shape=input_shape, name="images")
  x = layers.Conv2D(stem_multiplier * filters, 3, padding="same", use_bias=False,
                    kernel_regularizer=reg, name="stem_conv")(inputs)
  states = {space.STEM: ops.batch_norm("stem_bn")(x)}
  live = space.live_cells(genotype, num_cells)
  read = genotype.inputs_read()
  for slot in space.network_layout(num_cells):
    if live_only and not live[slot.index]:
      continue
    cell_inputs = [states[state] if i in read or not live_only else None
                   for i, state in enumerate(slot.inputs)]
    states[slot.index] = cells.Cell(
        genotype, filters * slot.width, slot.stride, weight_decay=weight_decay,
        drop_path_rate=drop_path_rate, reduce_prev_prev=slot.reduce_prev_prev,
        project_unread_inputs=not live_only,
        name="cell_%d%s" % (slot.index, "_reduce" * (slot.stride == 2)))(cell_inputs)
  x = layers.ReLU(name="final_relu")(states[len(live) - 1])
  x = layers.GlobalAveragePooling2D(name="global_pool")(x)
  logits = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
  return keras.Model(inputs, logits, name=name or "tea_cell_net")


def cell_strides(num_cells):
  """Stride of every cell: N ones, a 2, N ones, a 2, N ones."""
  return space.cell_strides(num_cells)


def load_model(path):
  """Load a saved ``.keras`` model holding tea_keras layers."""
  return keras.saving.load_model(path)
