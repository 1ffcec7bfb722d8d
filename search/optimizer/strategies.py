"""The strategy registry: ``make_strategy(name, space, num_objectives, seed, **options)``.

Each strategy lives in its own module behind ``search.optimizer.base.Strategy``
(see that module for the ``propose`` contract): ``pesmo`` (PESMO,
``search.optimizer.pesmo``), ``parego`` (ParEGO on GPyOpt,
``search.optimizer.parego``) and ``random`` (``search.optimizer.random_search``).
This module imports them; none of them imports it (no import cycle).
"""

from __future__ import annotations

from typing import Any, Callable

from search.optimizer import errors
from search.optimizer.base import Strategy
from search.optimizer.design import DesignSpace
from search.optimizer.parego import ParEGOStrategy, chebyshev_scalarize  # noqa: F401
from search.optimizer.pesmo import PESMOStrategy
from search.optimizer.random_search import RandomStrategy

STRATEGIES: dict[str, Callable[..., Strategy]]
STRATEGIES = {"pesmo": PESMOStrategy, "parego": ParEGOStrategy, "random": RandomStrategy}


def make_strategy(name: str, space: DesignSpace, num_objectives: int, seed: int = 0,
                  **options: Any) -> Strategy:
  """A strategy by ``name`` (one of ``STRATEGIES``)."""
  if name not in STRATEGIES:
    raise errors.invalid_value("name", "one of %s" % ", ".join(sorted(STRATEGIES)), name)
  return STRATEGIES[name](space, num_objectives, seed, **options)
