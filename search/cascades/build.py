"""Adaptive cascades of Pareto models (LEANets, Jayakodi et al., ACM TECS 2020): the CLI.

Stages are a search's Pareto models ordered by measured cost (at most
``--max_stages``), or any trained, measured models (``--model_dirs``); each
stage's validation (and test) logits are computed once, then every threshold
vector is evaluated exactly (``search.cascades.thresholds``). For 2-3 stages an
exhaustive grid gives the true error/time(/energy) front in seconds, and that
is all that runs by default; ``--compare_strategies`` also lets PESMO, ParEGO
and random search look for it within ``--evaluations`` and scores each by its
hypervolume fraction of the grid's front (minutes per strategy). Without an
exact grid (more stages, or a thinned grid) the strategies search the front
themselves. Progress and an ETA are printed while they run::

  python -m search.cascades.build --results_dir=runs/quickstart --out_dir=runs/quickstart_cascade
  python -m search.cascades.build --model_dirs=final/a,final/b --out_dir=cascades/ab --measure

``<out_dir>`` holds the run-time cascade (``cascade.json`` + ``stages/*.onnx``,
run by ``python -m deploy.device.run_cascade`` or measured by ``python -m deploy.measure
--model=<out_dir>``), ``cascade_fronts.png/.csv``, ``cascade_points.md/.csv``,
``threshold_search.csv`` and ``summary.json``; the console gets a short
summary explaining the savings (``cascade_report.summary_lines``). A
``--results_dir`` that is not a search's is refused before anything is
written. ``--measure`` also measures
each stage alone (at the batch size and a tenth of it: its per-call cost) and
``--measure_points`` points of the front on this CPU with ``deploy.measure``
and compares them with the prediction.
The work is done by ``search.cascades.build_lib.build``.
"""

import sys
from typing import Sequence

from absl import app
from absl import flags

from deploy.device import cascade_runner as runner
from deploy.device import devices
from search.cascades import build_lib
from search.cascades import report as cascade_report
from tea_keras import console

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_string("results_dir", None, "Search results dir whose Pareto models are stages.")
  flags.DEFINE_list("model_dirs", [], "Or: training dirs (model.keras, metrics.json, a "
                    "measurement JSON) to use as stages.")
  flags.DEFINE_string("measurement_label", None, "--model_dirs: use measurements/<label>.json.")
  flags.DEFINE_string("out_dir", None, "Where the cascade and its report are written.")
  flags.DEFINE_integer("max_stages", 3, "At most this many stages.", lower_bound=2)
  flags.DEFINE_list("stages", [], "--results_dir: these trial ids as stages instead.")
  flags.DEFINE_enum("confidence", "max_softmax", list(runner.CONFIDENCES),
                    "Largest softmax probability, or top-1 minus top-2 probability.")
  flags.DEFINE_enum("logits_runtime", "onnxruntime", ["onnxruntime", "keras"],
                    "What computes the validation logits (the stage ONNX files or model.keras).")
  flags.DEFINE_list("strategies", ["pesmo", "parego", "random"], "Threshold search strategies: "
                    "they search the front when there is no exact grid; with an exact grid "
                    "they run only with --compare_strategies.")
  flags.DEFINE_bool("compare_strategies", False, "With an exact grid, also run --strategies "
                    "and score each against the grid's front (minutes per strategy).")
  flags.DEFINE_integer("evaluations", 50, "Threshold vectors each strategy evaluates.",
                       lower_bound=1)
  flags.DEFINE_integer("num_initial", 5, "Seeded uniform vectors before a strategy proposes.",
                       lower_bound=1)
  flags.DEFINE_list("seeds", ["0"], "One threshold search per strategy and seed.")
  flags.DEFINE_enum("grid", "auto", list(build_lib.GRID_MODES),
                    "Exhaustive grid (auto: for 2-3 stages).")
  flags.DEFINE_integer("grid_max_evaluations", 300000, "Thin the grid beyond this many vectors.",
                       lower_bound=2)
  flags.DEFINE_float("error_tolerance", 0.005, "Savings are reported at errors within this "
                     "of the best single model's (0.005: half a point).", lower_bound=0)
  flags.DEFINE_bool("measure", False, "Measure the stages and some front points now.")
  flags.DEFINE_integer("measure_points", 5, "--measure: this many points along the front.",
                       lower_bound=1)
  flags.DEFINE_integer("measure_images", None, "--measure: images (default: the search's).")
  flags.DEFINE_integer("measure_batch_size", None, "--measure: batch (default: the search's).")
  flags.DEFINE_integer("measure_repeats", 3, "--measure: repeats.", lower_bound=1)
  flags.DEFINE_enum("power_source", "auto", [devices.AUTO] + list(devices.POWER_SOURCES),
                    "--measure, --stage_costs=measure: power source.")
  flags.DEFINE_enum("stage_costs", "search", list(build_lib.STAGE_COSTS),
                    "Stage costs of the cascade's cost model: as the search measured them "
                    "(per image), or measured again now, back to back on this CPU, at the batch "
                    "size and at a tenth of it, which adds each stage's per-call cost to the "
                    "model (search.cascades.thresholds).")
  flags.DEFINE_string("dataset", None, "Data set (default: the search's or model's).")
  flags.DEFINE_string("data_dir", None, "cifar-10-batches-py folder for --dataset=cifar10.")
  flags.DEFINE_integer("split_seed", None, "Validation split seed (default: the search's).")


def options_from_flags(fv: flags.FlagValues) -> build_lib.CascadeOptions:
  """``CascadeOptions`` from parsed flags ``fv``."""
  if not fv.out_dir:
    raise ValueError("--out_dir is required.")
  return build_lib.CascadeOptions(
      out_dir=fv.out_dir, results_dir=fv.results_dir, model_dirs=tuple(fv.model_dirs),
      measurement_label=fv.measurement_label, max_stages=fv.max_stages,
      stages=tuple(int(s) for s in fv.stages), confidence=fv.confidence,
      logits_runtime=fv.logits_runtime, strategies=tuple(fv.strategies),
      compare_strategies=fv.compare_strategies, evaluations=fv.evaluations, num_initial=fv.num_initial,
      seeds=tuple(int(s) for s in fv.seeds), grid=fv.grid,
      grid_max_evaluations=fv.grid_max_evaluations, error_tolerance=fv.error_tolerance,
      measure=fv.measure, measure_points=fv.measure_points, measure_images=fv.measure_images,
      measure_batch_size=fv.measure_batch_size, measure_repeats=fv.measure_repeats,
      power_source=fv.power_source, stage_costs=fv.stage_costs, dataset=fv.dataset,
      data_dir=fv.data_dir,
      split_seed=fv.split_seed)


def main(argv: Sequence[str]) -> None:
  del argv
  console.quiet_native_logs()
  try:
    summary = build_lib.build(options_from_flags(FLAGS))
  except (ValueError, FileNotFoundError) as e:
    sys.exit("error: %s" % e)
  print("\n".join(cascade_report.summary_lines(summary, FLAGS.out_dir)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
