"""Uniform random search: the paper's baseline (TEA-DNN Fig. 5)."""

from __future__ import annotations

import numpy as np

from search.optimizer.base import Strategy, new_random_points


class RandomStrategy(Strategy):
  """Uniform random search (the paper's Fig. 5 baseline). Accepts (and
  ignores) ``log_objectives`` so callers can pass one option set to all."""

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    return ("log_objectives",)

  def _propose(self, x: np.ndarray, y: np.ndarray, pending: np.ndarray) -> np.ndarray:
    excluded = set(self.space.keys(np.vstack([x, pending])))
    return new_random_points(self.space, self.rng, excluded, 1)[0]
