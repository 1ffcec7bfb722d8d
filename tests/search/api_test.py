"""Tests of search/optimizer/study.py (ask/tell) and search/api.py (a search
from Python, its results as objects), and of the README's Python example,
which is run as written (its results directory moved to a temporary one)."""

import os
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from search import api
from search import cellspace
from search.optimizer import design
from search.optimizer import study as study_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(num_samples=2, num_initial=2, epochs=1, train_images=256, measure_images=200,
            measure_repeats=1, contention_policy="warn")


def _non_dominated(y):
  """Brute force: the rows no other row dominates (minimization)."""
  y = np.asarray(y, float)
  keep = []
  for i in range(len(y)):
    dominated = any(np.all(y[j] <= y[i]) and np.any(y[j] < y[i])
                    for j in range(len(y)) if j != i)
    if not dominated:
      keep.append(i)
  return keep


def _zdt1(x):
  return [float(x[0]), float(1.0 - np.sqrt(x[0]) + x[1])]


class StudyTest(tf.test.TestCase):

  def test_ask_tell_never_repeats_and_its_front_is_the_non_dominated_told_points(self):
    space = design.continuous_space([(0.0, 1.0), (0.0, 1.0)])
    s = study_lib.Study(space, num_objectives=2, strategy="random", seed=3, num_initial=4)
    asked, told = [], []
    for i in range(12):
      x = s.ask()
      self.assertTrue(np.all((x >= 0.0) & (x <= 1.0)))
      asked.append(x)
      if i == 5:
        s.tell(x, None)          # a failed evaluation: not modelled, never asked again
      else:
        s.tell(x, _zdt1(x))
        told.append(x)
    self.assertLen({tuple(np.round(x, 9)) for x in asked}, 12)
    xs, ys = s.front()
    expected = sorted(_non_dominated([_zdt1(x) for x in told]))
    got = sorted(int(np.flatnonzero(np.all(np.isclose(np.array(told), x), axis=1))[0])
                 for x in xs)
    self.assertEqual(got, expected)
    self.assertTrue(np.all(np.diff(ys[:, 0]) >= 0))

  def test_pending_points_are_asked_once_on_the_cell_space(self):
    s = study_lib.Study(cellspace.cell_space(), num_objectives=2, strategy="pesmo", seed=0,
                        num_initial=3)
    rng = np.random.default_rng(0)
    first = [s.ask() for _ in range(3)]          # three evaluations in flight at once
    for x in first:
      s.tell(x, rng.random(2))
    proposed = s.ask()                             # PESMO, conditioned on what was told
    keys = cellspace.cell_space().keys(np.vstack(first + [proposed]))
    self.assertLen(set(keys), 4)
    self.assertEqual(s.pending.shape, (1, cellspace.cell_space().dim))

  def test_tell_refuses_what_was_not_asked_and_bad_values(self):
    space = design.continuous_space([(0.0, 1.0)])
    s = study_lib.Study(space, num_objectives=2, strategy="random", num_initial=2)
    with self.assertRaisesRegex(ValueError, "Expected a point returned by ask"):
      s.tell([0.5], [1.0, 2.0])
    x = s.ask()
    with self.assertRaisesRegex(ValueError, "`values`. Expected 2 finite numbers"):
      s.tell(x, [1.0, float("nan")])
    with self.assertRaisesRegex(ValueError, "`num_initial`. Expected a positive integer"):
      study_lib.Study(space, num_objectives=2, num_initial=0)


class ApiTest(tf.test.TestCase):

  def test_config_from_reads_a_flagfile_and_overrides_like_the_command_line(self):
    config = api.config_from(os.path.join(ROOT, "flags", "quickstart.cfg"),
                             results_dir="/tmp/x", num_samples=4, objectives=("error", "time"),
                             optional_energy=False)
    self.assertEqual((config.num_samples, config.objectives, config.optional_energy,
                      config.dataset, config.recipe["filters"]),
                     (4, ("error", "time"), False, "cifar10_sample", 8))
    with self.assertRaisesRegex(ValueError, "num_samples"):
      api.config_from(num_samples=0, results_dir="/tmp/x")

  def test_load_results_refuses_a_directory_that_is_not_a_search(self):
    with self.assertRaisesRegex(ValueError, "Expected a search's results directory"):
      api.load_results(self.get_temp_dir())

  def test_readme_example_runs_and_its_front_is_the_non_dominated_trials(self):
    with open(os.path.join(ROOT, "README.md")) as f:
      readme = f.read()
    found = re.search(r"<!-- python-api -->\s*```python\n(.*?)```", readme, re.S)
    self.assertIsNotNone(found, msg="the README's Python example (after <!-- python-api -->)")
    results_dir = os.path.join(self.get_temp_dir(), "api_demo")
    code = found.group(1).replace('"runs/api_demo"', repr(results_dir))
    self.assertIn(repr(results_dir), code)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=900)
    self.assertEqual(out.returncode, 0, msg=out.stdout[-3000:] + out.stderr[-3000:])
    results = api.load_results(results_dir)
    self.assertEqual(results.counts["done"], 2)
    values = [[t["metrics"]["deployed_val_error"], t["metrics"]["time_s"]]
              for t in results.trials]
    expected = sorted(results.trials[i]["trial_id"] for i in _non_dominated(values))
    self.assertEqual(sorted(p.trial_id for p in results.front), expected)
    for p in results.front:
      self.assertIn("#%d" % p.trial_id, out.stdout)        # the table the example prints
      self.assertAllClose(p.time_per_image_s, p.time_s / 200)
    # The console of the command line ends with the front and the next steps
    run = subprocess.run([sys.executable, "-m", "search.run",
                          "--flagfile=" + os.path.join(ROOT, "flags", "quickstart.cfg"),
                          "--results_dir=" + results_dir] + [
                              "--%s=%s" % kv for kv in sorted(TINY.items())],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    self.assertEqual(run.returncode, 0, msg=run.stderr[-3000:])
    self.assertIn("Pareto front (", run.stdout)
    self.assertIn("Next steps for the best trade-offs:", run.stdout)
    self.assertIn("python -m tea_keras.train --flagfile=flags/final_train.cfg --genotype=",
                  run.stdout)
    self.assertIn("python -m search.reports --figure=table2 --model_dirs=final/trial_", run.stdout)


if __name__ == "__main__":
  tf.test.main()
