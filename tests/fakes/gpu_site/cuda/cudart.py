"""Fake ``cuda.cudart``: the older cuda-python name of ``cuda.bindings.runtime``
(the same functions, so both names share one set of allocations)."""

from cuda.bindings.runtime import *  # noqa: F401,F403
