"""A cascade measured through the real agent on loopback HTTP (issue 13):
stages trained here (softmax regression on the CIFAR-10 sample), the cascade
written by ``search.cascades.build`` from their model directories, uploaded by the
real client, measured on the CPU with ONNX Runtime; and bad cascade uploads
refused with a clear message before any measurement."""

import io
import json
import os
import zipfile

import numpy as np
import tensorflow as tf

from deploy.device import agent
from deploy import agent_client
from deploy.device import cascade_runner
from deploy import measure as measure_lib
from search.cascades import build_lib
from tea_keras import data
from tests.deploy.device import cascade_runner_test as toy

TOKEN = "cascade-token"
SETTINGS = dict(batch_size=32, repeats=1, warmup_batches=0, contention_policy="warn")


def train_softmax_regression(x, y, steps, lr=0.05, classes=10):
  """(w, b) of a linear softmax classifier after ``steps`` of full-batch
  gradient descent on the cross-entropy (float64)."""
  x = x.reshape(len(x), -1).astype(np.float64)
  onehot = np.eye(classes)[y]
  w, b = np.zeros((x.shape[1], classes)), np.zeros(classes)
  for _ in range(steps):
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    w -= lr * x.T @ (p - onehot) / len(x)
    b -= lr * (p - onehot).mean(0)
  return w, b


def trained_model_dir(root, name, splits, steps):
  """A model directory as ``search.cascades.build --model_dirs`` reads it: the ONNX
  model, its validation error, its measured cost on this CPU now."""
  d = os.path.join(root, name)
  os.makedirs(os.path.join(d, "measurements"))
  weights = train_softmax_regression(data.normalize(splits.x_train[:1000]),
                                     splits.y_train[:1000], steps)
  onnx_path = toy.linear_onnx(os.path.join(d, "model.onnx"), 0, weights=weights)
  x_val = data.normalize(splits.x_val).reshape(len(splits.x_val), -1)
  val_error = float(np.mean(np.argmax(x_val @ weights[0] + weights[1], 1) != splits.y_val))
  measured = measure_lib.measure(onnx_path, device="cpu", runtime="onnxruntime",
                                 power_source="none", images=data.normalize(splits.x_val[:64]),
                                 progress=False, **SETTINGS)
  measured["artifacts"] = {"export": onnx_path}
  for file, obj in (("metrics.json", {"val_error": val_error}),
                    ("config.json", {"dataset": "cifar10_sample", "split_seed": 0}),
                    ("measurements/cpu.json", measured)):
    with open(os.path.join(d, file), "w") as f:
      json.dump(obj, f)
  open(os.path.join(d, "model.keras"), "w").close()  # the ONNX export is what runs
  return d


def zip_of(members):
  """Zip bytes of {name: bytes}."""
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    for name, payload in members.items():
      z.writestr(name, payload)
  return buf.getvalue()


class AgentCascadeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "agent_cascade")
    splits = data.load("cifar10_sample", seed=0)
    dirs = [trained_model_dir(cls.root, "m%d" % k, splits, steps) for k, steps in
            enumerate((2, 60))]
    cls.cascade = os.path.join(cls.root, "cascade")
    build_lib.build(build_lib.CascadeOptions(
        out_dir=cls.cascade, model_dirs=tuple(dirs), strategies=("random",), evaluations=5),
        log=lambda *a: None)
    cls.images = np.ascontiguousarray(data.normalize(splits.x_val[:96]))
    cls.agent = agent.Agent(TOKEN, cls.images, "cpu", "none", max_upload_bytes=4 << 20)
    cls.server = agent.serve_in_thread(cls.agent)
    cls.client = agent_client.AgentClient(
        "http://127.0.0.1:%d" % cls.server.server_address[1], TOKEN, retries=0)

  @classmethod
  def tearDownClass(cls):
    cls.server.shutdown()
    cls.server.server_close()
    cls.agent.close()
    super().tearDownClass()

  def _members(self):
    _, spec = cascade_runner.load_spec(self.cascade)
    out = {}
    for stage in spec["stages"]:
      with open(os.path.join(self.cascade, stage["file"]), "rb") as f:
        out[stage["file"]] = f.read()
    return spec, out

  def test_cascade_measured_through_agent_answers_as_its_stages(self):
    _, spec = cascade_runner.load_spec(self.cascade)
    self.assertIn("cascade", self.client.health()["formats"])
    index = len(spec["points"]) // 2
    result = self.client.measure(self.cascade, cascade_point=index, **SETTINGS)
    self.assertGreater(result["time_s"], 0.0)
    self.assertIsNone(result["energy_j"])
    self.assertEqual((result["images"], result["runtime"]), (96, "onnxruntime"))
    info = result["runtime_info"]["cascade"]
    self.assertEqual((info["point"], info["thresholds"]),
                     (index, spec["points"][index]["thresholds"]))
    # stage images from the rule applied to each stage's own logits (ONNX Runtime)
    logits, _ = toy.reference_predict(self.cascade, self.images)
    reach = np.ones(len(self.images), bool)
    expected = []
    for k, t in enumerate(info["thresholds"] + [None]):
      expected.append(int(reach.sum()))
      if t is not None:
        reach &= ~cascade_runner.answers(cascade_runner.confidence(logits[k], spec["confidence"]), t)
    self.assertEqual(info["stage_images"], expected)  # one repeat, no warm-up
    self.assertEqual(info["predicted"]["time_s_per_image"],
                     spec["points"][index]["time_s_per_image"])

  def test_cascade_budget_setting_picks_point(self):
    _, spec = cascade_runner.load_spec(self.cascade)
    cheapest = min(p["time_s_per_image"] for p in spec["points"])
    result = self.client.measure(self.cascade, max_time_per_image_s=cheapest, **SETTINGS)
    point = spec["points"][result["runtime_info"]["cascade"]["point"]]
    self.assertEqual(point["time_s_per_image"], cheapest)

  def test_bad_cascade_uploads_refused_before_measuring(self):
    spec, stages = self._members()
    first, second = sorted(stages)
    bad_t = dict(spec, points=[dict(spec["points"][0], thresholds=[1.5])])
    few_t = dict(spec, points=[dict(spec["points"][0], thresholds=[])])
    cases = [
        ({"cascade.json": json.dumps(spec), first: stages[first]}, 422,
         "missing \\['%s'\\]" % second),
        ({"cascade.json": json.dumps(bad_t), first: stages[first], second: stages[second]},
         422, "threshold 1.5; expected numbers in \\[0, 1\\]"),
        ({"cascade.json": json.dumps(few_t), first: stages[first], second: stages[second]},
         422, "point 0 has 0 thresholds; expected 1"),
        ({"cascade.json": "{not json", first: stages[first]}, 422, "cascade.json is not JSON"),
        ({"cascade.json": json.dumps(spec), first: stages[first], second: stages[second],
          "../evil.txt": "x"}, 422, "unexpected \\['../evil.txt'\\]"),
        (stages, 422, "must hold cascade.json"),
        ({first: stages[first]}, 422, "declares 1 members; expected cascade.json and 1 to"),
    ]
    before = self.agent.count
    for k, (members, status, message) in enumerate(cases):
      path = os.path.join(self.get_temp_dir(), "bad%d.zip" % k)
      with open(path, "wb") as f:
        f.write(zip_of(members))
      with self.assertRaisesRegex(agent_client.AgentError, message, msg=message) as ctx:
        self.client.measure(path, fmt="cascade", **SETTINGS)
      self.assertEqual(ctx.exception.status, status)
    with self.assertRaisesRegex(agent_client.AgentError, "cascade_point.*0\\.\\.%d.*"
                                "cascade_point=99" % (len(spec["points"]) - 1)):
      self.client.measure(self.cascade, cascade_point=99, **SETTINGS)
    with self.assertRaisesRegex(agent_client.AgentError, "max_error.*Expected at least"):
      self.client.measure(self.cascade, max_error=1e-9, **SETTINGS)
    with self.assertRaisesRegex(agent_client.AgentError, "\\['cascade_point'\\] apply to a "
                                "cascade; this upload is onnx"):
      self.client.measure(os.path.join(self.cascade, first), cascade_point=0, **SETTINGS)
    self.assertEqual(self.agent.count, before)  # nothing was measured


if __name__ == "__main__":
  tf.test.main()
