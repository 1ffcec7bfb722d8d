"""Tests of deploy/device/power/nvml.py with pynvml patched at its function boundary
(no GPU in this environment): the reader's own logic runs for real."""

import pynvml
import tensorflow as tf
from absl.testing import parameterized

from deploy.device.power import base
from deploy.device.power import nvml


class _FakeGpu(object):
  """Replaces the pynvml functions the reader calls; records calls."""

  def __init__(self, arch, instant_mw=None, usage_mw=250000, energy_mj=None):
    self.arch, self.instant_mw, self.usage_mw = arch, instant_mw, usage_mw
    self.energy_mj = energy_mj
    self.calls = []

  def patch(self, test):
    def unsupported():
      raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def field_values(handle, ids):
      self.calls.append(("fields", tuple(ids)))
      values = (pynvml.c_nvmlFieldValue_t * len(ids))()
      values[0].fieldId = ids[0]
      if self.instant_mw is None:
        values[0].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
      else:
        values[0].nvmlReturn = 0
        values[0].value.uiVal = self.instant_mw
      return values

    def energy(handle):
      if self.energy_mj is None:
        unsupported()
      self.energy_mj += 1000
      return self.energy_mj

    functions = {
        "nvmlInit": lambda: None, "nvmlShutdown": lambda: None,
        "nvmlDeviceGetHandleByIndex": lambda i: ("handle", i),
        "nvmlDeviceGetName": lambda h: b"Fake GPU",
        "nvmlDeviceGetArchitecture": lambda h: self.arch,
        "nvmlDeviceGetFieldValues": field_values,
        "nvmlDeviceGetPowerUsage": lambda h: self.usage_mw,
        "nvmlDeviceGetTotalEnergyConsumption": energy,
    }
    for name, fn in functions.items():
      test.enter_context(_patch(pynvml, name, fn))


class _patch(object):
  def __init__(self, module, name, value):
    self.module, self.name, self.value = module, name, value

  def __enter__(self):
    self.old = getattr(self.module, self.name)
    setattr(self.module, self.name, self.value)

  def __exit__(self, *exc):
    setattr(self.module, self.name, self.old)


class NvmlTest(tf.test.TestCase, parameterized.TestCase):

  def test_instant_field_preferred(self):
    gpu = _FakeGpu(pynvml.NVML_DEVICE_ARCH_HOPPER, instant_mw=312500, energy_mj=5000)
    gpu.patch(self)
    with nvml.NvmlPower(0) as source:
      self.assertAllClose(source.read_w(), 312.5)
      self.assertEqual(source.averaging_window_s, 0.0)
      self.assertEqual(source.describe()["reading"], "instant_field")
      self.assertEqual(gpu.calls[-1], ("fields", (pynvml.NVML_FI_DEV_POWER_INSTANT,)))
      c0 = source.energy_counter_j()
      self.assertAllClose(source.energy_counter_j() - c0, 1.0)

  @parameterized.named_parameters(
      ("ampere", pynvml.NVML_DEVICE_ARCH_AMPERE, 1.0),
      ("hopper", pynvml.NVML_DEVICE_ARCH_HOPPER, 1.0),
      ("volta", pynvml.NVML_DEVICE_ARCH_VOLTA, 0.0))
  def test_power_usage_fallback_surfaces_averaging(self, arch, window):
    _FakeGpu(arch, instant_mw=None, energy_mj=0).patch(self)
    source = nvml.NvmlPower(0)
    self.assertAllClose(source.read_w(), 250.0)
    self.assertEqual(source.averaging_window_s, window)
    self.assertEqual(any("averaged" in w for w in source.warnings()), window > 0)

  def test_pre_volta_has_no_energy_counter(self):
    _FakeGpu(pynvml.NVML_DEVICE_ARCH_MAXWELL, usage_mw=80000).patch(self)
    source = nvml.NvmlPower(0)
    self.assertIsNone(source.energy_counter_j())
    self.assertEqual(source.read_sample(), (80.0, None))
    self.assertTrue(any("no total-energy counter" in w for w in source.warnings()))

  def test_measurement_result_surfaces_averaging_pitfall(self):
    from deploy.device import runtimes
    from deploy.device import session
    from tests.deploy import tiny_model
    gpu = _FakeGpu(pynvml.NVML_DEVICE_ARCH_AMPERE, instant_mw=None, usage_mw=60000,
                   energy_mj=0)
    gpu.patch(self)
    rt = runtimes.create("onnxruntime", tiny_model.artifacts()["onnx"], "cpu")

    class Busy(object):  # the GPU draws 150 W while a batch runs
      name, fixed_batch_size = rt.name, None

      def predict(self, batch):
        gpu.usage_mw = 150000
        try:
          return rt.predict(batch)
        finally:
          gpu.usage_mw = 60000

      def describe(self):
        return rt.describe()

    result = session.run_measurement(Busy(), nvml.NvmlPower(0),
                                     tiny_model.artifacts()["images"], "gpu",
                                     batch_size=64, repeats=1, warmup_batches=0,
                                     idle_s=0.2)
    self.assertEqual(result["power_averaging_s"], 1.0)
    self.assertEqual((result["threshold_w"], result["threshold_source"]), (80.0, "paper"))
    self.assertTrue(any("averaged over ~1 s" in w for w in result["warnings"]))
    self.assertAllClose(result["idle_power_w"], 60.0)
    self.assertIsNotNone(result["counter_energy_j"])

  def test_init_failure_is_a_clear_error(self):
    def fail():
      raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    self.enter_context(_patch(pynvml, "nvmlInit", fail))
    with self.assertRaisesRegex(base.PowerSourceError, "NVIDIA driver loaded"):
      nvml.NvmlPower(0)


if __name__ == "__main__":
  tf.test.main()
