"""The reports' command line: the paper's figures and Table II, the front
measured again, precisions and budgets (``search.reports.figures`` and the
modules beside it hold the work)::

  python -m search.reports --figure=fig5 --pesmo_dir=runs/paper_movidius \\
      --random_dir=runs/paper_random_movidius --out_dir=reports/fig5
  python -m search.reports --figure=remeasure --results_dir=runs/quickstart
  python -m search.reports --figure=dnas --results_dir=runs/dnas_quick \\
      --pesmo_dir=runs/quickstart
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from absl import app
from absl import flags

from deploy.device import devices
from search.reports import budget as budget_report
from search.reports import precisions as precision_report
from search.reports.common import measuring_for
from search.reports.figures import default_out_dir, dnas_beside_search, fig5, measure_model_dir
from search.reports.figures import remeasure_front
from search.reports.figures import table2, table2_settings, _num
from tea_keras import console

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program (``search.reports.cross_device``
  imports this module and defines some of the same names)."""
  flags.DEFINE_enum("figure", "fig5", ["fig5", "table2", "remeasure", "precisions",
                                        "budget", "dnas"],
                    "What to draw (remeasure: the Pareto set of --results_dir measured again, "
                    "back to back, with the search's own settings).")
  flags.DEFINE_string("results_dir", None, "remeasure, precisions: the search whose front is "
                      "measured; budget: the constrained search.")
  flags.DEFINE_string("unconstrained_dir", None, "budget: a search of the same settings "
                      "without the budget, scored against --results_dir's budget.")
  flags.DEFINE_list("runtimes", [], "precisions: export and measure the front's pairs again "
                    "on these runtimes (default: the search's own records).")
  flags.DEFINE_integer("top", 3, "precisions: at most this many cells of the front, spread "
                       "along it (0: all).", lower_bound=0)
  flags.DEFINE_string("out_dir", None, "Where figures and tables are written. Default: "
                      "under the search's results dir for remeasure, precisions and budget "
                      "(<results_dir>/<figure>), else reports/<figure>.")
  flags.DEFINE_string("pesmo_dir", None, "fig5: results dir of the BO (PESMO) search.")
  flags.DEFINE_string("random_dir", None, "fig5: results dir of the random search.")
  flags.DEFINE_list("checkpoints", None, "fig5: sample counts (default: the paper's "
                    "100,200,300,400 for runs of 400 trials, else quarters of the shorter run).")
  flags.DEFINE_list("labels", None, "table2: one row name per --model_dirs entry (default: "
                    "DenseNet-40 or the cell's genotype).")
  flags.DEFINE_list("model_dirs", [], "table2: training directories of the models.")
  flags.DEFINE_string("measure_label", None, "table2: measure the models now under this label.")
  flags.DEFINE_enum("device", "cpu", list(devices.DEVICES) + [devices.REMOTE],
                    "table2: device to measure on.")
  flags.DEFINE_enum("runtime", None, list(devices.RUNTIMES),
                    "table2: runtime (default: the device's, deploy/device/devices.py).")
  flags.DEFINE_enum("power_source", "auto", [devices.AUTO] + list(devices.POWER_SOURCES),
                    "table2: power source.")
  flags.DEFINE_float("power_threshold_w", None, "table2: working/idle threshold (W).")
  flags.DEFINE_string("dataset", "cifar10", "table2: images measured (validation split).")
  flags.DEFINE_string("data_dir", None, "table2: cifar-10-batches-py folder.")
  flags.DEFINE_integer("measure_images", 5000, "table2: images per measurement.")
  flags.DEFINE_string("device_url", None, "table2: agent address for --device=remote.")
  flags.DEFINE_string("device_token_file", None, "table2: agent token file.")


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  if FLAGS.out_dir is None:
    FLAGS.out_dir = default_out_dir(FLAGS.figure, FLAGS.results_dir)  # type: ignore[assignment]
  try:
    if FLAGS.figure == "fig5":
      if not FLAGS.pesmo_dir or not FLAGS.random_dir:
        raise ValueError("--figure=fig5 needs --pesmo_dir and --random_dir.")
      data = fig5(FLAGS.pesmo_dir, FLAGS.random_dir,
                  [int(c) for c in FLAGS.checkpoints] if FLAGS.checkpoints else None,
                  FLAGS.out_dir)
      print(json.dumps({k: data[k] for k in ("objectives", "checkpoints")}, indent=1))
      return
    if FLAGS.figure == "dnas":
      if not FLAGS.results_dir or not FLAGS.pesmo_dir:
        raise ValueError("--figure=dnas needs --results_dir (the DNAS sweep) and --pesmo_dir "
                         "(the search to draw beside it).")
      data = dnas_beside_search(FLAGS.results_dir, FLAGS.pesmo_dir, FLAGS.out_dir)
      print("DNAS: %d networks (%d on their front); search: %d trials (%d on its front); "
            "written: %s" % (len(data["dnas"]), sum(p["on_front"] for p in data["dnas"]),
                             len(data["search"]), sum(p["on_front"] for p in data["search"]),
                             data["png"]))
      return
    if FLAGS.figure == "remeasure":
      if not FLAGS.results_dir:
        raise ValueError("--figure=remeasure needs --results_dir.")
      print(remeasure_front(FLAGS.results_dir, FLAGS.out_dir))
      return
    if FLAGS.figure == "precisions":
      if not FLAGS.results_dir:
        raise ValueError("--figure=precisions needs --results_dir.")
      with measuring_for(FLAGS.results_dir if FLAGS.runtimes else None):
        print(precision_report.precision_table(FLAGS.results_dir, FLAGS.out_dir,
                                               tuple(FLAGS.runtimes), FLAGS.top))
      return
    if FLAGS.figure == "budget":
      print(budget_report.markdown(budget_report.compare(
          FLAGS.results_dir, FLAGS.unconstrained_dir, FLAGS.out_dir)))
      return
    if not FLAGS.model_dirs:
      raise ValueError("--figure=table2 needs --model_dirs.")
    if FLAGS.measure_label:
      settings = table2_settings(
          FLAGS.out_dir, FLAGS.device, FLAGS.runtime, FLAGS.power_source,
          FLAGS.power_threshold_w, FLAGS.dataset, FLAGS.data_dir, FLAGS.measure_images,
          FLAGS.device_url, FLAGS.device_token_file)
      for d in FLAGS.model_dirs:
        m = measure_model_dir(d, FLAGS.measure_label, settings)
        print("%s: time_s=%s energy_j=%s" % (d, _num(m.get("time_s")), _num(m.get("energy_j"))))
    text = table2(FLAGS.model_dirs, FLAGS.labels)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "table2.md"), "w") as f:
      f.write(text)
    print(text)
  except (ValueError, FileNotFoundError) as e:
    sys.exit("error: %s" % e)


if __name__ == "__main__":
  define_flags()
  app.run(main)
