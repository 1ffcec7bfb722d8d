"""Channel dependencies of a Keras functional model: which channels are one.

Pruning output channel ``c`` of a convolution removes more than one slice of
one weight: every layer that reads the channel loses a row of its weights,
and channels that are summed with it (a residual ``Add``) must go with it.
``analyze(model)`` works this out from the functional graph once, so that the
supernet, the cost functions and the export all read one answer.

The rule: every *unit* (a channel as a thing that can be pruned) is born at
the output of a channel-mixing layer (``Conv2D``, ``SeparableConv2D``'s
pointwise part, ``Dense``); each tensor of the graph carries, per channel, the
unit it holds. Then, layer by layer:

* ``DepthwiseConv2D`` (multiplier ``m``): output channel ``c*m + j`` holds the
  unit of input channel ``c`` (it follows its input);
* ``BatchNormalization``, element-wise activations, pooling, padding,
  cropping, up-sampling, dropout: the units pass through unchanged;
* ``Add`` / ``Subtract`` / ``Multiply`` / ``Average`` / ``Maximum`` /
  ``Minimum``: channel ``c`` of every input is *the same* unit (union-find),
  so the producers feeding a residual add share one mask;
* ``Concatenate`` on the channel axis: the units of the inputs, in order;
* ``Flatten`` of an ``H x W x C`` map: ``H*W`` copies of the ``C`` units, in
  Keras' (channels-last) order, so a ``Dense`` after it loses the ``H*W``
  rows of a pruned channel; on a ``1 x 1`` map it keeps the channels;
* the model's inputs, its outputs (the logits are never pruned), and the
  input of a soft-max over channels are tied to the constant unit ``ONE``
  (never pruned), with every unit merged with them.

Each connected set of producers (linked by shared units) becomes one mask
*group*: a vector of masks, one per distinct unit, named after its first
producer (``mask_<layer>``). Every producer keeps its first channel alive
(``masks`` module doc). The masks of all groups, concatenated, with a
trailing constant 1 (the index of ``ONE``), form the vector ``theta``; every
tensor's channels then map to indices into ``theta`` (``layouts``).

Refused, naming the layer: a layer outside the list above (``Reshape``,
``Conv2D`` with ``groups > 1``, nested models such as the ``Cell`` layer or a
``Sequential`` inside the model, layers called twice), ``channels_first``
data, a concatenation or merge whose inputs' channels do not line up. Call
kwargs recorded in the graph (``bn(x, training=False)``) are not replayed.

Shapes: ``theta`` is ``(G + 1,)`` for ``G`` masks in all; a layout is an int
vector with one entry per channel (per feature after ``Flatten``).
"""

import dataclasses
from typing import Dict, List, Tuple

import keras
import numpy as np
from keras import layers

from tea_keras import errors

ONE = 0  # the unit of channels that are never pruned

_MIXING_ACTIVATIONS = ("softmax", "log_softmax")
_PASSTHROUGH = (
    layers.ReLU, layers.LeakyReLU, layers.ELU, layers.Dropout, layers.SpatialDropout2D,
    layers.GaussianNoise, layers.GaussianDropout, layers.Identity, layers.ZeroPadding2D,
    layers.Cropping2D, layers.UpSampling2D, layers.MaxPooling2D, layers.AveragePooling2D,
    layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)
_MERGES = (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum,
           layers.Minimum)
WEIGHTED_KINDS = ("conv", "depthwise", "separable", "dense", "batchnorm")


@dataclasses.dataclass(frozen=True)
class MaskGroup:
  """One mask variable: ``size`` masks at ``theta[offset:offset + size]``
  shared by the output channels of ``producers``; ``keep_alive`` holds the
  positions (within the group) that are never pruned."""
  name: str
  size: int
  offset: int
  producers: Tuple[str, ...]
  keep_alive: Tuple[int, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class LayerSpec:
  """What the cost of a weighted layer depends on.

  ``kind``: one of ``WEIGHTED_KINDS``. ``in_index`` / ``out_index``: the
  ``theta`` index of each input / output channel (input features for a dense
  layer after ``Flatten``). ``kernel``: ``k_h * k_w``; ``multiplier``: the
  depth multiplier; ``positions``: output positions per example
  (``H_out * W_out``; a dense layer's leading dims, 1 on a vector);
  ``bias``: whether it has a bias; ``per_channel``: a batch norm's numbers per
  channel (moving mean and variance, plus gamma and beta when used)."""
  name: str
  kind: str
  in_index: np.ndarray
  out_index: np.ndarray
  kernel: int = 1
  multiplier: int = 1
  positions: int = 1
  bias: bool = False
  per_channel: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
  """One layer call: ``layer`` (of the analyzed model) reads the tensors
  ``args`` (one id, or a list of ids for merges) and writes ``output``;
  ``kind`` names the rule applied; ``mixed_index`` is the theta index of the
  input channels a channel-mixing layer reads (None: the layer mixes nothing,
  or reads only channels that are never pruned)."""
  layer: keras.layers.Layer
  kind: str
  args: object
  output: int
  mixed_index: object = None


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelGraph:
  """The result of ``analyze``: steps in execution order, the ids of the
  model's input and output tensors, the mask groups, each tensor's layout
  (theta index per channel), the weighted layers' specs, and ``theta_size``
  (``sum of group sizes + 1``; the last index is the constant 1)."""
  steps: Tuple[Step, ...]
  inputs: Tuple[int, ...]
  input_shapes: Tuple[tuple, ...]
  input_names: Tuple[str, ...]
  outputs: Tuple[int, ...]
  groups: Tuple[MaskGroup, ...]
  layouts: Dict[int, np.ndarray]
  specs: Tuple[LayerSpec, ...]
  theta_size: int

  @property
  def const_index(self):
    return self.theta_size - 1


class _UnionFind:
  """Units as integers; ``ONE`` is unit 0."""

  def __init__(self):
    self.parent = [ONE]

  def new(self, count):
    start = len(self.parent)
    self.parent.extend(range(start, start + count))
    return np.arange(start, start + count)

  def find(self, u):
    root = u
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[u] != root:
      self.parent[u], u = root, self.parent[u]
    return root

  def union(self, a, b):
    ra, rb = self.find(int(a)), self.find(int(b))
    if ra != rb:
      # ONE stays a root so that "tied to ONE" is find(u) == ONE.
      if rb == ONE:
        ra, rb = rb, ra
      self.parent[rb] = ra


def _refuse(layer, why):
  raise errors.invalid_value("model",
                             "a functional model of Conv2D/DepthwiseConv2D/SeparableConv2D/Dense "
                             "layers with BatchNormalization, activations, Add, Concatenate, "
                             "pooling and Flatten between them",
                             shown="layer %r (%s): %s" % (layer.name, type(layer).__name__, why))


def _check_channels_last(layer):
  if getattr(layer, "data_format", "channels_last") != "channels_last":
    _refuse(layer, "only channels_last data is supported")


def _activation_mixes(fn):
  return getattr(fn, "__name__", "") in _MIXING_ACTIVATIONS


def _static(shape, layer):
  if any(d is None for d in shape[1:]):
    _refuse(layer, "its shapes must be static (all but the batch axis), got %s" % (shape,))
  return shape


def _positions(shape):
  return int(np.prod(shape[1:-1], dtype=np.int64)) if len(shape) > 2 else 1


# -- the rules: (layer, input units, input shapes, output shape) -> (output units, spec) ------
def _conv(layer, units, shapes, out_shape, uf):
  if getattr(layer, "groups", 1) != 1:
    _refuse(layer, "grouped convolutions (groups=%d) are not supported" % layer.groups)
  kh, kw = layer.kernel_size
  spec = dict(kind="conv", kernel=kh * kw, positions=_positions(out_shape), bias=layer.use_bias)
  return uf.new(layer.filters), spec


def _separable(layer, units, shapes, out_shape, uf):
  kh, kw = layer.kernel_size
  spec = dict(kind="separable", kernel=kh * kw, multiplier=layer.depth_multiplier,
              positions=_positions(out_shape), bias=layer.use_bias)
  return uf.new(layer.filters), spec


def _dense(layer, units, shapes, out_shape, uf):
  return uf.new(layer.units), dict(kind="dense", positions=_positions(out_shape),
                                   bias=layer.use_bias)


def _depthwise(layer, units, shapes, out_shape, uf):
  kh, kw = layer.kernel_size
  spec = dict(kind="depthwise", kernel=kh * kw, multiplier=layer.depth_multiplier,
              positions=_positions(out_shape), bias=layer.use_bias)
  return np.repeat(units[0], layer.depth_multiplier), spec


def _batchnorm(layer, units, shapes, out_shape, uf):
  axis = layer.axis if isinstance(layer.axis, int) else None
  if axis not in (-1, len(shapes[0]) - 1):
    _refuse(layer, "only normalization over the last (channel) axis is supported")
  return units[0], dict(kind="batchnorm", per_channel=2 + int(layer.center) + int(layer.scale))


def _activation(layer, units, shapes, out_shape, uf):
  if _activation_mixes(layer.activation):
    _tie(uf, units[0])
  return units[0], None


def _softmax(layer, units, shapes, out_shape, uf):
  _tie(uf, units[0])
  return units[0], None


def _passthrough(layer, units, shapes, out_shape, uf):
  return units[0], None


def _flatten(layer, units, shapes, out_shape, uf):
  return np.tile(units[0], _positions(shapes[0])), None


def _merge(layer, units, shapes, out_shape, uf):
  for other in units[1:]:
    if len(other) != len(units[0]):
      _refuse(layer, "its inputs have %s channels; a merge of pruned channels needs equal "
              "channel counts (no broadcasting)" % [len(u) for u in units])
    for a, b in zip(units[0], other):
      uf.union(a, b)
  return units[0], None


def _concatenate(layer, units, shapes, out_shape, uf):
  if layer.axis in (-1, len(out_shape) - 1):
    return np.concatenate(units), None
  return _merge(layer, units, shapes, out_shape, uf)  # same channels, stacked elsewhere


_RULES = (  # exact types first: SeparableConv2D etc. are no Conv2D subclasses in Keras 3
    (layers.Conv2D, _conv, True), (layers.SeparableConv2D, _separable, True),
    (layers.Dense, _dense, True), (layers.DepthwiseConv2D, _depthwise, False),
    (layers.BatchNormalization, _batchnorm, False), (layers.Activation, _activation, False),
    (layers.Softmax, _softmax, False), (layers.Flatten, _flatten, False),
    (layers.Concatenate, _concatenate, False),
) + tuple((cls, _merge, False) for cls in _MERGES) + tuple(
    (cls, _passthrough, False) for cls in _PASSTHROUGH)


def _rule(layer):
  for cls, rule, mixes in _RULES:
    if type(layer) is cls:  # pylint: disable=unidiomatic-typecheck
      return rule, mixes
  _refuse(layer, "this layer type is not supported (nested models, such as tea-keras' Cell, "
          "must be flattened first: tea_keras.dnas.seeds.cell_network)")


def _tie(uf, units):
  for u in units:
    uf.union(ONE, u)


def _functional(model):
  if not isinstance(model, keras.Model):
    raise errors.invalid_value("model", "a keras.Model", model)
  if not hasattr(model, "_nodes_by_depth"):
    if not getattr(model, "built", False) or not hasattr(model, "outputs"):
      raise errors.invalid_value("model", "a functional (or built Sequential) keras.Model",
                                 shown="a %s" % (type(model).__name__,))
    model = keras.Model(model.inputs, model.outputs, name=model.name)
  return model


def _nodes(model):
  """The model's layer calls in execution order (deepest first)."""
  seen, nodes = set(), []
  for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
    for node in model._nodes_by_depth[depth]:  # pylint: disable=protected-access
      if node.is_input or node.operation is None:
        continue
      op = node.operation
      if id(op) in seen:
        _refuse(op, "layers called more than once are not supported")
      seen.add(id(op))
      nodes.append(node)
  return nodes


def _walk(model, uf, key):
  """Units of every tensor (by ``key(tensor)``), the raw steps and the producers."""
  units = {}
  for x in model.inputs:
    _static(x.shape, model)
    units[key(x)] = uf.new(x.shape[-1])
    _tie(uf, units[key(x)])
  steps, producers = [], []
  for node in _nodes(model):
    layer = node.operation
    if not isinstance(layer, keras.layers.Layer):
      _refuse(layer, "raw keras.ops calls are not supported; use the matching layer")
    rule, mixes = _rule(layer)
    _check_channels_last(layer)
    inputs = node.arguments.keras_tensors
    if len(node.outputs) != 1:
      _refuse(layer, "layers with several outputs are not supported")
    out = node.outputs[0]
    in_units = [units[key(x)] for x in inputs]
    out_units, spec = rule(layer, in_units, [_static(x.shape, layer) for x in inputs],
                           _static(out.shape, layer), uf)
    if hasattr(layer, "activation") and _activation_mixes(layer.activation) and \
        type(layer) is not layers.Activation:
      _tie(uf, out_units)
    units[key(out)] = out_units
    many = type(layer) is layers.Concatenate or type(layer) in _MERGES
    args = [key(x) for x in inputs] if many else key(inputs[0])
    steps.append((layer, args, key(out), mixes, spec))
    if mixes:
      producers.append((layer.name, out_units))
  for x in model.outputs:
    _tie(uf, units[key(x)])
  return units, steps, producers


def _groups(uf, producers):
  """Mask groups over the producers' free units; ``index`` maps a unit's
  root to its theta position."""
  owner, link = {}, _UnionFind()
  link.parent = list(range(len(producers)))
  for p, (_, out_units) in enumerate(producers):
    for u in out_units:
      root = uf.find(int(u))
      if root == ONE:
        continue
      if root in owner:
        link.union(owner[root], p)
      else:
        owner[root] = p
  members = {}
  for p in range(len(producers)):
    members.setdefault(link.find(p), []).append(p)
  groups, index, offset = [], {}, 0
  for comp in sorted(members.values(), key=lambda ps: ps[0]):
    roots = []
    for p in comp:
      for u in producers[p][1]:
        root = uf.find(int(u))
        if root != ONE and root not in roots:
          roots.append(root)
    if not roots:
      continue
    position = {r: i for i, r in enumerate(roots)}
    keep = sorted({position[uf.find(int(producers[p][1][0]))] for p in comp
                   if uf.find(int(producers[p][1][0])) != ONE})
    index.update({r: offset + i for r, i in position.items()})
    groups.append(MaskGroup("mask_" + producers[comp[0]][0], len(roots), offset,
                            tuple(producers[p][0] for p in comp), tuple(keep)))
    offset += len(roots)
  return groups, index, offset


def analyze(model) -> ChannelGraph:
  """The ``ChannelGraph`` of ``model`` (module doc); raises ValueError for a
  model outside the supported set, naming the layer."""
  model = _functional(model)
  uf, keys = _UnionFind(), {}
  key = lambda x: keys.setdefault(id(x), len(keys))  # tensors as small ints
  units, raw_steps, producers = _walk(model, uf, key)
  groups, index, total = _groups(uf, producers)
  const = total

  def to_theta(unit_ids):
    return np.array([index.get(uf.find(int(u)), const) for u in unit_ids], dtype=np.int32)

  layouts = {key: to_theta(u) for key, u in units.items()}
  steps, specs = [], []
  for layer, args, out, mixes, spec in raw_steps:
    first = args[0] if isinstance(args, list) else args
    mixed = layouts[first] if mixes and np.any(layouts[first] != const) else None
    steps.append(Step(layer, spec["kind"] if spec else type(layer).__name__, args, out, mixed))
    if spec is not None:
      specs.append(LayerSpec(layer.name, in_index=layouts[first], out_index=layouts[out],
                             **spec))
  # pylint: disable-next=protected-access
  names = tuple(x._keras_history.operation.name for x in model.inputs)
  return ChannelGraph(tuple(steps), tuple(key(x) for x in model.inputs),
                      tuple(tuple(x.shape[1:]) for x in model.inputs), names,
                      tuple(key(x) for x in model.outputs), tuple(groups), layouts, tuple(specs),
                      total + 1)


def producers_of(graph: ChannelGraph) -> List[str]:
  """The names of the layers whose output channels are searched."""
  return [name for group in graph.groups for name in group.producers]
