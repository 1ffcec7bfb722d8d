"""Static cost of a Keras model: parameters, multiply-accumulates, activations.

Counted on the TensorFlow graph of one inference at batch 1 (float32), so every
layer, including those nested inside ``Cell`` layers, is seen. Only the ops the
logits depend on count (walking the graph back from its outputs), as only they
are exported and run: a branch a layer computes and drops, such as the cells
of a saved pre-live-cells model (``tea_keras.space``, "Dead cells"), adds no
MACs, activations or parameters.

* ``params`` / ``trainable_params``: the model's (trainable) weights that a
  counted op reads; for a model of ``tea_keras.network.build_network``,
  ``model.count_params()``.

* ``flops``: multiply-accumulates (MACs) of ``Conv2D`` (``H_out * W_out * k_h *
  k_w * C_in * C_out``), ``DepthwiseConv2dNative`` (``H_out * W_out * k_h * k_w
  * C_in * multiplier``) and ``MatMul``/``BatchMatMul`` (``rows * inner *
  cols``). Element-wise ops (BN, ReLU, adds, pooling) are not counted; this is
  the convention of the NAS literature (PNAS, NASNet report "Mult-Adds").
* ``peak_activation_bytes``: executing the graph's ops in order and freeing
  each tensor after its last consumer, the largest total size of the live
  float tensors produced by the model's ops (weights excluded; the input image
  counts). A lower bound on what any runtime must hold at once.
"""

import numpy as np
import tensorflow as tf

_MAC_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2")
_NO_ACTIVATION_OPS = ("ReadVariableOp", "Const", "VarHandleOp", "NoOp", "Identity",
                      "Shape", "Reshape")


def _graph(model):
  spec = [tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)]
  fn = tf.function(lambda x: model(x, training=False))
  return fn.get_concrete_function(*spec).graph


def op_macs(op):
  """Multiply-accumulates of one graph op (0 for ops that are not counted)."""
  if op.type not in _MAC_OPS:
    return 0
  out = op.outputs[0].shape.as_list()
  if op.type == "Conv2D":
    kh, kw, cin, cout = op.inputs[1].shape.as_list()
    return int(np.prod(out[:-1])) * kh * kw * cin * cout
  if op.type == "DepthwiseConv2dNative":
    kh, kw, cin, mult = op.inputs[1].shape.as_list()
    return int(np.prod(out[:-1])) * kh * kw * cin * mult
  a_shape = op.inputs[0].shape.as_list()
  transpose_a = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
  inner = a_shape[-2] if transpose_a else a_shape[-1]
  return int(np.prod(out)) * inner


def _tensor_bytes(tensor):
  shape = tensor.shape
  if shape.rank is None or not shape.is_fully_defined() or not tensor.dtype.is_floating:
    return 0
  return int(np.prod(shape.as_list(), dtype=np.int64)) * tensor.dtype.size


def live_ops(graph):
  """The ops of ``graph`` its outputs depend on (data inputs), in graph order."""
  needed, stack = set(), [t.op for t in graph.outputs]
  while stack:
    op = stack.pop()
    if op.name not in needed:
      needed.add(op.name)
      stack.extend(t.op for t in op.inputs)
  return [op for op in graph.get_operations() if op.name in needed]


def live_weights(model, graph, ops):
  """The weights of ``model`` that some op of ``ops`` reads (a variable is
  captured by the function graph as a resource placeholder)."""
  read = {t.ref() for op in ops for t in op.inputs if t.dtype == tf.resource}
  handles = {id(external) for external, internal in graph.captures if internal.ref() in read}
  return [w for w in model.weights
          if getattr(w.value, "handle", None) is None or id(w.value.handle) in handles]


def peak_live_bytes(graph, ops=None):
  """Peak of live activation bytes over ``ops`` (default: ``live_ops(graph)``) in order."""
  ops = live_ops(graph) if ops is None else ops
  last_use = {}
  for i, op in enumerate(ops):
    for t in op.inputs:
      last_use[t.ref()] = i
  live, peak = {}, 0
  for i, op in enumerate(ops):
    if op.type not in _NO_ACTIVATION_OPS:
      for t in op.outputs:
        size = _tensor_bytes(t)
        if size and t.ref() in last_use:
          live[t.ref()] = size
    peak = max(peak, sum(live.values()))
    for t in op.inputs:
      if last_use.get(t.ref()) == i:
        live.pop(t.ref(), None)
  return peak


def profile_model(model):
  """``{"params", "trainable_params", "flops", "peak_activation_bytes"}``."""
  graph = _graph(model)
  ops = live_ops(graph)
  weights = live_weights(model, graph, ops)
  return {
      "params": int(sum(np.prod(w.shape) for w in weights)),
      "trainable_params": int(sum(np.prod(w.shape) for w in weights if w.trainable)),
      "flops": int(sum(op_macs(op) for op in ops)),
      "peak_activation_bytes": int(peak_live_bytes(graph, ops)),
  }
