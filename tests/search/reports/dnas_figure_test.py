"""Tests of ``python -m search.reports --figure=dnas``: a DNAS sweep drawn
beside a search, each with its (error, time) front."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from search import store as store_lib
from search.dnas import sweep
from tea_keras import space

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = {"device": "cpu", "runtime": "onnxruntime", "dataset": "cifar10_sample",
          "objectives": ["error", "time"], "strategy": "pesmo"}


def _write(results_dir, config, entries):
  """A results dir: config.json and a trial store of done trials, each
  ``(genotype-like, metrics)``."""
  os.makedirs(results_dir)
  with open(os.path.join(results_dir, "config.json"), "w") as f:
    json.dump(config, f)
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  try:
    for genotype, metrics in entries:
      trial_id = store.add(genotype, "test")
      store.mark_running(trial_id)
      store.finish(trial_id, "done", metrics, {})
  finally:
    store.close()


def _run(*args):
  return subprocess.run([sys.executable, "-m", "search.reports"] + list(args), cwd=REPO,
                        capture_output=True, text=True, timeout=300)


class DnasFigureTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    root = self.get_temp_dir()
    self.dnas_dir = os.path.join(root, "dnas")
    self.search_dir = os.path.join(root, "search")
    # (time s per 100 images, error): DNAS (0.2, 0.5) and (0.1, 0.6) are a
    # front, (0.3, 0.55) is dominated; in the search (0.15, 0.4) dominates
    # (0.25, 0.45).
    dnas = [(sweep.Point("dnas", 0.5, 0.0), 0.2, 0.5), (sweep.Point("dnas", 0.5, 1.0), 0.1, 0.6),
            (sweep.Point("uniform", 0.5, None), 0.3, 0.55)]
    _write(self.dnas_dir, dict(CONFIG, dnas={"seed_model": "resnet8"}), [
        (p, {"time_s": t, "images": 100, "deployed_val_error": e, "size_target_fraction": 0.5,
             "method": p.method, "params": 1000}) for p, t, e in dnas])
    _write(self.search_dir, CONFIG, [
        (g, {"time_s": t, "images": 100, "val_error": e})
        for g, (t, e) in zip(space.sample_many(5, 2), ((0.15, 0.4), (0.25, 0.45)))])

  def test_figure_dnas_draws_both_fronts_and_writes_its_data(self):
    out = os.path.join(self.get_temp_dir(), "out")
    proc = _run("--figure=dnas", "--results_dir=" + self.dnas_dir,
                "--pesmo_dir=" + self.search_dir, "--out_dir=" + out)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("DNAS: 3 networks (2 on their front); search: 2 trials (1 on its front)",
                  proc.stdout)
    self.assertTrue(os.path.isfile(os.path.join(out, "dnas_vs_search.png")))
    with open(os.path.join(out, "dnas_vs_search.json")) as f:
      data = json.load(f)
    # The fronts against a brute-force dominance check.
    for name in ("dnas", "search"):
      pts = data[name]
      for p in pts:
        dominated = any(q["error"] <= p["error"] and q["time_per_image_s"] <= p["time_per_image_s"]
                        and (q["error"], q["time_per_image_s"]) != (p["error"],
                                                                   p["time_per_image_s"])
                        for q in pts)
        self.assertEqual(p["on_front"], not dominated)
    self.assertAllClose(sorted(p["time_per_image_s"] for p in data["dnas"]),
                        np.array([0.1, 0.2, 0.3]) / 100)

  def test_figure_dnas_refuses_searches_measured_differently_and_swapped_dirs(self):
    other = os.path.join(self.get_temp_dir(), "gpu_search")
    _write(other, dict(CONFIG, device="gpu"), [])
    proc = _run("--figure=dnas", "--results_dir=" + self.dnas_dir, "--pesmo_dir=" + other)
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("device differ", proc.stderr)
    proc = _run("--figure=dnas", "--results_dir=" + self.search_dir,
                "--pesmo_dir=" + self.dnas_dir)
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("is not a DNAS sweep", proc.stderr)


if __name__ == "__main__":
  tf.test.main()
