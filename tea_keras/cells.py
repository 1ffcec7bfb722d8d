"""The searchable cell as a serializable Keras layer (PNAS/NASNet style)."""

import dataclasses

import keras
from keras import layers

from tea_keras import errors
from tea_keras import ops
from tea_keras import space


@keras.saving.register_keras_serializable(package="tea_keras")
class Cell(layers.Layer):
  """A TEA-DNN cell: ``Cell(genotype, filters, stride)([prev_prev, prev])``.

  * Each input the genotype reads (``Genotype.inputs_read``) is projected to
    ``filters`` channels (ReLU-conv1x1-BN); ``prev_prev`` goes through a
    factorized reduction instead when it has twice the resolution of ``prev``
    (the cell right after a reduction): ``reduce_prev_prev``, or, when None,
    from the two input shapes. An input the cell does not read may be passed
    as None (``tea_keras.network`` does: it may come from a dead cell) and
    gets no projection, so the cell holds no weight its output does not use;
    ``project_unread_inputs=True`` projects it anyway and drops the result
    (the cells saved before this option, which ``from_config`` restores so).
  * Block ``b`` computes ``op1(input1) + op2(input2)``; in a stride-2
    (reduction) cell, ops reading a cell input run at stride 2 and ops reading a
    block output at stride 1, so every sum is shape-consistent.
  * The output concatenates ``Genotype.output_blocks``: the block outputs no
    other block uses (``concat="unused"``, the default) or all of them
    (``concat="all"``, PNASNet-5), ``filters * len(output_blocks)`` channels.
    ``concat`` (one of ``space.CONCATS``) overrides the genotype's rule; None
    keeps it.

  ``get_config`` carries the genotype string (with its rule), so
  ``keras.saving`` round-trips the cell. ``weight_decay`` is TF-slim's scale (see ``tea_keras.network``).
  """

  def __init__(self, genotype, filters, stride=1, weight_decay=0.0, drop_path_rate=0.0,
               concat=None, reduce_prev_prev=None, project_unread_inputs=False, **kwargs):
    super().__init__(**kwargs)
    if isinstance(genotype, str):
      genotype = space.Genotype.parse(genotype)
    if not isinstance(genotype, space.Genotype):
      raise errors.invalid_value("genotype", "a Genotype or its string form", genotype)
    genotype = with_concat(genotype, concat)
    if not isinstance(filters, int) or filters < 2:
      raise errors.invalid_value("filters", "an integer >= 2", filters)
    if stride not in (1, 2):
      raise errors.invalid_value("stride", "1 or 2", stride)
    if reduce_prev_prev not in (None, True, False):
      raise errors.invalid_value("reduce_prev_prev", "None, True or False", reduce_prev_prev)
    self.genotype = genotype
    self.filters = filters
    self.stride = stride
    self.weight_decay = float(weight_decay)
    self.drop_path_rate = float(drop_path_rate)
    self.reduce_prev_prev = reduce_prev_prev
    self.project_unread_inputs = bool(project_unread_inputs)
    self.output_blocks = genotype.output_blocks()
    # The cell inputs that get a projection: 0 prev_prev, 1 prev.
    self.projected = (0, 1) if self.project_unread_inputs else genotype.inputs_read()

  def _regularizer(self):
    if self.weight_decay <= 0:
      return None
    return keras.regularizers.L2(self.weight_decay / 2.0)

  def _reduces(self, prev_prev_shape, prev_shape):
    """Whether prev_prev goes through a factorized reduction (class doc)."""
    known = prev_shape is not None and None not in (prev_prev_shape[1], prev_shape[1])
    if known and prev_prev_shape[1] not in (prev_shape[1], 2 * prev_shape[1]):
      raise ValueError("Cell %s: prev_prev input of height %s cannot be matched to prev "
                       "input of height %s." % (self.name, prev_prev_shape[1], prev_shape[1]))
    from_shapes = known and prev_prev_shape[1] != prev_shape[1]
    if self.reduce_prev_prev is None:
      if prev_shape is None:
        raise ValueError("Cell %s: without its prev input, `reduce_prev_prev` must be given "
                         "(True or False). Received None." % self.name)
      return from_shapes
    if known and from_shapes != self.reduce_prev_prev:
      raise ValueError("Cell %s: reduce_prev_prev=%s, but its inputs have heights %s and %s."
                       % (self.name, self.reduce_prev_prev, prev_prev_shape[1], prev_shape[1]))
    return self.reduce_prev_prev

  def _state_shape(self, prev_prev_shape, prev_shape):
    """Shape of the cell's projected inputs (``filters`` channels)."""
    if prev_shape is not None:
      return tuple(prev_shape[:3]) + (self.filters,)
    halve = lambda d: None if d is None else (d - 1) // 2 + 1
    h, w = prev_prev_shape[1:3]
    if self._reduces(prev_prev_shape, None):
      h, w = halve(h), halve(w)
    return (prev_prev_shape[0], h, w, self.filters)

  def build(self, input_shape):
    prev_prev_shape, prev_shape = input_shape
    for i, shape in enumerate(input_shape):
      if i in self.projected and shape is None:
        raise ValueError("Cell %s reads its %s input, but received None for it."
                         % (self.name, space.input_name(i)))
    reg = self._regularizer()
    self.prev_prev_proj = self.prev_proj = None
    if 0 in self.projected:
      if self._reduces(prev_prev_shape, prev_shape):
        self.prev_prev_proj = ops.FactorizedReduction(self.filters, reg, name="reduce_prev_prev")
      else:
        self.prev_prev_proj = ops.relu_conv_bn(self.filters, 1, 1, reg, "proj_prev_prev")
    if 1 in self.projected:
      self.prev_proj = ops.relu_conv_bn(self.filters, 1, 1, reg, "proj_prev")
    self.block_ops = []
    for b, block in enumerate(self.genotype.blocks):
      pair = []
      for slot, (inp, op) in enumerate(((block.input1, block.op1), (block.input2, block.op2))):
        stride = self.stride if inp < 2 else 1
        pair.append(ops.build_op(op, self.filters, stride, reg, name="b%d_%s%d" % (b, op, slot)))
      self.block_ops.append(pair)
    self.drop_path = ops.DropPath(self.drop_path_rate) if self.drop_path_rate > 0 else None
    # Build every child now: Keras rebuilds a loaded layer through build()
    # alone before restoring weights, so no variable may be created lazily.
    for proj, shape in ((self.prev_prev_proj, prev_prev_shape), (self.prev_proj, prev_shape)):
      if proj is not None:
        proj.build(tuple(shape))
    state_shape = self._state_shape(prev_prev_shape, prev_shape)
    for pair in self.block_ops:
      for layer in pair:
        layer.build(state_shape)
    super().build(input_shape)

  def call(self, inputs):
    states = [None if proj is None else proj(x)
              for proj, x in zip((self.prev_prev_proj, self.prev_proj), inputs)]
    for block, (layer1, layer2) in zip(self.genotype.blocks, self.block_ops):
      branches = [layer1(states[block.input1]), layer2(states[block.input2])]
      if self.drop_path is not None:
        branches = [self.drop_path(x) if not isinstance(layer, layers.Identity) else x
                    for x, layer in zip(branches, (layer1, layer2))]
      states.append(branches[0] + branches[1])
    outputs = [states[2 + b] for b in self.output_blocks]
    return outputs[0] if len(outputs) == 1 else keras.ops.concatenate(outputs, axis=-1)

  def compute_output_shape(self, input_shape):
    prev_prev_shape, prev_shape = input_shape
    state = self._state_shape(prev_prev_shape, prev_shape)
    size = lambda d: None if d is None else -(-d // self.stride)
    return (state[0], size(state[1]), size(state[2]), self.filters * len(self.output_blocks))

  def get_config(self):
    config = super().get_config()
    config.update(genotype=self.genotype.to_string(), filters=self.filters, stride=self.stride,
                  weight_decay=self.weight_decay, drop_path_rate=self.drop_path_rate,
                  reduce_prev_prev=self.reduce_prev_prev,
                  project_unread_inputs=self.project_unread_inputs)
    return config

  @classmethod
  def from_config(cls, config):
    # A config without the key was saved before cells dropped unread inputs:
    # its weights include their projections.
    return cls(**dict({"project_unread_inputs": True}, **config))


def with_concat(genotype, concat):
  """``genotype`` with the output rule ``concat`` (None: unchanged)."""
  if concat is None:
    return genotype
  if concat not in space.CONCATS:
    raise errors.invalid_value("concat", "None or one of %s" % ", ".join(space.CONCATS), concat)
  return dataclasses.replace(genotype, concat=concat)
