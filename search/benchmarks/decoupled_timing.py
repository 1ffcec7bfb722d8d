"""Decoupled PESMO at scale: proposal time and the hardware GPs' approximation.

  python -m search.benchmarks.decoupled_timing --hardware=2000 --error=100 --proposals=6
  python -m search.benchmarks.decoupled_timing --check_gp --hardware=2000 --held_out=500

Problem: ``cell_synthetic`` (the 20-variable cell encoding, objectives
error, time, energy; time and energy modelled in log space), groups ``error``
and ``time+energy`` (``search.optimizer.decoupled.ObjectiveGroups``), fixed
costs (``--error_cost``, ``--hardware_cost``) or, with ``--durations``,
costs predicted from recorded durations (synthetic: training 300-900 s,
growing with the cell's time; hardware 2-6 s).

Timing: ``--hardware`` distinct uniform cells with time and energy known,
the first ``--error`` of them with error known too; a new decoupled PESMO
strategy proposes once (cold: hyperparameter chains burnt in), then each of
``--proposals`` more proposals follows the measurement of the previous
proposal's group at its point (as a search loop would). Prints one line per
proposal (fit, acquisition, total wall seconds, process CPU seconds, the
group chosen, the observation counts) and the median and range of the
warm proposals, with ``uptime`` before and after.

``--check_gp``: for each hardware objective, one hyperparameter sample of an
``ObjectiveGP`` fitted to ``--hardware`` rows, conditioned exactly and by
the low-rank DTC posterior (``search.optimizer.lowrank``, ``--inducing``
rows (``--lengthscale_prior``: on this space the default prior's GPs barely
predict unseen cells, the dimension-scaled one's do; BENCHMARKS.md); prints,
on ``--held_out`` other cells, the largest and median
differences of the posterior means (in units of the GP's standardized
outputs) and of the posterior standard deviations (relative), both
models' RMSE against the true values, and the seconds each took.

BLAS threads default to 1 (as ``search.benchmarks.benchmark``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

# pylint: disable=wrong-import-position
import subprocess
import time
from typing import Any, Sequence

import numpy as np
from absl import app, flags

from search.benchmarks.problems import Problem, make_problem
from search.optimizer import lowrank
from search.optimizer.decoupled import TARGETS, ObjectiveGroups, make_decoupled_strategy
from search.optimizer.gp import ObjectiveGP
from search.optimizer.objective_groups import Proposal

FLAGS = flags.FLAGS
OBJECTIVES = ("error", "time", "energy")


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_integer("hardware", 2000, "Cells with time and energy known.", lower_bound=3)
  flags.DEFINE_integer("error", 100, "Of them, cells with error known.", lower_bound=2)
  flags.DEFINE_integer("proposals", 6, "Proposals after the cold one.", lower_bound=1)
  flags.DEFINE_float("error_cost", 300.0, "Cost of one training (error).", lower_bound=0.0)
  flags.DEFINE_float("hardware_cost", 3.0, "Cost of one time+energy measurement.",
                     lower_bound=0.0)
  flags.DEFINE_bool("durations", False, "Costs predicted from recorded durations instead.")
  flags.DEFINE_integer("seed", 0, "Seed of the cells and of the strategy.")
  flags.DEFINE_enum("target", TARGETS[0], list(TARGETS), "Decoupled PESMO's target "
                    "(search.optimizer.decoupled): screen (default) or pareto_set.")
  flags.DEFINE_bool("check_gp", False, "Instead: the low-rank GP against the exact one.")
  flags.DEFINE_integer("held_out", 500, "--check_gp: held-out cells.", lower_bound=1)
  flags.DEFINE_integer("inducing", 1000, "--check_gp: inducing rows of the low-rank GP.",
                       lower_bound=2)
  flags.DEFINE_enum("lengthscale_prior", "lognormal", ["lognormal", "dimension_scaled"],
                    "The GPs' lengthscale prior (``ObjectiveGP``).")


def _uptime() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _synthetic_durations(problem: Problem, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """(n, 2) seconds: training grows with the cell's time (300-900 s), a
  hardware measurement 2-6 s; NaN where the group is not measured."""
  truth = problem.evaluate(x)
  rank = np.argsort(np.argsort(truth[:, 1])) / max(1, x.shape[0] - 1)
  train = np.where(np.isfinite(y[:, 0]), 300.0 + 600.0 * rank, np.nan)
  hw = np.where(np.isfinite(y[:, 1]), 2.0 + 4.0 * rank, np.nan)
  return np.stack([train, hw], axis=1)


def _cells(problem: Problem, count: int, seed: int) -> np.ndarray:
  x = problem.space.sample(np.random.default_rng(seed), count, min_count=count)
  keys = problem.space.keys(x)
  _, first = np.unique(np.array(keys, dtype=object).astype(str), return_index=True)
  return x[np.sort(first)]


def time_proposals(hardware: int, error: int, proposals: int, costs: Sequence[float],
                   durations: bool, seed: int = 0, lengthscale_prior: str = "lognormal",
                   target: str = TARGETS[0]) -> list[dict[str, Any]]:
  """Prints and returns one record per proposal (module doc)."""
  problem = make_problem("cell_synthetic")
  x = _cells(problem, hardware + 50, seed)[:hardware]
  y = problem.evaluate(x)
  y[error:, 0] = np.nan
  groups = ObjectiveGroups(("error", "time+energy"), ((0,), (1, 2)),
                           None if durations else tuple(costs), 3)
  strategy = make_decoupled_strategy("pesmo", problem.space, groups, seed=seed,
                                     log_objectives=[False, True, True],
                                     lengthscale_prior=lengthscale_prior, target=target)
  print("uptime before: %s" % _uptime())
  records: list[dict[str, Any]] = []
  for i in range(proposals + 1):
    d = _synthetic_durations(problem, x, y) if durations else None
    start, cpu = time.perf_counter(), time.process_time()
    proposal = strategy.propose(x, y, durations=d)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    counts = np.isfinite(y[:, [0, 1]]).sum(0)
    record: dict[str, Any] = dict(strategy.timings, total_seconds=total, cpu_seconds=cpu,
                                  group=groups.names[proposal.group],
                                  error_rows=int(counts[0]), hardware_rows=int(counts[1]))
    records.append(record)
    print("%s: fit %.2f s, acquisition %.2f s, total %.2f s wall, %.2f s CPU; %d error + %d "
          "hardware observations; chose %s" % (
              "cold" if i == 0 else "warm %d" % i, record["fit_seconds"],
              record["acquisition_seconds"], total, cpu, counts[0], counts[1], record["group"]),
          flush=True)
    x, y = _measure(problem, groups, x, y, proposal)
  warm = np.array([r["total_seconds"] for r in records[1:]])
  print("warm proposals: median %.2f s wall, range %.2f-%.2f s (%d); values %s" % (
      np.median(warm), warm.min(), warm.max(), warm.size,
      ", ".join("%.2f" % v for v in warm)))
  print("uptime after: %s" % _uptime())
  return records


def _measure(problem: Problem, groups: ObjectiveGroups, x: np.ndarray, y: np.ndarray,
             proposal: Proposal) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) with the proposal's group measured at its point."""
  key = problem.space.keys(proposal.point[None])[0]
  keys = problem.space.keys(x)
  if key in keys:
    i = keys.index(key)
  else:
    i = x.shape[0]
    x = np.vstack([x, proposal.point])
    y = np.vstack([y, np.full(3, np.nan)])
  members = list(groups.members[proposal.group])
  y[i, members] = problem.evaluate(proposal.point[None])[0, members]
  return x, y


def check_low_rank(hardware: int, held_out: int, inducing: int, seed: int = 0,
                   lengthscale_prior: str = "lognormal") -> None:
  """Prints the low-rank DTC posterior against the exact one (module doc)."""
  problem = make_problem("cell_synthetic")
  cells = _cells(problem, hardware + held_out + 50, seed)
  x, xt = cells[:hardware], cells[hardware:hardware + held_out]
  z, zt = problem.space.encode(x), problem.space.encode(xt)
  y, yt = problem.evaluate(x), problem.evaluate(xt)
  for k in (1, 2):
    gp = ObjectiveGP(problem.space.groups, log_transform=True, num_samples=1, seed=seed,
                     lengthscale_prior=lengthscale_prior)
    gp.fit(z, y[:, k])
    s = gp.samples[0]
    lengths, amp, noise, mean = gp._unpack(s.theta)  # pylint: disable=protected-access
    start = time.perf_counter()
    exact = gp._condition(s.theta, z, gp.standardize(y[:, k]), strict=True)  # pylint: disable=protected-access
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    low = lowrank.condition_low_rank(s.theta, lengths[gp.groups], amp, noise, mean, z,
                                     gp.standardize(y[:, k]), gp.kernel, inducing)
    t_low = time.perf_counter() - start
    (me, ve), (ml, vl) = exact.predict(zt), low.predict(zt)  # type: ignore[union-attr]  # strict
    truth = gp.standardize(yt[:, k])
    dm, ds = np.abs(me - ml), np.abs(np.sqrt(vl) - np.sqrt(ve)) / np.sqrt(ve)
    print("%s: n=%d, %d held out, %d inducing rows (of %d asked): |mean diff| max %.4f median "
          "%.5f (standardized units); |sd diff|/sd max %.4f median %.5f; RMSE exact %.4f "
          "low-rank %.4f; noise sd %.4f; condition %.2f s exact, %.2f s low-rank" % (
              OBJECTIVES[k], hardware, held_out, low.z.shape[0], inducing, dm.max(),
              np.median(dm), ds.max(), np.median(ds), np.sqrt(np.mean((me - truth) ** 2)),
              np.sqrt(np.mean((ml - truth) ** 2)), np.sqrt(noise), t_exact, t_low), flush=True)


def main(argv: Sequence[str]) -> None:
  del argv
  if FLAGS.check_gp:
    check_low_rank(FLAGS.hardware, FLAGS.held_out, FLAGS.inducing, FLAGS.seed,
                   FLAGS.lengthscale_prior)
    return
  if FLAGS.error > FLAGS.hardware:
    raise ValueError("Invalid value for flag `--error`. Expected at most --hardware=%d. "
                     "Received --error=%d." % (FLAGS.hardware, FLAGS.error))
  time_proposals(FLAGS.hardware, FLAGS.error, FLAGS.proposals,
                 (FLAGS.error_cost, FLAGS.hardware_cost), FLAGS.durations, FLAGS.seed,
                 FLAGS.lengthscale_prior, FLAGS.target)


if __name__ == "__main__":
  define_flags()
  app.run(main)
