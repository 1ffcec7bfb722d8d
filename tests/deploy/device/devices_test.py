"""Tests of deploy/device/devices.py: the registry's facts and the format choice."""

import re

from absl.testing import parameterized
import tensorflow as tf

from deploy.device import devices
from deploy.device import power
from deploy.device import runtimes


class DevicesTest(tf.test.TestCase, parameterized.TestCase):

  def test_power_options_from_flags_and_back(self):
    import argparse  # pylint: disable=g-import-not-at-top
    args = argparse.Namespace(rail="VDD_IN", power_root="/sys", gpu_index=None, usb_csv=None,
                              usb_port="/dev/ttyUSB0")
    self.assertEqual(devices.power_options_from(args),
                     {"rail": "VDD_IN", "root": "/sys", "port": "/dev/ttyUSB0"})
    self.assertEqual(devices.power_options_from(args, ["ina3221"]),
                     {"rail": "VDD_IN", "root": "/sys"})
    self.assertEqual(devices.power_options_from(args, [devices.AUTO]), {})
    self.assertEqual(devices.power_option_arguments({"root": "/sys", "rail": "VDD_IN"}),
                     ["--rail=VDD_IN", "--power_root=/sys"])

  def test_registry_paper_thresholds_match_section_iv_b(self):
    # Cai et al. 2018, section IV-B: TITAN X 80 W, Jetson TX2 1 W, Movidius NCS 0.45 W.
    self.assertEqual({k: devices.paper_threshold_w(k) for k in devices.DEVICES},
                     {"cpu": None, "gpu": 80.0, "jetson": 1.0, "myriad": 0.45})
    self.assertIsNone(devices.paper_threshold_w("remote"))

  def test_registry_names_only_known_runtimes_formats_and_sources(self):
    for kind in devices.DEVICES.values():
      self.assertEqual(devices.default_runtime(kind.name), kind.runtimes[0])
      self.assertContainsSubset(kind.runtimes, devices.RUNTIMES)
      self.assertContainsSubset(kind.power_sources, devices.POWER_SOURCES)
      self.assertEqual(kind.power_sources[-1], "none")
    for spec in devices.RUNTIMES.values():
      self.assertContainsSubset(spec.formats, devices.FORMATS)
    self.assertContainsSubset(devices.SUFFIX_FORMATS.values(), devices.FORMATS)
    self.assertEqual(set(devices.POWER_OPTIONS), set(devices.POWER_SOURCES))

  def test_registry_backends_exist_for_every_name(self):
    self.assertEqual(tuple(runtimes.NAMES), tuple(devices.RUNTIMES))
    self.assertEqual(tuple(power.NAMES), devices.POWER_SOURCES)
    with self.assertRaisesRegex(ValueError, "Expected one of onnxruntime"):
      runtimes.create("tvm", "m.onnx")
    self.assertEqual(power.create("none").name, "none")

  @parameterized.parameters(
      # (runtime, device reads, device versions, host versions, expected)
      ("openvino", ("openvino", "onnx"), {"openvino": "2022.3.0-9052"},
       {"openvino": "2026.4.1-22982"}, "onnx"),
      ("openvino", ("openvino", "onnx"), {"openvino": "2026.4.1"}, {"openvino": "2026.4.0"},
       "openvino"),
      ("openvino", ("openvino", "onnx"), {"openvino": "2026.4.1"}, {}, "onnx"),
      ("openvino", ("onnx",), {"openvino": "2026.4.1"}, {"openvino": "2026.4.1"}, "onnx"),
      ("tensorrt", ("onnx", "tensorrt"), {"tensorrt": "8.2.1"}, {}, "onnx"),
      ("onnxruntime", ("onnx",), {}, {}, "onnx"),
      ("keras", ("keras",), {}, {}, "keras"),
  )
  def test_choose_format_sends_what_the_device_reads(self, name, reads, dev, host, expected):
    self.assertEqual(devices.choose_format(name, reads, dev, host), expected)

  def test_choose_format_refuses_when_nothing_fits(self):
    with self.assertRaisesRegex(ValueError, "reads tensorrt; the host can send none"):
      devices.choose_format("tensorrt", ("tensorrt",))

  @parameterized.parameters(
      ("2022.3.0-9052-9752fafe8eb-releases/2022/3", (2022, 3, 0)),
      ("2026.4.1-22982-e213a147257-releases/2026/4", (2026, 4, 1)),
      ("8.2.1.8", (8, 2, 1)), ("10.3.0", (10, 3, 0)), ("", ()), (None, ()),
  )
  def test_version_tuple_reads_vendor_strings(self, text, expected):
    self.assertEqual(devices.version_tuple(text), expected)

  def test_checks_name_the_allowed_values(self):
    with self.assertRaisesRegex(ValueError, "runtime=openvino cannot measure on device=jetson; "
                                "expected one of: tensorrt, onnxruntime"):
      devices.check_runtime("jetson", "openvino")
    with self.assertRaisesRegex(ValueError, "expected one of: auto, usb_meter, none"):
      devices.check_power_source("myriad", "nvml")
    with self.assertRaisesRegex(ValueError, "Expected one of cpu|gpu|jetson|myriad"):
      devices.device("tpu")

  def test_onnx_opset_is_lowered_to_what_the_device_reads(self):
    self.assertEqual(devices.onnx_opset("tensorrt"), 13)
    self.assertEqual(devices.onnx_opset("tensorrt", 11), 11)
    self.assertEqual(devices.onnx_opset("onnxruntime", 17), 13)

  def test_weight_independence_covers_every_deployable_pair(self):
    deployable = {(r, p) for p, spec in devices.PRECISIONS.items() for r in spec.conversion}
    self.assertSetEqual(set(devices.WEIGHT_INDEPENDENCE), deployable)
    for key, fact in devices.WEIGHT_INDEPENDENCE.items():
      self.assertIsInstance(fact.independent, bool, key)
      self.assertGreater(len(fact.why), 20, key)

  def test_decouplable_only_where_the_graph_ignores_the_weights(self):
    for runtime in ("onnxruntime", "openvino", "tensorrt"):
      self.assertTrue(devices.decouplable(runtime, "fp32"))
      self.assertTrue(devices.decouplable(runtime, "fp16"))
      # int8 calibrates its scales on activations of the network's own weights
      self.assertFalse(devices.decouplable(runtime, "int8"))
      self.assertIn("calibrat", devices.weight_independence(runtime, "int8").why)
    self.assertTrue(devices.decouplable("keras", "fp32"))

  def test_decouplable_names_the_allowed_values(self):
    with self.assertRaisesRegex(ValueError, re.escape(
        "Expected one of onnxruntime|openvino|tensorrt|keras. Received runtime='tflite'")):
      devices.decouplable("tflite", "fp32")
    with self.assertRaisesRegex(ValueError, re.escape(
        "Expected one of fp32|fp16|int8. Received precision='bf16'")):
      devices.decouplable("onnxruntime", "bf16")
    with self.assertRaisesRegex(ValueError, "precision=int8 cannot be deployed with "
                                "runtime=keras; it supports: fp32"):
      devices.weight_independence("keras", "int8")



if __name__ == "__main__":
  tf.test.main()
