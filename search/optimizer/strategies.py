"""The strategy registry: ``make_strategy(name, space, num_objectives, seed, **options)``.

Each strategy lives in its own module behind ``search.optimizer.base.Strategy``
(see that module for the ``propose`` contract): ``pesmo`` (PESMO,
``search.optimizer.pesmo``), ``parego`` (ParEGO on GPyOpt,
``search.optimizer.parego``), ``random`` (``search.optimizer.random_search``) and
``qlognehvi`` (BoTorch's qLogNEHVI, ``search.optimizer.botorch_strategy``; BoTorch
is the optional ``bench`` extra, imported only when the strategy is built).
This module imports them; none of them imports it (no import cycle).
"""

from __future__ import annotations

from typing import Any, Callable

from search.optimizer import errors
from search.optimizer.base import Strategy
from search.optimizer.design import DesignSpace
from search.optimizer.botorch_strategy import QLogNEHVIStrategy
from search.optimizer.parego import ParEGOStrategy, chebyshev_scalarize  # noqa: F401
from search.optimizer.pesmo import PESMOStrategy
from search.optimizer.random_search import RandomStrategy

STRATEGIES: dict[str, Callable[..., Strategy]]
STRATEGIES = {"pesmo": PESMOStrategy, "parego": ParEGOStrategy, "random": RandomStrategy,
              "qlognehvi": QLogNEHVIStrategy}


def make_strategy(name: str, space: DesignSpace, num_objectives: int, seed: int = 0,
                  **options: Any) -> Strategy:
  """A strategy by ``name`` (one of ``STRATEGIES``)."""
  if name not in STRATEGIES:
    raise errors.invalid_value("name", "one of %s" % ", ".join(sorted(STRATEGIES)), name)
  return STRATEGIES[name](space, num_objectives, seed, **options)


def check_available(name: str) -> None:
  """Raises an ``ImportError`` naming what to install when strategy ``name``
  needs an optional package that does not import (``qlognehvi``: BoTorch);
  cheap enough to call before any work."""
  check = getattr(STRATEGIES.get(name), "check_available", None)
  if check is not None:
    check()
