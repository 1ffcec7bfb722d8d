"""Cross-device evaluation (paper Figs. 6-9): the CLI.

Re-measure the Pareto-optimal models of one search (``--source_dir``) on the
device of another search (``--target_dir``, whose config.json gives the
device, runtime, power source and measurement settings; ``--device_url`` and
``--device_token_file`` may be given again for a remote target), and plot them
against the target search's own Pareto front::

  python -m search.reports.cross_device --source_dir=runs/paper_titanx \\
      --target_dir=runs/paper_jetson_tx2 --out_dir=reports/titanx_on_tx2

Writes ``cross_device.csv`` (each re-measured model: its error from training,
its time and energy on the target) and ``cross_error_time.png`` /
``cross_error_energy.png``. Measurement JSONs and traces are kept under
``<out_dir>/models/<trial_id>/``. The work is done by
``search.reports.cross_device_lib.evaluate``.
"""

import sys
from typing import Sequence

from absl import app
from absl import flags

from search.reports import cross_device_lib
from tea_keras import console

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_string("source_dir", None, "Results dir whose Pareto models are re-measured.")
  flags.DEFINE_string("target_dir", None, "Results dir of the target device's own search.")
  flags.DEFINE_string("out_dir", None, "Where the CSV, plots and measurements go.")
  flags.DEFINE_string("device_url", None, "Override the target's agent address.")
  flags.DEFINE_string("device_token_file", None, "Override the target's agent token file.")


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  try:
    if not (FLAGS.source_dir and FLAGS.target_dir and FLAGS.out_dir):
      raise ValueError("--source_dir, --target_dir and --out_dir are required.")
    rows, path = cross_device_lib.evaluate(FLAGS.source_dir, FLAGS.target_dir, FLAGS.out_dir,
                                           device_url=FLAGS.device_url,
                                           device_token_file=FLAGS.device_token_file)
  except (ValueError, FileNotFoundError) as e:
    sys.exit("error: %s" % e)
  print("%d models re-measured; %s" % (len(rows), path))


if __name__ == "__main__":
  define_flags()
  app.run(main)
