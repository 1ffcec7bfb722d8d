"""Every absl flag of ``python -m search.run``, in one module.

Training recipe fields (``tea_keras.recipes.Recipe``) are exposed under their
own names (``--epochs``, ``--batch_size``, ``--learning_rate``,
``--num_cells``, ``--filters``, ...); a flag left unset keeps the search-time
recipe's value (paper IV-A). Only ``search.run.main`` reads ``FLAGS``, through
``config_from_flags``.
"""

import dataclasses

from absl import flags

from search import config as config_lib
from tea_keras import recipes

FLAGS = flags.FLAGS

flags.DEFINE_string("results_dir", None, "Directory of this search: trials.db, config.json, "
                    "CSVs, plots, trial artifacts. Re-run with the same flags to resume.")
flags.DEFINE_enum("strategy", "pesmo", config_lib.STRATEGIES, "Optimizer.")
flags.DEFINE_integer("num_samples", 400, "Trials in all, initial ones included (paper: 400).",
                     lower_bound=1)
flags.DEFINE_integer("num_initial", 10, "Random trials before the optimizer takes over.",
                     lower_bound=1)
flags.DEFINE_list("objectives", list(config_lib.OBJECTIVES),
                  "Objectives to minimize, a subset of error,time,energy.")
flags.DEFINE_integer("seed", 0, "Seed of the search (initial points, optimizer, training).",
                     lower_bound=0)
flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "cifar10_sample"],
                  "Training data; cifar10_sample is the bundled 6,102-image sample.")
flags.DEFINE_string("data_dir", None, "A cifar-10-batches-py folder (else the Keras cache).")
flags.DEFINE_integer("train_images", None, "Train on the first N training images only "
                     "(smoke tests; default: the whole training split).", lower_bound=1)
flags.DEFINE_enum("device", "cpu", config_lib.DEVICES, "Where time and energy are measured.")
flags.DEFINE_enum("runtime", None, config_lib.RUNTIMES,
                  "Inference runtime (default: per device, see search/config.py).")
flags.DEFINE_enum("power_source", "auto", config_lib.POWER_SOURCES,
                  "Power source; auto = the device's own if readable, else none.")
flags.DEFINE_bool("optional_energy", False, "Drop the energy objective (with a notice) "
                  "instead of refusing when no power source is readable.")
flags.DEFINE_float("power_threshold_w", None, "Working/idle threshold in watts "
                   "(default: the paper's per device, else derived from the idle baseline).")
flags.DEFINE_float("sample_interval_s", 0.02, "Power sampling period (paper: 20 ms).",
                   lower_bound=0.001)
flags.DEFINE_integer("measure_images", 5000, "Validation images run per measurement "
                     "(paper: 5,000).", lower_bound=1)
flags.DEFINE_integer("measure_batch_size", 100, "Inference batch size (paper: 100).",
                     lower_bound=1)
flags.DEFINE_integer("measure_repeats", 3, "Measurement repeats (median reported).",
                     lower_bound=1)
flags.DEFINE_string("device_url", None, "http://HOST:PORT of `python -m deploy.agent`.")
flags.DEFINE_string("device_token_file", None, "File holding the agent's token.")
flags.DEFINE_enum("executor", "local", config_lib.EXECUTORS, "Where trials run.")
flags.DEFINE_string("ray_address", None, "Address of an existing Ray cluster "
                    "(default: start a local Ray instance).")
flags.DEFINE_integer("max_parallel", 1, "Trials evaluated at once.", lower_bound=1)
flags.DEFINE_integer("trial_retries", 2, "Retries of a trial whose device was unreachable.",
                     lower_bound=0)

_RECIPE_FLAGS = []
for _field in dataclasses.fields(recipes.Recipe):
  _default = _field.default
  _define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
             float: flags.DEFINE_float}.get(type(_default), flags.DEFINE_string)
  if _field.name in ("jit_compile", "mixed_precision"):
    _define = flags.DEFINE_bool
  _define(_field.name, None, "[recipe] %s Default: the search-time recipe's %r."
          % (_field.metadata.get("help", ""), _default))
  _RECIPE_FLAGS.append(_field.name)


def config_from_flags() -> config_lib.SearchConfig:
  """Turn FLAGS into a ``SearchConfig`` (not yet validated)."""
  if not FLAGS.results_dir:
    raise ValueError("--results_dir is required: the directory this search writes to.")
  recipe = {name: getattr(FLAGS, name) for name in _RECIPE_FLAGS
            if getattr(FLAGS, name) is not None}
  recipes.search_recipe(**recipe)  # validates the overrides
  return config_lib.SearchConfig(
      results_dir=FLAGS.results_dir, strategy=FLAGS.strategy, num_samples=FLAGS.num_samples,
      num_initial=FLAGS.num_initial, objectives=tuple(FLAGS.objectives), seed=FLAGS.seed,
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, recipe=recipe,
      train_images=FLAGS.train_images, device=FLAGS.device,
      runtime=FLAGS.runtime, power_source=FLAGS.power_source,
      optional_energy=FLAGS.optional_energy, power_threshold_w=FLAGS.power_threshold_w,
      sample_interval_s=FLAGS.sample_interval_s, measure_images=FLAGS.measure_images,
      measure_batch_size=FLAGS.measure_batch_size, measure_repeats=FLAGS.measure_repeats,
      device_url=FLAGS.device_url, device_token_file=FLAGS.device_token_file,
      executor=FLAGS.executor, ray_address=FLAGS.ray_address, max_parallel=FLAGS.max_parallel,
      trial_retries=FLAGS.trial_retries)
