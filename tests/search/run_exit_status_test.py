"""Exit status of ``python -m search.run`` (search/run.py's docstring): 3 when
the search finished with some trials failed, the others done."""

import os
import subprocess
import sys

import tensorflow as tf

from search import store as store_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The tiny search of tests/search/loop_test.py: N=1, F=4, 1 epoch on 256 images.
TINY = ["--dataset=cifar10_sample", "--num_cells=1", "--filters=4", "--epochs=1",
        "--train_images=256", "--measure_images=100", "--measure_batch_size=50",
        "--measure_repeats=1", "--objectives=error,time", "--device=cpu",
        "--runtime=onnxruntime", "--power_source=none", "--contention_policy=warn"]


class RunExitStatusTest(tf.test.TestCase):

  def test_run_exits_3_when_some_trials_failed(self):
    d = os.path.join(self.get_temp_dir(), "one_failed")
    # Trial #2's own directory cannot be made (a file holds its name): that
    # trial fails, trial #1 and the search do not. (An empty store first: a
    # missing one beside trials/ entries is refused as damaged.)
    os.makedirs(os.path.join(d, "trials"))
    store_lib.TrialStore(os.path.join(d, "trials.db")).close()
    with open(os.path.join(d, "trials", "0002"), "w") as f:
      f.write("not a directory")
    out = subprocess.run(
        [sys.executable, "-m", "search.run", "--results_dir=" + d, "--num_samples=2",
         "--num_initial=2", "--strategy=random"] + TINY,
        capture_output=True, text=True, cwd=ROOT, timeout=900,
        env=dict(os.environ, PYTHONPATH=ROOT, TEA_LOCK_DIR=os.path.join(d, "locks")))
    self.assertEqual(out.returncode, 3, msg="expected exit status 3; stderr:\n" + out.stderr[-3000:])
    self.assertIn("warning: the search finished with 1 failed trial(s) of 2 (their errors: "
                  "results.csv in %s); fix the cause and run again with --retry_failed." % d,
                  out.stderr)
    store = store_lib.TrialStore(os.path.join(d, "trials.db"))
    trials = {t["trial_id"]: t for t in store.trials()}
    store.close()
    self.assertEqual({i: t["status"] for i, t in trials.items()}, {1: "done", 2: "failed"},
                     msg={i: t["error"] for i, t in trials.items()})
    self.assertIn(os.path.join(d, "trials", "0002"), trials[2]["error"])


if __name__ == "__main__":
  tf.test.main()
