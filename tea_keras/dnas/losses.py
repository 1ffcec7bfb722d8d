"""The complexity losses of the search, and a ramp of their strength.

The supernet's training loss is the task loss plus, with ``s`` the
strength (1 unless ramped), ``M`` the model size (``supernet.size``:
parameters, or bytes at a precision) and ``E`` the cost (``CostModel``,
default MACs per example):

* ``mode="absolute"``, the paper's (Risso et al. 2022; released code
  ``icl_training.py``: ``cd_size * |size - size_target| + cd_ops * macs``):

      L = L_task + s * (lambda_M * |M - M_target| + lambda_E * E)

  the size is pulled *to* its target from both sides, the cost always down;
* ``mode="hinge"``, the constraint form of later work and PLiNIO:

      L = L_task + s * (lambda_M * max(0, M - M_target)
                        + lambda_E * max(0, E - E_target))

  no pull once under a target (``E_target`` 0: the plain cost term).

``StrengthRamp(loss, epochs)`` raises ``s`` linearly over the first epochs,
``s = min(1, (epoch + 1) / epochs)`` at the start of epoch ``epoch``
(0-based), so that the masks are not driven down before the weights adapt.

Scale: ``M`` and ``E`` are raw counts (ResNet-8: ~7.8e4 parameters, 1.25e7
MACs), so useful lambdas are small (of the order of ``1 / M_seed``); the
gradient reaching a mask is ``s * lambda`` times the parameters (or MACs) its
channel carries, plus the task loss's.

The term is computed in float64 (``complexity`` module doc) and added to the
task loss in its dtype by ``Supernet.compute_loss``.
"""

import keras
from keras import ops

from tea_keras import errors
from tea_keras.dnas import complexity as complexity_lib

MODES = ("absolute", "hinge")


def _check_nonnegative(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise errors.invalid_value(name, "a number >= 0", value)
  return float(value)


def size_penalty(size, target, mode):
  """``|M - M_target|`` (absolute) or ``max(0, M - M_target)`` (hinge)."""
  if mode == "absolute":
    return ops.abs(size - target)
  return ops.maximum(size - target, 0.0)


def cost_penalty(cost, target, mode):
  """``E`` (absolute: the paper has no cost target) or ``max(0, E - E_target)``."""
  if mode == "absolute":
    return cost
  return ops.maximum(cost - target, 0.0)


def ramp_strength(epoch, ramp_epochs):
  """``min(1, (epoch + 1) / ramp_epochs)``; 1 when ``ramp_epochs`` is 0."""
  if ramp_epochs <= 0:
    return 1.0
  return min(1.0, (epoch + 1) / float(ramp_epochs))


class ComplexityLoss:
  """The complexity term (module doc).

  Args:
    size_target: ``M_target``, in parameters (``precision`` None) or bytes.
    lambda_size, lambda_cost: ``lambda_M``, ``lambda_E`` (>= 0).
    mode: ``"absolute"`` (the paper's) or ``"hinge"``.
    cost: a ``complexity.CostModel`` (default ``complexity.macs``); a measured
      per-layer table plugs in here.
    cost_target: ``E_target`` of the hinge (default 0); refused with
      ``"absolute"``, which has none.
    precision: None (size in parameters) or one of
      ``complexity.BYTES_PER_WEIGHT`` (size in bytes).
  """

  def __init__(self, size_target, lambda_size, lambda_cost=0.0, mode="absolute",
               cost=complexity_lib.macs, cost_target=None, precision=None):
    if mode not in MODES:
      raise errors.invalid_value("mode", "one of %s" % ", ".join(MODES), mode)
    if mode == "absolute" and cost_target is not None:
      raise errors.invalid_value("cost_target",
                                 "None with mode='absolute' (the paper's cost term has no target)",
                                 cost_target)
    if not callable(cost):
      raise errors.invalid_value("cost", "a callable (specs, alive) -> scalar", cost)
    self.size_target = _check_nonnegative("size_target", size_target)
    self.lambda_size = _check_nonnegative("lambda_size", lambda_size)
    self.lambda_cost = _check_nonnegative("lambda_cost", lambda_cost)
    self.cost_target = _check_nonnegative("cost_target", cost_target or 0.0)
    self.mode = mode
    self.cost = cost
    self.precision = None if precision is None else complexity_lib.check_precision(precision)
    self.strength = keras.Variable(1.0, trainable=False, dtype="float32",
                                   name="complexity_strength")

  def terms(self, supernet, theta=None):
    """``(term, M, E)`` at ``theta`` (default: ``supernet``'s binarized
    masks): the strength-weighted penalty and the size and cost it read,
    float64 scalars with straight-through gradients to the masks."""
    theta = supernet.theta() if theta is None else theta
    size = supernet.size(self.precision, theta)
    cost = supernet.cost(self.cost, theta)
    penalty = (self.lambda_size * size_penalty(size, self.size_target, self.mode) +
               self.lambda_cost * cost_penalty(cost, self.cost_target, self.mode))
    return ops.cast(self.strength, "float64") * penalty, size, cost


class StrengthRamp(keras.callbacks.Callback):
  """Sets ``loss.strength`` to ``ramp_strength(epoch, epochs)`` at the start
  of each epoch (module doc)."""

  def __init__(self, loss, epochs):
    super().__init__()
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
      raise errors.invalid_value("epochs", "an integer >= 0", epochs)
    self.loss = loss
    self.epochs = epochs

  def on_epoch_begin(self, epoch, logs=None):
    self.loss.strength.assign(ramp_strength(epoch, self.epochs))
