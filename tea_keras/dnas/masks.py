"""Channel masks: binarization with a straight-through gradient.

Each prunable output channel ``c`` has a real-valued mask ``alpha_c``,
initialised at 1. The network sees the binarized mask

    theta_c = 1[alpha_c > threshold]        (threshold = 0.5)

so a channel is kept while its mask stays above 0.5. The step has zero
derivative almost everywhere, so training uses the straight-through estimator
(STE) of the released code (multi-constraint-nas ``BinarizeFunction``, PLiNIO
``PITBinarizer``): the backward pass treats the step as the identity,

    d theta_c / d alpha_c := 1          (no clipping, for every alpha_c)

i.e. the gradient of the loss with respect to ``alpha_c`` is its derivative
with respect to the *relaxed* mask value ``theta_c`` at the current 0/1 point.
Written as ``step(alpha) + (alpha - stop_gradient(alpha))``: the forward value
is exactly 0 or 1 (``alpha - alpha`` is 0 in floating point), so the counts
computed through the masks are exact integers.

Keep-alive: one channel per mask is never pruned (PLiNIO keeps its last
channel, ``PITFeaturesMasker._keep_alive``; multi-constraint-nas its first),
so no layer loses all its channels and the export never meets an empty layer.
Here the keep-alive entries get ``theta = 1`` whatever ``alpha`` is, and hence
no gradient. Unlike PLiNIO, ``alpha`` is not passed through ``abs`` first (as
the paper's code): a mask that goes negative stays pruned.

Shapes: ``alpha`` and ``keep_alive`` are vectors ``(C,)`` of one mask group.
"""

from keras import ops

from tea_keras import errors

THRESHOLD = 0.5


def step(alpha, threshold=THRESHOLD):
  """``1[alpha > threshold]`` in ``alpha``'s dtype, no gradient."""
  return ops.cast(ops.greater(alpha, threshold), alpha.dtype)


def binarize(alpha, threshold=THRESHOLD):
  """Forward ``step(alpha)``, backward identity (module doc)."""
  alpha = ops.convert_to_tensor(alpha)
  return ops.stop_gradient(step(alpha, threshold)) + (alpha - ops.stop_gradient(alpha))


def keep_alive_theta(alpha, keep_alive, threshold=THRESHOLD):
  """Binarized masks with the keep-alive entries (``keep_alive == 1``) forced
  to 1. ``keep_alive``: a 0/1 vector of ``alpha``'s shape."""
  alpha = ops.convert_to_tensor(alpha)
  keep_alive = ops.cast(ops.convert_to_tensor(keep_alive), alpha.dtype)
  return binarize(alpha * (1.0 - keep_alive) + keep_alive, threshold)


def check_threshold(threshold):
  if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or \
      not 0.0 < threshold < 1.0:
    raise errors.invalid_value("threshold", "a float in (0, 1) (masks start at 1)", threshold)
  return float(threshold)
