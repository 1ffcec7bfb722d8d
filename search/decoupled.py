"""Decoupled evaluation in the search (``--evaluation=decoupled``, issue 33).

A network's inference time and energy do not depend on its trained weights
(``deploy.device.devices.WEIGHT_INDEPENDENCE``: fp32 and fp16, not int8), so
they can be measured on an untrained export in seconds, while its error
needs a training. A decoupled search records two kinds of evaluation in the
trial store (``store.KINDS``, the ``kind`` column):

* ``measure``: the cell network built, its constant tensors drawn at random
  (``deploy.export.randomize_constant_weights``), exported and measured
  (``search.trial``): time and energy, no error;
* ``train``: a trial as in a coupled search: trained (error), and its
  trained export measured too, which checks weight independence for free
  (``untrained_time_s`` beside ``time_s`` in results.csv, ``search.outputs``)
  and gives the design its time and energy when it was never measured
  untrained.

The optimizer is a decoupled strategy (``search.optimizer.decoupled``) over
two objective groups (``objective_groups``): ``error`` (a train evaluation)
and the hardware objectives (``time+energy``, a measure evaluation), with
each group's cost predicted from the recorded durations (a GP on log
seconds). ``observations`` rebuilds its inputs from the store at every
proposal, so a resumed search continues where it stopped: one row per design
with NaN where a group is not known, the durations, and per group the
designs pending (pending, running, and failed: a design whose evaluation of
a kind failed is not proposed for it again).

Slots (``fill_slots``): up to ``max_parallel`` train evaluations and one
measure evaluation are in flight at once; a free slot asks the strategy for
an evaluation of its kind (``allowed``), both free let it choose. With a
remote agent (``--device=remote``) measurements thus proceed on the device
while the host trains; on a local device the device lock
(``search.device_lock``) still keeps every measurement apart from training
and from other measurements. ``num_samples`` counts train evaluations (the
trained networks, as in a coupled search); the first ``num_initial`` are
uniform cells (``initial``), and measure evaluations are proposed while
train evaluations remain to be run or are running.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import threadpoolctl

from search import cellspace
from search import config as config_lib
from search import device_lock
from search import store as store_lib
from search import trial as trial_lib
from search.optimizer import decoupled as decoupled_lib
from search.optimizer.design import DesignSpace
from tea_keras import space

TRAIN, MEASURE = "train", "measure"


def objective_groups(objectives: Sequence[str]) -> decoupled_lib.ObjectiveGroups:
  """``error`` and the hardware objectives (``time+energy``), costs
  predicted from recorded durations."""
  hardware = [o for o in objectives if o != "error"]
  return decoupled_lib.ObjectiveGroups.parse(["error", "+".join(hardware)], list(objectives))


def group_kind(groups: decoupled_lib.ObjectiveGroups, group: int) -> str:
  """The evaluation kind that measures ``group``."""
  return TRAIN if groups.names[group] == "error" else MEASURE


def kind_group(groups: decoupled_lib.ObjectiveGroups, kind: str) -> int:
  return groups.names.index("error") if kind == TRAIN else 1 - groups.names.index("error")


@dataclasses.dataclass
class Observations:
  """A decoupled strategy's inputs from the store: ``x`` (n, d) one row per
  design, ``y`` (n, K) NaN where not measured, ``durations`` (n, G) seconds
  (NaN where not recorded), ``pending`` G arrays (m_g, d), ``keys`` the
  designs' canonical keys (n)."""
  x: np.ndarray
  y: np.ndarray
  durations: np.ndarray
  pending: list[np.ndarray]
  keys: list[str]


# The windows an evaluation worked in (search.trial): its cost is their sum,
# not its wall time, which counts the waits for the local device's lock.
_WINDOWS = (("build_start_time", "build_end_time"), ("train_start_time", "train_end_time"),
            ("measure_start_time", "measure_end_time"))


def duration(trial: Mapping[str, Any]) -> float:
  """Seconds an evaluation worked (its recorded windows, else its wall
  time; NaN when unknown)."""
  m = trial["metrics"]
  spans = [m[b] - m[a] for a, b in _WINDOWS if m.get(a) is not None and m.get(b) is not None]
  if spans:
    return max(float(sum(spans)), 1e-3)
  if trial.get("finished_at") and trial.get("started_at"):
    return max(float(trial["finished_at"]) - float(trial["started_at"]), 1e-3)
  return float("nan")


def observations(trials: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                 groups: decoupled_lib.ObjectiveGroups, dim: int) -> Observations:
  """``Observations`` of a decoupled search's ``trials`` (module doc): a
  design's hardware values are its measure evaluation's, else its train
  evaluation's trained-export measurement."""
  hw = [k for k, o in enumerate(objectives) if o != "error"]
  err = list(objectives).index("error")
  rows: dict[str, int] = {}
  x: list[Any] = []
  y: list[np.ndarray] = []
  d: list[np.ndarray] = []
  trained_hw: dict[int, list[float | None]] = {}
  pending: list[list[Any]] = [[] for _ in range(groups.num_groups)]
  for t in trials:
    kind = t.get("kind")
    if kind not in store_lib.KINDS:
      continue
    g = kind_group(groups, kind)
    if t["status"] != "done":
      pending[g].append(t["encoding"])
      continue
    key = store_lib.design_key(t["genotype_key"])
    if key not in rows:
      rows[key] = len(x)
      x.append(t["encoding"])
      y.append(np.full(len(objectives), np.nan))
      d.append(np.full(groups.num_groups, np.nan))
    i = rows[key]
    values = [trial_lib.objective_value(t["metrics"], o) for o in objectives]
    d[i][g] = duration(t)
    if kind == MEASURE:
      y[i][hw] = [np.nan if values[k] is None else values[k] for k in hw]
    else:
      y[i][err] = np.nan if values[err] is None else values[err]
      trained_hw[i] = [values[k] for k in hw]
  for i, values in trained_hw.items():
    if np.all(np.isnan(y[i][hw])) and all(v is not None for v in values):
      y[i][hw] = values
  return Observations(np.array(x, float).reshape(-1, dim),
                      np.array(y, float).reshape(-1, len(objectives)),
                      np.array(d, float).reshape(-1, groups.num_groups),
                      [np.array(p, float).reshape(-1, dim) for p in pending], list(rows))


def make_strategy(config: config_lib.SearchConfig, design_space: DesignSpace
                  ) -> decoupled_lib.DecoupledStrategy:
  """The decoupled strategy of ``config`` (``config.strategy`` among
  ``DECOUPLED_STRATEGIES``, refused by ``config.validate`` otherwise)."""
  return decoupled_lib.make_decoupled_strategy(config.strategy, design_space,
                                               objective_groups(config.objectives),
                                               seed=config.seed)


def propose_evaluation(store: store_lib.TrialStore, strategy: decoupled_lib.DecoupledStrategy,
                       config: config_lib.SearchConfig, design_space: DesignSpace,
                       kinds: Sequence[str], log: Callable[[str], object] = print
                       ) -> tuple[space.Genotype, str, str]:
  """The next evaluation, ``(genotype, kind, source)``, of one of ``kinds``
  and new to the store for its kind; proposed with the local device held
  shared (``search.device_lock``). While fewer than ``num_initial`` train
  evaluations exist, a train evaluation is a uniform cell (``initial``)."""
  with device_lock.shared(device_lock.for_config(config)):
    trials = store.trials()
    rng = np.random.default_rng([config.seed, len(trials)])
    trains = sum(t.get("kind") == TRAIN for t in trials)
    if TRAIN in kinds and trains < config.num_initial:
      genotype, kind, source = cellspace.sample_cell(design_space, rng), TRAIN, "initial"
    else:
      groups = strategy.groups
      obs = observations(trials, config.objectives, groups, design_space.dim)
      with threadpoolctl.threadpool_limits(limits=1):
        proposal = strategy.propose(obs.x, obs.y, obs.pending, obs.durations,
                                    allowed=[kind_group(groups, k) for k in kinds])
      kind = group_kind(groups, proposal.group)
      uniform = not np.isfinite(proposal.value)
      source = "random" if uniform else config.strategy
      if not uniform:
        log("  %s proposal (%s): fit %.2f s, acquisition %.2f s" % (
            config.strategy, kind, strategy.timings["fit_seconds"],
            strategy.timings["acquisition_seconds"]))
      genotype = space.Genotype.from_vector(np.rint(proposal.point).astype(int))

    def taken(key: str) -> bool:
      return store.has_key(store_lib.evaluation_key(key, kind))

    return cellspace.new_cell(design_space, genotype, rng, taken), kind, source


def fill_slots(store: store_lib.TrialStore, strategy: decoupled_lib.DecoupledStrategy,
               config: config_lib.SearchConfig, design_space: DesignSpace,
               in_flight: set[int], submit: Callable[[store_lib.Trial], None],
               log: Callable[[str], object]) -> None:
  """Keep up to ``max_parallel`` train evaluations and one measure
  evaluation in flight (module doc): pending evaluations first, then new
  ones; ``submit`` starts one (``search.loop``)."""
  while True:
    trials = store.trials()
    busy = {kind: sum(t["trial_id"] in in_flight and t.get("kind") == kind for t in trials)
            for kind in store_lib.KINDS}
    free = [k for k, limit in ((TRAIN, config.max_parallel), (MEASURE, 1)) if busy[k] < limit]
    waiting = [t for t in trials if t["status"] == "pending" and t["trial_id"] not in in_flight
               and t.get("kind") in free]
    if waiting:
      submit(waiting[0])
      continue
    if sum(t.get("kind") == TRAIN for t in trials) >= config.num_samples:
      # No new train evaluation; measurements go on while a training runs.
      free = [k for k in free if k == MEASURE] if busy[TRAIN] else []
    if not free:
      return
    genotype, kind, source = propose_evaluation(store, strategy, config, design_space, free, log)
    store.add(genotype, source, kind=kind)
