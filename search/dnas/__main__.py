"""``python -m search.dnas --flagfile=flags/dnas_quick.cfg``: a DNAS sweep.

Every flag of ``python -m search.run`` (``search/flags.py``) that describes
the data, the training recipe and the measurement applies (``--dataset``,
``--epochs`` is unused: the phases have their own, ``--device``,
``--measure_images``, ...); ``--strategy``, ``--num_samples`` and the
budgets do not. The sweep's own flags are below (``search/dnas/sweep.py``).
Re-running the same command resumes; a results directory of another sweep
or of a search is refused. Exit status: 0 every point done, 3 some failed,
1 refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Sequence

from absl import app
from absl import flags

from search import config as config_lib
from search import flags as search_flags
from search import loop
from search import store as store_lib
from search.dnas import sweep
from tea_keras import console
from tea_keras import files

FLAGS = flags.FLAGS


def define_flags() -> None:
  search_flags.define_flags()
  flags.adopt_module_key_flags(search_flags)
  d = sweep.DnasSettings()
  flags.DEFINE_enum("seed_model", d.seed_model, sweep.SEEDS, "The seed network: ResNet-8 of "
                    "MLPerf Tiny v0.5, or a cell network (--genotype, --num_cells, --filters).")
  flags.DEFINE_string("genotype", None, "--seed_model=cell: the cell (a genotype string).")
  flags.DEFINE_list("size_targets", [str(t) for t in d.size_targets], "Size targets, as "
                    "fractions of the seed's parameters; every found network meets its own.")
  flags.DEFINE_list("lambda_energy", [str(v) for v in d.lambda_energy], "Strengths of the "
                    "cost term, per seed cost (0: size only).")
  flags.DEFINE_float("lambda_size", d.lambda_size, "Strength of the size term, per seed size.",
                     lower_bound=0.0)
  flags.DEFINE_enum("loss", d.loss, sweep.LOSSES, "absolute: the paper's |M - target|; "
                    "hinge: max(0, M - target).")
  flags.DEFINE_enum("cost_model", d.cost_model, sweep.COST_MODELS, "The cost term: MACs "
                    "(the paper's energy proxy) or a per-layer latency table measured on "
                    "the target (cost_table.json).")
  flags.DEFINE_integer("warmup_epochs", d.warmup_epochs, "Epochs of the seed before the "
                       "search (once per sweep).", lower_bound=0)
  flags.DEFINE_integer("search_epochs", d.search_epochs, "Epochs of each supernet.",
                       lower_bound=1)
  flags.DEFINE_integer("finetune_epochs", d.finetune_epochs, "Epochs of each found network.",
                       lower_bound=0)
  flags.DEFINE_integer("ramp_epochs", d.ramp_epochs, "Epochs over which the complexity "
                       "strength rises to 1.", lower_bound=0)
  flags.DEFINE_float("mask_speed", d.mask_speed, "The masks move this many times faster than "
                     "the weights (their own step size, as the paper's separate optimizer).",
                     lower_bound=1e-6)
  flags.DEFINE_list("table_fractions", [str(f) for f in d.table_fractions], "--cost_model="
                    "measured: each layer is timed at these fractions of its input and output "
                    "channels (every pair), interpolated bilinearly between them.")
  flags.DEFINE_bool("baseline", d.baseline, "Also the seed scaled uniformly in width to each "
                    "size target, trained and measured the same way.")


def settings_from_flags() -> sweep.DnasSettings:
  return sweep.DnasSettings(
      seed_model=FLAGS.seed_model, genotype=FLAGS.genotype,
      size_targets=tuple(float(v) for v in FLAGS.size_targets),
      lambda_energy=tuple(float(v) for v in FLAGS.lambda_energy),
      lambda_size=FLAGS.lambda_size, loss=FLAGS.loss, cost_model=FLAGS.cost_model,
      warmup_epochs=FLAGS.warmup_epochs, search_epochs=FLAGS.search_epochs,
      finetune_epochs=FLAGS.finetune_epochs, ramp_epochs=FLAGS.ramp_epochs,
      mask_speed=FLAGS.mask_speed, baseline=FLAGS.baseline,
      table_fractions=tuple(float(v) for v in FLAGS.table_fractions))


# The run directories this module's commands write: the config.json key that
# marks each, what it is called, and what "another one" is called.
RUN_KINDS = {"dnas": ("DNAS sweep", "sweep"), "widths": ("width search", "width search")}


def check_results_dir(config: config_lib.SearchConfig, settings: sweep.DnasSettings,
                      kind: str = "dnas") -> None:
  """Refuse a results directory of another kind (a search, a DNAS sweep, a
  width search: ``RUN_KINDS``) or of another run of this kind; write the
  run's config.json (the search's settings and, under ``kind``, the sweep
  settings)."""
  name, another = RUN_KINDS[kind]
  path = os.path.join(config.results_dir, "config.json")
  mine = json.loads(json.dumps(dict(json.loads(config.to_json()),
                                    **{kind: dataclasses.asdict(settings)})))
  if os.path.isfile(path):
    with open(path) as f:
      there = json.load(f)
    if kind not in there:
      what = next((RUN_KINDS[k][0] for k in RUN_KINDS if k in there), "search")
      raise ValueError("--results_dir=%s holds a %s, not a %s; use another."
                       % (config.results_dir, what, name))
    ignore = set(config_lib.RUN_CONTROL_FIELDS)
    diff = sorted(k for k in set(there) | set(mine) if k not in ignore
                  and there.get(k) != mine.get(k))
    if diff:
      raise ValueError("--results_dir=%s holds another %s (%s differ). Use a new "
                       "--results_dir, or the same settings to resume."
                       % (config.results_dir, another, ", ".join(diff)))
  os.makedirs(config.results_dir, exist_ok=True)
  files.write_json(path, mine, indent=2, sort_keys=True)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit("error: unexpected arguments %s (flags are --name=value)" % argv[1:])
  console.quiet_native_logs()
  try:
    settings = settings_from_flags()
    settings.validate()
    config = search_flags.config_from_flags()
    config = dataclasses.replace(config, num_samples=len(sweep.points(settings)),
                                 num_initial=1, strategy="random")
    config_lib.validate(config)
    if settings.cost_model == "measured" and config.device == "remote":
      raise ValueError("--cost_model=measured times each layer alone on inputs of its own "
                       "shape, which a remote agent (it measures its own images) cannot; "
                       "use --cost_model=macs, or run the sweep on the target")
    store_lib.check_not_locked(config.results_dir)
    config = loop.resolve(config)
    loop.check_data(config)
    check_results_dir(config, settings)
  except (ValueError, store_lib.StoreError) as e:
    sys.exit("error: %s" % e)
  summary = sweep.run(config, settings, log=lambda line: print(line, flush=True))
  counts = summary.get("counts", {})
  print("dnas sweep finished: %d points (%s); outputs in %s"
        % (summary["trials"], ", ".join("%s %d" % kv for kv in sorted(counts.items()) if kv[1]),
           config.results_dir))
  if counts.get("failed"):
    sys.exit(3 if counts.get("done") else 1)


if __name__ == "__main__":
  define_flags()
  app.run(main, argv=sys.argv[:1] + search_flags.expand_flagfiles(sys.argv[1:]))
