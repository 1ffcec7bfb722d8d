"""Tests for search/benchmarks/anchors.py: input checks, the missing-BoTorch
error, and a subprocess run whose JSON follows the benchmark's format from
the benchmark's own initial points."""

import contextlib
import csv
import io
import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

import numpy as np
import tensorflow as tf

from search.benchmarks import anchors, benchmark
from search.optimizer import pareto
from search.benchmarks.problems import make_problem

ROOT = pathlib.Path(__file__).resolve().parents[3]

try:
  import botorch  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  _HAVE_BOTORCH = True
except ImportError:
  _HAVE_BOTORCH = False


def _python(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable] + list(args), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def _toy_problem(folder, sizes=(1, 2, 4)):
  """A small made-up table problem: 3 ops x len(sizes) widths x 2 depths."""
  path = os.path.join(folder, "toy_%d.csv" % len(sizes))
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["op", "width", "depth", "error", "cost"])
    for op, width, depth in itertools.product(("conv", "pool", "skip"), sizes, (0, 1)):
      cost = {"conv": 3.0, "pool": 1.0, "skip": 0.5}[op] * width * (1 + depth)
      error = 40.0 / (1.0 + cost) + 2.0 * depth + (1.5 if op == "skip" else 0.0)
      w.writerow([op, width, depth, error, cost])
  return make_problem("table", table=path, variables=["op", "width", "depth"],
                      objectives=["error", "cost"], log_objectives=["cost"], num_initial=4)


class _StopAfter:
  """Wraps ``anchors.maximize``: raises KeyboardInterrupt (a stopped process)
  on call number ``calls + 1``."""

  def __init__(self, calls):
    self.calls, self.real = calls, anchors.maximize

  def __call__(self, *args, **kwargs):
    if self.calls == 0:
      raise KeyboardInterrupt("stopped")
    self.calls -= 1
    return self.real(*args, **kwargs)


class AnchorsTest(tf.test.TestCase):

  def test_check_supported_rejects_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, "Expected one of qlognehvi"):
      anchors.check_supported(make_problem("zdt1"), "qnehvi")
    with self.assertRaisesRegex(ValueError, "continuous space or a finite candidate set"):
      anchors.check_supported(make_problem("cell_synthetic"), "qlognehvi")

  def test_missing_botorch_error_names_the_extra(self):
    code = ("import sys; sys.modules['botorch'] = None\n"
            "from search.benchmarks import anchors\n"
            "try:\n  anchors.import_botorch()\n"
            "except ImportError as e:\n  print(e)\n")
    proc = _python("-c", code)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn('pip install -e ".[bench]"', proc.stdout)
    self.assertIn("Import error", proc.stdout)

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_cli_run_writes_benchmark_json_from_benchmark_initial_points(self):
    problem = make_problem("branin_currin")
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "bc.json")
      proc = _python("-m", "search.benchmarks.anchors", "--problem=branin_currin",
                     "--strategy=qlognehvi", "--budget=%d" % (problem.num_initial + 2),
                     "--seeds=1", "--first_seed=3", "--num_restarts=2", "--raw_samples=32",
                     "--out=" + out)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      with open(out) as f:
        result = json.load(f)
    self.assertEqual(result["problem"], "branin_currin")
    self.assertEqual(result["strategy"], "qlognehvi")
    run = result["runs"][0]
    self.assertEqual(run["seed"], 3)
    self.assertLen(run["log_hv_gap"], problem.num_initial + 2)
    self.assertLen(run["fit_seconds"], 2)
    self.assertLen(run["acquisition_seconds"], 2)
    # The initial scores are those of the benchmark's seeded Sobol points.
    y = problem.evaluate(benchmark.initial_design(problem, 3))
    expected = pareto.log_hv_gap(y, problem.ref_point, problem.max_hypervolume)
    self.assertAllClose(run["log_hv_gap"][problem.num_initial - 1], expected)
    self.assertTrue(np.all(np.diff(run["log_hv_gap"]) <= 1e-12))  # gaps never grow

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_table_run_proposes_only_unevaluated_rows(self):
    problem = _toy_problem(self.get_temp_dir())
    result = anchors.run_anchor(problem, "qlognparego", budget=7, seeds=1,
                                settings={"mc_samples": 16})
    run = result["runs"][0]
    self.assertLen(run["rows"], 7)
    self.assertLen(set(run["rows"]), 7)              # no row twice
    self.assertEqual(run["rows"][:4], [int(i) for i in problem.table.rows(
        benchmark.initial_design(problem, 0))])     # the benchmark's initial rows
    self.assertLen(run["hypervolume_fraction"], 7)
    self.assertEqual(result["table"]["objectives"], ["error", "cost"])
    with self.assertRaisesRegex(ValueError, "needs a continuous box"):
      anchors.check_supported(problem, "pes")

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_sample_pareto_sets_halves_points_when_botorch_finds_too_few(self):
    # BoTorch's own sampler: a random search over 20 inputs cannot return 64
    # Pareto points, so BoTorch raises; the anchor retries with 32, 16, ...
    # and returns sets BoTorch produced with a count it could fill.
    torch, _ = anchors.import_botorch()
    from botorch.acquisition.multi_objective.utils import (  # pylint: disable=g-import-not-at-top
        random_search_optimizer, sample_optimal_points)
    torch.manual_seed(0)
    x = torch.rand(8, 1, dtype=torch.float64)
    y = torch.cat([torch.sin(6 * x), torch.cos(6 * x)], -1)
    model = anchors.fit_model(torch, x.numpy(), y.numpy())
    bounds = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    sample = lambda n: sample_optimal_points(
        model=model, bounds=bounds, num_samples=3, num_points=n,
        optimizer=random_search_optimizer, optimizer_kwargs={"pop_size": 20, "max_tries": 1})[0]
    with self.assertRaisesRegex(RuntimeError, "optimal points instead of 64"):
      sample(64)
    sets = anchors.sample_pareto_sets(sample, 64)
    self.assertEqual(sets.shape[0], 3)
    self.assertEqual(sets.shape[2], 1)
    self.assertIn(sets.shape[1], (1, 2, 4, 8, 16))  # at most the 20 searched inputs

  def test_sample_pareto_sets_raises_other_errors_and_at_one_point(self):
    def other(n):
      raise RuntimeError("CUDA out of memory (n=%d)" % n)
    with self.assertRaisesRegex(RuntimeError, "out of memory"):
      anchors.sample_pareto_sets(other, 10)
    calls = []
    def never(n):
      calls.append(n)
      raise RuntimeError("Only found 0 optimal points instead of %d." % n)
    with self.assertRaisesRegex(RuntimeError, "instead of 1"):
      anchors.sample_pareto_sets(never, 10)
    self.assertEqual(calls, [10, 5, 2, 1])

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_score_rows_matches_one_row_at_a_time_for_every_batch_size(self):
    # The reference: BoTorch's qLogNEHVI called on each row alone (q = 1),
    # the definition of the value the anchor maximizes; the batched scorer
    # must give the same value on every row, whatever the batch size.
    torch, _ = anchors.import_botorch()
    problem = _toy_problem(self.get_temp_dir(), sizes=(1, 2, 4, 8, 16))   # 30 rows
    inputs = anchors._Inputs(problem.space)  # pylint: disable=protected-access
    x = benchmark.initial_design(problem, 0)
    x = np.vstack([x, problem.space.candidates[[5, 17, 25]]])
    y = problem.evaluate(x)
    ref = -problem.table.transform(np.asarray(problem.ref_point, dtype=float)[None])[0]
    torch.manual_seed(0)
    model = anchors.fit_model(torch, inputs.to_model(x), -problem.table.transform(y))
    acq = anchors.make_acquisition(torch, "qlognehvi", model, inputs.to_model(x), ref,
                                   anchors.DEFAULT_SETTINGS)
    rows, z = inputs.candidates(torch)
    self.assertEqual(z.dtype, torch.float64)
    with torch.no_grad():
      reference = torch.stack([acq(z[i:i + 1].unsqueeze(-2))[0] for i in range(z.shape[0])])
    for batch in (1, 5, 128, 2048):
      values = anchors.score_rows(torch, acq, z, batch)
      self.assertEqual(values.shape, (rows.shape[0],))
      self.assertAllClose(values.numpy(), reference.numpy(), atol=1e-10, rtol=0)
      self.assertEqual(int(torch.argmax(values)), int(torch.argmax(reference)))
    # maximize: the best row among those not yet evaluated.
    keys = set(problem.space.keys(x))
    free = np.array([k not in keys for k in problem.space.keys(rows)])
    best = rows[free][int(np.argmax(reference.numpy()[free]))]
    self.assertAllEqual(anchors.maximize(torch, "qlognehvi", acq, inputs, keys,
                                         anchors.DEFAULT_SETTINGS), best)

  @unittest.skipUnless(_HAVE_BOTORCH, "BoTorch is not installed (pip install -e \".[bench]\")")
  def test_run_anchor_resumes_a_stopped_seed_as_if_never_stopped(self):
    problem = _toy_problem(self.get_temp_dir())
    settings = {"mc_samples": 16}
    whole = anchors.run_anchor(problem, "qlognehvi", budget=8, seeds=1, settings=settings)
    out = os.path.join(self.get_temp_dir(), "resumed.json")
    with mock.patch.object(anchors, "maximize", _StopAfter(2)):
      with self.assertRaises(KeyboardInterrupt):
        anchors.run_anchor(problem, "qlognehvi", budget=8, seeds=1, settings=settings, out=out)
    with open(out) as f:
      stopped = json.load(f)
    self.assertEmpty(stopped["runs"])
    self.assertLen(stopped["partial"]["x"], 6)       # 4 initial + the 2 proposals made
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      resumed = anchors.run_anchor(problem, "qlognehvi", budget=8, seeds=2, settings=settings,
                                   out=out)
    # Progress counts only what is left: 2 proposals of seed 0 and 4 of seed 1.
    self.assertRegex(err.getvalue(), r"qlognehvi 6/6 proposals")
    self.assertEqual([r["seed"] for r in resumed["runs"]], [0, 1])
    self.assertNotIn("partial", resumed)
    self.assertEqual(resumed["runs"][0]["rows"], whole["runs"][0]["rows"])
    self.assertAllClose(resumed["runs"][0]["hypervolume_fraction"],
                        whole["runs"][0]["hypervolume_fraction"])
    self.assertLen(resumed["runs"][0]["fit_seconds"], 4)
    with open(out) as f:
      self.assertEqual(json.load(f)["runs"][1]["rows"], resumed["runs"][1]["rows"])
    again = anchors.run_anchor(problem, "qlognehvi", budget=8, seeds=2, settings=settings,
                               out=out)                # both seeds there: nothing re-run
    self.assertEqual(again["runs"], resumed["runs"])
    with self.assertRaisesRegex(ValueError, "holds runs with budget=8"):
      anchors.run_anchor(problem, "qlognehvi", budget=9, seeds=1, settings=settings, out=out)


if __name__ == "__main__":
  tf.test.main()
