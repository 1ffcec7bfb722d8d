"""Train and evaluate a network with a ``Recipe``: the library entry point.

``train_genotype`` (used by the search, 400 times per search) and
``train_model`` (any Keras model, e.g. DenseNet-40) train on
``Splits.x_train``, report the error on ``Splits.x_val`` and, on request, on
``Splits.x_test``. Neither reads absl FLAGS.

model_dir contract (training writes it, deploy and search read it)::

    model.keras          final trained model (tea_keras.network.load_model)
    metrics.json         val_error, test_error, epochs_completed, train_seconds,
                         train_images_per_second (all steps), steady_images_per_second
                         (without each session's first, compiling step), params,
                         diverged, error, history (per epoch), ...
    config.json          the resolved configuration (recipe, architecture, data)
    checkpoints/         epoch_NNNN.weights.h5 (weights + optimizer state) and
                         state.json, written atomically after every epoch
    tensorboard/         TensorBoard scalars
    train.log            the per-epoch progress lines
    curves.png           loss and train/validation error per epoch

Re-running with the same model_dir resumes from the last checkpoint (also
after ``kill -9``): data order and augmentation of epoch ``e`` depend only on
``(seed, e)`` (``tea_keras.data.train_dataset``) and the optimizer state,
including its step counter (hence the learning rate), is restored. A
non-finite or exploded loss (above ``training_callbacks.DIVERGENCE_FACTOR``
x the initial loss and ``DIVERGENCE_MIN_LOSS``, i.e. about 1e4 for CIFAR-10)
stops training, keeps the last finite checkpoint and is recorded as
``diverged``/``error`` (the reason and the bound); it does not raise.
"""

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional

import keras
import tensorflow as tf

from tea_keras import data as data_lib
from tea_keras import errors
from tea_keras import files
from tea_keras import network
from tea_keras import recipes as recipes_lib
from tea_keras import space
from tea_keras import training_callbacks as cbs

CHECKPOINT_DIR = "checkpoints"
# Execution defaults per device kind, from the benchmark in BENCHMARKS.md
# ("## Training"): on CPU, XLA and bfloat16 were both slower; on GPU we keep
# Keras' own default (XLA on, "auto") and float32 (not measured here).
DEVICE_DEFAULTS = {"cpu": {"jit_compile": False, "mixed_precision": False},
                   "gpu": {"jit_compile": "auto", "mixed_precision": False}}
# Keys of config.json that may change between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "jit_compile", "mixed_precision", "evaluate_test",
                     "data_dir")


@dataclasses.dataclass
class TrainResult:
  """What a training run gives back. ``metrics`` is metrics.json's content."""
  val_error: float              # NaN if diverged
  test_error: Optional[float]   # None unless evaluate_test
  model: object                 # the trained keras.Model
  metrics: dict
  diverged: bool = False
  error: Optional[str] = None


# -- execution -------------------------------------------------------------------
def device_kind() -> str:
  return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def resolve_execution(recipe) -> dict:
  """``{"jit_compile": ..., "mixed_precision": bool, "device": str}``: the
  recipe's values, or this device's defaults where the recipe says None."""
  kind = device_kind()
  out = {"device": kind}
  for key, default in DEVICE_DEFAULTS[kind].items():
    value = getattr(recipe, key)
    out[key] = default if value is None else value
  return out


def precision_policy(mixed: bool, kind: str) -> str:
  if not mixed:
    return "float32"
  return "mixed_float16" if kind == "gpu" else "mixed_bfloat16"


# -- optimizer ---------------------------------------------------------------------
def learning_rate_schedule(recipe, steps_per_epoch: int):
  """Staircase exponential decay, stepped per batch: ``recipe.learning_rate_at``."""
  return keras.optimizers.schedules.ExponentialDecay(
      recipe.learning_rate, decay_steps=recipe.lr_decay_epochs * steps_per_epoch,
      decay_rate=recipe.lr_decay_rate, staircase=True)


def make_optimizer(recipe, steps_per_epoch: int):
  """RMSProp with momentum as in TF-slim (see ``tea_keras.recipes``)."""
  return keras.optimizers.RMSprop(
      learning_rate=learning_rate_schedule(recipe, steps_per_epoch),
      rho=recipe.rmsprop_decay, momentum=recipe.momentum, epsilon=recipe.epsilon)


def compile_model(model, recipe, steps_per_epoch: int, jit_compile="auto"):
  """Compile with the recipe's optimizer, cross-entropy on logits and accuracy.
  Weight decay comes from the model's kernel regularizers (``model.losses``).

  A built model also gets its optimizer's slot variables here: left to Keras,
  they are created inside the first traced train step, and a ``tf.function``
  that creates variables is traced a second time (about half of a tiny
  network's first-step time on CPU, the same numbers after)."""
  model.compile(optimizer=make_optimizer(recipe, steps_per_epoch),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=jit_compile)
  if model.built:
    model.optimizer.build(model.trainable_variables)
  return model


def set_batch_norm(model, momentum=None, epsilon=None) -> int:
  """Set momentum/epsilon (None: leave) of every BatchNormalization layer of
  ``model``, nested ones included; returns how many layers there are."""
  count = 0
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization):
      count += 1
      if momentum is not None:
        layer.momentum = momentum
      if epsilon is not None:
        layer.epsilon = epsilon
  return count


def build_cell_network(genotype, recipe, num_cells, filters, seed=0, num_classes=None):
  """The cell network of ``genotype`` with the recipe's weight decay, drop path
  and precision, weights initialised from ``seed``; ``num_classes`` logits
  (default: CIFAR-10's 10)."""
  execution = resolve_execution(recipe)
  keras.utils.set_random_seed(seed)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(precision_policy(execution["mixed_precision"],
                                                 execution["device"]))
  try:
    return network.build_network(genotype, num_cells, filters,
                                 num_classes=num_classes or data_lib.NUM_CLASSES,
                                 weight_decay=recipe.weight_decay,
                                 drop_path_rate=recipe.drop_path_rate)
  finally:
    keras.config.set_dtype_policy(previous)


# -- entry points ------------------------------------------------------------------
def train_genotype(genotype, recipe, splits, model_dir=None, *, num_cells=None,
                   filters=None, evaluate_test=False, verbose=1, seed=0,
                   extra_config=None, log_label="tea_keras.train") -> TrainResult:
  """Build the cell network of ``genotype`` and train it (``train_model``).

  ``genotype``: a ``space.Genotype`` or its string; ``num_cells``/``filters``
  default to the recipe's N and F. ``seed`` seeds weight initialisation and the
  data pipeline. The network has one logit per class of ``splits``.
  """
  if isinstance(genotype, str):
    genotype = space.Genotype.parse(genotype)
  if not isinstance(genotype, space.Genotype):
    raise errors.invalid_value("genotype", "a Genotype or its string form", genotype)
  num_cells = recipe.num_cells if num_cells is None else num_cells
  filters = recipe.filters if filters is None else filters
  model = build_cell_network(genotype, recipe, num_cells, filters, seed,
                             num_classes=getattr(splits, "num_classes", None))
  architecture = {"genotype": genotype.to_string(), "genotype_key": genotype.key(),
                  "num_cells": num_cells, "filters": filters}
  architecture.update(extra_config or {})
  return train_model(model, recipe, splits, model_dir, evaluate_test=evaluate_test,
                     verbose=verbose, seed=seed, extra_config=architecture,
                     log_label=log_label)


def train_model(model, recipe, splits, model_dir=None, *, evaluate_test=False,
                verbose=1, seed=0, extra_config=None,
                log_label="tea_keras.train") -> TrainResult:
  """Train ``model`` (inputs: normalized images, outputs: logits) with ``recipe``.

  Returns a ``TrainResult``; writes the model_dir contract when ``model_dir``
  is given and resumes from its checkpoint. ``verbose``: 0 silent, 1 one line
  per epoch with ETA (prefixed ``[log_label HH:MM:SS]``), 2 also Keras'
  progress bar.
  """
  if not isinstance(recipe, recipes_lib.Recipe):
    raise errors.invalid_value("recipe", "a tea_keras.recipes.Recipe", recipe)
  if not isinstance(splits, data_lib.Splits):
    raise errors.invalid_value("splits", "tea_keras.data.Splits (tea_keras.data.load)",
                               type(splits))
  execution = resolve_execution(recipe)
  steps = data_lib.steps_per_epoch(len(splits.x_train), recipe.batch_size)
  config = {"recipe": recipe.to_dict(), "dataset": splits.name, "seed": seed,
            "data_sizes": splits.sizes(), "steps_per_epoch": steps,
            "model_name": model.name, "params": int(model.count_params()),
            "evaluate_test": bool(evaluate_test)}
  config.update(execution)
  config.update(extra_config or {})
  run_dir = Path(model_dir) if model_dir is not None else None
  if run_dir is not None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_resumable(run_dir, config)
    _write_json(run_dir / "config.json", config)
  set_batch_norm(model, recipe.bn_momentum, recipe.bn_epsilon)
  compile_model(model, recipe, steps, jit_compile=execution["jit_compile"])
  log = cbs.Logger(run_dir / "train.log" if run_dir else None, verbose, log_label)
  state = _restore(model, run_dir, log)
  first_epoch = min(state["epochs_completed"], recipe.epochs)
  monitor = cbs.RunMonitor(recipe, steps, state, log,
                           _checkpoint_fn(model, run_dir) if run_dir else None)
  _fit(model, recipe, splits, seed, first_epoch, monitor, run_dir, verbose)
  return _finish(model, recipe, splits, run_dir, monitor, evaluate_test, config, log)


# -- the loop ----------------------------------------------------------------------
def _fit(model, recipe, splits, seed, first_epoch, monitor, run_dir, verbose):
  remaining = recipe.epochs - first_epoch
  if remaining <= 0:
    return
  train_ds = data_lib.train_dataset(
      splits.x_train, splits.y_train, batch_size=recipe.batch_size, seed=seed,
      augmentation=augmentation(recipe), first_epoch=first_epoch, num_epochs=remaining)
  val_ds = data_lib.eval_dataset(splits.x_val, splits.y_val, batch_size=256)
  callbacks = [monitor]
  if run_dir is not None:
    _require_tensorboard()
    callbacks.append(keras.callbacks.TensorBoard(
        str(run_dir / "tensorboard"), write_graph=False, profile_batch=0))
  model.fit(train_ds, epochs=recipe.epochs, initial_epoch=first_epoch,
            steps_per_epoch=monitor.steps_per_epoch, validation_data=val_ds,
            callbacks=callbacks, shuffle=False, verbose=1 if verbose >= 2 else 0)


def _require_tensorboard():
  try:
    # TensorBoard: optional, probed only when asked for.
    import tensorboard  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError("Writing TensorBoard logs into model_dir needs the `tensorboard` "
                      "package: pip install tensorboard (or pip install -e . again).") from e


def augmentation(recipe) -> data_lib.Augmentation:
  return data_lib.Augmentation(pad=recipe.pad, flip=recipe.flip,
                               brightness_max_delta=recipe.brightness_max_delta,
                               contrast_lower=recipe.contrast_lower,
                               contrast_upper=recipe.contrast_upper)


def evaluate_error(model, x, y, batch_size: int = 256) -> float:
  """Top-1 error of ``model`` on uint8 images ``x`` and labels ``y``."""
  result = model.evaluate(data_lib.eval_dataset(x, y, batch_size=batch_size, cache=False),
                          verbose=0, return_dict=True)
  return 1.0 - float(result["accuracy"])


def _finish(model, recipe, splits, run_dir, monitor, evaluate_test, config, log):
  state = monitor.state
  diverged = monitor.diverged_error is not None
  val_error = test_error = None
  if not diverged:
    val_error = _last_validation(state, recipe, monitor)
    if val_error is None:
      val_error = evaluate_error(model, splits.x_val, splits.y_val)
    if evaluate_test:
      test_error = evaluate_error(model, splits.x_test, splits.y_test)
  metrics = {
      "val_error": val_error, "test_error": test_error,
      "epochs_completed": state["epochs_completed"], "epochs": recipe.epochs,
      "train_seconds": round(state["train_seconds"], 3),
      "wall_seconds": round(state["wall_seconds"], 3),
      "train_images_per_second": round(_rate(state), 2),
      "steady_images_per_second": round(_steady_rate(state), 2),
      "startup_seconds": round(state.get("startup_seconds", 0.0), 3),
      "params": config["params"], "diverged": diverged,
      "error": monitor.diverged_error, "history": state["history"]}
  if run_dir is not None:
    if not diverged:
      _atomic(run_dir / "model.keras", model.save)
    _write_json(run_dir / "metrics.json", metrics)
    if state["history"]:
      plot_history(state["history"], run_dir / "curves.png")
  log("done: val_error=%s test_error=%s epochs=%d train %.1f s, %.0f images/s%s"
      % (_fmt(val_error), _fmt(test_error), state["epochs_completed"],
         state["train_seconds"], _rate(state),
         " DIVERGED: %s" % monitor.diverged_error if diverged else ""))
  return TrainResult(val_error=math.nan if val_error is None else val_error,
                     test_error=test_error, model=model, metrics=metrics,
                     diverged=diverged, error=monitor.diverged_error)


def _last_validation(state, recipe, monitor):
  """The final epoch's validation error when this session ran that epoch:
  Keras validated the final weights on the whole of ``splits.x_val`` at
  batch 256, which is what ``evaluate_error`` would compute again. None
  otherwise (resumed with nothing left to train, or no validation logged)."""
  history = state["history"]
  if not monitor.epochs_run or not history or history[-1]["epoch"] != recipe.epochs:
    return None
  return history[-1]["val_error"]


def plot_history(history, path) -> None:
  """Training loss and train/validation error per epoch, as a PNG (Agg)."""
  # matplotlib: imported only when plotting.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  epochs = [h["epoch"] for h in history]
  fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.5))
  ax_loss.plot(epochs, [h["loss"] for h in history], marker="o", label="train loss")
  ax_loss.set_xlabel("epoch")
  ax_loss.set_ylabel("cross-entropy loss (with weight decay)")
  ax_loss.set_title("training loss")
  ax_loss.legend()
  ax_err.plot(epochs, [1 - h["accuracy"] for h in history], marker="o", label="train error")
  ax_err.plot(epochs, [h["val_error"] for h in history], marker="o", label="val error")
  ax_err.set_xlabel("epoch")
  ax_err.set_ylabel("classification error (fraction)")
  ax_err.set_title("train and validation error")
  ax_err.legend()
  for ax in (ax_loss, ax_err):
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  fig.tight_layout()
  fig.savefig(str(path), dpi=100)
  plt.close(fig)


def _rate(state) -> float:
  return state["train_images"] / state["train_seconds"] if state["train_seconds"] else 0.0


def _steady_rate(state) -> float:
  """Images/s without each session's first step (tracing and compiling)."""
  seconds = state["train_seconds"] - state.get("startup_seconds", 0.0)
  images = state["train_images"] - state.get("startup_images", 0)
  return images / seconds if seconds > 0 and images > 0 else 0.0


def _fmt(value):
  return "n/a" if value is None else "%.4f" % value


# -- checkpoints -------------------------------------------------------------------
def new_state() -> dict:
  return {"epochs_completed": 0, "train_seconds": 0.0, "wall_seconds": 0.0,
          "train_images": 0, "history": [], "weights": None}


def _restore(model, run_dir, log) -> dict:
  """Load the last checkpoint of ``run_dir`` into ``model``; return its state."""
  path = run_dir / CHECKPOINT_DIR / "state.json" if run_dir else None
  if path is None or not path.exists():
    return new_state()
  state = json.loads(path.read_text())
  weights = path.parent / state["weights"]
  if not weights.exists():
    raise ValueError("Checkpoint %s names %s, which is missing. Expected both; delete "
                     "%s to start afresh." % (path, weights, path.parent))
  if not model.optimizer.built:
    model.optimizer.build(model.trainable_variables)
  model.load_weights(str(weights))
  log("resuming from %s: %d epochs completed" % (weights, state["epochs_completed"]))
  return state


def _checkpoint_fn(model, run_dir):
  folder = run_dir / CHECKPOINT_DIR
  folder.mkdir(exist_ok=True)

  def save(state):
    name = "epoch_%04d.weights.h5" % state["epochs_completed"]
    _atomic(folder / name, model.save_weights)
    previous = state.get("weights")
    state["weights"] = name
    _write_json(folder / "state.json", state)
    if previous and previous != name and (folder / previous).exists():
      (folder / previous).unlink()
  return save


def _check_resumable(run_dir: Path, config: dict) -> None:
  path = run_dir / "config.json"
  if not path.exists() or not (run_dir / CHECKPOINT_DIR / "state.json").exists():
    return
  saved = json.loads(path.read_text())
  changed = []
  for key in sorted(set(saved) | set(config)):
    old, new = saved.get(key), json.loads(json.dumps(config.get(key)))
    if key in RESUMABLE_CHANGES:
      continue
    if key == "recipe" and isinstance(old, dict) and isinstance(new, dict):
      for field in sorted((set(old) | set(new)) - set(RESUMABLE_CHANGES)):
        if old.get(field) != new.get(field):  # only the fields that differ, not whole dicts
          changed.append("recipe.%s: %r -> %r" % (field, old.get(field), new.get(field)))
    elif old != new:
      changed.append("%s: %r -> %r" % (key, old, new))
  if changed:
    raise ValueError("model_dir %s holds a checkpoint of a different run (%s). Expected "
                     "the same configuration to resume; use a new model_dir."
                     % (run_dir, "; ".join(changed)))


def _atomic(path: Path, writer) -> None:
  """``writer(tmp)`` then rename, so a kill never leaves a half-written file."""
  with files.atomic_path(path, keep_suffix=True) as tmp:
    writer(tmp)


def _write_json(path: Path, obj) -> None:
  files.write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


__all__ = ["TrainResult", "train_genotype", "train_model", "evaluate_error",
           "compile_model", "make_optimizer", "learning_rate_schedule",
           "resolve_execution", "augmentation"]
