"""Tests of deploy/device/selfcheck.py and deploy/device/selfcheck_model.py: the bundled
model against independent references (the onnx checker, NumPy), and
`python -m deploy.device.selfcheck` end to end on this CPU, on a fake GPU (NVML
with and without an energy counter), and against a real agent on loopback
standing in for a Jetson TX2 (fake TensorRT 8.2 on JetPack 4.6)."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import openvino
import tensorflow as tf

from deploy.device import selfcheck
from deploy.device import selfcheck_model
from tests.search import paper_flagfiles_test as e2e

ROOT = e2e.ROOT


def _selfcheck(*args, env=None, module="deploy.device.selfcheck"):
  """The board's self-check; ``module="deploy.selfcheck"``: the host's (--device_url)."""
  return subprocess.run([sys.executable, "-m", module] + list(args),
                        capture_output=True, text=True, env=env or e2e._env(), cwd=ROOT,
                        timeout=600)


class SelfcheckModelTest(tf.test.TestCase):

  def test_model_is_valid_onnx_whose_logits_match_numpy(self):
    model = onnx.load_model_from_string(selfcheck_model.tiny_cnn_onnx())
    onnx.checker.check_model(model, full_check=True)
    self.assertEqual([o.version for o in model.opset_import], [13])
    x = np.random.RandomState(3).standard_normal((5, 32, 32, 3)).astype(np.float32)
    reference = selfcheck_model.reference_logits(x)
    session = onnxruntime.InferenceSession(selfcheck_model.tiny_cnn_onnx(),
                                           providers=["CPUExecutionProvider"])
    self.assertAllClose(session.run(None, {"images": x})[0], reference, atol=1e-5)
    path = selfcheck_model.write(os.path.join(self.get_temp_dir(), "m.onnx"))
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(path), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    self.assertAllClose(compiled(x)[0], reference, atol=1e-5)

  def test_model_is_the_same_on_every_machine(self):
    self.assertEqual(selfcheck_model.tiny_cnn_onnx(0), selfcheck_model.tiny_cnn_onnx(0))
    self.assertNotEqual(selfcheck_model.tiny_cnn_onnx(0), selfcheck_model.tiny_cnn_onnx(1))


class VerdictTest(tf.test.TestCase):

  def _answer(self, precisions=("fp32", "fp16"), readable=True, kind="jetson"):
    return {"device": kind, "power": {"name": "ina3221" if readable else "none",
                                      "readable": readable, "error": None},
            "runtimes": {"tensorrt": {"available": True, "error": None, "reads": ["onnx"],
                                      "precisions": list(precisions),
                                      "timing": {"error": None}}},
            "power_check": {"idle_w": 2.0, "load_w": 4.0}}

  def test_verdict_names_each_reason_a_flagfile_cannot_run(self):
    flags = selfcheck.read_flagfile(os.path.join(ROOT, "flags", "paper_jetson_tx2.cfg"))
    ok = selfcheck.verdict(self._answer(), flags)
    self.assertTrue(ok["runs"], msg=ok)
    self.assertLen(ok["warnings"], 1)  # the paper's 1 W is below this idle (2 W)
    flags["precisions"] = "fp32,int8"
    no = selfcheck.verdict(self._answer(readable=False), flags)
    self.assertFalse(no["runs"])
    self.assertIn("runtime=tensorrt cannot deploy int8 here (it deploys fp32,fp16)",
                  no["reasons"])
    self.assertTrue(any("no power source reads" in r for r in no["reasons"]))
    movidius = selfcheck.read_flagfile(os.path.join(ROOT, "flags", "paper_movidius.cfg"))
    movidius["measure_images"] = "250"
    wrong = selfcheck.verdict(self._answer(), movidius)
    self.assertIn("runtime=openvino does not measure on a jetson", wrong["reasons"])

  def test_read_flagfile_follows_includes(self):
    flags = selfcheck.read_flagfile(os.path.join(ROOT, "flags", "constrained.cfg"))
    self.assertIn("max_params", " ".join(flags))


class SelfcheckCliTest(tf.test.TestCase):

  def test_runs_on_this_cpu_and_exits_zero_with_its_table(self):
    report = os.path.join(self.get_temp_dir(), "cpu.json")
    out = _selfcheck("--flagfile=flags/quickstart.cfg", "--json=" + report, "--idle_s=0.5",
                     "--load_s=1")
    self.assertEqual(out.returncode, 0, msg=out.stdout + out.stderr[-2000:])
    self.assertIn("onnxruntime  yes", out.stdout)
    self.assertIn("quickstart.cfg", out.stdout)
    self.assertIn("can run here", out.stdout)
    with open(report) as f:
      answer = json.load(f)
    timing = answer["runtimes"]["onnxruntime"]["timing"]
    self.assertIsNone(timing["error"])
    self.assertLess(timing["max_abs_diff"], 1e-4)   # the runtime's logits are NumPy's
    self.assertNotIn("keras", answer["runtimes"])    # a device check: no host-only runtime

  def test_exits_nonzero_for_an_experiment_this_device_cannot_run(self):
    out = _selfcheck("--flagfile=flags/paper_titanx.cfg", "--idle_s=0.5", "--load_s=1")
    self.assertEqual(out.returncode, 1, msg=out.stdout + out.stderr[-2000:])
    self.assertIn("paper_titanx.cfg", out.stdout)
    self.assertIn("CANNOT run here", out.stdout)
    self.assertIn("it measures on --device=gpu; this machine was checked as cpu", out.stdout)

  def test_gpu_threshold_verdict_and_energy_counter_on_fake_nvml(self):
    """A tiny model does not load the (fake) GPU past the paper's 80 W: the
    check says so and suggests a threshold between this board's idle and
    loaded power; on an Ampere board the integrated power agrees with
    NVML's energy counter over the same window."""
    report = os.path.join(self.get_temp_dir(), "gpu.json")
    out = _selfcheck("--device=gpu", "--idle_s=1", "--load_s=2", "--json=" + report,
                     env=e2e._env("nvml=a100,ort_cuda", [e2e.HARDWARE_SITE]))
    self.assertEqual(out.returncode, 0, msg=out.stdout + out.stderr[-2000:])
    with open(report) as f:
      power = json.load(f)["power_check"]
    self.assertEqual(power["source"], "nvml")
    self.assertFalse(power["separates"])
    self.assertIn("threshold 80 W does NOT separate them", out.stdout)
    self.assertGreater(power["suggested_threshold_w"], power["idle_w"])
    self.assertLess(power["suggested_threshold_w"], power["load_w"])
    self.assertAllClose(power["counter_ratio"], 1.0, atol=selfcheck.COUNTER_TOLERANCE)
    pascal = _selfcheck("--device=gpu", "--idle_s=0.5", "--load_s=1",
                        env=e2e._env("nvml,ort_cuda", [e2e.HARDWARE_SITE]))
    self.assertEqual(pascal.returncode, 0, msg=pascal.stderr[-2000:])
    self.assertIn("energy counter: none on this source", pascal.stdout)

  def test_against_a_fake_tx2_agent_refuses_int8_and_accepts_fp16(self):
    sysfs = os.path.join(self.get_temp_dir(), "tx2_sysfs")
    env = e2e._env("ina3221=" + sysfs, [e2e.GPU_SITE, e2e.HARDWARE_SITE],
                   TEA_FAKE_TENSORRT_VERSION="8.2.1")
    flagfiles = {}
    for name, precisions in (("fp16.cfg", "fp32,fp16"), ("int8.cfg", "fp32,int8")):
      flagfiles[name] = os.path.join(self.get_temp_dir(), name)
      with open(flagfiles[name], "w") as f:
        f.write("--flagfile=%s\n--measure_images=200\n--precisions=%s\n"
                % (os.path.join(ROOT, "flags", "paper_jetson_tx2.cfg"), precisions))
    with e2e.agent(os.path.join(self.get_temp_dir(), "agent"), "jetson",
                   "--power_source=ina3221", "--power_root=" + sysfs, env=env) as (url, token, _):
      fine = _selfcheck("--device_url=" + url, "--token_file=" + token,
                        "--flagfile=" + flagfiles["fp16.cfg"], module="deploy.selfcheck")
      int8 = _selfcheck("--device_url=" + url, "--token_file=" + token,
                        "--flagfile=" + flagfiles["int8.cfg"], module="deploy.selfcheck")
    self.assertEqual(fine.returncode, 0, msg=fine.stdout + fine.stderr[-2000:])
    self.assertIn("tensorrt     yes", fine.stdout)
    self.assertIn("through the agent at %s" % url, fine.stdout)
    self.assertEqual(int8.returncode, 1, msg=int8.stdout + int8.stderr[-2000:])
    self.assertIn("runtime=tensorrt cannot deploy int8 here (it deploys fp32,fp16)", int8.stdout)


if __name__ == "__main__":
  tf.test.main()
