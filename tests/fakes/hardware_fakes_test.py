"""Tests of the hardware fakes themselves (tests/fakes/hardware_site): each
defaults to the board it emulates, known incompatibilities included, so code
that would fail on the board fails on the fake. Each runs in a subprocess,
since the fakes patch the vendor libraries of the process they are installed in."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from deploy.device import selfcheck_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARDWARE_SITE = os.path.join(ROOT, "tests", "fakes", "hardware_site")


def _run(code, fakes, *args, **extra_env):
  env = dict(os.environ, TEA_FAKE_HARDWARE=fakes, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join([HARDWARE_SITE, ROOT]), **extra_env)
  out = subprocess.run([sys.executable, "-c", code] + list(args), capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=300)
  if out.returncode != 0:
    raise AssertionError(out.stderr[-3000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


class MyriadFakeTest(tf.test.TestCase):
  """OpenVINO 2022.3 with a Movidius stick."""

  def test_openvino_2022_3_has_its_own_api_only(self):
    code = ("import json, openvino as ov\n"
            "from openvino.runtime import Core, get_version, serialize\n"
            "from openvino.offline_transformations import compress_model_transformation\n"
            "print(json.dumps({'top': [n for n in ('Core', 'convert_model', 'save_model', "
            "'get_version') if hasattr(ov, n)], 'version': get_version(), "
            "'devices': Core().available_devices}))\n")
    answer = _run(code, "myriad")
    self.assertEqual(answer["top"], [])  # the 2023.1+ top-level API is absent
    self.assertStartsWith(answer["version"], "2022.3.0")
    self.assertIn("MYRIAD", answer["devices"])

  def test_myriad_compiles_static_shapes_only_and_computes_in_fp16(self):
    path = selfcheck_model.write(os.path.join(self.get_temp_dir(), "m.onnx"))
    images = os.path.join(self.get_temp_dir(), "x.npy")
    x = np.random.RandomState(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
    np.save(images, x)
    code = ("import json, sys, numpy as np\n"
            "from openvino.runtime import Core\n"
            "core = Core()\n"
            "model = core.read_model(sys.argv[1])\n"
            "try:\n"
            "  core.compile_model(model, 'MYRIAD')\n"
            "  dynamic = 'compiled'\n"
            "except RuntimeError as e:\n"
            "  dynamic = str(e)\n"
            "model.reshape({model.inputs[0].get_any_name(): [4, 32, 32, 3]})\n"
            "request = core.compile_model(model, 'MYRIAD').create_infer_request()\n"
            "request.infer([np.load(sys.argv[2])])\n"
            "try:\n"
            "  core.compile_model(model, 'MYRIAD', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
            "  config = 'accepted'\n"
            "except RuntimeError as e:\n"
            "  config = str(e)\n"
            "print(json.dumps({'dynamic': dynamic, 'config': config,\n"
            "                  'logits': request.get_output_tensor(0).data.tolist()}))\n")
    answer = _run(code, "myriad", path, images)
    self.assertIn("static shapes only", answer["dynamic"])
    self.assertIn("Unsupported property INFERENCE_PRECISION_HINT by MYRIAD", answer["config"])
    logits = np.array(answer["logits"])
    reference = selfcheck_model.reference_logits(x)        # float64 NumPy
    self.assertAllClose(logits, reference, atol=5e-2)      # FP16 weights and I/O ...
    self.assertGreater(np.max(np.abs(logits - reference)), 1e-5)  # ... not float32's
    self.assertAllEqual(logits, logits.astype(np.float16).astype(np.float64))


class PowerFakesTest(tf.test.TestCase):

  def test_usb_meter_logs_at_its_real_cadence(self):
    log = os.path.join(self.get_temp_dir(), "meter.csv")
    code = ("import json, time\n"
            "time.sleep(2.0)\n"
            "print(json.dumps({}))\n")
    _run(code, "usb_meter=" + log)
    with open(log) as f:
      times = [float(line.split(",")[0]) for line in f.read().splitlines()[1:]]
    intervals = np.diff(times)
    self.assertGreaterEqual(float(np.median(intervals)), 0.1)   # 1-10 Hz, not 50 Hz
    self.assertLessEqual(float(np.median(intervals)), 1.0)

  def test_rapl_counts_more_energy_per_second_while_this_process_computes(self):
    root = os.path.join(self.get_temp_dir(), "rapl_root")
    code = ("import json, time, sys\n"
            "from deploy.device.power import rapl\n"
            "source = rapl.RaplPower(root=sys.argv[1])\n"
            "def joules_per_s(busy):\n"
            "  e0, t0 = source.energy_counter_j(), time.monotonic()\n"
            "  while time.monotonic() - t0 < 0.5:\n"
            "    if busy:\n"
            "      sum(i * i for i in range(2000))\n"
            "    else:\n"
            "      time.sleep(0.05)\n"
            "  return (source.energy_counter_j() - e0) / (time.monotonic() - t0)\n"
            "print(json.dumps({'idle': joules_per_s(False), 'busy': joules_per_s(True),\n"
            "                  'domains': source.describe()['domains']}))\n")
    out = _run(code, "rapl=" + root, root)
    self.assertEqual(out["domains"], ["package-0"])
    self.assertBetween(out["idle"], 2.5, 4.5)          # 3 W idle (+ the sleeps' wake-ups)
    self.assertGreater(out["busy"], out["idle"] + 1.0)  # one busy core of os.cpu_count()

  def test_nvml_stays_under_the_papers_threshold_for_a_launch_bound_model(self):
    """The fake TITAN X's board power under a tiny model's load stays below
    80 W; the paper's N=2, F=24 cells (over 1M weights) cross it."""
    path = selfcheck_model.write(os.path.join(self.get_temp_dir(), "m.onnx"))
    code = ("import json, sys, time, numpy as np, onnxruntime as ort, pynvml\n"
            "s = ort.InferenceSession(sys.argv[1], providers=['CUDAExecutionProvider'])\n"
            "h = pynvml.nvmlDeviceGetHandleByIndex(0)\n"
            "x = np.zeros((16, 32, 32, 3), np.float32)\n"
            "watts, end = [], time.monotonic() + 1.0\n"
            "while time.monotonic() < end:\n"
            "  s.run(None, {'images': x})\n"
            "  watts.append(pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)\n"
            "print(json.dumps({'max_w': max(watts), 'providers': s.get_providers()}))\n")
    answer = _run(code, "nvml,ort_cuda", path)
    self.assertEqual(answer["providers"][0], "CUDAExecutionProvider")
    self.assertLess(answer["max_w"], 80.0)
    big = _run(code, "nvml,ort_cuda", path, TEA_FAKE_GPU_SATURATING_WEIGHTS="10000",
               TEA_FAKE_GPU_LAUNCH_BOUND_WEIGHTS="1000")
    self.assertGreater(big["max_w"], 80.0)  # the same load with a model that fills the GPU


if __name__ == "__main__":
  tf.test.main()
