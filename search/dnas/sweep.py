"""The DNAS sweep: one found network per (size target, lambda_E), measured.

For a seed network (ResNet-8 of MLPerf Tiny v0.5, or a tea-keras cell
network) and every point of the sweep:

1. warm-up (once per sweep, ``<results_dir>/warmup``): the seed trained for
   ``warmup_epochs`` (``tea_keras.training.train_model``: resumable);
2. search: the warmed seed as a masked supernet (``tea_keras.dnas``) trained
   ``search_epochs`` with the complexity loss
       L = L_task + s (lambda_M |M - t M_seed| / M_seed + lambda_E E / E_seed)
   (``loss="absolute"``, the paper's; ``"hinge"``: max(0, M - t M_seed) and
   the cost term as is), M the parameters, E the cost model's value (MACs
   per image, or the measured latency table: ``cost_table``), the strength
   s ramped over ``ramp_epochs``; the lambdas are per seed size and cost, so
   one set of values suits any seed;
3. projection: if the binarized network is still above its target, the alive
   channels with the smallest masks are dropped (shared groups as one) until
   the exported parameter count meets it; every found network meets its size
   target, counted on the exported model (``Point.size_target``);
4. export (a plain Keras model, ``tea_keras.dnas.export``) and fine-tuning for
   ``finetune_epochs``;
5. deployment and measurement on the search's target with the paper's
   protocol (``search.trial.measure_precisions``: the export, its deployed
   error, time and energy), as a search's trial.

The baseline every user tries first, ``method="uniform"``: the seed scaled
uniformly in width (the largest multiplier whose network meets the size
target), trained from scratch for the same number of epochs in all, measured
the same way.

Each point is a trial of the results directory's store (``trials.db``), so a
sweep resumes per point: a finished point is kept, an interrupted one runs
again; ``results.csv``, ``pareto.csv``, ``summary.json`` and the plots are the
search's (``search.outputs``), with the point's size target, lambdas, loss,
cost model and measured size among each row's metrics; ``dnas_fronts.png``
draws the front of each size target.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from deploy import pipeline
from search import device_lock
from search import outputs
from search import store as store_lib
from search import trial as trial_lib
from search.dnas import cost_table
from tea_keras import data
from tea_keras import errors
from tea_keras import recipes
from tea_keras import space

SEEDS = ("resnet8", "cell")
LOSSES = ("absolute", "hinge")
COST_MODELS = ("macs", "measured")


@dataclasses.dataclass(frozen=True)
class DnasSettings:
  """The sweep's own settings (``__main__`` flags); see the module doc."""
  seed_model: str = "resnet8"
  genotype: Optional[str] = None
  size_targets: Tuple[float, ...] = (0.75, 0.5, 0.25)
  lambda_energy: Tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)
  lambda_size: float = 10.0
  loss: str = "absolute"
  cost_model: str = "macs"
  warmup_epochs: int = 2
  search_epochs: int = 3
  finetune_epochs: int = 2
  ramp_epochs: int = 1
  mask_speed: float = 10.0
  baseline: bool = True
  table_fractions: Tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)

  def validate(self) -> None:
    if self.seed_model not in SEEDS:
      raise errors.invalid_value("seed_model", "one of %s" % "|".join(SEEDS), self.seed_model)
    if self.seed_model == "cell" and not self.genotype:
      raise errors.invalid_value("genotype",
                                 "a cell for --seed_model=cell (a genotype string, e.g. from a "
                                 "search's pareto.csv)", shown="genotype=None")
    for name, allowed in (("loss", LOSSES), ("cost_model", COST_MODELS)):
      if getattr(self, name) not in allowed:
        raise errors.invalid_value(name, "one of %s" % "|".join(allowed), getattr(self, name))
    if not self.size_targets or not all(0 < t <= 1 for t in self.size_targets):
      raise errors.invalid_value("size_targets", "fractions of the seed's size in (0, 1]",
                                 self.size_targets)
    if not self.lambda_energy or min(self.lambda_energy) < 0 or self.lambda_size < 0:
      raise ValueError("Invalid value for arguments `lambda_energy`, `lambda_size`. Expected "
                       "numbers >= 0. Received lambda_energy=%r lambda_size=%r"
                       % (self.lambda_energy, self.lambda_size))
    if (not self.table_fractions or not all(0 < f <= 1 for f in self.table_fractions)
        or 1.0 not in self.table_fractions):
      raise errors.invalid_value("table_fractions",
                                 "fractions of each layer's channels in (0, 1], 1 among them",
                                 self.table_fractions)
    if not self.mask_speed > 0:
      raise errors.invalid_value("mask_speed", "a number > 0", self.mask_speed)
    for name in ("warmup_epochs", "search_epochs", "finetune_epochs", "ramp_epochs"):
      if getattr(self, name) < (1 if name == "search_epochs" else 0):
        raise errors.invalid_value(name, "a count >= %d" % (name == "search_epochs",),
                                   getattr(self, name))


@dataclasses.dataclass(frozen=True)
class Point:
  """One point of the sweep: a stand-in for a genotype in the trial store."""
  method: str                 # "dnas" or "uniform"
  size_target: float          # fraction of the seed's parameters
  lambda_energy: Optional[float]

  def to_string(self) -> str:
    if self.method == "uniform":
      return "uniform width, size <= %g x seed" % self.size_target
    return "dnas, size <= %g x seed, lambda_E %g" % (self.size_target, self.lambda_energy)  # type: ignore[str-format]  # set for dnas points

  def key(self) -> str:
    return self.to_string()

  def to_vector(self) -> List[float]:
    return [float(self.method == "uniform"), self.size_target,
            -1.0 if self.lambda_energy is None else self.lambda_energy]

  @classmethod
  def from_trial(cls, trial: Dict[str, Any]) -> "Point":
    uniform, size, lam = trial["encoding"]
    return cls("uniform" if uniform else "dnas", size, None if lam < 0 else lam)


def points(settings: DnasSettings) -> List[Point]:
  """Every point of the sweep: per size target the DNAS points (one per
  lambda_E) and the uniform baseline."""
  out = []
  for target in settings.size_targets:
    out += [Point("dnas", float(target), float(lam)) for lam in settings.lambda_energy]
    if settings.baseline:
      out.append(Point("uniform", float(target), None))
  return out


# -- the networks ---------------------------------------------------------------
def seed_network(settings: DnasSettings, num_classes: int, num_cells: int = 1, filters: int = 8,
                 width: float = 1.0) -> Any:
  """The seed (``width``: uniform scale of every layer's filters)."""
  from tea_keras.dnas import seeds  # pylint: disable=g-import-not-at-top  (Keras)
  if settings.seed_model == "resnet8":
    widths = [max(1, int(round(width * f))) for f in seeds.RESNET8_V05_FILTERS]
    return seeds.resnet8_v05(num_classes=num_classes, filters=widths)
  return seeds.cell_network(space.Genotype.parse(settings.genotype), num_cells,  # type: ignore[arg-type]  # validate()
                            max(1, int(round(width * filters))), num_classes=num_classes)


def uniform_width(settings: DnasSettings, num_classes: int, target_params: float,
                  num_cells: int = 1, filters: int = 8) -> tuple[float, Any]:
  """The largest width multiplier (to 1/64) whose network has at most
  ``target_params`` parameters, and that network."""
  lo, hi, best = 1.0 / 64, 1.0, None
  for _ in range(8):  # bisection on the multiplier; count_params is monotone in it
    mid = 0.5 * (lo + hi)
    model = seed_network(settings, num_classes, num_cells, filters, mid)
    if model.count_params() <= target_params:
      lo, best = mid, model
    else:
      hi = mid
  if best is None:
    best = seed_network(settings, num_classes, num_cells, filters, lo)
  return lo, best


def _channel_sizes(supernet: Any) -> List[np.ndarray]:
  """The parameters each mask entry carries: d(size)/d(theta) at the current
  masks (the STE gradient of the exported parameter count), per group."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (the Keras backend)
  with tf.GradientTape() as tape:
    size = supernet.size()
  grads = tape.gradient(size, supernet.mask_variables)
  return [np.zeros(v.shape) if g is None else np.asarray(g) / supernet.mask_speed
          for v, g in zip(supernet.mask_variables, grads)]


def project_to_target(supernet: Any, target_params: float) -> int:
  """Drop alive channels until the exported parameter count is at most
  ``target_params``; returns how many were dropped. The channel dropped first
  has the smallest mask; among equal masks (to 1e-3), the one carrying the
  most parameters. Keep-alive channels stay."""
  dropped = 0
  while float(np.asarray(supernet.size())) > target_params:
    sizes = _channel_sizes(supernet)
    best = None
    for g, (alpha, keep) in enumerate(zip(supernet.mask_values(),
                                          supernet._keep_alive)):  # pylint: disable=protected-access
      for c in np.flatnonzero((alpha > supernet.threshold) & (keep < 0.5)):
        rank = (round(float(alpha[c]), 3), -float(sizes[g][c]))
        if best is None or rank < best[0]:
          best = (rank, g, c)
    if best is None:
      break  # nothing left to drop: every layer is at its one kept channel
    _, g, c = best
    alpha = supernet.mask_values()[g].copy()
    alpha[c] = 0.0
    supernet.set_mask_values(g, alpha)
    dropped += 1
  return dropped


def measure_layer(model: Any, work_dir: str, config: Any, lock: Any,
                  rng: np.random.Generator) -> Dict[str, Any]:
  """Export and measure a one-layer ``model`` (``cost_table.layer_model``)
  on the search's target: its input is the activations before the layer,
  not images, so ``config.measure_images`` random inputs of its shape (a
  layer's time does not depend on their values)."""
  shape = (config.measure_images,) + tuple(model.input.shape[1:])
  inputs = rng.standard_normal(shape).astype("float32")
  with device_lock.measuring(lock):
    metrics, _ = pipeline.export_and_measure(model, work_dir, config, inputs)
  return metrics


class _SearchLog:
  """A line per search epoch: the loss, the binarized size and cost."""

  def __new__(cls, supernet: Any, epochs: int, log: Callable[[str], object]) -> Any:
    # Keras: heavy, imported only when this runs.
    import keras  # pylint: disable=g-import-not-at-top

    class Callback(keras.callbacks.Callback):
      def on_epoch_end(self, epoch: int, logs: Dict[str, Any] | None = None) -> None:
        logs = logs or {}
        log("  search epoch %d/%d: loss %.4f, size %d parameters, cost %.4g" % (
            epoch + 1, epochs, logs.get("loss", float("nan")),
            int(np.asarray(supernet.size())), float(np.asarray(logs.get("cost", np.nan)))))
    return Callback()


# -- the sweep ------------------------------------------------------------------
class Sweep:
  """Runs ``points(settings)`` for the resolved search ``config`` (module doc)."""

  def __init__(self, config: Any, settings: DnasSettings,
               log: Callable[[str], object] = print) -> None:
    settings.validate()
    self.config, self.settings, self.log = config, settings, log
    self.recipe = recipes.search_recipe(**config.recipe)
    self.splits = trial_lib.load_splits(config)
    self.num_classes = self.splits.num_classes
    self.lock = device_lock.for_config(config)

  # one training phase -----------------------------------------------------------
  def _train(self, model: Any, epochs: int, model_dir: str, label: str) -> Any:
    # Keras (through this module): heavy, imported only when this runs.
    from tea_keras import training  # pylint: disable=g-import-not-at-top
    if epochs < 1:
      return model
    with device_lock.training(self.lock):
      result = training.train_model(model, self.recipe.replace(epochs=epochs), self.splits,
                                    model_dir, verbose=1, seed=self.config.seed,
                                    log_label=label)
    return result.model

  def warm_seed(self) -> tuple[Any, int, int]:
    """The warmed-up seed (trained once, resumable), and its size and MACs."""
    # Keras (through this module): heavy, imported only when this runs.
    from tea_keras import profiling  # pylint: disable=g-import-not-at-top
    seed = seed_network(self.settings, self.num_classes, self.recipe.num_cells,
                        self.recipe.filters)
    path = os.path.join(self.config.results_dir, "warmup")
    warm = self._train(seed, self.settings.warmup_epochs, path, "dnas warm-up")
    return warm, warm.count_params(), profiling.profile_model(warm)["flops"]

  def cost_model(self, warm: Any, supernet: Any) -> Any:
    """The search's cost model: MACs, or the measured latency table (measured
    once per sweep into ``cost_table.json``)."""
    # Keras (through this module): heavy, imported only when this runs.
    from tea_keras.dnas import complexity  # pylint: disable=g-import-not-at-top
    if self.settings.cost_model == "macs":
      return complexity.macs
    path = os.path.join(self.config.results_dir, "cost_table.json")
    if not os.path.isfile(path):
      work = os.path.join(self.config.results_dir, "cost_table")
      rng = np.random.default_rng(self.config.seed)
      measure = lambda model: measure_layer(model, work, self.config, self.lock, rng)
      cost_table.save(cost_table.measure_table(warm, supernet.channel_graph.specs, measure,
                                               fractions=self.settings.table_fractions,
                                               log=self.log), path)
    return cost_table.LatencyTable(cost_table.load(path))

  def run_point(self, point: Point, trial_dir: str, warm: Any, seed_params: int,
                seed_cost: float) -> tuple[Dict[str, Any], Any]:
    """Search (or scale), fine-tune and measure one point; returns (metrics, model)."""
    # Keras (through this module): heavy, imported only when this runs.
    from tea_keras import profiling  # pylint: disable=g-import-not-at-top
    target = point.size_target * seed_params
    metrics: Dict[str, Any]
    metrics = {"method": point.method, "size_target_fraction": point.size_target,
               "size_target_params": int(target), "lambda_energy": point.lambda_energy,
               "lambda_size": self.settings.lambda_size, "loss": self.settings.loss,
               "cost_model": self.settings.cost_model, "seed_params": int(seed_params)}
    start = time.time()
    if point.method == "uniform":
      width, model = uniform_width(self.settings, self.num_classes, target,
                                   self.recipe.num_cells, self.recipe.filters)
      epochs = (self.settings.warmup_epochs + self.settings.search_epochs +
                self.settings.finetune_epochs)
      metrics["width_multiplier"] = width
      model = self._train(model, epochs, os.path.join(trial_dir, "model"),
                          "dnas uniform %g" % point.size_target)
    else:
      model, found = self._search(point, trial_dir, warm, seed_params, seed_cost, target)
      metrics.update(found)
      model = self._train(model, self.settings.finetune_epochs,
                          os.path.join(trial_dir, "model"), "dnas fine-tune")
    metrics["train_seconds"] = time.time() - start
    metrics["params"] = int(model.count_params())
    metrics["macs"] = int(profiling.profile_model(model)["flops"])
    if metrics["params"] > target:
      raise RuntimeError("the found network has %d parameters, above its target %d"
                         % (metrics["params"], target))
    return metrics, model

  def _search(self, point: Point, trial_dir: str, warm: Any, seed_params: int, seed_cost: float,
              target: float) -> tuple[Any, Any]:
    """The supernet's training and the found architecture (exported)."""
    # Keras, imported when a sweep trains (``python -m search.dnas --help`` needs no TensorFlow).
    from tea_keras import training  # pylint: disable=g-import-not-at-top
    from tea_keras.dnas import export as dnas_export  # pylint: disable=g-import-not-at-top
    from tea_keras.dnas import losses  # pylint: disable=g-import-not-at-top
    from tea_keras.dnas import supernet as supernet_lib  # pylint: disable=g-import-not-at-top
    supernet = supernet_lib.make_supernet(warm, mask_speed=self.settings.mask_speed)
    cost = self.cost_model(warm, supernet)
    cost_seed = float(np.asarray(supernet.cost(cost)))
    supernet.complexity = losses.ComplexityLoss(
        size_target=target, lambda_size=self.settings.lambda_size / seed_params,
        lambda_cost=point.lambda_energy / max(cost_seed, 1e-30), mode=self.settings.loss,  # type: ignore[operator]
        cost=cost)
    recipe = self.recipe.replace(epochs=self.settings.search_epochs)
    steps = data.steps_per_epoch(len(self.splits.y_train), recipe.batch_size)
    with device_lock.training(self.lock):
      training.compile_model(supernet, recipe, steps, jit_compile=False)
      dataset = data.train_dataset(self.splits.x_train, self.splits.y_train,
                                   batch_size=recipe.batch_size, seed=self.config.seed,
                                   augmentation=training.augmentation(recipe),
                                   num_epochs=recipe.epochs)
      supernet.fit(dataset, epochs=recipe.epochs, steps_per_epoch=steps, verbose=0,
                   callbacks=[losses.StrengthRamp(supernet.complexity,
                                                  max(1, self.settings.ramp_epochs)),
                              _SearchLog(supernet, recipe.epochs, self.log)])
    searched = float(np.asarray(supernet.size()))
    dropped = project_to_target(supernet, target)
    model = dnas_export.export_model(supernet)
    found = {"searched_params": int(searched), "projected_channels": dropped,
             "channels": json.dumps(supernet.channels(), sort_keys=True),
             "predicted_cost": float(np.asarray(supernet.cost(cost))),
             "predicted_macs": float(np.asarray(supernet.cost())),
             "seed_cost": cost_seed}
    return model, found

  def measure(self, model: Any, trial_dir: str) -> tuple[Dict[str, Any], Dict[str, Any]]:
    """Deploy and measure ``model`` as a search's trial (its pairs and the
    first precision's metrics)."""
    with device_lock.measuring(self.lock):
      pairs, metrics, artifacts = trial_lib.measure_precisions(model, trial_dir, self.config,
                                                               self.splits)
    if metrics is None:
      raise RuntimeError("precision %s failed: %s" % (
          self.config.precisions[0], pairs[self.config.precisions[0]]["error"]))
    metrics = dict(metrics, precisions=pairs)
    metrics["deployed_val_error"] = metrics.pop("val_error")
    return metrics, artifacts  # type: ignore[return-value]  # None only when metrics is


def run(config: Any, settings: DnasSettings, log: Callable[[str], object] = print) -> Dict:
  """Run (or resume) the sweep into ``config.results_dir``; returns the summary."""
  settings.validate()
  os.makedirs(config.results_dir, exist_ok=True)
  with store_lib.RunLock.acquire(config.results_dir):
    store = store_lib.TrialStore(os.path.join(config.results_dir, "trials.db"))
    try:
      return _run(store, config, settings, log)
    finally:
      store.close()


def _run(store: store_lib.TrialStore, config: Any, settings: DnasSettings,
         log: Callable[[str], object]) -> Dict[str, Any]:
  all_points = points(settings)
  for t in store.trials(["running"]):
    store.requeue(t["trial_id"])
  known = {t["genotype"] for t in store.trials()}
  for point in all_points:
    if point.to_string() not in known:
      store.add(point, point.method)
  sweep = Sweep(config, settings, log)
  warm, seed_params, seed_cost = sweep.warm_seed()
  log("dnas: seed %s, %d parameters, %d MACs per image; %d points, %d left"
      % (settings.seed_model, seed_params, seed_cost, len(all_points),
         store.count(["pending"])))
  started, done_here = time.time(), 0
  with store_lib.LeaseKeeper(store.path):
    for trial in store.trials(["pending"]):
      point = Point.from_trial(trial)
      trial_dir = os.path.join(config.results_dir, "trials", "%04d" % trial["trial_id"])
      store.mark_running(trial["trial_id"])
      log("point #%d: %s" % (trial["trial_id"], point.to_string()))
      cpu0 = cpu_seconds()
      try:
        metrics, model = sweep.run_point(point, trial_dir, warm, seed_params, seed_cost)
        measured, artifacts = sweep.measure(model, trial_dir)
        metrics.update(measured)
        metrics["cpu_seconds"] = cpu_seconds() - cpu0
        store.finish(trial["trial_id"], "done", metrics, artifacts)
        status = "done"
      except (ValueError, RuntimeError) as e:
        store.finish(trial["trial_id"], "failed", {}, {}, "%s: %s" % (type(e).__name__, e))
        status = "failed: %s" % e
      done_here += 1
      left = store.count(["pending"])
      elapsed = time.time() - started
      log("[point %d/%d] #%d %s | elapsed %s, ETA %s" % (
          len(all_points) - left, len(all_points), trial["trial_id"], status,
          _hms(elapsed), _hms(elapsed / done_here * left)))
      refresh(store, config)
  return refresh(store, config)


def cpu_seconds() -> float:
  """This process's CPU seconds so far, its children's included (user + system)."""
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def _hms(seconds: float) -> str:
  seconds = int(round(seconds))
  return "%dh%02dm%02ds" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


def refresh(store: store_lib.TrialStore, config: Any) -> Dict[str, Any]:
  """The search's outputs for the sweep's trials, and ``dnas_fronts.png``."""
  trials = store.trials()
  summary = outputs.refresh(config.results_dir, trials, config.objectives, None)
  plot_fronts(config.results_dir, trials, config.objectives)
  return summary


def plot_fronts(results_dir: str, trials: Sequence[Dict[str, Any]],
                objectives: Sequence[str]) -> None:
  """``dnas_fronts.png``: error against time per size target, the DNAS
  points coloured by lambda_E, the uniform baseline marked apart."""
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  done = [t for t in trials if t["status"] == "done" and "time" in objectives]
  targets = sorted({t["metrics"]["size_target_fraction"] for t in done}, reverse=True)
  if not targets:
    return
  images = outputs.measured_images(done)
  fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 4.0), squeeze=False)
  for ax, target in zip(axes[0], targets):
    mine = [t for t in done if t["metrics"]["size_target_fraction"] == target]
    for t in mine:
      m = t["metrics"]
      x, y = trial_lib.objective_value(m, "time"), trial_lib.objective_value(m, "error")
      if m["method"] == "uniform":
        ax.scatter([x], [y], marker="s", s=50, color="k", label="uniform width", zorder=4)
      else:
        ax.scatter([x], [y], marker="o", s=36, zorder=4, label="lambda_E %g" % m["lambda_energy"])
      ax.annotate("#%d" % t["trial_id"], (x, y), xytext=(3, 3), textcoords="offset points",
                  fontsize=7, color="0.3")
    ax.set_title("size <= %g x seed" % target, fontsize=9)
    ax.set_xlabel(outputs.objective_label("time", images))
    ax.set_ylabel(outputs.OBJECTIVE_LABELS["error"])
    ax.legend(fontsize=7)
  outputs._save(fig, os.path.join(results_dir, "dnas_fronts.png"))  # pylint: disable=protected-access
