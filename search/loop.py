"""The search loop: propose -> train -> export and measure -> record -> update.

``run_search(config)`` drives one search to ``config.num_samples`` trials
(``done`` + ``failed``), keeping ``config.max_parallel`` trials in flight:

0. Before any trial: the target's capabilities (``resolve``), the results
   dir's experiment (``config.check_results_dir``), the data set
   (``check_data``: loaded and checked once here, so that a corrupt
   ``--data_dir`` stops the search instead of failing every trial) and, for
   ``--executor=ray``, the cluster (``check_cluster``: nodes, GPUs, shared
   results dir, authentication) are checked, nothing written yet; the run
   then holds the results dir's lock (``store.RunLock``,
   one search per directory) and the driver renews the leases of its running
   trials (``store.LeaseKeeper``).
1. Trials found ``running`` (a crash or ``kill -9`` interrupted them) go back
   to ``pending`` once their lease has expired (``_take_back_unfinished``),
   and with ``retry_failed`` so do ``failed`` ones; ``pending`` trials are
   submitted first, with their own genotypes, so nothing is proposed twice
   and nothing done is redone.
2. New trials: the first ``num_initial`` are uniform samples (seeded by the
   search seed and the trial's index, so a resumed search proposes the same
   ones; uniform over the cells within the known budgets when some are set,
   ``search.budgets``: the design space carries them as its constraint, which
   every strategy honours, so no cell over budget is ever trained, and a
   budget no cell meets is refused before any work); then the strategy proposes from the ``done`` trials, conditioning
   on the trials still in flight (``pending_x``). A proposal whose canonical
   genotype key is already in the store (the two branches of a block commute)
   is mutated until it is new.
3. A trial that comes back failed is recorded with its error; one whose device
   was unreachable, or whose attempt was lost with its Ray node or worker
   (``search.executors``), is retried up to ``trial_retries`` times, each
   retry recorded in the store with its reason and node (``retries``; the
   ``retried`` column of results.csv) and said on the console. A trial's own
   failure is not retried. Failures never stop the search. Each finished
   trial records where it trained and was measured (``store.WHERE_COLUMNS``).
   A ``done`` trial's training checkpoints are deleted unless
   ``keep_checkpoints`` (its ``model.keras`` is what later steps read).
4. After every trial, ``search.outputs.refresh`` rewrites the CSVs, the
   summary and the plots, and a progress line with an ETA is logged.

With ``evaluation="decoupled"`` (``search.decoupled``) a trial is a
``measure`` evaluation (an untrained export's time and energy) or a
``train`` one, each in its own slots, and the optimizer is a decoupled
strategy; ``num_samples`` then counts train evaluations.

The driver's own work, proposing (GP fit, acquisition) and writing outputs
and plots, holds the local device's machine-wide lock shared, as training
does (``search.device_lock``): none of it runs while a trial, or another
search on this machine, measures.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING

import numpy as np
import threadpoolctl

from deploy import target
from search import budgets as budgets_lib
from search import cellspace
from search import config as config_lib
from search import decoupled
from search import device_lock
from search import executors
from search import outputs
from search import store as store_lib
from search import trial as trial_lib
from search.optimizer import strategies
from tea_keras import data
from tea_keras import files
from tea_keras import recipes
from tea_keras import space

if TYPE_CHECKING:
  from search.optimizer.base import Strategy
  from search.optimizer.design import DesignSpace

# The training checkpoints' folder in a model_dir (tea_keras.training.CHECKPOINT_DIR,
# its model_dir contract; not imported here, which would import Keras into the driver).
CHECKPOINT_DIR = "checkpoints"


def resolve(config: config_lib.SearchConfig,
            log: Callable[[str], object] = print) -> config_lib.SearchConfig:
  """Ask the target what it can measure before any work (``deploy.target``):
  adopt ``auto`` values (runtime, power source), the paper's threshold, the
  artifact format and ONNX opset to send, and drop energy (``optional_energy``)
  when no power source reads. Raises ``ValueError`` (a ``TargetError``) naming
  what is missing when the experiment cannot be measured there: a precision
  the target cannot deploy, a static-batch device's partial batch, and for a
  remote agent fewer images than ``measure_images``, images that are not
  this search's validation images, or no calibration images for TensorRT
  int8."""
  config_lib.validate(config)
  token, validation = None, None
  if config.device == "remote":
    with open(config.device_token_file) as f:  # type: ignore[arg-type]  # validate: set for remote
      token = f.read().strip()
    validation = _validation_images(config)
  plan = target.plan_measurement(
      config.device, config.runtime, config.power_source, config.objectives,
      config.optional_energy, config.power_threshold_w, device_url=config.device_url,
      token=token, ca_file=config.device_ca_file, power_options=config.power_options,
      precisions=config.precisions, measure_images=config.measure_images,
      batch_size=config.measure_batch_size, validation_images=validation,
      data_hint="--dataset=%s%s%s" % (
          config.dataset, " --data_dir=%s" % config.data_dir if config.data_dir else "",
          " --split_seed=%d" % config.seed if config.seed else ""))
  for notice in plan.notices:
    log("notice: %s" % notice)
  changes = dict(runtime=plan.runtime, power_source=plan.power_source,
                 power_threshold_w=plan.threshold_w, device_kind=plan.device_kind,
                 artifact_format=plan.artifact_format, onnx_opset=plan.onnx_opset)
  if "energy" in config.objectives and not plan.power_readable:
    log("notice: no readable power source on --device=%s (%s); energy is dropped from the "
        "objectives (time and error remain)." % (config.device, plan.device_kind))
    changes["objectives"] = tuple(o for o in config.objectives if o != "energy")
  resolved = config_lib.SearchConfig.from_dict(dict(config.__dict__, **changes))
  config_lib.validate(resolved)
  return resolved


def _validation_images(config: config_lib.SearchConfig) -> np.ndarray:
  """The search's normalized validation images, as a remote agent must hold
  them (``deploy.measure --write_data``)."""
  return data.normalize(trial_lib.load_splits(config).x_val)


class Progress:
  """Per-trial progress lines with an ETA from this run's trial rate."""

  def __init__(self, total: int, already: int, max_parallel: int, log: Callable[[str], object],
               num_initial: int = 0) -> None:
    self.total, self.already, self.max_parallel, self.log = total, already, max_parallel, log
    self.num_initial = num_initial
    self.start = time.time()
    self.finished_here = 0

  def trial_finished(self, trial_id: int, status: str, metrics: Mapping[str, Any],
                     objectives: Sequence[str], summary: Mapping[str, Any]) -> None:
    self.finished_here += 1
    count = self.already + self.finished_here
    elapsed = time.time() - self.start
    remaining = max(self.total - count, 0)
    eta = elapsed / self.finished_here * remaining
    values = " ".join("%s=%s" % (o, _fmt(trial_lib.objective_value(metrics, o)))
                      for o in objectives)
    # Until the initial trials are done the reference point moves with the
    # trials (search.outputs), so an HV then would not compare with the later
    # ones (it may even fall): none is shown before it is frozen.
    if summary.get("reference_point_frozen"):
      feasible = (summary.get("feasibility") or {}).get("feasible_hypervolume")
      hv = "HV %s%s" % (_fmt(summary.get("final_hypervolume")),
                        "" if feasible is None else ", under the budget %s" % _fmt(feasible))
    else:
      hv = "HV after the %d initial trials" % self.num_initial
    self.log("[trial %d/%d] #%d %s %s | %s | elapsed %s, ETA %s"
             % (count, self.total, trial_id, status, values, hv, _hms(elapsed), _hms(eta)))
    if metrics.get("contended"):
      self.log("  warning: trial #%d's time was measured while other processes used %s of the "
               "CPUs (after %s re-measurement(s)); it is flagged `contended` in results.csv. "
               "Re-measure the front on a quiet machine: python -m search.reports "
               "--figure=remeasure --results_dir=..." % (
                   trial_id, "%.0f%%" % (100 * metrics["other_cpu_share"])
                   if metrics.get("other_cpu_share") is not None else "much",
                   metrics.get("remeasured", 0)))


class SearchStopped(RuntimeError):
  """Too many consecutive trials failed with the same cause."""


class FailureStreak:
  """Counts consecutive failures with the same cause (the error's first line
  with numbers and paths blanked, so that the same fault in two trials
  compares equal); ``record`` raises ``SearchStopped`` at ``limit``."""

  def __init__(self, limit: int) -> None:
    self.cause: str | None
    self.limit, self.cause, self.count = limit, None, 0

  @staticmethod
  def cause_of(error: str | None) -> str:
    first = (error or "unknown error").strip().splitlines()[0] if error else "unknown error"
    first = re.sub(r"(/[^\s:'\"]+)+", "PATH", first)
    return re.sub(r"\d+(\.\d+)?", "N", first)

  def record(self, status: str, error: str | None) -> None:
    if status != "failed":
      self.cause, self.count = None, 0
      return
    cause = self.cause_of(error)
    self.count = self.count + 1 if cause == self.cause else 1
    self.cause = cause
    if self.limit and self.count >= self.limit:
      raise SearchStopped("stopped after %d consecutive trials failed with the same cause: %s "
                          "(--max_consecutive_failures=%d). Fix it, then run again with "
                          "--retry_failed." % (self.count, (error or "").strip().splitlines()[0]
                                               if error else "unknown error", self.limit))


def _fmt(value: float | None) -> str:
  return "-" if value is None else "%.4g" % value


def _hms(seconds: float) -> str:
  seconds = int(round(seconds))
  return "%dh%02dm%02ds" % (seconds // 3600, seconds % 3600 // 60, seconds % 60) \
      if seconds >= 3600 else "%dm%02ds" % (seconds // 60, seconds % 60)


def propose_genotype(store: store_lib.TrialStore, strategy: Strategy | None,
                     config: config_lib.SearchConfig, design_space: DesignSpace,
                     log: Callable[[str], object] = print) -> tuple[space.Genotype, str]:
  """The next genotype (and its source tag), new to the store; proposed with
  the local device held shared (``search.device_lock``)."""
  with device_lock.shared(device_lock.for_config(config)):
    return _propose(store, strategy, config, design_space, log)


def _propose(store: store_lib.TrialStore, strategy: Strategy | None,
             config: config_lib.SearchConfig, design_space: DesignSpace,
             log: Callable[[str], object]) -> tuple[space.Genotype, str]:
  trials = store.trials()
  index = len(trials)
  rng = np.random.default_rng([config.seed, index])
  source = "initial"
  if index >= config.num_initial:
    ids, y = outputs.objective_matrix(trials, config.objectives)
    if len(ids) >= 2:
      by_id = {t["trial_id"]: t for t in trials}
      x = np.array([by_id[i]["encoding"] for i in ids], float)
      pending = np.array([t["encoding"] for t in trials if t["status"] in ("pending",
                                                                           "running")], float)
      # One BLAS thread: the GP's small dense algebra runs faster so, and the
      # trial workers keep the other cores.
      assert strategy is not None
      with threadpoolctl.threadpool_limits(limits=1):
        vector = strategy.propose(x, y, pending.reshape(-1, design_space.dim))
      log("  %s proposal: fit %.2f s, acquisition %.2f s" % (
          config.strategy, strategy.timings["fit_seconds"], strategy.timings["acquisition_seconds"]))
      source = config.strategy
      genotype = space.Genotype.from_vector(np.rint(vector).astype(int))
    else:
      source = "random"  # too few successful trials to fit a model yet
  if source in ("initial", "random"):
    genotype = cellspace.sample_cell(design_space, rng)
  return cellspace.new_cell(design_space, genotype, rng, store.has_key), source


def budget_space(design_space: DesignSpace, config: config_lib.SearchConfig,
                 log: Callable[[str], object] = print) -> DesignSpace:
  """``design_space`` restricted to the cells within ``config``'s known
  budgets (unchanged without any); raises ``budgets.InfeasibleBudgetError``
  when no cell meets them."""
  if not budgets_lib.has_known(config):
    return design_space
  recipe = recipes.search_recipe(**config.recipe)
  budgets = budgets_lib.budgets_of(config)
  classes = data.num_classes(config.dataset, config.data_dir)
  fraction = budgets_lib.check_space(budgets, recipe.num_cells, recipe.filters,
                                     config.precisions, seed=config.seed, num_classes=classes)
  fn, text = budgets_lib.constraint(budgets, recipe.num_cells, recipe.filters,
                                    config.precisions, num_classes=classes)
  log("budget: %s; %.1f%% of %d uniform cells meet it (N=%d, F=%d): only those are trained."
      % (text, 100 * fraction, budgets_lib.CHECK_DRAWS, recipe.num_cells, recipe.filters))
  return design_space.with_constraint(fn, text)


def measured_bounds(config: config_lib.SearchConfig,
                    log: Callable[[str], object] = print) -> dict[str, Any]:
  """Strategy options for ``config``'s measured budgets: PESMO gets
  ``objective_bounds`` (--max_time_s on "time", --max_energy_j on "energy",
  raw units; ``search.optimizer.feasibility``); the other strategies ignore
  them when proposing (logged once) and the pairs over them are only marked
  infeasible after measurement (``budgets.pair_violations``)."""
  by_objective = {"time": config.max_time_s, "energy": config.max_energy_j}
  bounds = [by_objective.get(o) for o in config.objectives]
  if all(b is None for b in bounds):
    return {}
  if config.strategy == "pesmo":
    return {"objective_bounds": bounds}
  log("note: --strategy=%s does not model the measured budgets (only pesmo does); pairs "
      "over them are marked infeasible after measurement." % config.strategy)
  return {}


def _spec(config: config_lib.SearchConfig, trial: Mapping[str, Any],
          attempt: int | None = None) -> dict[str, Any]:
  """A trial's spec; for Ray with absolute paths (a node's working
  directory is not the driver's)."""
  values = dict(config.__dict__)
  if config.executor == "ray":
    values["results_dir"] = os.path.abspath(config.results_dir)
  spec = {"trial_id": trial["trial_id"], "genotype": trial["genotype"],
          "trial_dir": _trial_dir(values["results_dir"], trial["trial_id"]), "config": values,
          "attempt": attempt}
  if trial.get("kind"):
    spec["kind"] = trial["kind"]
  return spec


def _trial_dir(results_dir: str, trial_id: int) -> str:
  return os.path.join(results_dir, "trials", "%04d" % trial_id)


def _gpus_per_trial(config: config_lib.SearchConfig) -> float:
  return 1.0 / config.max_parallel if config.device == "gpu" else 0.0


def check_cluster(config: config_lib.SearchConfig,
                  log: Callable[[str], object] = print) -> list[dict[str, Any]] | None:
  """The cluster checks of a ``--executor=ray`` search, before anything is
  written (``search.executors.check_cluster``; nothing for local workers):
  raises ``executors.ClusterError`` naming what to do."""
  if config.executor != "ray":
    return None
  return executors.check_cluster(config.ray_address, config.results_dir, config.max_parallel,
                                 single_node=config.device != "remote",
                                 gpus_per_trial=_gpus_per_trial(config), log=log)


def run_search(config: config_lib.SearchConfig,
               log: Callable[[str], object] = print) -> dict[str, Any]:
  """Run (or resume) the search described by ``config``; returns the summary.

  Refuses before any trial: a results dir of another experiment
  (``ValueError``), a data set no trial could train on
  (``tea_keras.data.DataError``), a Ray cluster that cannot run it
  (``executors.ClusterError``), a results dir another live search holds
  (``store.ResultsDirBusyError``) and a damaged trial store
  (``store.CorruptStoreError``).
  """
  config_lib.validate(config)
  design_space = budget_space(cellspace.cell_space(), config, log)  # refused before any work
  if config.device_kind is None:  # not yet checked against the target
    config = resolve(config, log)
  resuming = config_lib.check_results_dir(config)
  check_data(config, log)
  check_cluster(config, log)
  with store_lib.RunLock.acquire(config.results_dir):
    store = store_lib.TrialStore(os.path.join(config.results_dir, "trials.db"))
    try:
      config_lib.write_config(config)
      return _search(store, config, resuming, log, design_space)
    finally:
      store.close()


def check_data(config: config_lib.SearchConfig, log: Callable[[str], object] = print) -> None:
  """Load ``config``'s data set once, in the driver, and refuse with a
  ``DataError`` naming the problem what every trial would fail on: a
  missing, corrupt or crafted ``--data_dir`` (``tea_keras.data.load``),
  images or labels of the wrong shape, dtype or range, fewer training images
  (after ``train_images``) than one batch (``tea_keras.data.check_splits``).
  A CIFAR-10 folder of other than 50,000 + 10,000 images gets a notice."""
  splits = data.load(config.dataset, data_dir=config.data_dir, seed=config.seed)
  if config.dataset == "cifar10" and (len(splits.y_train) + len(splits.y_val),
                                      len(splits.y_test)) != (50000, 10000):
    log("notice: the CIFAR-10 data (%s) holds %d training and %d test images; CIFAR-10 has "
        "50,000 and 10,000." % (config.data_dir or "Keras cache",
                                len(splits.y_train) + len(splits.y_val), len(splits.y_test)))
  if config.dataset == "folder":
    log("data: %s: %d classes (%s); %d training, %d validation, %d test images."
        % (splits.source, splits.num_classes, ", ".join(splits.class_names),
           len(splits.y_train), len(splits.y_val), len(splits.y_test)))
    if {"time", "energy"} & set(config.objectives) and len(splits.y_val) < config.measure_images:
      raise data.DataError("--measure_images=%d: the image folder %s has only %d validation "
                           "images; expected --measure_images at most %d (and "
                           "--measure_batch_size too), or more images."
                           % (config.measure_images, splits.source, len(splits.y_val),
                              len(splits.y_val)))
  if config.train_images:
    splits = dataclasses.replace(splits, x_train=splits.x_train[:config.train_images],
                                 y_train=splits.y_train[:config.train_images])
  data.check_splits(splits, min_train=recipes.search_recipe(**config.recipe).batch_size)


def _search(store: store_lib.TrialStore, config: config_lib.SearchConfig, resuming: bool,
            log: Callable[[str], object],
            design_space: DesignSpace | None = None) -> dict[str, Any]:
  requeued = _take_back_unfinished(store, log)
  retried = store.requeue_failed() if config.retry_failed else []
  decoupled_search = config.evaluation == "decoupled"
  log("%s %ssearch in %s: %d/%d trials recorded%s%s."
      % ("resuming" if resuming else "starting", "decoupled " if decoupled_search else "",
         config.results_dir, _trained_count(store, config), config.num_samples,
         ", re-running interrupted trial(s) %s" % requeued if requeued else "",
         ", re-running failed trial(s) %s (--retry_failed)" % retried if retried else ""))
  if design_space is None:
    design_space = budget_space(cellspace.cell_space(), config, log)
  # Time and energy are positive and span orders of magnitude: their GPs model
  # log values; the error stays linear.
  log_objectives = tuple(o in ("time", "energy") for o in config.objectives)
  strategy: Any
  if decoupled_search:  # its time and energy GPs model log values themselves
    strategy = decoupled.make_strategy(config, design_space)
  else:
    strategy = strategies.make_strategy(config.strategy, design_space, len(config.objectives),
                                        seed=config.seed, log_objectives=log_objectives,
                                        **measured_bounds(config, log))
  # A decoupled search has a worker more: its measure evaluation's (search.decoupled).
  executor = executors.make_executor(
      config.executor, config.max_parallel + int(decoupled_search), config.ray_address,
      gpus_per_trial=_gpus_per_trial(config), single_node=config.device != "remote")
  nonce = _storage_nonce(config) if config.executor == "ray" else None
  progress = Progress(config.num_samples, _trained_count(store, config), config.max_parallel,
                      log, config.num_initial)
  try:
    with store_lib.LeaseKeeper(store.path):
      try:
        summary = _drive(store, strategy, config, design_space, executor, progress, log, nonce)
      finally:
        executor.shutdown()
  finally:
    store.release_leases()  # its trials are stopped: the next run takes them back at once
  kinds = summary.get("kinds")  # a decoupled search's evaluations
  log("search finished: %d trials%s, final hypervolume %s; outputs in %s"
      % (summary["trials"], " (%s)" % ", ".join(
          "%d %s" % (sum(counts.values()), kind) for kind, counts in sorted(kinds.items()))
         if kinds else "", _fmt(summary["final_hypervolume"]), config.results_dir))
  report_front(store.trials(), config, log)
  return summary


def _trained_count(store: store_lib.TrialStore, config: config_lib.SearchConfig) -> int:
  """Final trials; in a decoupled search, final train evaluations."""
  trials = store.trials(store_lib.FINAL)
  if config.evaluation == "decoupled":
    return sum(t.get("kind") == decoupled.TRAIN for t in trials)
  return len(trials)


def report_front(trials: Sequence[dict[str, Any]], config: config_lib.SearchConfig,
                 log: Callable[[str], object] = print) -> None:
  """Print the front as a table and the next steps for its best trade-offs."""
  front = outputs.front_points(trials, config)
  if not front:
    log("no trial has every objective measured: no front yet (see results.csv).")
    return
  log("")
  log("Pareto front (%d of %d trials; time and energy per %d images, ms/img per image):"
      % (len({p.trial_id for p in front}), len(trials), config.measure_images))
  log(outputs.front_table(front, config.objectives, config.measure_images))
  if any(p.contended for p in front):
    log("contended: timed while other processes used the CPUs; re-measure on a quiet "
        "machine: python -m search.reports --figure=remeasure --results_dir=%s"
        % config.results_dir)
  log("")
  log("Next steps for the best trade-offs:")
  for line in outputs.next_commands(front, config):
    log(line)


def _drive(store: store_lib.TrialStore, strategy: Strategy | None, config: config_lib.SearchConfig,
           design_space: DesignSpace, executor: executors.Executor, progress: Progress,
           log: Callable[[str], object], nonce: str | None) -> dict[str, Any]:
  """Keep the executor's slots full and record what comes back until
  ``num_samples`` trials are final; returns the last summary."""
  summary = _refresh(store, config)
  in_flight: set[int] = set()
  streak = FailureStreak(config.max_consecutive_failures)
  while True:
    _fill_slots(store, strategy, config, design_space, executor, in_flight, log, nonce)
    if executor.in_flight == 0:
      return summary
    for result in executor.wait():
      in_flight.discard(result["trial_id"])
      summary, retried = _record(store, config, result, log)
      if retried:  # back to pending: not finished, no progress line
        continue
      if _kind(store, result["trial_id"]) == decoupled.MEASURE:
        log("  measured #%d untrained: %s" % (result["trial_id"], " ".join(
            "%s=%s" % (o, _fmt(trial_lib.objective_value(result["metrics"], o)))
            for o in config.objectives if o != "error")) if result["status"] == "done"
            else "  measure evaluation #%d failed" % result["trial_id"])
      else:
        progress.trial_finished(result["trial_id"], result["status"], result["metrics"],
                                config.objectives, summary)
      if not result.get("retryable") or result["status"] != "failed":
        streak.record(result["status"], result["error"])


def _kind(store: store_lib.TrialStore, trial_id: int) -> str | None:
  """The ``kind`` of trial ``trial_id`` (None: a coupled trial)."""
  return next((t.get("kind") for t in store.trials() if t["trial_id"] == trial_id), None)


def _take_back_unfinished(store: store_lib.TrialStore, log: Callable[[str], object],
                          sleep: Callable[[float], object] = time.sleep) -> list[int]:
  """Put trials an earlier run left ``running`` back to ``pending`` once
  their lease has expired: at once after a clean stop (``release_leases``),
  within ``store.LEASE_SECONDS`` after a crash or ``kill -9`` (waited for
  here). A lease renewed meanwhile belongs to a live search writing this
  directory although we hold its lock (``flock`` not working across the
  machines sharing it): refused. Returns the ids put back."""
  requeued = store.requeue_unfinished()
  leased = store.trials(["running"])
  if not leased:
    return requeued
  wait_s = min(max(t["lease_until"] for t in leased) - time.time(), store_lib.LEASE_SECONDS)
  log("waiting %.0f s for the lease(s) of trial(s) %s, held by %s (an interrupted run), to "
      "expire before re-running them" % (max(wait_s, 0.0), [t["trial_id"] for t in leased],
                                         ", ".join(sorted({t["lease_holder"] for t in leased}))))
  sleep(max(wait_s, 0.0) + 0.5)
  requeued += store.requeue_unfinished()
  still = store.trials(["running"])
  if still:
    raise store_lib.ResultsDirBusyError(
        "Trial(s) %s in %s are still leased by %s, which renews them although this run holds "
        "the lock %s: another search writes this results directory (is it on a file system "
        "whose flock does not work across machines?). Stop that search first."
        % ([t["trial_id"] for t in still], store.path,
           ", ".join(sorted({t["lease_holder"] for t in still})),
           os.path.join(os.path.dirname(store.path), store_lib.LOCK_NAME)))
  return requeued


def _storage_nonce(config: config_lib.SearchConfig) -> str:
  """Leave a nonce in the results dir that Ray tasks check (``search.trial``)."""
  nonce = os.urandom(8).hex()
  path = os.path.join(config.results_dir, ".storage_check")
  files.write_text(path, nonce)
  return nonce


def _fill_slots(store: store_lib.TrialStore, strategy: Strategy | None,
                config: config_lib.SearchConfig, design_space: DesignSpace,
                executor: executors.Executor, in_flight: set[int], log: Callable[[str], object],
                nonce: str | None = None) -> None:
  def submit(trial: store_lib.Trial) -> None:
    _submit(store, config, executor, trial, in_flight, log, nonce)

  if config.evaluation == "decoupled":
    decoupled.fill_slots(store, strategy, config, design_space, in_flight, submit, log)  # type: ignore[arg-type]  # a DecoupledStrategy
    return
  while executor.in_flight < config.max_parallel:
    waiting = [t for t in store.trials(["pending"]) if t["trial_id"] not in in_flight]
    if not waiting:
      if store.count() >= config.num_samples:
        return
      genotype, source = propose_genotype(store, strategy, config, design_space, log)
      store.add(genotype, source)
      continue
    submit(waiting[0])


def _submit(store: store_lib.TrialStore, config: config_lib.SearchConfig,
            executor: executors.Executor, trial: store_lib.Trial, in_flight: set[int],
            log: Callable[[str], object], nonce: str | None) -> None:
  """Start ``trial`` (running, in flight, its spec to the executor)."""
  store.mark_running(trial["trial_id"])
  in_flight.add(trial["trial_id"])
  attempt = trial["attempts"] + 1
  log("%s #%d (%s%s): %s" % (trial.get("kind") or "trial", trial["trial_id"], trial["source"],
                             ", attempt %d" % attempt if trial["retries"] else "",
                             trial["genotype"]))
  spec = _spec(config, trial, attempt)
  if nonce:
    spec["storage_nonce"] = nonce
  executor.submit(spec)


def _record(store: store_lib.TrialStore, config: config_lib.SearchConfig, result: dict[str, Any],
            log: Callable[[str], object]) -> tuple[dict[str, Any], bool]:
  """Record ``result``; returns ``(summary, retried)``: ``retried`` when the
  trial went back to ``pending`` to be retried (a lost attempt)."""
  trial_id = result["trial_id"]
  running = [t for t in store.trials(["running"]) if t["trial_id"] == trial_id]
  where = _where(config, running[0] if running else None, result)
  error = result["error"]
  if result["status"] == "failed" and result.get("retryable") and running:
    reason = result.get("retry_reason") or (error or "").strip().splitlines()[0]
    node = _node_text(where)
    if len(running[0]["retries"]) < config.trial_retries:
      count = store.requeue(trial_id, reason=reason, node=node)
      log("trial #%d: attempt %d%s lost: %s; retrying it (retry %d of %d)"
          % (trial_id, running[0]["attempts"], " on " + node if node else "", reason, count,
             config.trial_retries))
      return _refresh(store, config), True
    error = "%s (after %d retries: --trial_retries=%d)" % (error, len(running[0]["retries"]),
                                                          config.trial_retries)
  if result["status"] == "failed":
    log("trial #%d failed: %s" % (trial_id, (error or "").splitlines()[0]))
  store.finish(trial_id, result["status"], result["metrics"], result["artifacts"], error,
               where={k: v for k, v in where.items() if k in store_lib.WHERE_COLUMNS})
  if result["status"] == "done" and not config.keep_checkpoints:
    model_dir = result["artifacts"].get("model_dir")
    if model_dir:  # a failed trial keeps them: --retry_failed resumes from there
      shutil.rmtree(os.path.join(model_dir, CHECKPOINT_DIR), ignore_errors=True)
  return _refresh(store, config), False


def _where(config: config_lib.SearchConfig, trial: Mapping[str, Any] | None,
           result: Mapping[str, Any]) -> dict[str, Any]:
  """Where the attempt behind ``result`` ran: the result's own ``where``, or
  for an attempt lost with its worker what its ``worker.json`` says
  (``search.trial``), if it is this attempt's."""
  where = dict(result.get("where") or {})
  if not where.get("train_host") and trial is not None:
    worker = trial_lib.read_worker(_trial_dir(os.path.abspath(config.results_dir),
                                              trial["trial_id"]))
    if worker and worker.get("attempt") == trial["attempts"]:
      where.update(train_host=worker.get("hostname"), train_node=worker.get("node_id"))
  return {k: v for k, v in where.items() if v}


def _node_text(where: Mapping[str, Any]) -> str | None:
  """``host (node 1a2b3c4d)``, ``host`` or None."""
  host, node = where.get("train_host"), where.get("train_node")
  if node:
    return "%s (node %s)" % (host, node[:8])
  return host


def _refresh(store: store_lib.TrialStore, config: config_lib.SearchConfig) -> dict[str, Any]:
  """``search.outputs.refresh``, with the local device held shared."""
  with device_lock.shared(device_lock.for_config(config)):
    trials = store.trials()
    ref = outputs.freeze_reference_point(store, trials, config.objectives, config.num_initial)
    return outputs.refresh(config.results_dir, trials, config.objectives, ref,
                           budgets_lib.budgets_of(config))
