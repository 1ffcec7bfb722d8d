"""``python -m search.dnas.widths --flagfile=flags/dnas_quick.cfg --num_samples=15``:
a black-box search (PESMO by default) over the seed's own space, its
channel widths, as the like-for-like cost baseline of a DNAS sweep.

A DNAS sweep searches ResNet-8's channels with one supernet training per
point; the question its benchmark asks is what the same space costs when a
black-box optimizer searches it as TEA-DNN searches cells: one training and
one measurement per network. ResNet-8 of MLPerf Tiny v0.5 has six free
widths (``tea_keras.dnas.seeds.resnet8_v05``: the three stacks, tied by
their residual adds to the stem and the shortcuts, and each stack's first
convolution), the same six groups the DNAS supernet masks. A design is six
fractions of the seed's widths in [1/16, 1], rounded to whole channels (the
rounding is the space's canonical form, so two fractions that build the
same network are one design); its objectives, minimized, are the deployed
error, the measured time per image (modelled in log) and the parameter
count (log): size is an objective, not a target, so one search serves
every size target of the sweep beside it (``search.dnas.analysis`` files
each network under every target it meets).

Each network is trained from scratch for ``warmup + search + finetune``
epochs of the sweep's settings, exactly as the sweep's uniform-width
baseline, then deployed and measured by the sweep's own code
(``Sweep.measure``: the search's protocol and target). Each trial records
the process CPU seconds it used (training, export, measurement, and the
optimizer's proposal before it), so the two methods' CPU cost compares from
their stores.

The results directory is a search's (``trials.db``, ``results.csv``,
``pareto.csv``, ``summary.json``; config.json with a ``widths`` entry):
``python -m search.reports --figure=dnas --results_dir=SWEEP --pesmo_dir=THIS``
draws it beside a DNAS sweep. Re-running the same command resumes: finished
networks are kept (the optimizer is refitted on them), an interrupted one
runs again.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import app
from absl import flags

from search import config as config_lib
from search import flags as search_flags
from search import loop
from search import outputs
from search import store as store_lib
from search import trial as trial_lib
from search.dnas import __main__ as dnas_main
from search.dnas import sweep as sweep_lib
from search.optimizer import base
from search.optimizer import design
from search.optimizer import strategies
from tea_keras import console
from tea_keras import errors

SEED_WIDTHS = (16, 32, 64, 16, 32, 64)   # resnet8_v05: stacks, then first convolutions
GROUPS = ("stack1", "stack2", "stack3", "stack1_conv1", "stack2_conv1", "stack3_conv1")
MIN_FRACTION = 1.0 / 16
OBJECTIVES = ("error", "time_per_image_s", "params")
LOG_OBJECTIVES = (False, True, True)


@dataclasses.dataclass(frozen=True)
class Widths:
  """One ResNet-8 of the space: its six widths (``GROUPS`` order)."""
  widths: Tuple[int, ...]

  def to_string(self) -> str:
    return "resnet8 widths %s" % "-".join(str(w) for w in self.widths)

  def key(self) -> str:
    return self.to_string()

  def to_vector(self) -> List[int]:
    return list(self.widths)

  @classmethod
  def from_trial(cls, trial: Dict[str, Any]) -> "Widths":
    return cls(tuple(int(w) for w in trial["encoding"]))

  @classmethod
  def from_fractions(cls, x: Any) -> "Widths":
    x = np.asarray(x, float).reshape(-1)
    return cls(tuple(max(1, int(round(f * s))) for f, s in zip(x, SEED_WIDTHS)))

  def fractions(self) -> np.ndarray:
    return np.asarray(self.widths, float) / np.asarray(SEED_WIDTHS, float)

  def build(self, num_classes: int) -> Any:
    # Keras: imported by the process that builds networks, not by the CLI's --help
    from tea_keras.dnas import seeds  # pylint: disable=g-import-not-at-top
    return seeds.resnet8_v05(num_classes=num_classes, filters=self.widths[:3],
                             inner_filters=self.widths[3:])


def _canonical(x: np.ndarray) -> np.ndarray:
  """Fractions rounded to whole channels (``Widths.from_fractions``), back
  as fractions: the design a point builds."""
  return np.array([Widths.from_fractions(row).fractions() for row in np.atleast_2d(x)])


def width_space() -> design.DesignSpace:
  """Six continuous width fractions in [1/16, 1], canonical per network."""
  return design.continuous_space([(MIN_FRACTION, 1.0)] * len(GROUPS),
                                 names=list(GROUPS)).with_canonical(_canonical)


def objectives_of(metrics: Dict) -> Optional[np.ndarray]:
  """A finished trial's objectives (``OBJECTIVES``), None if one is missing."""
  error = trial_lib.objective_value(metrics, "error")
  seconds = trial_lib.objective_value(metrics, "time")
  if error is None or seconds is None or not metrics.get("images") or not metrics.get("params"):
    return None
  return np.array([error, seconds / float(metrics["images"]), float(metrics["params"])])


class WidthSearch:
  """The search of the module doc over the store of ``config.results_dir``.
  ``config``: a resolved search config (``strategy``, ``num_samples``,
  ``num_initial``, ``seed``); ``settings``: the DNAS sweep's settings (its
  epochs give each network's training)."""

  def __init__(self, config: Any, settings: sweep_lib.DnasSettings, store: store_lib.TrialStore,
               log: Callable[[str], object] = print) -> None:
    if settings.seed_model != "resnet8":
      raise errors.invalid_value("seed_model", "resnet8 (the width search knows ResNet-8's "
                                 "six free widths)", settings.seed_model)
    self.config, self.settings, self.store, self.log = config, settings, store, log
    self.space = width_space()
    self.epochs = settings.warmup_epochs + settings.search_epochs + settings.finetune_epochs
    self.strategy = strategies.make_strategy(config.strategy, self.space, len(OBJECTIVES),
                                             config.seed, log_objectives=LOG_OBJECTIVES)
    self.rng = np.random.default_rng([config.seed, 7])
    self.sweep = sweep_lib.Sweep(config, settings, log)
    self.seed_params = int(Widths(SEED_WIDTHS).build(self.sweep.num_classes).count_params())

  def observed(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y) of the finished trials, and x of the failed ones."""
    xs: List[np.ndarray]
    ys: List[np.ndarray]
    failed: List[np.ndarray]
    xs, ys, failed = [], [], []
    for t in self.store.trials(["done", "failed"]):
      x = Widths.from_trial(t).fractions()
      y = objectives_of(t["metrics"]) if t["status"] == "done" else None
      (failed if y is None else xs).append(x)
      if y is not None:
        ys.append(y)
    dim = len(GROUPS)
    return (np.array(xs, float).reshape(-1, dim), np.array(ys, float).reshape(-1, 3),
            np.array(failed, float).reshape(-1, dim))

  def propose(self) -> Tuple[Widths, str, float]:
    """The next network (random for the first ``num_initial``), its source
    and the seconds the proposal took."""
    start = time.time()
    x, y, failed = self.observed()
    known = [Widths.from_trial(t).fractions() for t in self.store.trials()]
    excluded = set(self.space.keys(np.array(known, float).reshape(-1, len(GROUPS))))
    if len(x) + len(failed) < self.config.num_initial or len(x) < 2:
      point, source = base.new_random_points(self.space, self.rng, excluded, 1)[0], "random"
    else:
      point, source = self.strategy.propose(x, y, failed), self.config.strategy
    widths = Widths.from_fractions(point)
    if self.space.keys(widths.fractions().reshape(1, -1))[0] in excluded:
      # the strategy proposed a network already evaluated (rounded to the same
      # widths): a random unevaluated one instead, said in the source
      widths = Widths.from_fractions(base.new_random_points(self.space, self.rng, excluded, 1)[0])
      source += " (repeat -> random)"
    return widths, source, time.time() - start

  def evaluate(self, widths: Widths, trial_dir: str) -> Tuple[Dict, Dict]:
    """Train (as the uniform baseline), deploy and measure one network."""
    # Keras: imported by the process that builds networks, not by the CLI's --help
    from tea_keras import profiling  # pylint: disable=g-import-not-at-top
    start = time.time()
    model = widths.build(self.sweep.num_classes)
    model = self.sweep._train(model, self.epochs, os.path.join(trial_dir, "model"),  # pylint: disable=protected-access
                              "widths %s" % "-".join(map(str, widths.widths)))
    params = int(model.count_params())
    metrics = {"method": self.config.strategy, "widths": list(widths.widths),
               "train_seconds": time.time() - start, "params": params,
               "seed_params": self.seed_params, "size_fraction": params / float(self.seed_params),
               "macs": int(profiling.profile_model(model)["flops"])}
    measured, artifacts = self.sweep.measure(model, trial_dir)
    metrics.update(measured)
    return metrics, artifacts

  def run(self) -> Dict:
    """Run (or resume) to ``config.num_samples`` networks; the summary."""
    for t in self.store.trials(["running"]):
      self.store.requeue(t["trial_id"])
    total, started, done_here = self.config.num_samples, time.time(), 0
    with store_lib.LeaseKeeper(self.store.path):
      while True:
        pending = self.store.trials(["pending"])
        cpu0 = sweep_lib.cpu_seconds()
        if pending:
          trial, propose_s = pending[0], 0.0
        elif len(self.store.trials()) < total:
          widths, source, propose_s = self.propose()
          trial_id = self.store.add(widths, source)
          trial = [t for t in self.store.trials(["pending"]) if t["trial_id"] == trial_id][0]
        else:
          break
        self._run_trial(trial, propose_s, cpu0)
        done_here += 1
        finished = len(self.store.trials(["done", "failed"]))
        elapsed = time.time() - started
        self.log("[network %d/%d] #%d %s | elapsed %s, ETA %s" % (
            finished, total, trial["trial_id"], Widths.from_trial(trial).to_string(),
            sweep_lib._hms(elapsed), sweep_lib._hms(elapsed / done_here * (total - finished))))  # pylint: disable=protected-access
        self.refresh()
    return self.refresh()

  def _run_trial(self, trial: Dict[str, Any], propose_s: float, cpu0: float) -> None:
    widths = Widths.from_trial(trial)
    trial_dir = os.path.join(self.config.results_dir, "trials", "%04d" % trial["trial_id"])
    self.store.mark_running(trial["trial_id"])
    self.log("network #%d (%s): %s" % (trial["trial_id"], trial["source"], widths.to_string()))
    try:
      metrics, artifacts = self.evaluate(widths, trial_dir)
      metrics["propose_seconds"] = propose_s
      metrics["cpu_seconds"] = sweep_lib.cpu_seconds() - cpu0
      self.store.finish(trial["trial_id"], "done", metrics, artifacts)
    except (ValueError, RuntimeError) as e:
      self.store.finish(trial["trial_id"], "failed", {}, {}, "%s: %s" % (type(e).__name__, e))
      self.log("network #%d failed: %s" % (trial["trial_id"], e))

  def refresh(self) -> Dict:
    return outputs.refresh(self.config.results_dir, self.store.trials(),
                           self.config.objectives, None)


def run(config: Any, settings: sweep_lib.DnasSettings,
        log: Callable[[str], object] = print) -> Dict:
  """Run (or resume) the width search into ``config.results_dir``."""
  os.makedirs(config.results_dir, exist_ok=True)
  with store_lib.RunLock.acquire(config.results_dir):
    store = store_lib.TrialStore(os.path.join(config.results_dir, "trials.db"))
    try:
      return WidthSearch(config, settings, store, log).run()
    finally:
      store.close()


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit("error: unexpected arguments %s (flags are --name=value)" % argv[1:])
  console.quiet_native_logs()
  try:
    settings = dnas_main.settings_from_flags()
    settings.validate()
    if settings.seed_model != "resnet8":
      raise ValueError(errors.message("seed_model", "resnet8 (the width search knows "
                                      "ResNet-8's six free widths)", settings.seed_model,
                                      noun="flag"))
    config = search_flags.config_from_flags()
    config_lib.validate(config)
    store_lib.check_not_locked(config.results_dir)
    config = loop.resolve(config)
    loop.check_data(config)
    dnas_main.check_results_dir(config, settings, kind="widths")
  except (ValueError, store_lib.StoreError) as e:
    sys.exit("error: %s" % e)
  summary = run(config, settings, log=lambda line: print(line, flush=True))
  counts = summary.get("counts", {})
  print("width search finished: %d networks (%s); outputs in %s" % (
      summary["trials"], ", ".join("%s %d" % kv for kv in sorted(counts.items()) if kv[1]),
      config.results_dir))
  if counts.get("failed"):
    sys.exit(3 if counts.get("done") else 1)


if __name__ == "__main__":
  dnas_main.define_flags()
  flags.adopt_module_key_flags(dnas_main)  # --help lists the sweep's and the search's flags
  app.run(main, argv=sys.argv[:1] + search_flags.expand_flagfiles(sys.argv[1:]))
