"""Ask/tell: drive any strategy of the library from your own loop.

    from search.optimizer import design, study

    space = design.continuous_space([(0.0, 1.0), (0.0, 1.0)])
    s = study.Study(space, num_objectives=2, strategy="pesmo", seed=0, num_initial=5)
    for _ in range(12):
        x = s.ask()                     # a point of the space (a NumPy vector)
        s.tell(x, my_objectives(x))     # minimized; None when the evaluation failed
    xs, ys = s.front()                  # the non-dominated evaluated points

The first ``num_initial`` asks are uniform draws of the space (seeded, over
its feasible part when it has a constraint or candidate set); after that the
strategy proposes from the told points, conditioned on the points asked and
not yet told (``pending``: several evaluations may run at once, as Optuna's
and Keras Tuner's ask/tell allow). A point is never asked twice. A failed
evaluation (``tell(x, None)``) is remembered so it is not asked again but
gives the models nothing. This is the loop ``search.loop`` runs for a NAS
search, without the trial store, devices or TensorFlow.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from search.optimizer import base
from search.optimizer import design as design_lib
from search.optimizer import errors
from search.optimizer import pareto
from search.optimizer import strategies


class Study:
  """See the module doc. ``log_objectives``: objectives modelled in log space
  (positive costs spanning orders of magnitude, e.g. time); ``options``: the
  strategy's own options (``strategies.make_strategy``)."""

  def __init__(self, space: design_lib.DesignSpace, num_objectives: int,
               strategy: str = "pesmo", seed: int = 0, num_initial: int = 10,
               log_objectives: Optional[Sequence[bool]] = None, **options: Any) -> None:
    if int(num_initial) != num_initial or num_initial < 1:
      raise errors.invalid_value("num_initial", "a positive integer", num_initial)
    if log_objectives is not None:
      options["log_objectives"] = tuple(bool(v) for v in log_objectives)
      if len(options["log_objectives"]) != num_objectives:
        raise errors.invalid_value("log_objectives",
                                   "%d flags (one per objective)" % (num_objectives,),
                                   log_objectives)
    self.space, self.num_objectives = space, int(num_objectives)
    self.num_initial = int(num_initial)
    self.strategy = strategies.make_strategy(strategy, space, num_objectives, seed, **options)
    self.rng = np.random.default_rng([seed, 1])
    self._x: List[np.ndarray] = []
    self._y: List[np.ndarray] = []
    self._failed: List[np.ndarray] = []
    self._pending: List[np.ndarray] = []

  @property
  def observed(self) -> Tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the points told with values, (n, dim) and (n, m)."""
    return (np.array(self._x, float).reshape(-1, self.space.dim),
            np.array(self._y, float).reshape(-1, self.num_objectives))

  @property
  def pending(self) -> np.ndarray:
    return np.array(self._pending, float).reshape(-1, self.space.dim)

  def ask(self) -> np.ndarray:
    """The next point to evaluate (recorded as pending until told)."""
    x, y = self.observed
    excluded = set(self.space.keys(np.vstack([x, self.pending] + [
        np.array(self._failed, float).reshape(-1, self.space.dim)])))
    if len(self._x) + len(self._failed) < self.num_initial or len(self._x) < 2:
      point = base.new_random_points(self.space, self.rng, excluded, 1)[0]
    else:
      busy = np.vstack([self.pending, np.array(self._failed, float).reshape(-1, self.space.dim)])
      point = self.strategy.propose(x, y, busy)
    self._pending.append(np.asarray(point, float))
    return np.asarray(point, float)

  def tell(self, x: Any, values: Any) -> None:
    """Record the objectives of an asked point (``values``: m numbers to
    minimize, or None when its evaluation failed)."""
    x = self.space.validate(np.asarray(x, float).reshape(1, -1), "x")[0]
    key = self.space.keys(x)[0]
    keys = self.space.keys(self.pending) if self._pending else []
    if key not in keys:
      raise errors.invalid_value("x", "a point returned by ask() and not yet told",
                                 shown="x=%s" % (x.tolist(),))
    del self._pending[list(keys).index(key)]
    if values is None:
      self._failed.append(x)
      return
    values = np.asarray(values, float).reshape(-1)
    if values.shape != (self.num_objectives,) or not np.all(np.isfinite(values)):
      raise errors.invalid_value("values",
                                 "%d finite numbers (or None for a failed evaluation)"
                                 % (self.num_objectives,), shown="values=%s" % (values.tolist(),))
    self._x.append(x)
    self._y.append(values)

  def front(self) -> Tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the non-dominated told points, sorted by the first objective."""
    x, y = self.observed
    if not len(y):
      return x, y
    mask = pareto.non_dominated_mask(y)
    order = np.argsort(y[mask][:, 0], kind="stable")
    return x[mask][order], y[mask][order]
