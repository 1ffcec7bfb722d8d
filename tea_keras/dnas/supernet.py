"""The searchable supernet: a functional model with one mask per output channel.

``make_supernet(model)`` copies ``model`` (its layers and weights; the model
itself is left untouched) into a ``Supernet``: the same layer calls in the
same order, plus one trainable mask per prunable output channel, grouped as
``tea_keras.dnas.graph`` works out (channels summed by an ``Add`` share one
mask; the logits have none), initialised at 1.

Where the mask acts. Channel ``c`` is multiplied by its binarized mask
``theta_c`` where it *enters a channel-mixing layer* (the input of a
``Conv2D``, ``SeparableConv2D`` or ``Dense``): the layers between the
producing convolution and the next mixing layer (batch norm, activation,
pooling, residual adds, depthwise convolutions) act per channel, so zeroing
the channel there is exactly deleting it with all of them, and the export
(``tea_keras.dnas.export``) equals the supernet for any masks. (The released
multi-constraint-nas code masks the convolution's weights before the batch
norm, whose shift then still reaches the next layer; PLiNIO folds the batch
norm into the convolution first. Both prune the same channels; the gradient
reaching ``alpha_c`` differs: here it is ``sum <dL/d(theta x)_c, x_c>`` over
the positions where the channel is read, after its batch norm and activation,
whereas a mask in front of a training-mode batch norm gets almost none from
the task loss, batch norm being invariant to the channel's scale.)

The forward pass uses the 0/1 masks; gradients reach the real-valued masks
through the straight-through estimator of ``tea_keras.dnas.masks``.

Training: ``Supernet.compile``/``fit`` as any Keras model; with a
``complexity`` (``tea_keras.dnas.losses.ComplexityLoss``), ``compute_loss``
adds its term to the task loss and the logs gain ``size`` and ``cost``. The
masks are ``mask_variables`` (divided by ``mask_speed``: ``mask_values``),
the rest ``network_variables`` (the paper's
code gives the masks no weight decay: exclude them from an optimizer's decay
with ``optimizer.exclude_from_weight_decay(var_list=supernet.mask_variables)``).
"""

import inspect

import keras
import numpy as np
from keras import ops

from tea_keras import errors
from tea_keras.dnas import complexity as complexity_lib
from tea_keras.dnas import graph as graph_lib
from tea_keras.dnas import masks as masks_lib

def _clone(layer, input_shape):
  """A fresh copy of ``layer`` with its weights (built for ``input_shape``)."""
  copy = layer.__class__.from_config(layer.get_config())
  if layer.weights:
    copy.build(input_shape)
    copy.set_weights(layer.get_weights())
  return copy


def _takes_training(layer):
  return "training" in inspect.signature(layer.call).parameters


class Supernet(keras.Model):
  """A masked copy of a functional model (module doc). Build it with
  ``make_supernet``. Attributes: ``channel_graph`` (``graph.ChannelGraph``),
  ``threshold``, ``mask_variables`` (one per ``channel_graph.groups``),
  ``complexity`` (None or a ``ComplexityLoss``)."""

  def __init__(self, model, threshold=masks_lib.THRESHOLD, complexity=None, name=None,
               mask_speed=1.0):
    super().__init__(name=name or "%s_supernet" % model.name)
    self.threshold = masks_lib.check_threshold(threshold)
    if isinstance(mask_speed, bool) or not isinstance(mask_speed, (int, float)) or \
        not mask_speed > 0:
      raise errors.invalid_value("mask_speed", "a number > 0", mask_speed)
    self.mask_speed = float(mask_speed)
    self.channel_graph = graph_lib.analyze(model)
    graph = self.channel_graph
    self.step_layers = [_clone(s.layer, None if isinstance(s.args, list)
                               else tuple(s.layer.input.shape)) for s in graph.steps]
    self._training_arg = [_takes_training(layer) for layer in self.step_layers]
    self.mask_variables = [
        self.add_weight(name=g.name, shape=(g.size,), trainable=True,
                        initializer=keras.initializers.Constant(1.0 / self.mask_speed))
        for g in graph.groups]
    self._keep_alive = []
    for g in graph.groups:
      keep = np.zeros(g.size, dtype="float32")
      keep[list(g.keep_alive)] = 1.0
      self._keep_alive.append(keep)
    self.complexity = complexity
    self.size_tracker = keras.metrics.Mean(name="size")
    self.cost_tracker = keras.metrics.Mean(name="cost")
    self(self._dummy_inputs())  # builds the layers that hold no weights

  def _dummy_inputs(self):
    xs = [ops.zeros((1,) + tuple(s)) for s in self.channel_graph.input_shapes]
    return xs[0] if len(xs) == 1 else xs

  @property
  def network_variables(self):
    """The trainable variables that are not masks."""
    ids = {id(v) for v in self.mask_variables}
    return [v for v in self.trainable_variables if id(v) not in ids]

  # -- masks ------------------------------------------------------------------
  def theta(self):
    """The binarized masks of all groups, concatenated, and a trailing 1:
    shape ``(theta_size,)``, straight-through gradient to the masks."""
    parts = [masks_lib.keep_alive_theta(self.mask_speed * v, keep, self.threshold)
             for v, keep in zip(self.mask_variables, self._keep_alive)]
    one = ops.ones((1,), dtype=self.compute_dtype)
    return ops.concatenate([ops.cast(p, self.compute_dtype) for p in parts] + [one], axis=0)

  def mask_values(self):
    """The real-valued masks ``alpha`` of every group (NumPy, ``mask_speed``
    times the stored variables)."""
    return [self.mask_speed * np.asarray(v.numpy(), dtype="float64")
            for v in self.mask_variables]

  def set_mask_values(self, group, alpha):
    """Set group ``group``'s real-valued masks to ``alpha``."""
    self.mask_variables[group].assign(np.asarray(alpha, dtype="float32") / self.mask_speed)

  def theta_numpy(self):
    """``theta()`` as a NumPy array of 0/1."""
    return np.asarray(ops.convert_to_numpy(self.theta()))

  def alive(self, theta=None):
    """``{layer name: (c_in, c_out)}`` for the weighted layers (float64,
    differentiable), at ``theta`` (default: the current binarized masks)."""
    theta = self.theta() if theta is None else theta
    return complexity_lib.alive_channels(self.channel_graph.specs, theta)

  def size(self, precision=None, theta=None):
    """Parameters of the export (``precision`` None), or its bytes at
    ``precision`` (``complexity.BYTES_PER_WEIGHT``); float64, differentiable."""
    specs, alive = self.channel_graph.specs, self.alive(theta)
    if precision is None:
      return complexity_lib.params(specs, alive)
    return complexity_lib.size_bytes(precision)(specs, alive)

  def cost(self, cost_model=complexity_lib.macs, theta=None):
    """``cost_model(specs, alive)`` (default: MACs per example)."""
    return cost_model(self.channel_graph.specs, self.alive(theta))

  def channels(self):
    """``{producer name: alive output channels}`` at the current masks."""
    theta = self.theta_numpy()
    return {s.name: int(round(theta[s.out_index].sum())) for s in self.channel_graph.specs
            if s.kind in ("conv", "separable", "dense")}

  # -- forward ----------------------------------------------------------------
  def forward(self, inputs, theta, training=None):
    """The network with the (relaxed or binarized) mask vector ``theta``:
    each channel-mixing layer reads ``x * theta[mixed_index]``."""
    graph = self.channel_graph
    xs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    values = dict(zip(graph.inputs, xs))
    for step, layer, training_arg in zip(graph.steps, self.step_layers, self._training_arg):
      if isinstance(step.args, list):
        args = [values[k] for k in step.args]
      else:
        args = values[step.args]
        if step.mixed_index is not None:
          args = args * ops.cast(ops.take(theta, step.mixed_index), args.dtype)
      kwargs = {"training": training} if training_arg else {}
      values[step.output] = layer(args, **kwargs)
    outputs = [values[k] for k in graph.outputs]
    return outputs[0] if len(outputs) == 1 else outputs

  def call(self, inputs, training=None):
    return self.forward(inputs, self.theta(), training=training)

  # -- training -----------------------------------------------------------------
  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                training=training)
    if self.complexity is None:
      return loss
    term, size, cost = self.complexity.terms(self)
    self.size_tracker.update_state(size)
    self.cost_tracker.update_state(cost)
    return loss + ops.cast(term, loss.dtype)


def make_supernet(model, threshold=masks_lib.THRESHOLD, complexity=None, name=None,
                  mask_speed=1.0):
  """A ``Supernet`` over a copy of the functional ``model`` (module doc).

  ``threshold``: a mask is kept while above it (0.5, the paper's).
  ``complexity``: None, or the ``losses.ComplexityLoss`` that training adds.
  ``mask_speed``: the masks are stored divided by it (``alpha = mask_speed *
  v``, ``v`` the variable): with an optimizer whose steps do not scale with
  the gradient (RMSProp, Adam) the masks then move ``mask_speed`` times
  faster than the weights, as the released code's separate mask optimizer
  lets them; the loss, its STE gradient in ``alpha`` and every count are
  unchanged (the gradient in ``v`` is ``mask_speed`` times that in ``alpha``).
  Raises ValueError, naming the layer, for a model ``graph.analyze`` refuses.
  """
  return Supernet(model, threshold=threshold, complexity=complexity, name=name,
                  mask_speed=mask_speed)
