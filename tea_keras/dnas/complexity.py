"""Size and cost of a masked network as differentiable functions of its masks.

With ``theta`` the binarized masks (``masks`` module doc; trailing constant 1)
and a layer's ``LayerSpec`` (``graph`` module doc), its alive channels are

    c_in  = sum_i theta[in_index[i]]      c_out = sum_j theta[out_index[j]]

(input features for a dense layer after ``Flatten``; a depthwise layer's
``c_out = m * c_in``). Its parameters and multiply-accumulates (MACs), with
``K = k_h * k_w``, ``m`` the depth multiplier, ``P`` the output positions per
example, ``b`` 1 with a bias:

  ========== ====================================== ==========================
  kind       parameters                             MACs
  ========== ====================================== ==========================
  conv       ``K c_in c_out + b c_out``             ``P K c_in c_out``
  depthwise  ``K c_in m + b c_in m``                ``P K c_in m``
  separable  ``K c_in m + c_in m c_out + b c_out``  ``P (K c_in m + c_in m c_out)``
  dense      ``c_in c_out + b c_out``               ``P c_in c_out``
  batchnorm  ``n c`` (n = 2 moving stats + gamma, beta when used)  0
  ========== ====================================== ==========================

the counts of ``model.count_params()`` (batch-norm moving statistics
included) and of ``tea_keras.profiling.profile_model``'s ``flops`` (Conv2D,
DepthwiseConv2dNative and MatMul ops; element-wise ops count 0) on the
exported model, for any binarized masks: the functions are polynomials of
the counts, evaluated exactly (float64) at the 0/1 point, and their gradient
with respect to the masks is the straight-through one. (Risso et al. 2022
regularize the same two sums, size and MACs, over the layers with each
layer's effective channel counts; their released code counts convolution and
dense kernels only, ``models/search_module.py``, where these count every
weight the exported model stores.)

Size in bytes: ``params * BYTES_PER_WEIGHT[precision]`` (fp32 4, fp16 2,
int8 1, as ``deploy.device.devices.PRECISIONS``), batch-norm statistics included as
stored by Keras (a runtime that folds them into the convolutions stores
fewer; the budget is then conservative).

The cost term of the loss is pluggable: a ``CostModel`` is any callable
``cost(specs, alive) -> scalar`` where ``specs`` are the ``LayerSpec`` of the
weighted layers and ``alive`` maps each spec's name to its differentiable
``(c_in, c_out)`` (float64 tensors). ``macs`` and ``params`` are cost models; a
measured per-layer latency table can be one (e.g. interpolating each layer's
measured time over ``c_in, c_out``), as long as it is differentiable in them.

Failure mode: float32 would not hold counts past 2**24 exactly (a network of
more than 16.7M MACs), hence float64 here; the loss casts the result back.
"""

from typing import TYPE_CHECKING, Callable, Dict, Mapping, Sequence, Tuple

from keras import ops

from tea_keras import errors

if TYPE_CHECKING:  # annotations only
  from tea_keras.dnas.graph import LayerSpec

BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}

CostModel = Callable[[Sequence["LayerSpec"], Mapping[str, Tuple[object, object]]], object]


def alive_channels(specs, theta) -> Dict[str, Tuple[object, object]]:
  """``{spec.name: (c_in, c_out)}``, float64 sums of ``theta`` (shape
  ``(G + 1,)``) over each spec's input and output indices."""
  theta = ops.cast(theta, "float64")
  return {s.name: (ops.sum(ops.take(theta, s.in_index)), ops.sum(ops.take(theta, s.out_index)))
          for s in specs}


def layer_params(spec, c_in, c_out):
  """Parameters of one layer with ``c_in`` / ``c_out`` alive (module table)."""
  bias = float(spec.bias)
  if spec.kind == "conv":
    return spec.kernel * c_in * c_out + bias * c_out
  if spec.kind == "depthwise":
    return (spec.kernel + bias) * c_in * spec.multiplier
  if spec.kind == "separable":
    return spec.kernel * c_in * spec.multiplier + c_in * spec.multiplier * c_out + bias * c_out
  if spec.kind == "dense":
    return c_in * c_out + bias * c_out
  if spec.kind == "batchnorm":
    return spec.per_channel * c_out
  raise errors.invalid_value("spec", "a kind among conv, depthwise, separable, dense, batchnorm",
                             shown="spec.kind=%r" % (spec.kind,))


def layer_macs(spec, c_in, c_out):
  """Multiply-accumulates of one layer per example (module table)."""
  if spec.kind == "conv":
    return spec.positions * spec.kernel * c_in * c_out
  if spec.kind == "depthwise":
    return spec.positions * spec.kernel * c_in * spec.multiplier
  if spec.kind == "separable":
    return spec.positions * (spec.kernel * c_in * spec.multiplier +
                             c_in * spec.multiplier * c_out)
  if spec.kind == "dense":
    return spec.positions * c_in * c_out
  if spec.kind == "batchnorm":
    return 0.0 * c_out
  return layer_params(spec, c_in, c_out)  # raises for an unknown kind


def _total(per_layer, specs, alive):
  terms = [per_layer(s, *alive[s.name]) for s in specs]
  return ops.sum(ops.stack(terms)) if terms else ops.convert_to_tensor(0.0, "float64")


def params(specs, alive):
  """Total parameters: ``count_params()`` of the export (a ``CostModel``)."""
  return _total(layer_params, specs, alive)


def macs(specs, alive):
  """Total MACs per example: the profiler's ``flops`` of the export (a ``CostModel``)."""
  return _total(layer_macs, specs, alive)


def check_precision(precision):
  if precision not in BYTES_PER_WEIGHT:
    raise errors.invalid_value("precision", "one of %s" % ", ".join(BYTES_PER_WEIGHT), precision)
  return precision


def size_bytes(precision) -> CostModel:
  """A ``CostModel``: the weights' bytes at ``precision`` (module doc)."""
  factor = float(BYTES_PER_WEIGHT[check_precision(precision)])
  return lambda specs, alive: factor * params(specs, alive)
