"""What the reports share: a search's results directory read back
(``load_search``), the reference point that compares searches, and the local
device held exclusive while a report measures cells again."""

import json
import os
from typing import Any, ContextManager, Dict, List, Optional, Tuple

import numpy as np

from search import config as config_lib
from search import device_lock
from search import store as store_lib


def load_search(results_dir: str) -> Tuple[Dict[str, Any], List[store_lib.Trial]]:
  """``(config dict, trials)`` of a results directory."""
  path = os.path.join(results_dir, "config.json")
  if not os.path.exists(path):
    raise ValueError("%s is not a search results directory (no config.json)." % results_dir)
  with open(path) as f:
    config = json.load(f)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  try:
    return config, store.trials()
  finally:
    store.close()


def comparison_reference_point(y: Any, margin: float = 0.1) -> np.ndarray:
  """Shared reference point to compare searches: the worst value of each
  objective over every trial of every search, plus ``margin`` times its range.
  (The nadir-of-the-front rule of ``search.optimizer.pareto.reference_point`` would give
  a search dominated everywhere a hypervolume of exactly 0.)"""
  y = np.asarray(y, float)
  if y.ndim != 2 or not len(y):
    raise ValueError("No finished trial with every objective to compare.")
  worst, best = y.max(axis=0), y.min(axis=0)
  span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
  return worst + margin * span


def measuring_for(results_dir: Optional[str]) -> ContextManager[Any]:
  """The local device of the search in ``results_dir`` held exclusive while
  its cells are measured again (``search.device_lock``); nothing for None."""
  if results_dir is None:
    return device_lock.measuring(None)
  config_dict, _ = load_search(results_dir)
  return device_lock.measuring(device_lock.for_config(
      config_lib.SearchConfig.from_dict(config_dict)))
