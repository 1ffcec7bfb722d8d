"""Training recipes of the paper, as documented frozen config objects.

References:
  Cai, Gao, Soares, Alazzawi, Shao, Laparra, Chen (2018). "TEA-DNN: the Quest
  for Time-Energy-Accuracy Co-optimized Deep Neural Networks",
  arXiv:1811.12065. Section IV-A (search-time training) and V-C (final
  training).
  Liu et al. (2018), "Progressive Neural Architecture Search" and TF-slim's
  ``nets/nasnet``/``pnasnet`` CIFAR training setup (RMSProp epsilon 1.0).
  TF-slim ``nets/nasnet/nasnet.py``, ``nasnet_cifar_arg_scope``
  (batch-norm decay 0.9, epsilon 1e-5).
  TensorFlow CIFAR-10 tutorial, ``cifar10_input.distorted_inputs``
  (brightness delta 63, contrast in [0.2, 1.8]).

``Recipe()``'s defaults ARE the search-time recipe (every number of it lives
in the field defaults below, once); ``final_recipe`` changes only what
section V-C changes. Both take ``**overrides`` (any field name; unknown names
are an error), and ``python -m tea_keras.train`` exposes every field as a flag.

Optimizer (TF-slim ``tf.train.RMSPropOptimizer(lr, decay, momentum,
epsilon)``, which Keras' ``RMSprop(rho=decay, momentum, epsilon)`` matches
update for update: ``v = decay*v + (1-decay)*g**2; m = momentum*m +
lr*g/sqrt(v + epsilon); w -= m``). One difference remains: TF1 initialises
``v`` to ones, Keras to zeros; with epsilon = 1.0 the first steps differ by
less than a factor sqrt(2).

Learning rate (staircase exponential decay, in epochs):
``lr(epoch) = learning_rate * lr_decay_rate ** floor(epoch / lr_decay_epochs)``,
``epoch`` 0-based, so the search recipe gives 0.01, 0.01, 0.0094, 0.0094,
0.008836, ...
"""

import dataclasses
import math
from typing import Optional


def _field(default, help_text):
  return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How to train a network. Defaults: the search-time recipe (paper IV-A)."""
  # Network size.
  num_cells: int = _field(2, "N: cells per stage of the cell network.")
  filters: int = _field(24, "F: filters per block in the first stage.")
  drop_path_rate: float = _field(0.0, "Drop-path rate of the cell network (paper: none).")
  # Schedule.
  epochs: int = _field(10, "Training epochs.")
  batch_size: int = _field(32, "Training batch size.")
  learning_rate: float = _field(0.01, "Initial learning rate.")
  lr_decay_rate: float = _field(0.94, "Multiply the learning rate by this ...")
  lr_decay_epochs: int = _field(2, "... every this many epochs (staircase).")
  # Optimizer: RMSProp with momentum (TF-slim NASNet/PNAS CIFAR setup).
  rmsprop_decay: float = _field(0.9, "RMSProp decay of the squared-gradient average (rho).")
  momentum: float = _field(0.9, "RMSProp momentum.")
  epsilon: float = _field(1.0, "RMSProp epsilon, added inside the square root.")
  weight_decay: float = _field(4e-5, "L2 scale on conv/dense kernels "
                               "(loss += weight_decay * sum(w**2) / 2).")
  # Batch norm (TF-slim ``nasnet_cifar_arg_scope``: decay 0.9, epsilon 1e-5),
  # set on every BatchNormalization layer of the model before training.
  bn_momentum: Optional[float] = _field(0.9, "Batch-norm moving-average decay "
                                        "(None: keep the model's).")
  bn_epsilon: Optional[float] = _field(1e-5, "Batch-norm epsilon (None: keep the model's).")
  # Augmentation (paper IV-A: random crops, flips, brightness, contrast).
  pad: int = _field(4, "Zero-pad this many pixels, then random-crop back to 32x32.")
  flip: bool = _field(True, "Random horizontal flips.")
  brightness_max_delta: float = _field(63.0, "Random brightness delta, pixel units [0, 255].")
  contrast_lower: float = _field(0.2, "Random contrast factor, lower bound.")
  contrast_upper: float = _field(1.8, "Random contrast factor, upper bound.")
  # Execution (no effect on the maths; None = this device's faster default,
  # see tea_keras.training.resolve_execution and BENCHMARKS.md "## Training").
  jit_compile: Optional[bool] = _field(None, "XLA-compile the train step "
                                       "(None: device default).")
  mixed_precision: Optional[bool] = _field(None, "Mixed precision (float16 on GPU, "
                                           "bfloat16 on CPU; None: device default).")

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raise ``ValueError`` naming the first field out of range."""
    for name in ("num_cells", "filters", "epochs", "batch_size", "lr_decay_epochs"):
      _check_int(name, getattr(self, name), minimum=0 if name == "epochs" else 1)
    _check_int("pad", self.pad, minimum=0)
    for name in ("learning_rate", "epsilon"):
      _check_float(name, getattr(self, name), low=0.0, low_open=True)
    for name in ("weight_decay", "brightness_max_delta", "contrast_lower"):
      _check_float(name, getattr(self, name), low=0.0)
    for name in ("lr_decay_rate", "rmsprop_decay"):
      _check_float(name, getattr(self, name), low=0.0, high=1.0, low_open=True)
    for name in ("bn_momentum", "bn_epsilon"):
      if getattr(self, name) is not None:
        _check_float(name, getattr(self, name), low=0.0, high=1.0, low_open=True,
                     high_open=True)
    for name in ("momentum", "drop_path_rate"):
      _check_float(name, getattr(self, name), low=0.0, high=1.0, high_open=True)
    _check_float("contrast_upper", self.contrast_upper, low=self.contrast_lower)
    for name in ("flip",):
      _check_bool(name, getattr(self, name), optional=False)
    for name in ("jit_compile", "mixed_precision"):
      _check_bool(name, getattr(self, name), optional=True)

  def learning_rate_at(self, epoch: int) -> float:
    """Learning rate during 0-based ``epoch`` (see module doc)."""
    return self.learning_rate * self.lr_decay_rate ** (epoch // self.lr_decay_epochs)

  def replace(self, **overrides) -> "Recipe":
    """A copy with ``overrides`` applied; unknown field names are an error."""
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
      raise ValueError("Invalid recipe override(s) %s. Expected field names among: %s."
                       % (", ".join(unknown), ", ".join(field_names())))
    return dataclasses.replace(self, **overrides)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> "Recipe":
    return cls().replace(**values)


def field_names():
  return tuple(f.name for f in dataclasses.fields(Recipe))


def field_help(name: str) -> str:
  return {f.name: f.metadata["help"] for f in dataclasses.fields(Recipe)}[name]


def search_recipe(**overrides) -> Recipe:
  """Search-time training (paper IV-A): 10 epochs, batch 32, RMSProp
  (momentum 0.9, decay 0.9, epsilon 1.0), lr 0.01 x 0.94 every 2 epochs,
  weight decay 4e-5, F = 24, N = 2."""
  return Recipe().replace(**overrides)


def final_recipe(**overrides) -> Recipe:
  """Final training (paper V-C): batch 64, 300 epochs, lr 0.01 halved every
  100 epochs, weight decay 1e-4; otherwise the search-time recipe."""
  final = dict(batch_size=64, epochs=300, lr_decay_rate=0.5, lr_decay_epochs=100,
               weight_decay=1e-4)
  final.update(overrides)
  return Recipe().replace(**final)


RECIPES = {"search": search_recipe, "final": final_recipe}


def _check_int(name, value, minimum):
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError("Invalid recipe field `%s`. Expected an integer >= %d. Received "
                     "%s=%r" % (name, minimum, name, value))


def _check_float(name, value, low=None, high=None, low_open=False, high_open=False):
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
      and math.isfinite(value)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    interval = "%s%s, %s%s" % ("(" if low_open else "[", low, high if high is not None
                               else "inf", ")" if high_open or high is None else "]")
    raise ValueError("Invalid recipe field `%s`. Expected a finite number in %s. "
                     "Received %s=%r" % (name, interval, name, value))


def _check_bool(name, value, optional):
  if not (isinstance(value, bool) or (optional and value is None)):
    raise ValueError("Invalid recipe field `%s`. Expected %s. Received %s=%r"
                     % (name, "True, False or None" if optional else "True or False",
                        name, value))
