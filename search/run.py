"""Run (or resume) a TEA-DNN architecture search.

  python -m search.run --flagfile=flags/quickstart.cfg
  python -m search.run --flagfile=flags/paper_titanx.cfg --results_dir=runs/titanx

Every flag is defined in ``search/flags.py`` (``--help`` lists them) and may
be overridden on the command line after the flagfile. Re-running the same
command resumes the search in ``--results_dir``: finished trials are kept,
interrupted ones re-run (failed ones too with ``--retry_failed``). One search
at a time writes a results directory: a second is refused at once, naming
the host and PID of the first. The exit status is 1 when the search ends
with every trial failed.
"""

import logging
import sys

from absl import app
from absl import flags

from search import config as config_lib
from search import flags as search_flags
from search import loop
from search import store as store_lib
from tea_keras import data as data_lib


def main(argv):
  if len(argv) > 1:
    sys.exit("error: unexpected arguments %s (flags are --name=value)" % argv[1:])
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  try:
    config = search_flags.config_from_flags()
    config_lib.validate(config)
    store_lib.check_not_locked(config.results_dir)  # before contacting the target
    config = loop.resolve(config)
    config_lib.check_results_dir(config)
  except (ValueError, store_lib.StoreError) as e:
    sys.exit("error: %s" % e)
  try:
    summary = loop.run_search(config, log=lambda line: print(line, flush=True))
  except (data_lib.DataError, store_lib.StoreError) as e:
    sys.exit("error: %s" % e)
  counts = summary.get("counts", {})
  if counts.get("failed") and not counts.get("done"):
    sys.exit("error: all %d trials failed (their errors: results.csv, trials.db in %s); fix "
             "the cause and run again with --retry_failed." % (counts["failed"],
                                                                config.results_dir))


def define_flags():
  """Define search.run's flags and make them this program's own (``--help``)."""
  search_flags.define_flags()
  flags.adopt_module_key_flags(search_flags)


if __name__ == "__main__":
  define_flags()
  app.run(main)
