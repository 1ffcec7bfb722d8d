"""Tests of deploy/target.py and deploy/device/capabilities.py: the plan a search
gets from a probe of this machine, and from the real agent on loopback."""

import numpy as np
import onnxruntime
import tensorflow as tf
from absl.testing import parameterized

from deploy.device import agent
from deploy.device import capabilities
from deploy import target
from tests import fakes
from tests.deploy import tiny_model

TOKEN = "plan-token"


def _answer(device, runtimes, power="none", readable=True, tried=None):
  return {"device": device, "runtimes": runtimes,
          "power": {"name": power, "readable": readable, "error": None if readable else "gone",
                    "requested": "auto", "tried": tried or {}}}


def _runtime(reads, version="1.0", available=True, error=None, max_onnx_opset=13, **extra):
  return dict({"available": available, "reads": list(reads), "version": version, "error": error,
               "max_onnx_opset": max_onnx_opset}, **extra)


class CapabilitiesTest(tf.test.TestCase, parameterized.TestCase):

  # What NVIDIA documents for each board's GPU: the TX2 (sm_62) has no DP4A,
  # hence no fast INT8; Pascal GP102 (sm_61) runs FP16 at 1/64 rate.
  @parameterized.named_parameters(
      ("tx2", "8.2.1", "jetson_tx2", ["fp32", "fp16"]),
      ("xavier", "8.2.1", "jetson_xavier", ["fp32", "fp16", "int8"]),
      ("titan_x", "8.6.1", "titan_x", ["fp32", "int8"]),
      ("server", "10.3.0", "gpu_server", ["fp32", "fp16", "int8"]))
  def test_probe_tensorrt_reports_the_precisions_the_gpu_runs_fast(self, version, board,
                                                                    expected):
    with fakes.fake_gpu(version, board=board):
      import tea_fake_gpu  # pylint: disable=g-import-not-at-top  (the fake GPU's state)
      answer = capabilities.probe_runtime("jetson", "tensorrt")
      self.assertTrue(answer["available"], msg=answer["error"])
      self.assertEqual(answer["precisions"], expected)
      self.assertEqual(answer["gpu"], tea_fake_gpu.BOARDS[board].gpu_name)
      self.assertEqual(tea_fake_gpu.live_streams(), 0)  # the probe leaves nothing behind

  def test_openvino_precisions_follow_the_devices_optimization_capabilities(self):
    # CPU plugin (read off this machine's OpenVINO): FP32 and INT8
    self.assertEqual(capabilities.openvino_precisions(["FP32", "INT8", "BIN", "EXPORT_IMPORT"]),
                     (["fp32", "fp16", "int8"], None))
    # MYRIAD (OpenVINO 2022.3 documents FP16 only): no int8, fp32 runs in FP16
    precisions, note = capabilities.openvino_precisions(["FP16", "EXPORT_IMPORT"])
    self.assertEqual(precisions, ["fp32", "fp16"])
    self.assertIn("an fp32 artifact runs in FP16", note)
    self.assertEqual(capabilities.openvino_precisions(None)[0], ["fp32", "fp16", "int8"])

  def test_probe_of_this_cpus_openvino_reads_its_capabilities(self):
    answer = capabilities.probe_runtime("cpu", "openvino")
    self.assertTrue(answer["available"], msg=answer["error"])
    self.assertIn("FP32", answer["optimization_capabilities"])
    self.assertIn("fp32", answer["precisions"])

  def test_probe_reports_what_onnxruntime_really_has(self):
    answer = capabilities.probe("cpu", "none")
    ort = answer["runtimes"]["onnxruntime"]
    self.assertTrue(ort["available"])
    self.assertEqual(ort["version"], onnxruntime.__version__)
    self.assertEqual(ort["providers"], onnxruntime.get_available_providers())
    self.assertEqual(answer["power"], {"name": "none", "requested": "none", "readable": True,
                                       "error": None, "tried": {}})

  def test_probe_of_a_gpu_without_cuda_says_how_to_get_it(self):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
      self.skipTest("this onnxruntime has CUDA")
    ort = capabilities.probe_runtime("gpu", "onnxruntime")
    self.assertFalse(ort["available"])
    self.assertIn("not CUDAExecutionProvider", ort["error"])
    self.assertIn("onnxruntime-gpu", ort["error"])

  def test_probe_power_auto_falls_back_to_none_and_says_why(self):
    answer = capabilities.probe_power("jetson", "auto", {"root": self.get_temp_dir()})
    self.assertEqual(answer["name"], "none")
    self.assertIn("No INA3221 rails found under %s" % self.get_temp_dir(),
                  answer["tried"]["ina3221"])


class PlanTest(tf.test.TestCase):

  def test_plan_adopts_default_runtime_and_paper_threshold(self):
    caps = _answer("jetson", {"tensorrt": _runtime(("onnx", "tensorrt"), "8.2.1"),
                              "onnxruntime": _runtime(("onnx",))}, power="ina3221")
    plan = target.plan_measurement("remote", objectives=("error", "time", "energy"),
                                   capabilities=caps, device_url="http://board:1", host={})
    self.assertEqual((plan.device_kind, plan.runtime, plan.power_source, plan.artifact_format,
                      plan.onnx_opset, plan.threshold_w), ("jetson", "tensorrt", "ina3221",
                                                           "onnx", 13, 1.0))
    self.assertTrue(plan.power_readable)

  def test_plan_sends_onnx_to_an_older_openvino_and_says_so(self):
    caps = _answer("myriad", {"openvino": _runtime(("openvino", "onnx"), "2022.3.0")},
                   power="usb_meter")
    plan = target.plan_measurement("remote", capabilities=caps, device_url="http://ncs:1",
                                   host={"openvino": "2026.4.1"})
    self.assertEqual(plan.artifact_format, "onnx")
    self.assertIn("OpenVINO 2022.3.0 on myriad", plan.notices[0])

  def test_plan_refuses_what_the_target_cannot_do(self):
    caps = _answer("jetson", {"tensorrt": _runtime(("onnx",), None, False, "no tensorrt here"),
                              "onnxruntime": _runtime(("onnx",))})
    with self.assertRaisesRegex(target.TargetError, "cannot measure with runtime=tensorrt: "
                                "no tensorrt here"):
      target.plan_measurement("remote", capabilities=caps, device_url="http://b:1", host={})
    with self.assertRaisesRegex(target.TargetError, "runtime=openvino cannot measure on "
                                "device=jetson"):
      target.plan_measurement("remote", "openvino", capabilities=caps, device_url="u", host={})
    with self.assertRaisesRegex(target.TargetError, "measures with power source none; the "
                                "experiment asks for ina3221"):
      target.plan_measurement("remote", "onnxruntime", "ina3221", capabilities=caps,
                              device_url="u", host={})
    with self.assertRaisesRegex(target.TargetError, "include energy but"):
      target.plan_measurement("remote", "onnxruntime", objectives=("error", "energy"),
                              capabilities=caps, device_url="u", host={})
    plan = target.plan_measurement("remote", "onnxruntime", objectives=("error", "energy"),
                                   optional_energy=True, capabilities=caps, device_url="u",
                                   host={})
    self.assertFalse(plan.power_readable)

  def test_plan_refuses_a_precision_the_target_cannot_deploy(self):
    caps = _answer("jetson", {"tensorrt": _runtime(
        ("onnx", "tensorrt"), "8.2.1", precisions=["fp32", "fp16"], gpu="NVIDIA Tegra X2",
        fast={"fp16": True, "int8": False})}, power="ina3221")
    with self.assertRaisesRegex(target.TargetError, "device jetson.* cannot deploy precision "
                                "int8 with runtime=tensorrt: TensorRT 8.2.1 on NVIDIA Tegra X2 "
                                "has no fast INT8 .*Drop int8 from --precisions"):
      target.plan_measurement("remote", capabilities=caps, device_url="u", host={},
                              precisions=("fp32", "int8"))
    plan = target.plan_measurement("remote", capabilities=caps, device_url="u", host={},
                                   precisions=("fp32", "fp16"))
    self.assertEqual(plan.runtime, "tensorrt")
    myriad = _answer("myriad", {"openvino": _runtime(
        ("openvino", "onnx"), "2022.3.0", precisions=["fp32", "fp16"],
        optimization_capabilities=["FP16"])})
    with self.assertRaisesRegex(target.TargetError, "cannot deploy precision int8 with "
                                "runtime=openvino: its OPTIMIZATION_CAPABILITIES are"):
      target.plan_measurement("remote", capabilities=myriad, device_url="u", host={},
                              precisions=("int8",))

  def test_plan_refuses_a_partial_batch_on_a_static_batch_device(self):
    caps = _answer("myriad", {"openvino": _runtime(("openvino", "onnx"), "2022.3.0")})
    with self.assertRaisesRegex(target.TargetError, "static batch .*--measure_images=250 "
                                "would end with a batch padded with 50 blank images"):
      target.plan_measurement("remote", capabilities=caps, device_url="u", host={},
                              measure_images=250, batch_size=100)
    target.plan_measurement("remote", capabilities=caps, device_url="u", host={},
                            measure_images=300, batch_size=100)
    cpu = _answer("cpu", {"onnxruntime": _runtime(("onnx",))})
    target.plan_measurement("cpu", capabilities=cpu, host={}, measure_images=250, batch_size=100)

  def test_plan_checks_the_agents_images_against_the_search(self):
    images = tiny_model.artifacts()["images"]               # 64 validation images
    the_agent = agent.Agent(TOKEN, images[:32], "cpu", "none")
    srv = agent.serve_in_thread(the_agent)
    try:
      url = "http://127.0.0.1:%d" % srv.server_address[1]
      common = dict(device_url=url, token=TOKEN, objectives=("error", "time"),
                    data_hint="--dataset=cifar10_sample")
      with self.assertRaisesRegex(target.TargetError, "holds 32 images; each measurement runs "
                                  "--measure_images=64.*python -m deploy.measure "
                                  "--dataset=cifar10_sample --num_images=64 --write_data="):
        target.plan_measurement("remote", measure_images=64, validation_images=images, **common)
      other = np.ascontiguousarray(images[::-1])
      with self.assertRaisesRegex(target.TargetError, "holds 32 images that are not this "
                                  "search's validation images"):
        target.plan_measurement("remote", measure_images=32, validation_images=other, **common)
      plan = target.plan_measurement("remote", measure_images=32, validation_images=images,
                                     **common)
      self.assertEqual(plan.capabilities["agent_data"]["images"], 32)
    finally:
      srv.shutdown()
      srv.server_close()
      the_agent.close()

  def test_plan_from_the_real_agent_adopts_its_power_source(self):
    tiny = tiny_model.artifacts()
    the_agent = agent.Agent(TOKEN, tiny["images"], "cpu", "auto")
    srv = agent.serve_in_thread(the_agent)
    try:
      url = "http://127.0.0.1:%d" % srv.server_address[1]
      plan = target.plan_measurement("remote", objectives=("error", "time"), device_url=url,
                                     token=TOKEN)
      self.assertEqual(plan.device_kind, "cpu")
      self.assertEqual(plan.runtime, "onnxruntime")
      self.assertEqual(plan.power_source, the_agent.power_source)
      with self.assertRaisesRegex(target.TargetError, "refused the capability check: agent "
                                  "answered 401"):
        target.plan_measurement("remote", device_url=url, token="wrong")
    finally:
      srv.shutdown()
      srv.server_close()
    with self.assertRaisesRegex(target.TargetError, "unreachable"):
      target.plan_measurement("remote", device_url=url, token=TOKEN)

  def test_plan_says_how_to_trust_an_agent_whose_certificate_fails(self):
    the_agent = agent.Agent(TOKEN, tiny_model.artifacts()["images"], "cpu", "none")
    srv = agent.serve_in_thread(the_agent)  # plain HTTP: no certificate an https client trusts
    try:
      url = "https://127.0.0.1:%d" % srv.server_address[1]
      with self.assertRaisesRegex(target.TargetError, "The agent's certificate could not be "
                                  "verified: TLS to the agent at https://127.0.0.1:.* "
                                  "Pass the agent's certificate, or the CA that signed it, as "
                                  "a PEM file: ca_file=PEM"):
        target.plan_measurement("remote", device_url=url, token=TOKEN)
    finally:
      srv.shutdown()
      srv.server_close()
      the_agent.close()
    missing = "/nonexistent/agent-cert.pem"  # ca_file reaches the client, which checks it
    with self.assertRaisesRegex(ValueError, "`ca_file`. Expected a PEM file. Received "
                                "ca_file='/nonexistent/agent-cert.pem'"):
      target.plan_measurement("remote", device_url=url, token=TOKEN, ca_file=missing)


if __name__ == "__main__":
  tf.test.main()
