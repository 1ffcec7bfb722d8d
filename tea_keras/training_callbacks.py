"""Callbacks of ``tea_keras.training``: progress with ETA, timing, divergence, checkpoints.

``RunMonitor`` is one Keras callback that, every epoch, measures the pure
training time (epoch start to the start of validation), stops the run at the
first diverged batch loss (below), appends the epoch to the run state, hands the
state to a checkpoint function and prints one progress line with an ETA.

Divergence: training stops, and the run is recorded as diverged, at the first
batch whose running training loss (Keras' mean over the epoch so far,
weight decay included) is non-finite, or finite but exploded: above
``DIVERGENCE_FACTOR`` times the run's initial loss (the first batch's, kept
in the run state across resumes) *and* above ``DIVERGENCE_MIN_LOSS``. On 10
classes the initial cross-entropy is about ln 10 = 2.3, so the bound is in
practice 1e4: ~4,000 times the loss of a uniform guess, which no training
that is still learning reaches (e.g. ``learning_rate=1e6`` gives 1.4e14),
while a bad but recovering start (a loss of 10 or 100) is left alone.
"""

import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

DIVERGENCE_FACTOR = 1e3     # loss above this times the initial loss ...
DIVERGENCE_MIN_LOSS = 1e4   # ... and above this absolute value: diverged


class Logger:
  """Callable writing a line to ``path`` (always) and stdout (``verbose >= 1``)."""

  def __init__(self, path: Optional[Path], verbose: int, label: str = "tea_keras.train"):
    self.path = path
    self.verbose = verbose
    self.label = label

  def __call__(self, message: str) -> None:
    line = "[%s %s] %s" % (self.label, time.strftime("%H:%M:%S"), message)
    if self.verbose >= 1:
      print(line, file=sys.stdout, flush=True)
    if self.path is not None:
      with open(self.path, "a") as f:
        f.write(line + "\n")


def format_seconds(seconds: float) -> str:
  """``3725`` -> ``1h02m05s``; ``65`` -> ``1m05s``; ``7.5`` -> ``7.5s``."""
  if seconds < 60:
    return "%.1fs" % seconds
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return ("%dh%02dm%02ds" % (hours, minutes, secs)) if hours else "%dm%02ds" % (minutes, secs)


class RunMonitor(keras.callbacks.Callback):
  """Timing, divergence stop, per-epoch state/checkpoint and progress lines.

  ``state``: the run state (``tea_keras.training.new_state()`` or the one
  restored from a checkpoint), updated in place. ``save``: called with the
  state after every finite epoch (None: no checkpoints).
  """

  def __init__(self, recipe, steps_per_epoch: int, state: dict, log: Callable,
               save: Optional[Callable] = None):
    super().__init__()
    self.recipe = recipe
    self.steps_per_epoch = steps_per_epoch
    self.state = state
    self.log = log
    self.save = save
    self.diverged_error = None
    self._epoch_walls = []
    self._epoch_start = self._train_end = None
    self._first_batch = True  # the session's first step includes tracing/compiling

  @property
  def epochs_run(self) -> int:
    """Epochs that ended (finite) in this session."""
    return len(self._epoch_walls)

  def on_train_begin(self, logs=None):
    if self.state["epochs_completed"]:
      self.log("continuing at epoch %d/%d" % (self.state["epochs_completed"] + 1,
                                              self.recipe.epochs))

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = time.perf_counter()
    self._train_end = None

  def on_train_batch_end(self, batch, logs=None):
    if self._first_batch:
      self._first_batch = False
      self.state["startup_seconds"] = (self.state.get("startup_seconds", 0.0) +
                                       time.perf_counter() - self._epoch_start)
      self.state["startup_images"] = (self.state.get("startup_images", 0) +
                                      self.recipe.batch_size)
    loss = float(np.asarray((logs or {}).get("loss", 0.0)))
    if self.diverged_error is None:
      self.diverged_error = self.divergence(loss, batch)
      if self.diverged_error is not None:
        self.model.stop_training = True

  def divergence(self, loss: float, batch: int) -> Optional[str]:
    """Why ``loss`` at 0-based ``batch`` means divergence (module doc), or None."""
    where = "at epoch %d, batch %d" % (self.state["epochs_completed"] + 1, batch + 1)
    if not math.isfinite(loss):
      return "diverged: non-finite training loss (%s) %s" % (loss, where)
    initial = self.state.setdefault("initial_loss", loss)
    if loss > DIVERGENCE_FACTOR * initial and loss > DIVERGENCE_MIN_LOSS:
      return ("diverged: training loss %.4g %s exceeds the divergence bound (more than "
              "%g x the initial loss %.4g and more than %g); lower the learning rate"
              % (loss, where, DIVERGENCE_FACTOR, initial, DIVERGENCE_MIN_LOSS))
    return None

  def on_test_begin(self, logs=None):
    if self._train_end is None:
      self._train_end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    now = time.perf_counter()
    if self.diverged_error is not None:
      self.log(self.diverged_error + "; keeping the last finite checkpoint")
      return
    logs = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
    train_seconds = (self._train_end or now) - self._epoch_start
    wall = now - self._epoch_start
    self._epoch_walls.append(wall)
    images = self.steps_per_epoch * self.recipe.batch_size
    entry = {"epoch": epoch + 1, "lr": self.recipe.learning_rate_at(epoch),
             "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
             "val_loss": logs.get("val_loss"),
             "val_error": _error(logs.get("val_accuracy")),
             "train_seconds": round(train_seconds, 3), "wall_seconds": round(wall, 3)}
    st = self.state
    st["epochs_completed"] = epoch + 1
    st["train_seconds"] += train_seconds
    st["wall_seconds"] += wall
    st["train_images"] += images
    st["history"].append(entry)
    if self.save is not None:
      self.save(st)
    remaining = self.recipe.epochs - (epoch + 1)
    eta = remaining * float(np.mean(self._epoch_walls))
    self.log("epoch %d/%d loss=%.4f acc=%.4f val_error=%s lr=%.6g | %s (%.0f images/s) "
             "| elapsed %s ETA %s"
             % (epoch + 1, self.recipe.epochs, entry["loss"], entry["accuracy"],
                "n/a" if entry["val_error"] is None else "%.4f" % entry["val_error"],
                entry["lr"], format_seconds(wall), images / train_seconds,
                format_seconds(st["wall_seconds"]), format_seconds(eta)))


def _error(accuracy):
  return None if accuracy is None else 1.0 - accuracy
