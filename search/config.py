"""The resolved configuration of a search, and the checks made before any work.

``SearchConfig`` is what ``search.run``'s ``main()`` builds from its flags; the
library (``search.loop``) takes it as an argument. It is written once to
``<results_dir>/config.json``; re-running against a results directory whose
config differs in an *identity* field (search space, objectives, data,
network size, training recipe, device and measurement settings) is refused,
while *run-control* fields (``num_samples`` to extend a search, parallelism,
executor, addresses) may change between runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

from deploy.device import devices
from search import budgets
from search.optimizer import decoupled as decoupled_lib
from search.optimizer import strategies as strategies_lib
from tea_keras import data
from tea_keras import files
from tea_keras import recipes
from tea_keras import space

OBJECTIVES = ("error", "time", "energy")
# qlognehvi: BoTorch's qLogNEHVI, the optional `bench` extra (checked by validate).
STRATEGIES = ("pesmo", "parego", "random", "qlognehvi")
EXECUTORS = ("local", "ray")
# coupled: every trial trains a cell and measures its trained export (the
# paper's); decoupled (issue 33): a "measure" evaluation measures an untrained
# export (time, energy), a "train" evaluation trains (error; its trained
# export is measured too), the optimizer choosing which (search.decoupled).
EVALUATIONS = ("coupled", "decoupled")
HARDWARE_OBJECTIVES = ("time", "energy")
# Devices, runtimes, power sources and thresholds: deploy/device/devices.py.
# How to reach the device and its instrument may change between runs (an
# agent's new address, a meter on another port); what is measured may not:
# the artifact sent (format, ONNX opset), decided by the target at each run,
# is part of the experiment (a resumed search whose agent now reads IR where
# its trials were measured from ONNX is refused, not mixed).
RUN_CONTROL_FIELDS = ("num_samples", "max_parallel", "executor", "ray_address", "device_url",
                      "device_token_file", "results_dir", "trial_retries",
                      "retry_failed", "keep_checkpoints",
                      "max_consecutive_failures", "device_ca_file", "contention_policy",
                      "power_options")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Everything a search needs; see ``search/flags.py`` for each field's help."""
  results_dir: str
  strategy: str = "pesmo"
  evaluation: str = "coupled"
  num_samples: int = 400
  num_initial: int = 10
  objectives: Tuple[str, ...] = OBJECTIVES
  seed: int = 0
  dataset: str = "cifar10"
  data_dir: Optional[str] = None
  recipe: Dict[str, object] = dataclasses.field(default_factory=dict)
  train_images: Optional[int] = None
  device: str = "cpu"
  # Filled by the capability check (deploy.target) before the first trial:
  # the kind of device measured (a remote agent's own), the artifact sent.
  device_kind: Optional[str] = None
  artifact_format: Optional[str] = None
  onnx_opset: Optional[int] = None
  runtime: Optional[str] = None
  power_source: str = "auto"
  # The local power source's keyword arguments (deploy.device.devices.POWER_OPTIONS:
  # rail, root, device_index, csv_path, port); a remote agent has its own.
  power_options: Dict[str, object] = dataclasses.field(default_factory=dict)
  optional_energy: bool = False
  power_threshold_w: Optional[float] = None
  sample_interval_s: float = 0.02
  measure_images: int = 5000
  measure_batch_size: int = 100
  measure_repeats: int = 3
  device_url: Optional[str] = None
  device_token_file: Optional[str] = None
  executor: str = "local"
  ray_address: Optional[str] = None
  max_parallel: int = 1
  trial_retries: int = 2
  retry_failed: bool = False      # re-run trials recorded failed (their cause fixed)
  keep_checkpoints: bool = False  # keep a finished trial's training checkpoints
  max_consecutive_failures: int = 10  # stop after this many failures of one cause (0: never)
  device_ca_file: Optional[str] = None  # PEM of an https:// agent's certificate or CA
  contention_policy: str = "remeasure"  # deploy/device/contention.py
  # Deployment (issue 12, search/budgets.py): precisions each trained cell is
  # exported and measured at (the first is the one the optimizer models),
  # int8 calibration images from the training split, and the budgets.
  precisions: Tuple[str, ...] = ("fp32",)
  calibration_images: int = 200
  max_params: Optional[int] = None
  max_model_bytes: Optional[int] = None
  max_peak_activation_bytes: Optional[int] = None
  max_time_s: Optional[float] = None
  max_energy_j: Optional[float] = None
  search_space: Dict[str, object] = dataclasses.field(default_factory=lambda: {
      "num_blocks": space.NUM_BLOCKS, "ops": list(space.OPS),
      "cardinalities": list(space.cardinalities())})

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "SearchConfig":
    values = dict(values)
    values["objectives"] = tuple(values.get("objectives", OBJECTIVES))
    values["precisions"] = tuple(values.get("precisions", ("fp32",)))
    return cls(**values)

  def identity(self) -> dict:
    """The fields that define the experiment (see module doc)."""
    values = json.loads(self.to_json())
    return {k: v for k, v in values.items() if k not in RUN_CONTROL_FIELDS}


def _choice(name: str, value: Any, allowed: Any) -> None:
  if value not in allowed:
    raise ValueError("--%s=%s is not supported. Expected one of: %s."
                     % (name, value, ", ".join(allowed)))


def validate(config: SearchConfig) -> None:
  """Refuse invalid combinations before any work, with one clear message."""
  _choice("strategy", config.strategy, STRATEGIES)
  try:  # an optional package the strategy needs (qlognehvi: BoTorch), before any work
    strategies_lib.check_available(config.strategy)
  except ImportError as e:
    raise ValueError(str(e)) from e
  _choice("device", config.device, list(devices.DEVICES) + [devices.REMOTE])
  _choice("executor", config.executor, EXECUTORS)
  _choice("contention_policy", config.contention_policy, ("remeasure", "warn", "refuse"))
  _choice("power_source", config.power_source, (devices.AUTO,) + devices.POWER_SOURCES)
  if config.runtime is not None:
    _choice("runtime", config.runtime, list(devices.RUNTIMES))
  _choice("dataset", config.dataset, data.NAMES)
  if config.dataset == "folder" and not config.data_dir:
    raise ValueError("--dataset=folder needs --data_dir: %s" % data.FOLDER_LAYOUT)
  if config.dataset == "cifar10_sample" and config.data_dir:
    raise ValueError("--dataset=cifar10_sample ships with tea_keras and takes no --data_dir; "
                     "received --data_dir=%s." % config.data_dir)
  if not config.objectives or len(set(config.objectives)) != len(config.objectives):
    raise ValueError("--objectives must name distinct objectives among %s; received %s."
                     % (",".join(OBJECTIVES), ",".join(config.objectives) or "nothing"))
  for objective in config.objectives:
    _choice("objectives", objective, OBJECTIVES)
  if len(config.objectives) < 2:
    raise ValueError("--objectives=%s: a multi-objective search needs at least two of %s."
                     % (",".join(config.objectives), ",".join(OBJECTIVES)))
  if config.num_samples < 1 or not 1 <= config.num_initial <= config.num_samples:
    raise ValueError("--num_initial=%d and --num_samples=%d: expected 1 <= num_initial <= "
                     "num_samples." % (config.num_initial, config.num_samples))
  if config.train_images is not None and config.train_images < 1:
    raise ValueError("--train_images=%d: expected a positive count (or unset for all)."
                     % config.train_images)
  if config.max_parallel < 1:
    raise ValueError("--max_parallel=%d: expected an integer >= 1." % config.max_parallel)
  if config.measure_images < config.measure_batch_size:
    raise ValueError("--measure_images=%d is smaller than --measure_batch_size=%d."
                     % (config.measure_images, config.measure_batch_size))
  unknown = sorted(set(config.power_options) - set(devices.POWER_OPTION_FLAGS))
  if unknown:
    raise ValueError("power_options %s are not power-source options; expected some of %s."
                     % (unknown, sorted(devices.POWER_OPTION_FLAGS)))
  if config.device == "remote":
    if config.power_options:
      raise ValueError("--%s: the agent reads its own power source; give these options to "
                       "`python -m deploy.device.agent` on the device instead."
                       % ", --".join(devices.POWER_OPTION_FLAGS[k]
                                     for k in sorted(config.power_options)))
    if not config.device_url:
      raise ValueError("--device=remote needs --device_url (the address of "
                       "`python -m deploy.device.agent` on the device).")
    if not config.device_token_file or not os.path.isfile(config.device_token_file):
      raise ValueError("--device=remote needs --device_token_file naming a readable file "
                       "with the agent's token; received %r." % (config.device_token_file,))
  else:
    for check, value in ((devices.check_power_source, config.power_source),
                         (devices.check_runtime, config.runtime)):
      if value is not None:
        try:
          check(config.device, value)
        except ValueError as e:
          raise ValueError("--%s" % e)
  _validate_deployment(config)
  _validate_evaluation(config)
  if ("energy" in config.objectives and config.power_source == "none"
      and not config.optional_energy):
    raise ValueError("--objectives includes energy but --power_source=none measures no "
                     "energy on --device=%s; drop energy from --objectives or name a power "
                     "source." % config.device)


def _validate_deployment(config: SearchConfig) -> None:
  """Precisions and budgets (search/budgets.py); known budgets that no cell
  meets are refused here (``search.budgets.check_space``, an
  ``InfeasibleBudgetError``)."""
  precisions = tuple(config.precisions)
  if not precisions or len(set(precisions)) != len(precisions):
    raise ValueError("--precisions must name distinct precisions among %s; received %s."
                     % (",".join(devices.PRECISIONS), ",".join(precisions) or "nothing"))
  for precision in precisions:
    _choice("precisions", precision, list(devices.PRECISIONS))
    if config.runtime is not None:
      try:
        devices.check_precision(config.runtime, precision)
      except ValueError as e:
        raise ValueError("--precisions: %s" % e)
  if config.calibration_images < 1:
    raise ValueError("--calibration_images=%d: expected a positive count of training images."
                     % config.calibration_images)
  for name in ("max_params", "max_model_bytes", "max_peak_activation_bytes", "max_time_s",
               "max_energy_j"):
    value = getattr(config, name)
    if value is not None and not value > 0:
      raise ValueError("--%s=%s: expected a positive budget (or unset for none)."
                       % (name, value))
  if budgets.has_known(config):
    recipe = recipes.search_recipe(**config.recipe)
    budgets.check_space(budgets.budgets_of(config), recipe.num_cells, recipe.filters,
                        precisions, seed=config.seed,
                        num_classes=data.num_classes(config.dataset, config.data_dir))
  if config.max_time_s is not None and "time" not in config.objectives:
    raise ValueError("--max_time_s needs time among --objectives (it is measured).")
  if config.max_energy_j is not None and "energy" not in config.objectives:
    raise ValueError("--max_energy_j needs energy among --objectives (it is measured).")


def _validate_evaluation(config: SearchConfig) -> None:
  """``--evaluation=decoupled`` needs a decoupled strategy, the error and a
  hardware objective, and precisions whose time and energy do not depend on
  the weights (``deploy.device.devices.WEIGHT_INDEPENDENCE``: not int8, whose
  calibration does); refused here, before any work."""
  _choice("evaluation", config.evaluation, EVALUATIONS)
  if config.evaluation != "decoupled":
    return
  if config.strategy not in decoupled_lib.DECOUPLED_STRATEGIES:
    raise ValueError("--evaluation=decoupled needs a decoupled strategy; --strategy=%s has "
                     "none. Expected --strategy among %s, or --evaluation=coupled."
                     % (config.strategy, ", ".join(sorted(decoupled_lib.DECOUPLED_STRATEGIES))))
  hardware = [o for o in config.objectives if o in HARDWARE_OBJECTIVES]
  if "error" not in config.objectives or not hardware:
    raise ValueError("--evaluation=decoupled measures the hardware objectives apart from the "
                     "error: expected error and at least one of %s among --objectives; "
                     "received %s." % (",".join(HARDWARE_OBJECTIVES), ",".join(config.objectives)))
  bounds = [n for n in ("max_time_s", "max_energy_j") if getattr(config, n) is not None]
  if bounds:
    raise ValueError("--evaluation=decoupled does not model the measured budgets (--%s): the "
                     "decoupled strategy takes no objective bounds. Expected them unset, or "
                     "--evaluation=coupled." % ", --".join(bounds))
  for precision in config.precisions:
    runtimes = [config.runtime] if config.runtime is not None else [
        r for r in devices.RUNTIMES if (r, precision) in devices.WEIGHT_INDEPENDENCE]
    refused = [r for r in runtimes if not devices.decouplable(r, precision)]
    if refused:
      raise ValueError(
          "--evaluation=decoupled cannot measure --precisions=%s on %s untrained: %s. Expected "
          "precisions whose time and energy do not depend on the weights (%s), or "
          "--evaluation=coupled." % (
              precision, "runtime " + ", ".join(refused),
              devices.WEIGHT_INDEPENDENCE[(refused[0], precision)].why,
              ", ".join(sorted({p for (_, p), w in devices.WEIGHT_INDEPENDENCE.items()
                                if w.independent}))))


def check_results_dir(config: SearchConfig) -> bool:
  """Refuse a results dir of another experiment. Returns True when resuming."""
  path = os.path.join(config.results_dir, "config.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    try:
      raw = json.load(f)
      previous = SearchConfig.from_dict(raw).identity()
    except (ValueError, TypeError) as e:
      raise ValueError("%s is not a tea-keras search config (%s); use another "
                       "--results_dir." % (path, e))
  # A field that an older tea-keras did not write is not a difference.
  current = {k: v for k, v in config.identity().items() if k in raw}
  previous = {k: v for k, v in previous.items() if k in raw}
  diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
  if diff:
    details = "; ".join(_differences(previous.get(k), current.get(k), k) for k in diff)
    raise ValueError("--results_dir=%s holds another experiment (%s). Use a new "
                     "--results_dir, or the same settings to resume." % (config.results_dir, details))
  return True


def _differences(there: Any, now: Any, name: str) -> str:
  """``name: X there, Y now`` for each differing leaf (``recipe.epochs``) of
  two values, so that a refusal names what changed, not whole dicts."""
  if isinstance(there, dict) or isinstance(now, dict):
    there, now = there or {}, now or {}
    return "; ".join(_differences(there.get(k), now.get(k), "%s.%s" % (name, k))
                     for k in sorted(set(there) | set(now)) if there.get(k) != now.get(k))
  return "%s: %s there, %s now" % (name, _shown(there), _shown(now))


def _shown(value: Any) -> str:
  return "unset" if value is None else repr(value)


def write_config(config: SearchConfig) -> None:
  os.makedirs(config.results_dir, exist_ok=True)
  files.write_text(os.path.join(config.results_dir, "config.json"), config.to_json())
