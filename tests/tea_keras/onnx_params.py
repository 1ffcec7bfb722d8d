"""Test helper: the Keras parameter count of a network, read from its ONNX export.

An independent count for ``tea_keras.cost`` and the budgets: what
``deploy.export.export_onnx`` (tf2onnx, opset 13) writes, read back with the
``onnx`` package, knowing nothing of the genotype.

tf2onnx does not store Keras' variables one for one, so the count is defined
on the roles the float initializers play in the exported graph:

* **kernels**: the weight input of ``Conv`` (input 1) and ``MatMul`` (input 1).
  Every convolution, depthwise and pointwise kernel and the dense kernel of the
  network is stored once, with its Keras size (an inference batch norm's scale
  ``gamma / sqrt(var + eps)`` is multiplied into the kernel before it);
* **shifts**: the bias input of ``Conv`` (input 2) and the constant input of
  ``Add``. Each batch norm (4 Keras numbers per channel: gamma, beta, moving
  mean, moving variance) leaves exactly one shift vector of its C channels
  (``beta - mean * scale``): the bias of the convolution it follows, or an
  ``Add`` after a concatenation (the factorized reduction); the dense bias is
  the one other shift, ``num_classes`` numbers;
* **scales**: the constant input of ``Mul``: a batch norm's scale that could
  not be folded (after a concatenation); its channels are already counted by
  its shift, so scales add nothing.

Hence ``keras_params = kernels + num_classes + 4 * (shifts - num_classes)``.
Integer initializers (the shapes and indices of ``Pad``, ``Slice``,
``Squeeze``) are graph constants, not parameters. A float initializer in any
other role fails the count (``ValueError``), so the rule stays exhaustive.

Two conditions make the count exact, and ``exported_params`` sets them up:
batch norms hold random statistics and the dense bias is non-zero (at Keras'
initial values, beta = 0 and mean = 0, the shift is zero and tf2onnx drops
the no-op ``Add``, as it would never do for a trained network), and no two
weights are equal (tf2onnx would store them once).
"""

import collections
import os

import numpy as np

_KERNEL = {("Conv", 1), ("MatMul", 1)}
_SHIFT = {("Conv", 2), ("Add", 0), ("Add", 1)}
_SCALE = {("Mul", 0), ("Mul", 1)}
_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def randomize_batch_norms(model, seed=0):
  """Give every batch norm random statistics and the logits a random bias, as
  training would (see the module doc)."""
  rng = np.random.default_rng(seed)
  for weight in model.weights:
    if weight.name in _BN_VARIABLES:
      low = 0.5 if weight.name in ("gamma", "moving_variance") else -1.0
      weight.assign(rng.uniform(low, 1.5, weight.shape).astype("float32"))
  bias = model.get_layer("logits").bias
  bias.assign(rng.uniform(-1.0, 1.0, bias.shape).astype("float32"))


def onnx_roles(path):
  """``Counter`` of float initializer elements by role (kernels, shifts, scales)."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  proto = onnx.load(path)
  floats = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
  floats = {name: a for name, a in floats.items() if a.dtype.kind == "f"}
  roles = collections.Counter()
  seen = set()
  for node in proto.graph.node:
    for slot, name in enumerate(node.input):
      if name not in floats:
        continue
      role = ("kernels" if (node.op_type, slot) in _KERNEL else
              "shifts" if (node.op_type, slot) in _SHIFT else
              "scales" if (node.op_type, slot) in _SCALE else None)
      if role is None or name in seen:
        raise ValueError("initializer %s (%s) is input %d of a %s: no parameter role "
                         "known for it" % (name, floats[name].shape, slot, node.op_type))
      seen.add(name)
      roles[role] += int(floats[name].size)
  return roles


def onnx_params(path, num_classes=10):
  """Keras' parameter count of the network exported at ``path`` (module doc)."""
  roles = onnx_roles(path)
  return roles["kernels"] + num_classes + 4 * (roles["shifts"] - num_classes)


def exported_params(model, directory, num_classes=10, seed=0):
  """Randomize ``model``'s batch norms, export it with ``deploy.export`` and
  count its parameters from the file."""
  from deploy import export  # pylint: disable=g-import-not-at-top
  randomize_batch_norms(model, seed)
  path = export.export_onnx(model, os.path.join(directory, "%s.onnx" % model.name))
  return onnx_params(path, num_classes)
