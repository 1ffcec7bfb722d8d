"""The strategy registry: ``make_strategy(name, space, num_objectives, seed, **options)``.

Each strategy lives in its own module behind ``search.optimizer.base.Strategy``
(see that module for the ``propose`` contract): ``pesmo`` (PESMO,
``search.optimizer.pesmo``), ``parego`` (ParEGO on GPyOpt,
``search.optimizer.parego``) and ``random`` (``search.optimizer.random_search``).
This module imports them; none of them imports it (no import cycle).
"""

from search.optimizer import errors
from search.optimizer.base import Strategy
from search.optimizer.parego import ParEGOStrategy, chebyshev_scalarize  # noqa: F401
from search.optimizer.pesmo import PESMOStrategy
from search.optimizer.random_search import RandomStrategy

STRATEGIES = {"pesmo": PESMOStrategy, "parego": ParEGOStrategy, "random": RandomStrategy}


def make_strategy(name: str, space, num_objectives, seed=0, **options) -> Strategy:
  """A strategy by ``name`` (one of ``STRATEGIES``)."""
  if name not in STRATEGIES:
    raise errors.invalid_value("name", "one of %s" % ", ".join(sorted(STRATEGIES)), name)
  return STRATEGIES[name](space, num_objectives, seed, **options)
