"""Every absl flag of ``python -m search.run``, in one module.

Nothing is defined at import time: ``search.run`` calls ``define_flags()``
before ``app.run`` (and adopts these flags as its own, so ``--help`` lists
them). Training recipe fields (``tea_keras.recipes.Recipe``) are exposed
under their own names (``--epochs``, ``--batch_size``, ``--learning_rate``,
``--num_cells``, ``--filters``, ...); a flag left unset keeps the search-time
recipe's value (paper IV-A). Only ``search.run.main`` reads ``FLAGS``, through
``config_from_flags``. Device, runtime and power source choices come from the
device registry ``deploy/device/devices.py``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from absl import flags

from deploy.device import contention
from deploy.device import devices
from search import config as config_lib
from tea_keras import data
from tea_keras import recipes

FLAGS = flags.FLAGS

RECIPE_FLAGS = tuple(field.name for field in dataclasses.fields(recipes.Recipe))
_BOOL_RECIPE_FLAGS = ("jit_compile", "mixed_precision")  # their default is None
# The FlagValues that define_flags() has filled, so that a second call is a no-op.
_DEFINED_ON: list[flags.FlagValues] = []


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Define the flags of ``search.run`` on ``flag_values``; idempotent."""
  if any(defined is flag_values for defined in _DEFINED_ON):
    return
  _define_search_flags(flag_values)
  _define_measure_flags(flag_values)
  _define_recipe_flags(flag_values)
  _DEFINED_ON.append(flag_values)


def _define_search_flags(flag_values: flags.FlagValues) -> None:
  fv: dict[str, Any] = dict(flag_values=flag_values)
  flags.DEFINE_string("results_dir", None, "Directory of this search: trials.db, config.json, "
                      "CSVs, plots, trial artifacts. Re-run with the same flags to resume.", **fv)
  flags.DEFINE_enum("strategy", "pesmo", config_lib.STRATEGIES, "Optimizer: pesmo (PESMO), "
                    "parego (ParEGO, GPyOpt), random, qlognehvi (BoTorch's qLogNEHVI; needs the "
                    "bench extra: pip install -e \".[bench]\").", **fv)
  flags.DEFINE_enum("evaluation", "coupled", config_lib.EVALUATIONS,
                    "coupled: every trial trains a cell and measures its trained export (the "
                    "paper's). decoupled: the optimizer chooses, for each evaluation, to "
                    "MEASURE a cell's untrained export (time, energy, in seconds) or to TRAIN "
                    "it (error; its trained export is measured too); measurements run beside "
                    "training (on a remote agent at the same time; on a local device the "
                    "measurement lock keeps them apart). Needs a decoupled strategy (pesmo) "
                    "and fp32/fp16 precisions (int8's calibration depends on the weights). "
                    "--num_samples then counts train evaluations.", **fv)
  flags.DEFINE_integer("num_samples", 400, "Trials in all, initial ones included (paper: 400).",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("num_initial", 10, "Random trials before the optimizer takes over.",
                       lower_bound=1, **fv)
  flags.DEFINE_list("objectives", list(config_lib.OBJECTIVES),
                    "Objectives to minimize, a subset of error,time,energy.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed of the search (initial points, optimizer, training).",
                       lower_bound=0, **fv)
  flags.DEFINE_enum("dataset", "cifar10", list(data.NAMES),
                    "Training data; cifar10_sample is the bundled 6,102-image sample, folder "
                    "your own images (--data_dir; README, 'Your own data').", **fv)
  flags.DEFINE_string("data_dir", None, "--dataset=cifar10: a cifar-10-batches-py folder (else "
                      "the Keras cache). --dataset=folder (required): one sub-folder of "
                      "images per class, or train/<class>/ and test/<class>/.", **fv)
  flags.DEFINE_integer("train_images", None, "Train on the first N training images only "
                       "(smoke tests; default: the whole training split).", lower_bound=1, **fv)
  flags.DEFINE_enum("executor", "local", config_lib.EXECUTORS, "Where trials run.", **fv)
  flags.DEFINE_string("ray_address", None, "Address of an existing Ray cluster (HOST:PORT "
                      "of its head; default: start a new local Ray instance). With token "
                      "authentication export RAY_AUTH_MODE=token and the cluster's token.", **fv)
  flags.DEFINE_integer("max_parallel", 1, "Trials evaluated at once.", lower_bound=1, **fv)
  flags.DEFINE_integer("trial_retries", 2, "Retries of a trial whose device was unreachable "
                       "or whose attempt was lost with its Ray node or worker (a trial's own "
                       "failure is not retried).",
                       lower_bound=0, **fv)
  flags.DEFINE_bool("retry_failed", False, "On resume, run the trials recorded as failed "
                    "again (after fixing their cause, e.g. the data or the device); without "
                    "it a resumed search keeps them failed and re-runs only interrupted "
                    "trials.", **fv)
  flags.DEFINE_bool("keep_checkpoints", False, "Keep each finished trial's training "
                    "checkpoints (trials/NNNN/model/checkpoints/, needed only to train it "
                    "further); by default they are deleted once the trial is done.", **fv)
  flags.DEFINE_integer("max_consecutive_failures", 10, "Stop the search (exit status 1, with "
                       "the reason) after this many consecutive trials failed with the same "
                       "cause; 0 never stops.", lower_bound=0, **fv)


def _define_measure_flags(flag_values: flags.FlagValues) -> None:
  fv: dict[str, Any] = dict(flag_values=flag_values)
  flags.DEFINE_enum("device", "cpu", list(devices.DEVICES) + [devices.REMOTE],
                    "Where time and energy are measured.", **fv)
  flags.DEFINE_enum("runtime", None, list(devices.RUNTIMES),
                    "Inference runtime (default: per device, see search/config.py).", **fv)
  flags.DEFINE_enum("power_source", "auto", [devices.AUTO] + list(devices.POWER_SOURCES),
                    "Power source; auto = the device's own if readable, else none.", **fv)
  flags.DEFINE_string("rail", None, "Local ina3221: rail label(s), comma-separated (default: "
                      "the board's input rail).", **fv)
  flags.DEFINE_integer("gpu_index", None, "Local nvml: the GPU's index.", lower_bound=0, **fv)
  flags.DEFINE_string("usb_csv", None, "Local usb_meter: the meter's timestamped CSV log.", **fv)
  flags.DEFINE_string("usb_port", None, "Local usb_meter: its serial port (/dev/ttyUSB0).", **fv)
  flags.DEFINE_string("power_root", None, "Local ina3221/rapl: root of the sysfs tree "
                      "(default /).", **fv)
  flags.DEFINE_bool("optional_energy", False, "Drop the energy objective (with a notice) "
                    "instead of refusing when no power source is readable.", **fv)
  flags.DEFINE_float("power_threshold_w", None, "Working/idle threshold in watts "
                     "(default: the paper's per device, else derived from the idle baseline).",
                     **fv)
  flags.DEFINE_float("sample_interval_s", 0.02, "Power sampling period (paper: 20 ms).",
                     lower_bound=0.001, **fv)
  flags.DEFINE_integer("measure_images", 5000, "Validation images run per measurement "
                       "(paper: 5,000).", lower_bound=1, **fv)
  flags.DEFINE_integer("measure_batch_size", 100, "Inference batch size (paper: 100).",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("measure_repeats", 3, "Measurement repeats (median reported).",
                       lower_bound=1, **fv)
  flags.DEFINE_string("device_url", None, "http://HOST:PORT of `python -m deploy.device.agent`.", **fv)
  flags.DEFINE_string("device_token_file", None, "File holding the agent's token.", **fv)
  flags.DEFINE_string("device_ca_file", None, "PEM file of an https:// agent's certificate "
                      "(or the CA that signed it), when the system trust store lacks it.", **fv)
  flags.DEFINE_enum("contention_policy", contention.DEFAULT_POLICY, list(contention.POLICIES),
                    "A repeat timed while other processes kept the CPUs busy: re-measure it "
                    "(then flag it contended), only flag it, or fail the trial "
                    "(deploy/device/contention.py).", **fv)
  flags.DEFINE_list("precisions", ["fp32"], "Precisions each trained cell is exported and "
                    "measured at, among %s; a point of the front is a (cell, precision) "
                    "pair whose error is the deployed artifact's, on the validation split. "
                    "int8: post-training static quantization (deploy/quantize.py). The "
                    "optimizer models the first." % ",".join(devices.PRECISIONS), **fv)
  flags.DEFINE_integer("calibration_images", 200, "int8: calibrate on this many images of "
                       "the TRAINING split.", lower_bound=1, **fv)
  flags.DEFINE_integer("max_params", None, "Budget: at most this many parameters "
                       "(count_params); no cell over it is trained.", lower_bound=1, **fv)
  flags.DEFINE_integer("max_model_bytes", None, "Budget: the deployed artifact's bytes at "
                       "its precision (before training: parameters x bytes per weight; "
                       "after export: the file's size). search/budgets.py", lower_bound=1,
                       **fv)
  flags.DEFINE_integer("max_peak_activation_bytes", None, "Budget: activation RAM at batch 1, "
                       "float32 (tea_keras.profiling); no cell over it is trained.",
                       lower_bound=1, **fv)
  flags.DEFINE_float("max_time_s", None, "Measured budget: the protocol's time for "
                     "--measure_images images (time_s); pairs over it are infeasible.", **fv)
  flags.DEFINE_float("max_energy_j", None, "Measured budget: the protocol's energy for "
                     "--measure_images images (energy_j); pairs over it are infeasible.", **fv)


def _define_recipe_flags(flag_values: flags.FlagValues) -> None:
  """One flag per Recipe field, default None = the search-time recipe's value."""
  for field in dataclasses.fields(recipes.Recipe):
    default = field.default
    define: Any
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
              float: flags.DEFINE_float}.get(type(default), flags.DEFINE_string)
    if field.name in _BOOL_RECIPE_FLAGS:
      define = flags.DEFINE_bool
    define(field.name, None, "[recipe] %s Default: the search-time recipe's %r."
           % (field.metadata.get("help", ""), default), flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> config_lib.SearchConfig:
  """Turn the parsed flags into a ``SearchConfig`` (not yet validated)."""
  fv = flag_values
  if not fv.results_dir:
    raise ValueError("--results_dir is required: the directory this search writes to.")
  recipe = {name: getattr(fv, name) for name in RECIPE_FLAGS
            if getattr(fv, name) is not None}
  recipes.search_recipe(**recipe)  # validates the overrides
  return config_lib.SearchConfig(
      results_dir=fv.results_dir, strategy=fv.strategy, evaluation=fv.evaluation,
      num_samples=fv.num_samples,
      num_initial=fv.num_initial, objectives=tuple(fv.objectives), seed=fv.seed,
      dataset=fv.dataset, data_dir=fv.data_dir, recipe=recipe,
      train_images=fv.train_images, device=fv.device,
      runtime=fv.runtime, power_source=fv.power_source,
      power_options=devices.power_options_from(fv),
      optional_energy=fv.optional_energy, power_threshold_w=fv.power_threshold_w,
      sample_interval_s=fv.sample_interval_s, measure_images=fv.measure_images,
      measure_batch_size=fv.measure_batch_size, measure_repeats=fv.measure_repeats,
      device_url=fv.device_url, device_token_file=fv.device_token_file,
      executor=fv.executor, ray_address=fv.ray_address, max_parallel=fv.max_parallel,
      trial_retries=fv.trial_retries, retry_failed=fv.retry_failed,
      keep_checkpoints=fv.keep_checkpoints,
      max_consecutive_failures=fv.max_consecutive_failures, device_ca_file=fv.device_ca_file,
      contention_policy=fv.contention_policy, precisions=tuple(fv.precisions),
      calibration_images=fv.calibration_images, max_params=fv.max_params,
      max_model_bytes=fv.max_model_bytes,
      max_peak_activation_bytes=fv.max_peak_activation_bytes, max_time_s=fv.max_time_s,
      max_energy_j=fv.max_energy_j)


def expand_flagfiles(argv: Sequence[str], _stack: tuple[str, ...] = ()) -> list[str]:
  """``argv`` with every ``--flagfile=FILE`` replaced by FILE's flags, a
  ``--flagfile=`` line inside FILE resolved against FILE's own directory
  first (so ``flags/constrained.cfg`` includes ``constrained_baseline.cfg``
  from any working directory), then against the working directory, as absl
  reads them. Comments and blank lines are dropped; the order (later wins)
  is absl's. A missing file is a ValueError naming it and its includer.

  Why not absl's own ``--flagfile`` (``FLAGS(argv)``), which also reads nested
  flagfiles and comments: absl opens a nested ``--flagfile=`` against the
  working directory only, so ``flags/constrained.cfg`` (which includes
  ``flags/constrained_baseline.cfg``) would fail when run from anywhere but the
  repository root; it skips a flagfile that includes itself with a warning
  where this refuses it; and its error for a missing file does not say which
  file included it. The expanded ``argv`` is then parsed by absl as usual
  (``search.run``, ``search.dnas``, ``search.api.config_from``)."""
  out = []
  for arg in argv:
    name = arg[len("--flagfile="):] if arg.startswith("--flagfile=") else None
    if name is None:
      out.append(arg)
      continue
    path = name
    if _stack and not os.path.isabs(name):
      local = os.path.join(os.path.dirname(_stack[-1]), os.path.basename(name))
      path = local if os.path.exists(local) else name
    if not os.path.exists(path):
      raise ValueError("--flagfile=%s: no such file%s." % (
          name, " (included by %s)" % _stack[-1] if _stack else ""))
    if os.path.realpath(path) in [os.path.realpath(p) for p in _stack]:
      raise ValueError("--flagfile=%s includes itself (through %s)." % (name, " -> ".join(_stack)))
    with open(path) as f:
      lines = [line.strip() for line in f]
    out += expand_flagfiles([line for line in lines
                             if line and not line.startswith(("#", "//"))], _stack + (path,))
  return out
