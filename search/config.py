"""The resolved configuration of a search, and the checks made before any work.

``SearchConfig`` is what ``search.run``'s ``main()`` builds from its flags; the
library (``search.loop``) takes it as an argument. It is written once to
``<results_dir>/config.json``; re-running against a results directory whose
config differs in an *identity* field (search space, objectives, data,
network size, training recipe, device and measurement settings) is refused,
while *run-control* fields (``num_samples`` to extend a search, parallelism,
executor, addresses) may change between runs.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

from tea_keras import space

OBJECTIVES = ("error", "time", "energy")
STRATEGIES = ("pesmo", "parego", "random")
DEVICES = ("cpu", "gpu", "jetson", "myriad", "remote")
RUNTIMES = ("keras", "onnxruntime", "openvino", "tensorrt")
POWER_SOURCES = ("auto", "none", "rapl", "nvml", "ina3221", "usb_meter")
EXECUTORS = ("local", "ray")
# Power sources that can exist on each local device kind ("auto" picks the
# first readable one, else "none").
DEVICE_POWER_SOURCES = {
    "cpu": ("rapl", "none"),
    "gpu": ("nvml", "none"),
    "jetson": ("ina3221", "none"),
    "myriad": ("usb_meter", "none"),
}
DEFAULT_RUNTIME = {"cpu": "onnxruntime", "gpu": "onnxruntime", "jetson": "tensorrt",
                   "myriad": "openvino", "remote": "onnxruntime"}
# Paper IV-B thresholds, used when --power_threshold_w is not given.
PAPER_THRESHOLD_W = {"gpu": 80.0, "jetson": 1.0, "myriad": 0.45}
RUN_CONTROL_FIELDS = ("num_samples", "max_parallel", "executor", "ray_address", "device_url",
                      "device_token_file", "results_dir", "trial_retries")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Everything a search needs; see ``search/flags.py`` for each field's help."""
  results_dir: str
  strategy: str = "pesmo"
  num_samples: int = 400
  num_initial: int = 10
  objectives: Tuple[str, ...] = OBJECTIVES
  seed: int = 0
  dataset: str = "cifar10"
  data_dir: Optional[str] = None
  recipe: Dict[str, object] = dataclasses.field(default_factory=dict)
  train_images: Optional[int] = None
  device: str = "cpu"
  runtime: Optional[str] = None
  power_source: str = "auto"
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
  search_space: Dict[str, object] = dataclasses.field(default_factory=lambda: {
      "num_blocks": space.NUM_BLOCKS, "ops": list(space.OPS),
      "cardinalities": list(space.cardinalities())})

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values) -> "SearchConfig":
    values = dict(values)
    values["objectives"] = tuple(values.get("objectives", OBJECTIVES))
    return cls(**values)

  def identity(self) -> dict:
    """The fields that define the experiment (see module doc)."""
    values = json.loads(self.to_json())
    return {k: v for k, v in values.items() if k not in RUN_CONTROL_FIELDS}


def _choice(name, value, allowed):
  if value not in allowed:
    raise ValueError("--%s=%s is not supported. Expected one of: %s."
                     % (name, value, ", ".join(allowed)))


def validate(config: SearchConfig) -> None:
  """Refuse invalid combinations before any work, with one clear message."""
  _choice("strategy", config.strategy, STRATEGIES)
  _choice("device", config.device, DEVICES)
  _choice("executor", config.executor, EXECUTORS)
  _choice("power_source", config.power_source, POWER_SOURCES)
  if config.runtime is not None:
    _choice("runtime", config.runtime, RUNTIMES)
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
  if config.device == "remote":
    if not config.device_url:
      raise ValueError("--device=remote needs --device_url (the address of "
                       "`python -m deploy.agent` on the device).")
    if not config.device_token_file or not os.path.isfile(config.device_token_file):
      raise ValueError("--device=remote needs --device_token_file naming a readable file "
                       "with the agent's token; received %r." % (config.device_token_file,))
  elif config.power_source not in ("auto",) + DEVICE_POWER_SOURCES[config.device]:
    raise ValueError("--power_source=%s cannot measure --device=%s; expected one of: %s."
                     % (config.power_source, config.device,
                        ", ".join(("auto",) + DEVICE_POWER_SOURCES[config.device])))
  if ("energy" in config.objectives and config.power_source == "none"
      and not config.optional_energy):
    raise ValueError("--objectives includes energy but --power_source=none measures no "
                     "energy on --device=%s; drop energy from --objectives or name a power "
                     "source." % config.device)


def check_results_dir(config: SearchConfig) -> bool:
  """Refuse a results dir of another experiment. Returns True when resuming."""
  path = os.path.join(config.results_dir, "config.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    try:
      previous = SearchConfig.from_dict(json.load(f)).identity()
    except (ValueError, TypeError) as e:
      raise ValueError("%s is not a tea-keras search config (%s); use another "
                       "--results_dir." % (path, e))
  current = config.identity()
  diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
  if diff:
    details = "; ".join("%s: %r there, %r now" % (k, previous.get(k), current.get(k))
                        for k in diff)
    raise ValueError("--results_dir=%s holds another experiment (%s). Use a new "
                     "--results_dir, or the same settings to resume." % (config.results_dir, details))
  return True


def write_config(config: SearchConfig) -> None:
  os.makedirs(config.results_dir, exist_ok=True)
  path = os.path.join(config.results_dir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(config.to_json())
  os.replace(tmp, path)
