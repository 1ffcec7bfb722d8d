"""Run (or resume) a TEA-DNN architecture search.

  python -m search.run --flagfile=flags/quickstart.cfg
  python -m search.run --flagfile=flags/paper_titanx.cfg --results_dir=runs/titanx

Every flag is defined in ``search/flags.py`` (``--help`` lists them) and may
be overridden on the command line after the flagfile. Re-running the same
command resumes the search in ``--results_dir``: finished trials are kept,
interrupted ones re-run.
"""

import logging
import sys

from absl import app
from absl import flags

from search import config as config_lib
from search import flags as search_flags
from search import loop


def main(argv):
  if len(argv) > 1:
    sys.exit("error: unexpected arguments %s (flags are --name=value)" % argv[1:])
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  try:
    config = search_flags.config_from_flags()
    config_lib.validate(config)
    config = loop.resolve(config)
    config_lib.check_results_dir(config)
  except ValueError as e:
    sys.exit("error: %s" % e)
  loop.run_search(config, log=lambda line: print(line, flush=True))


def define_flags():
  """Define search.run's flags and make them this program's own (``--help``)."""
  search_flags.define_flags()
  flags.adopt_module_key_flags(search_flags)


if __name__ == "__main__":
  define_flags()
  app.run(main)
