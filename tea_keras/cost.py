"""Static cost of a cell network computed from the genotype alone (no TensorFlow).

``genotype_cost(genotype, num_cells, filters)`` returns the numbers
``tea_keras.profiling.profile_model`` reads from a built Keras model, without
building one, so that a search can check budgets on thousands of candidate
cells (``search.budgets``). It counts the network ``tea_keras.network`` builds:
the live cells only (``space.live_cells`` over ``space.network_layout``), each
with the projections of the inputs it reads, so a cell that never reads
``prev`` is charged for the half of the network its export holds, not the
dead other half (``tea_keras.space``, "Dead cells"):

* ``params``: ``model.count_params()`` of ``tea_keras.network.build_network``
  (batch-norm moving statistics included, 4 numbers per channel), summed
  layer by layer from the recipe of ``tea_keras.network``/``cells``/``ops``;
  the weights of the ONNX export as well, read from its initializers
  (``tests/tea_keras/onnx_params.py`` says how BN folding is accounted for):

  ================== ============================================
  layer              parameters (``C_in`` -> ``C_out``)
  ================== ============================================
  conv k x k, no bias ``k*k*C_in*C_out``
  separable k x k    ``k*k*C_in + C_in*C_out`` (depthwise + pointwise)
  batch norm         ``4*C``
  dense              ``C_in*C_out + C_out``
  ================== ============================================

* ``macs``: multiply-accumulates of the convolutions (depthwise and pointwise
  apart) and the dense layer, ``profiling.profile_model``'s ``flops``;
* ``peak_activation_bytes``: the liveness count of ``profiling.peak_live_bytes``
  (ops in execution order, a tensor freed after its last consumer, float32,
  batch 1) replayed on the op sequence the network's TensorFlow graph has:
  a convolution is one op, a separable one two (depthwise, pointwise), a
  batch norm in inference seven (``add, rsqrt, mul`` on the C-vector, ``x*scale``,
  ``mean*scale``, ``beta - mean*scale``, ``+``), a factorized reduction
  ``relu, conv, pad, slice, conv, concat, bn``. Tests compare the three numbers with
  ``profiling.profile_model`` on random cells.

Shapes follow Keras ``padding="same"`` (``ceil(H / stride)``) and the
factorized reduction's ``valid`` 1x1 stride-2 convolutions (``(H - 1) // 2 + 1``).
"""

from tea_keras import errors
from tea_keras import space

FLOAT_BYTES = 4


class _Graph:
  """An op list ``(outputs, inputs)`` with tensors as integer ids and sizes."""

  def __init__(self):
    self.size, self.ops, self.params, self.macs = [], [], 0, 0

  def op(self, inputs, numel, params=0, macs=0):
    self.size.append(int(numel) * FLOAT_BYTES)
    self.ops.append((len(self.size) - 1, tuple(inputs)))
    self.params += int(params)
    self.macs += int(macs)
    return len(self.size) - 1

  def peak_live_bytes(self):
    """Same rule as ``tea_keras.profiling.peak_live_bytes``."""
    last_use = {}
    for i, (_, inputs) in enumerate(self.ops):
      for t in inputs:
        last_use[t] = i
    live, peak, total = set(), 0, 0
    for i, (out, inputs) in enumerate(self.ops):
      if out in last_use:
        live.add(out)
        total += self.size[out]
      peak = max(peak, total)
      for t in inputs:
        if last_use.get(t) == i and t in live:
          live.discard(t)
          total -= self.size[t]
    return peak


class _Net:
  """Builds the op list of ``tea_keras.network.build_network``; a state is
  ``(tensor id, height, width, channels)``."""

  def __init__(self):
    self.g = _Graph()

  def bn(self, x):
    t, h, w, c = x
    add = self.g.op([], c, params=4 * c)
    rsqrt = self.g.op([add], c)
    scale = self.g.op([rsqrt], c)
    xs = self.g.op([t, scale], h * w * c)
    ms = self.g.op([scale], c)
    shift = self.g.op([ms], c)
    return (self.g.op([xs, shift], h * w * c), h, w, c)

  def relu(self, x):
    t, h, w, c = x
    return (self.g.op([t], h * w * c), h, w, c)

  def conv(self, x, k, cout, stride, valid=False):
    t, h, w, c = x
    h2, w2 = ((h - 1) // stride + 1, (w - 1) // stride + 1) if valid else (
        -(-h // stride), -(-w // stride))
    return (self.g.op([t], h2 * w2 * cout, params=k * k * c * cout,
                      macs=h2 * w2 * k * k * c * cout), h2, w2, cout)

  def separable(self, x, k, cout, stride):
    t, h, w, c = x
    h2, w2 = -(-h // stride), -(-w // stride)
    depth = self.g.op([t], h2 * w2 * c, params=k * k * c, macs=h2 * w2 * k * k * c)
    return (self.g.op([depth], h2 * w2 * cout, params=c * cout, macs=h2 * w2 * c * cout),
            h2, w2, cout)

  def relu_conv_bn(self, x, k, cout, stride):
    return self.bn(self.conv(self.relu(x), k, cout, stride))

  def stacked_separable(self, x, k, cout, stride):
    for s in (stride, 1):
      x = self.bn(self.separable(self.relu(x), k, cout, s))
    return x

  def block_op(self, name, x, filters, stride):
    t, h, w, c = x
    if name == "max3x3":
      return (self.g.op([t], -(-h // stride) * -(-w // stride) * c), -(-h // stride),
              -(-w // stride), c)
    if name == "identity":
      return x if stride == 1 else self.relu_conv_bn(x, 1, filters, stride)
    kind, k = name[:-3], int(name[-1])
    if kind == "sep":
      return self.stacked_separable(x, k, filters, stride)
    return self.relu_conv_bn(x, k, filters, stride)

  def factorized_reduction(self, x, filters):
    t, h, w, c = self.relu(x)
    half = filters // 2
    a = self.conv((t, h, w, c), 1, half, 2, valid=True)
    pad = self.g.op([t], (h + 1) * (w + 1) * c)
    crop = self.g.op([pad], h * w * c)
    b = self.conv((crop, h, w, c), 1, filters - half, 2, valid=True)
    cat = self.g.op([a[0], b[0]], a[1] * a[2] * filters)
    return self.bn((cat, a[1], a[2], filters))

  def cell(self, genotype, filters, stride, prev_prev, prev, reduce_prev_prev):
    """A cell's ops; an input it does not read (None) gets no projection."""
    states = [None, None]
    read = genotype.inputs_read()
    if 0 in read:
      states[0] = (self.factorized_reduction(prev_prev, filters) if reduce_prev_prev
                   else self.relu_conv_bn(prev_prev, 1, filters, 1))
    if 1 in read:
      states[1] = self.relu_conv_bn(prev, 1, filters, 1)
    for block in genotype.blocks:
      branches = [self.block_op(op, states[inp], filters, stride if inp < 2 else 1)
                  for inp, op in ((block.input1, block.op1), (block.input2, block.op2))]
      (t1, h, w, _), (t2, _, _, _) = branches
      states.append((self.g.op([t1, t2], h * w * filters), h, w, filters))
    outs = [states[2 + b] for b in genotype.output_blocks()]
    if len(outs) == 1:
      return outs[0]
    _, h, w, _ = outs[0]
    width = filters * len(outs)
    return (self.g.op([o[0] for o in outs], h * w * width), h, w, width)


def _op_params(name, width, stride):
  if name == "max3x3" or (name == "identity" and stride == 1):
    return 0
  if name == "identity":
    return width * width + 4 * width
  k = int(name[-1])
  if name.startswith("sep"):
    return 2 * (k * k * width + width * width + 4 * width)
  return k * k * width * width + 4 * width


def genotype_params(genotype, num_cells, filters, num_classes=10, input_channels=3,
                    stem_multiplier=3):
  """``genotype_cost(...)["params"]`` in closed form (no op list, ~50x
  faster): stem, per live cell the projections of the inputs it reads
  (``C_in * w + 4w`` each, a factorized reduction included) and the block
  ops, the dense logits."""
  stem = stem_multiplier * filters
  total = 9 * input_channels * stem + 4 * stem
  channels = {space.STEM: stem}
  outputs = len(genotype.output_blocks())
  read = genotype.inputs_read()
  live = space.live_cells(genotype, num_cells)
  for slot in space.network_layout(num_cells):
    width = filters * slot.width
    channels[slot.index] = width * outputs
    if not live[slot.index]:
      continue
    total += sum(channels[slot.inputs[i]] * width + 4 * width for i in read)
    for block in genotype.blocks:
      for inp, op in ((block.input1, block.op1), (block.input2, block.op2)):
        total += _op_params(op, width, slot.stride if inp < 2 else 1)
  return total + channels[len(live) - 1] * num_classes + num_classes


def genotype_cost(genotype, num_cells, filters, num_classes=10, input_shape=(32, 32, 3),
                  stem_multiplier=3):
  """``{"params", "macs", "peak_activation_bytes"}`` of ``build_network(genotype,
  num_cells, filters, ...)`` at batch 1, float32 (see module doc). ``genotype``:
  a ``space.Genotype`` or its string form."""
  if isinstance(genotype, str):
    genotype = space.Genotype.parse(genotype)
  for name, value, low in (("num_cells", num_cells, 1), ("filters", filters, 2)):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise errors.invalid_value(name, "an integer >= %d" % (low,), value)
  net = _Net()
  h, w, c = input_shape
  image = (net.g.op([], h * w * c), h, w, c)
  states = {space.STEM: net.bn(net.conv(image, 3, stem_multiplier * filters, 1))}
  live = space.live_cells(genotype, num_cells)
  for slot in space.network_layout(num_cells):
    if live[slot.index]:
      prev_prev, prev = (states.get(i) for i in slot.inputs)
      states[slot.index] = net.cell(genotype, filters * slot.width, slot.stride, prev_prev,
                                    prev, slot.reduce_prev_prev)
  t, h, w, c = net.relu(states[len(live) - 1])
  pooled = net.g.op([t], c)
  logits = net.g.op([pooled], num_classes, params=c * num_classes, macs=c * num_classes)
  bias = net.g.op([logits], num_classes, params=num_classes)
  net.g.op([bias], num_classes)  # the graph's output identity keeps the logits alive
  return {"params": net.g.params, "macs": net.g.macs,
          "peak_activation_bytes": net.g.peak_live_bytes()}
