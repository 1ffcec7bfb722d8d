"""The NAS search from Python, and a finished search's results as objects.

    from search import api

    results = api.run("flags/quickstart.cfg", results_dir="runs/demo", num_samples=4)
    for point in results.front:           # the non-dominated (cell, precision) pairs
        print(point.trial_id, point.error, point.time_s, point.genotype)
    print(results.table())                # the front as the console prints it

    results = api.load_results("runs/quickstart")   # any finished (or running) search

``run`` takes a flagfile and flag overrides as keyword arguments (the flags of
``python -m search.run``, ``search/flags.py``: ``num_samples=4``,
``objectives=("error", "time")``, ``keep_checkpoints=True``,
``evaluation="decoupled"``: measure and train evaluations, each trial's
``kind``, ``search.decoupled``), applies the
same checks as the command line before any work (the target's handshake,
the results directory's experiment, the data set), runs or resumes the
search and returns ``load_results`` of its directory. ``load_results``
reads the trial store (``trials.db``), ``config.json`` and ``summary.json``:
no CSV parsing. The optimizer alone, ask/tell, is
``search.optimizer.study.Study``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Optional

from absl import flags as absl_flags

from search import config as config_lib
from search import flags as search_flags
from search import loop
from search import outputs
from search import store as store_lib
from tea_keras import errors


@dataclasses.dataclass
class Results:
  """A search's results directory, read (see module doc)."""
  results_dir: str
  config: config_lib.SearchConfig
  trials: List[store_lib.Trial]
  summary: Dict
  front: List[outputs.FrontPoint]

  @property
  def counts(self) -> Dict[str, int]:
    return {s: sum(t["status"] == s for t in self.trials) for s in store_lib.STATUSES}

  def table(self) -> str:
    """The front as a text table (``search.outputs.front_table``)."""
    return outputs.front_table(self.front, self.config.objectives, self.config.measure_images)


def load_results(results_dir: str) -> Results:
  """The ``Results`` of ``results_dir`` (a ValueError when it is not a search's)."""
  config_path = os.path.join(results_dir, "config.json")
  db_path = os.path.join(results_dir, "trials.db")
  if not (os.path.isfile(config_path) and os.path.isfile(db_path)):
    raise errors.invalid_value("results_dir",
                               "a search's results directory (config.json and trials.db, written "
                               "by python -m search.run)", results_dir)
  with open(config_path) as f:
    config = config_lib.SearchConfig.from_dict(json.load(f))
  store = store_lib.TrialStore(db_path)
  try:
    trials = store.trials()
  finally:
    store.close()
  summary = {}
  summary_path = os.path.join(results_dir, "summary.json")
  if os.path.isfile(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
  return Results(results_dir, config, trials, summary,
                 outputs.front_points(trials, config))


def _flag_text(name: str, value: Any) -> str:
  if isinstance(value, bool):
    return "--%s" % name if value else "--no%s" % name
  if isinstance(value, (list, tuple)):
    return "--%s=%s" % (name, ",".join(str(v) for v in value))
  return "--%s=%s" % (name, value)


def config_from(flagfile: Optional[str] = None, **flags: Any) -> config_lib.SearchConfig:
  """The ``SearchConfig`` that ``python -m search.run --flagfile=F --k=v``
  would run (not yet checked against the target)."""
  values = absl_flags.FlagValues()
  search_flags.define_flags(values)
  argv = ["--flagfile=%s" % flagfile] if flagfile else []
  argv += [_flag_text(k, v) for k, v in sorted(flags.items())]
  try:
    values(["search.api"] + search_flags.expand_flagfiles(argv))
  except absl_flags.Error as e:
    raise ValueError(str(e))
  return search_flags.config_from_flags(values)


def run(flagfile: Optional[str] = None, log: Callable[[str], object] = print,
        **flags: Any) -> Results:
  """Run (or resume) a search; returns its ``Results`` (see module doc).
  Raises ValueError (a refusal: the message says why) before any work."""
  config = config_from(flagfile, **flags)
  config_lib.validate(config)
  store_lib.check_not_locked(config.results_dir)
  config = loop.resolve(config, log)
  config_lib.check_results_dir(config)
  loop.run_search(config, log=log)
  return load_results(config.results_dir)
