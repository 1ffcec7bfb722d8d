"""Run (or resume) a TEA-DNN architecture search.

  python -m search.run --flagfile=flags/quickstart.cfg
  python -m search.run --flagfile=flags/paper_titanx.cfg --results_dir=runs/titanx

Every flag is defined in ``search/flags.py`` (``--help`` lists them) and may
be overridden on the command line after the flagfile. Re-running the same
command resumes the search in ``--results_dir``: finished trials are kept,
interrupted ones re-run (failed ones too with ``--retry_failed``). One search
at a time writes a results directory: a second is refused at once, naming
the host and PID of the first.

With ``--executor=ray --ray_address=...`` the cluster is checked with the
target, before anything is written (``search.loop.check_cluster``): a local
device on several nodes, GPUs, a results directory some node does not see
and a connection refused by Ray's token authentication are refused with one
``error:`` line.

Exit status: 0 when every trial is done; 3 when the search finished with some
trials failed (listed, with their errors, in results.csv; fix the cause and
add --retry_failed); 1 when it was refused, every trial failed, or it stopped
after --max_consecutive_failures failures of one cause. TensorFlow's native
log lines are kept off the console (``TEA_TF_LOGS=1`` shows them).
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from absl import app
from absl import flags

from search import config as config_lib
from search import executors
from search import flags as search_flags
from search import loop
from search import store as store_lib
from tea_keras import console
from tea_keras import data as data_lib


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit("error: unexpected arguments %s (flags are --name=value)" % argv[1:])
  console.quiet_native_logs()  # the trial workers inherit the filtered stderr
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  try:
    config = search_flags.config_from_flags()
    print("search.run: %s search of %d trials%s in %s; checking the %s target and the data..."
          % (config.strategy, config.num_samples,
             " (decoupled: measure and train evaluations)"
             if config.evaluation == "decoupled" else "", config.results_dir, config.device),
          flush=True)
    config_lib.validate(config)
    store_lib.check_not_locked(config.results_dir)  # before contacting the target
    config = loop.resolve(config)
    config_lib.check_results_dir(config)
    loop.check_cluster(config, log=lambda line: print(line, flush=True))
  except (ValueError, store_lib.StoreError) as e:  # executors.ClusterError included
    sys.exit("error: %s" % e)
  try:
    summary = loop.run_search(config, log=lambda line: print(line, flush=True))
  except (data_lib.DataError, store_lib.StoreError, loop.SearchStopped,
          executors.ClusterError) as e:
    sys.exit("error: %s" % e)
  counts = summary.get("counts", {})
  if counts.get("failed") and not counts.get("done"):
    sys.exit("error: all %d trials failed (their errors: results.csv, trials.db in %s); fix "
             "the cause and run again with --retry_failed." % (counts["failed"],
                                                                config.results_dir))
  if counts.get("failed"):
    print("warning: the search finished with %d failed trial(s) of %d (their errors: "
          "results.csv in %s); fix the cause and run again with --retry_failed."
          % (counts["failed"], summary["trials"], config.results_dir), file=sys.stderr)
    sys.exit(3)


def define_flags() -> None:
  """Define search.run's flags and make them this program's own (``--help``)."""
  search_flags.define_flags()
  flags.adopt_module_key_flags(search_flags)


def _argv() -> list[str]:
  """``sys.argv`` with its flagfiles expanded (``search.flags.expand_flagfiles``)."""
  try:
    return sys.argv[:1] + search_flags.expand_flagfiles(sys.argv[1:])
  except ValueError as e:
    sys.exit("error: %s" % e)


if __name__ == "__main__":
  define_flags()
  app.run(main, argv=_argv())
