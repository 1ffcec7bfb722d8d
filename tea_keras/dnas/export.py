"""Export: the architecture a supernet found, as a plain Keras model.

``export_model(supernet)`` rebuilds the seed's functional graph, layer by
layer with the same classes, configurations and names, with each layer's
widths cut to its alive channels (``filters`` / ``units``; depthwise and
per-channel layers follow their input) and its weights sliced to the
surviving channels, batch-norm moving statistics included. There are no mask
layers: a pruned channel is simply absent.

Slicing, with ``keep_in`` / ``keep_out`` the positions of the alive input /
output channels (``theta[layout] == 1``):

* ``Conv2D`` kernel ``(kh, kw, C_in, C_out)[:, :, keep_in][..., keep_out]``,
  bias ``[keep_out]``; ``Dense`` kernel ``(F_in, C_out)[keep_in][:, keep_out]``
  (``keep_in`` over the features after ``Flatten``);
* ``DepthwiseConv2D`` kernel ``(kh, kw, C, m)[:, :, keep_in]``, bias
  ``[keep_out]`` (channel ``c*m + j`` follows input channel ``c``);
* ``SeparableConv2D``: its depthwise kernel as above, its pointwise kernel
  ``(1, 1, C*m, C_out)`` on the rows of the kept depthwise outputs and the
  columns ``keep_out``;
* ``BatchNormalization``: gamma, beta, moving mean and variance ``[keep_out]``.

Since the supernet zeroes a pruned channel where it enters a channel-mixing
layer (``supernet`` module doc), the export computes the same function as
the supernet at its current binarized masks, in inference mode (in training
mode too, the batch statistics being per channel). No layer is ever empty:
each producer keeps one channel alive (``masks`` module doc), so the case
"every channel of a layer pruned" cannot arise; the export checks it anyway.
"""

import keras
import numpy as np


def _keep(theta, layout):
  return np.flatnonzero(theta[layout] > 0.5)


def _sliced(weight_name, value, kind, keep_in, keep_out, multiplier):
  """One weight of a layer, cut to the surviving channels (module doc)."""
  if weight_name in ("gamma", "beta", "moving_mean", "moving_variance", "bias"):
    return value[keep_out]
  if kind == "conv":
    return value[:, :, keep_in][..., keep_out]
  if kind == "dense":
    return value[keep_in][:, keep_out]
  if weight_name in ("kernel", "depthwise_kernel"):  # depthwise, separable
    return value[:, :, keep_in]
  if weight_name == "pointwise_kernel":
    rows = (keep_in[:, None] * multiplier + np.arange(multiplier)[None, :]).ravel()
    return value[:, :, rows][..., keep_out]
  raise ValueError("Cannot slice weight %r of a %s layer." % (weight_name, kind))


def _exported_layer(step, config, width):
  config = dict(config)
  if step.kind in ("conv", "separable"):
    config["filters"] = width
  elif step.kind == "dense":
    config["units"] = width
  return step.layer.__class__.from_config(config)


def _short_name(variable):
  return variable.path.split("/")[-1]


def export_model(supernet, name=None):
  """The plain Keras model of ``supernet``'s current binarized masks (module
  doc). ``name``: the model's name (default: the seed's name + ``_found``)."""
  graph = supernet.channel_graph
  theta = supernet.theta_numpy()
  inputs = [keras.Input(shape=s, name=n) for s, n in zip(graph.input_shapes, graph.input_names)]
  values = dict(zip(graph.inputs, inputs))
  for step, layer in zip(graph.steps, supernet.step_layers):
    keep_out = _keep(theta, graph.layouts[step.output])
    if keep_out.size == 0:
      raise ValueError("Layer %r lost all its channels; masks keep one alive per layer, so the "
                       "supernet's masks were changed by hand." % step.layer.name)
    if isinstance(step.args, list):
      new = step.layer.__class__.from_config(layer.get_config())
      values[step.output] = new([values[k] for k in step.args])
      continue
    new = _exported_layer(step, layer.get_config(), int(keep_out.size))
    values[step.output] = new(values[step.args])
    if layer.weights:
      keep_in = _keep(theta, graph.layouts[step.args])
      multiplier = getattr(step.layer, "depth_multiplier", 1)
      new.set_weights([_sliced(_short_name(w), np.asarray(w.numpy()), step.kind, keep_in,
                               keep_out, multiplier) for w in layer.weights])
  outputs = [values[k] for k in graph.outputs]
  model_name = name or supernet.name.replace("_supernet", "") + "_found"
  single = lambda xs: xs[0] if len(xs) == 1 else xs
  return keras.Model(single(inputs), single(outputs), name=model_name)
