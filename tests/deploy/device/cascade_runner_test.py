"""Tests of deploy/device/cascade_runner.py: the decision rule, choosing a point, the
runner against a per-image reference, the Runtime path (create, the
measurement protocol, deploy.measure, a device script), zips, Python 3.6.

``write_toy_cascade`` (linear ONNX stages written with onnx.helper, no
TensorFlow) is shared with tests/search/cascade_test.py.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from deploy.device import cascade_runner
from deploy.device import run_cascade
from deploy.device import power as power_lib
from deploy.device import runtimes
from deploy.device import session
from deploy.device.runtimes import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VERMIN = [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())"]


def linear_onnx(path, seed, scale=0.02, classes=10, weights=None):
  """A linear classifier ``images (N, 32, 32, 3) -> logits (N, classes)``:
  random, or ``weights`` = (w (3072, classes), b (classes,))."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import helper, numpy_helper, TensorProto  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  if weights is None:
    weights = (scale * rng.normal(size=(3072, classes)), rng.normal(size=classes))
  inits = [numpy_helper.from_array(np.array([-1, 3072], np.int64), "shape"),
           numpy_helper.from_array(np.asarray(weights[0], np.float32), "w"),
           numpy_helper.from_array(np.asarray(weights[1], np.float32), "b")]
  nodes = [helper.make_node("Reshape", ["images", "shape"], ["flat"]),
           helper.make_node("MatMul", ["flat", "w"], ["mm"]),
           helper.make_node("Add", ["mm", "b"], ["logits"])]
  graph = helper.make_graph(
      nodes, "toy", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 32, 32, 3])],
      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, classes])], inits)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
  model.ir_version = 8
  onnx.save(model, path)
  return path


def toy_points(num_stages):
  """Three points: everything at stage 1, thresholds of 0.3, everything at the last."""
  rows = [[0.0] * (num_stages - 1), [0.3] * (num_stages - 1), [1.0] * (num_stages - 1)]
  return [{"thresholds": t, "error": e, "time_s_per_image": c, "energy_j_per_image": 10 * c,
           "exit_fractions": []} for t, e, c in zip(rows, (0.5, 0.4, 0.3), (1e-4, 2e-4, 4e-4))]


def write_toy_cascade(directory, num_stages=3, confidence="max_softmax", points=None):
  """A cascade directory of ``num_stages`` linear ONNX stages; returns it."""
  os.makedirs(os.path.join(directory, "stages"), exist_ok=True)
  stages = []
  for k in range(num_stages):
    rel = os.path.join("stages", "stage%d.onnx" % (k + 1))
    linear_onnx(os.path.join(directory, rel), seed=k, scale=0.01 * (k + 1))
    stages.append({"file": rel, "name": "toy %d" % k, "time_s_per_image": 1e-4 * (k + 1)})
  spec = {"format": cascade_runner.FORMAT_NAME, "version": cascade_runner.FORMAT_VERSION,
          "confidence": confidence, "stages": stages,
          "points": points if points is not None else toy_points(num_stages)}
  with open(os.path.join(directory, cascade_runner.CASCADE_FILE), "w") as f:
    json.dump(spec, f)
  return directory


def toy_images(count=64, seed=0):
  return np.random.default_rng(seed).normal(size=(count, 32, 32, 3)).astype(np.float32)


def reference_predict(directory, images):
  """Per-image loop of the rule, with each stage's logits from ONNX Runtime."""
  _, spec = cascade_runner.load_spec(directory)
  logits = []
  for stage in spec["stages"]:
    rt = runtimes.create("onnxruntime", os.path.join(directory, stage["file"]))
    logits.append(rt.predict(images))
  return logits, spec


class FixedBatchStage(base.Runtime):
  """A stage that only runs batches of exactly ``fixed_batch_size`` images."""
  name = "fixed"

  def __init__(self, inner, fixed):
    self.inner, self.fixed_batch_size, self.sizes = inner, fixed, []

  def predict(self, batch):
    if len(batch) != self.fixed_batch_size:
      raise ValueError("batch of %d" % len(batch))
    self.sizes.append(len(batch))
    return self.inner.predict(batch)


class DecisionRuleTest(tf.test.TestCase, parameterized.TestCase):

  def test_confidence_max_softmax_and_margin(self):
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]]))
    self.assertAllClose(cascade_runner.confidence(logits), [0.7, 0.4])
    self.assertAllClose(cascade_runner.confidence(logits, "margin"), [0.5, 0.0], atol=1e-12)
    with self.assertRaisesRegex(ValueError, "max_softmax\\|margin.*kind='entropy'"):
      cascade_runner.confidence(logits, "entropy")

  def test_confidence_stays_below_one(self):
    conf = cascade_runner.confidence(np.array([[1000.0, 0.0, 0.0]]))
    self.assertLess(conf[0], 1.0)
    self.assertFalse(cascade_runner.answers(conf, 1.0)[0])
    self.assertTrue(cascade_runner.answers(conf, 0.999)[0])

  def test_answers_threshold_zero_answers_all_and_one_none(self):
    conf = np.array([0.0, 0.3, 0.9])
    self.assertAllEqual(cascade_runner.answers(conf, 0.0), [True, True, True])
    self.assertAllEqual(cascade_runner.answers(conf, 0.3), [False, True, True])
    self.assertAllEqual(cascade_runner.answers(conf, 1.0), [False, False, False])


class ChoosePointTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.points = toy_points(3)

  def test_choose_point_budgets_pick_lowest_error_within(self):
    self.assertEqual(cascade_runner.choose_point(self.points, max_energy_per_image_j=2.5e-3), 1)
    self.assertEqual(cascade_runner.choose_point(self.points, max_time_per_image_s=1e-4), 0)
    self.assertEqual(cascade_runner.choose_point(self.points, max_time_per_image_s=1.0), 2)

  def test_choose_point_max_error_picks_cheapest_within(self):
    self.assertEqual(cascade_runner.choose_point(self.points, max_error=0.45), 1)
    self.assertEqual(cascade_runner.choose_point(self.points, max_error=0.5), 0)

  def test_choose_point_default_is_lowest_error(self):
    self.assertEqual(cascade_runner.choose_point(self.points), 2)

  def test_choose_point_infeasible_says_what_front_reaches(self):
    with self.assertRaisesRegex(ValueError, "`max_energy_per_image_j`. Expected at least "
                                "0.001.*max_energy_per_image_j=1e-05"):
      cascade_runner.choose_point(self.points, max_energy_per_image_j=1e-5)
    with self.assertRaisesRegex(ValueError, "max_error.*at least 0.3"):
      cascade_runner.choose_point(self.points, max_error=0.1)

  def test_choose_point_without_energy_refuses_energy_budget(self):
    for p in self.points:
      p["energy_j_per_image"] = None
    with self.assertRaisesRegex(ValueError, "no energy_j_per_image"):
      cascade_runner.choose_point(self.points, max_energy_per_image_j=1.0)
    self.assertEqual(cascade_runner.choose_point(self.points, max_error=0.45), 1)  # by time


class CascadeRuntimeTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "deploy_cascade")
    cls.dir3 = write_toy_cascade(os.path.join(cls.root, "three"), 3)
    cls.images = toy_images(64)

  @parameterized.named_parameters(("max_softmax", "max_softmax", [0.25, 0.35]),
                                  ("margin", "margin", [0.05, 0.1]))
  def test_predict_matches_per_image_rule(self, kind, thresholds):
    d = write_toy_cascade(os.path.join(self.root, kind), 3, kind,
                          points=[dict(toy_points(3)[1], thresholds=thresholds)])
    logits, _ = reference_predict(d, self.images)
    rt = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=d)
    got = rt.predict(self.images)
    stages = []
    for n in range(len(self.images)):
      s = 0
      while s < 2 and not cascade_runner.answers(cascade_runner.confidence(logits[s][n:n + 1], kind),
                                          thresholds[s])[0]:
        s += 1
      stages.append(s)
      self.assertAllClose(got[n], logits[s][n], atol=1e-6)
    self.assertAllEqual(rt.last_stages, stages)
    self.assertGreater(len(set(stages)), 1)  # the toy exercises more than one stage
    reach = [len(self.images), sum(s >= 1 for s in stages), sum(s >= 2 for s in stages)]
    self.assertEqual(rt.stage_images, reach)
    rt.close()

  def test_thresholds_zero_and_one_run_first_and_last_stage(self):
    logits, _ = reference_predict(self.dir3, self.images)
    first = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, point=0)
    self.assertAllClose(first.predict(self.images), logits[0], atol=1e-6)
    self.assertEqual(first.stage_images, [64, 0, 0])
    last = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=os.path.join(self.dir3, cascade_runner.CASCADE_FILE),
                           point=2)
    self.assertAllClose(last.predict(self.images), logits[2], atol=1e-6)
    self.assertEqual(last.stage_images, [64, 64, 64])

  def test_fixed_batch_stages_get_padded_batches(self):
    rt = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, point=1)
    plain = rt.predict(self.images)
    fixed = [FixedBatchStage(s, 16) for s in rt.stages]
    rt.stages = fixed
    self.assertAllClose(rt.predict(self.images), plain, atol=1e-6)
    self.assertTrue(all(n == 16 for s in fixed for n in s.sizes))

  def test_onnxruntime_stages_do_not_spin(self):
    rt = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, point=1)
    for stage in rt.stages:
      options = stage.session.get_session_options()
      for pool in ("intra_op", "inter_op"):
        self.assertEqual(options.get_session_config_entry("session.%s.allow_spinning" % pool),
                         "0")
      self.assertEqual(stage.session.get_providers(), ["CPUExecutionProvider"])
    self.assertEqual([s["allow_spinning"] for s in rt.describe()["cascade"]["stage_runtimes"]],
                     [False] * 3)

  def test_create_picks_point_by_budget(self):
    rt = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, max_error=0.45)
    self.assertEqual((rt.point_index, rt.thresholds), (1, [0.3, 0.3]))
    self.assertEqual(rt.describe()["cascade"]["predicted"]["error"], 0.4)

  def test_create_refuses_bad_point_and_keras(self):
    with self.assertRaisesRegex(ValueError, "point.*\\[0, 2\\].*point=5"):
      cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, point=5)
    with self.assertRaisesRegex(ValueError, "reads its ONNX stages.*runtime='keras'"):
      cascade_runner.CascadeRuntime(runtime="keras", model_path=self.dir3)

  def test_load_spec_rejects_wrong_files(self):
    with self.assertRaisesRegex(base.ModelLoadError, "expected a directory holding cascade.json"):
      cascade_runner.load_spec(self.root)
    bad = os.path.join(self.root, "bad")
    write_toy_cascade(bad, 2, points=[{"thresholds": [0.1, 0.2], "error": 0.1,
                                       "time_s_per_image": 1.0}])
    with self.assertRaisesRegex(base.ModelLoadError, "point 0 has 2 thresholds; expected 1"):
      cascade_runner.load_spec(bad)

  def test_load_spec_rejects_missing_stage_and_bad_thresholds(self):
    bad = write_toy_cascade(os.path.join(self.root, "missing"), 2)
    os.remove(os.path.join(bad, "stages", "stage2.onnx"))
    with self.assertRaisesRegex(base.ModelLoadError, "stage 2's model stages/stage2.onnx is "
                                "missing"):
      cascade_runner.load_spec(bad)
    for thresholds, message in (([1.5], "threshold 1.5; expected numbers in \\[0, 1\\]"),
                                (["0.3"], "threshold '0.3'; expected numbers"),
                                (None, "point 0 has no list of thresholds; expected 1")):
      d = write_toy_cascade(os.path.join(self.root, "bad_t"), 2, points=[
          {"thresholds": thresholds, "error": 0.1, "time_s_per_image": 1.0}])
      with self.assertRaisesRegex(base.ModelLoadError, message):
        cascade_runner.load_spec(d)

  def test_run_measurement_times_the_cascade(self):
    rt = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, point=1)
    with power_lib.create("none") as power:
      result = session.run_measurement(rt, power, self.images, "cpu", batch_size=32,
                                       repeats=2, warmup_batches=1, contention_policy="warn")
    self.assertGreater(result["time_s"], 0.0)
    self.assertEqual(result["images"], 64)
    info = result["runtime_info"]["cascade"]
    self.assertEqual(info["point"], 1)
    self.assertEqual(info["stage_images"][0], 32 + 2 * 64)  # warm-up batch + 2 repeats
    self.assertLessEqual(info["reach_fractions"][2], info["reach_fractions"][1])

  def test_pack_unpack_round_trip(self):
    zipped = cascade_runner.pack(self.dir3, os.path.join(self.root, "c.zip"))
    out = cascade_runner.unpack(zipped, os.path.join(self.root, "unpacked"))
    a = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=self.dir3, point=1).predict(self.images)
    b = cascade_runner.CascadeRuntime(runtime="onnxruntime", model_path=out, point=1).predict(self.images)
    self.assertAllClose(a, b)

  def test_unpack_refuses_unexpected_members(self):
    zipped = cascade_runner.pack(self.dir3, os.path.join(self.root, "evil.zip"))
    with zipfile.ZipFile(zipped, "a") as z:
      z.writestr("../escape.txt", "x")
    with self.assertRaisesRegex(ValueError, "unexpected \\['../escape.txt'\\]"):
      cascade_runner.unpack(zipped, os.path.join(self.root, "evil"))
    self.assertFalse(os.path.exists(os.path.join(self.root, "escape.txt")))
    with self.assertRaisesRegex(ValueError, "at most 10 bytes"):
      cascade_runner.unpack(cascade_runner.pack(self.dir3, os.path.join(self.root, "big.zip")),
                     os.path.join(self.root, "big"), max_bytes=10)


class DeviceSideTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "deploy_cascade_cli")
    cls.dir = write_toy_cascade(os.path.join(cls.root, "c"), 3)
    cls.data = os.path.join(cls.root, "images.npy")
    np.save(cls.data, toy_images(64))
    cls.labels = os.path.join(cls.root, "labels.npy")
    np.save(cls.labels, np.arange(64) % 10)

  def test_runner_is_python36_clean(self):
    out = subprocess.run(VERMIN + ["-t=3.6-", "--no-tips", "--violations",
                                   "deploy/device/cascade_runner.py", "deploy/device/runtimes/__init__.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

  def test_runner_and_cpu_script_run_without_tensorflow(self):
    code = ("import io, json, runpy, sys, contextlib\n"
            "from deploy.device import run_cascade\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "  rc = run_cascade.main(['--cascade=%s', '--data=%s', '--labels=%s', '--max_error=0.45',"
            " '--batch_size=16', '--out=%s'])\n"
            "sys.stderr.write('RUNNER=' + buf.getvalue())\n"
            "sys.argv = ['measure', '--model=%s', '--data=%s', '--batch_size=16',"
            " '--repeats=1', '--warmup_batches=0', '--power_source=none']\n"
            "runpy.run_module('deploy.device.cpu.measure', run_name='__main__')\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tea_keras', 'absl', 'search'))\n"
            "sys.stderr.write('HEAVY=%%r\\n' %% heavy)\n"
            ) % (self.dir, self.data, self.labels, os.path.join(self.root, "pred.npy"),
                 self.dir, self.data)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    self.assertIn("HEAVY=[]", out.stderr)
    runner = json.loads(out.stderr.split("RUNNER=")[1].splitlines()[0])
    self.assertEqual((runner["point"], runner["images"]), (1, 64))
    self.assertEqual(sum(runner["exit_counts"]), 64)
    self.assertBetween(runner["error"], 0.0, 1.0)
    self.assertEqual(np.load(os.path.join(self.root, "pred.npy")).shape, (64,))
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertGreater(measured["time_s"], 0.0)
    self.assertEqual(measured["runtime_info"]["cascade"]["point"], 2)  # lowest error

  def test_deploy_measure_cli_measures_a_cascade_point(self):
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--model=" + self.dir, "--cascade_point=1", "--json",
         "--num_images=64", "--batch_size=32", "--repeats=1", "--warmup_batches=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertEqual(result["runtime_info"]["cascade"]["thresholds"], [0.3, 0.3])
    self.assertEqual(result["images"], 64)

  def test_deploy_measure_cli_measures_a_cascade_zip(self):
    zipped = cascade_runner.pack(self.dir, os.path.join(self.root, "c.zip"))
    out = subprocess.run(  # the lowest error within both budgets: point 1 (0.4, 2e-4 s)
        [sys.executable, "-m", "deploy.measure", "--model=" + zipped, "--max_error=0.45", "--json",
         "--max_time_per_image_s=2.5e-4", "--num_images=64", "--batch_size=32", "--repeats=1",
         "--warmup_batches=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertEqual(result["runtime_info"]["cascade"]["point"], 1)
    self.assertEqual(result["model"], zipped)

  def test_cascade_cli_budget_flags_are_per_image(self):
    args = run_cascade.build_parser().parse_args(
        ["--cascade=c", "--max_time_per_image_s=1e-4", "--max_energy_per_image_j=2.5e-3"])
    self.assertEqual((args.max_time_per_image_s, args.max_energy_per_image_j), (1e-4, 2.5e-3))
    for old in ("--max_time_s=1e-4", "--max_energy_j=2.5e-3"):  # a search's totals
      with self.assertRaises(SystemExit, msg=old) as ctx:
        run_cascade.build_parser().parse_args(["--cascade=c", old])
      self.assertEqual(ctx.exception.code, 2)

  def test_deploy_measure_cli_refuses_cascade_flags_for_a_model(self):
    model = os.path.join(self.dir, "stages", "stage1.onnx")
    out = subprocess.run(
        [sys.executable, "-m", "deploy.measure", "--model=" + model, "--max_error=0.1",
         "--num_images=8"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("apply to a cascade directory", out.stderr)


if __name__ == "__main__":
  tf.test.main()
