"""Fakes of the hardware this machine lacks, at the hardware boundary only.

``TEA_FAKE_HARDWARE`` is a comma-separated list of:

* ``nvml``: pynvml's functions answer as a TITAN X (Pascal: no instantaneous
  power field, no energy counter) whose board power is 60 W idle plus 200 W
  times this process's CPU utilization, so inference crosses the paper's
  80 W threshold and idle padding does not;
* ``ort_cuda``: ONNX Runtime reports a ``CUDAExecutionProvider`` and runs
  sessions asked for it on its CPU provider;
* ``ina3221=ROOT``: a JetPack 4.x ``ina3221x`` iio tree under ROOT whose
  ``VDD_IN`` rail reads 0.6 W plus 4 W times this process's CPU utilization,
  rewritten every 5 ms (atomically, as sysfs reads are);
* ``usb_meter=CSV``: a USB power meter's timestamped log appended every
  20 ms, 0.3 W plus 1.5 W times this process's CPU utilization;
* ``myriad``: OpenVINO reports version 2022.3 and a ``MYRIAD`` device; a
  model compiled for it must be something OpenVINO 2022.3 reads (ONNX at
  opset <= 13, or IR v10/v11 using operations of opset1-opset10 only),
  else compile fails as the old release would; it then runs on the CPU.

The code under test (power readers, runtimes, the protocol, the agent) is
the real one around these fakes.
"""

import os
import threading
import time

MYRIAD_MAX_ONNX_OPSET = 13
MYRIAD_IR_OPSETS = set("opset%d" % i for i in range(1, 11))


class Activity(object):
  """This process's CPU utilization (0..1) since the previous call."""

  def __init__(self):
    self._lock = threading.Lock()
    self._wall, self._cpu, self._last = time.monotonic(), time.process_time(), 0.0

  def utilization(self):
    with self._lock:
      wall, cpu = time.monotonic(), time.process_time()
      if wall - self._wall >= 0.004:
        self._last = min(1.0, max(0.0, (cpu - self._cpu) / (wall - self._wall)))
        self._wall, self._cpu = wall, cpu
      return self._last


ACTIVITY = Activity()


def _every(period_s, fn):
  def loop():
    while True:
      fn()
      time.sleep(period_s)
  thread = threading.Thread(target=loop, name="fake-hardware")
  thread.daemon = True
  thread.start()


def install_nvml():
  import pynvml
  state = {"init": False}

  def not_supported(*args):
    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

  def init():
    state["init"] = True

  def handle(index):
    if int(index) != 0:
      raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return "fake-gpu-0"

  pynvml.nvmlInit = init
  pynvml.nvmlShutdown = lambda: None
  pynvml.nvmlDeviceGetHandleByIndex = handle
  pynvml.nvmlDeviceGetName = lambda h: "NVIDIA TITAN X (Pascal) [fake]"
  pynvml.nvmlDeviceGetArchitecture = lambda h: pynvml.NVML_DEVICE_ARCH_PASCAL
  pynvml.nvmlDeviceGetFieldValues = not_supported
  pynvml.nvmlDeviceGetTotalEnergyConsumption = not_supported
  pynvml.nvmlDeviceGetPowerUsage = lambda h: int(1000 * (60.0 + 200.0 * ACTIVITY.utilization()))


def install_ort_cuda():
  import onnxruntime as ort
  real_providers = ort.get_available_providers
  real_session = ort.InferenceSession
  cuda = "CUDAExecutionProvider"

  class Session(real_session):
    def __init__(self, path_or_bytes, sess_options=None, providers=None, **kwargs):
      self._fake_cuda = bool(providers) and cuda in providers
      providers = [p for p in (providers or []) if p != cuda] or None
      real_session.__init__(self, path_or_bytes, sess_options, providers=providers, **kwargs)

    def get_providers(self):
      real = real_session.get_providers(self)
      return [cuda] + real if self._fake_cuda else real

  ort.get_available_providers = lambda: [cuda] + [p for p in real_providers() if p != cuda]
  ort.InferenceSession = Session


def _write_atomic(path, text):
  tmp = "%s.%d.tmp" % (path, threading.get_ident())
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def install_ina3221(root):
  folder = os.path.join(root, "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0")
  os.makedirs(folder, exist_ok=True)
  _write_atomic(os.path.join(folder, "rail_name_0"), "VDD_IN\n")
  power = os.path.join(folder, "in_power0_input")
  write = lambda: _write_atomic(power, "%d\n" % int(600 + 4000 * ACTIVITY.utilization()))
  write()
  _every(0.005, write)


def install_usb_meter(csv_path):
  if os.path.dirname(csv_path):
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
  lock = threading.Lock()
  with open(csv_path, "w") as f:
    f.write("timestamp,power_w\n%.6f,%.4f\n" % (time.time(), 0.3))

  def append():
    with lock, open(csv_path, "a") as f:
      f.write("%.6f,%.4f\n" % (time.time(), 0.3 + 1.5 * ACTIVITY.utilization()))
  _every(0.02, append)


def check_myriad_model(path):
  """Raise RuntimeError when OpenVINO 2022.3 could not read ``path``."""
  if path.endswith(".onnx"):
    import onnx
    model = onnx.load(path)
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    if opset > MYRIAD_MAX_ONNX_OPSET:
      raise RuntimeError("[fake OpenVINO 2022.3] ONNX opset %d is newer than this release "
                         "reads (<= %d)" % (opset, MYRIAD_MAX_ONNX_OPSET))
    return
  import xml.etree.ElementTree as ET
  net = ET.parse(path).getroot()
  version = int(net.get("version", "0"))
  if version not in (10, 11):
    raise RuntimeError("[fake OpenVINO 2022.3] IR version %d is not read" % version)
  for layer in net.iter("layer"):
    if layer.get("version") not in MYRIAD_IR_OPSETS and layer.get("version") not in (
        None, "experimental", "extension"):
      raise RuntimeError("[fake OpenVINO 2022.3] layer %s (%s) is from %s, newer than opset10"
                         % (layer.get("name"), layer.get("type"), layer.get("version")))


def install_myriad():
  import openvino as ov
  real_core = ov.Core
  version = "2022.3.0-9052-9752fafe8eb-releases/2022/3 [fake]"

  class Core(real_core):
    def __init__(self, *args, **kwargs):
      real_core.__init__(self, *args, **kwargs)
      self._sources = {}

    @property
    def available_devices(self):
      return list(real_core.available_devices.fget(self)) + ["MYRIAD"]

    def read_model(self, model, *args, **kwargs):
      read = real_core.read_model(self, model, *args, **kwargs)
      self._sources[id(read)] = str(model)
      return read

    def compile_model(self, model, device_name=None, config=None):
      if device_name == "MYRIAD":
        check_myriad_model(self._sources.get(id(model), ""))
        return real_core.compile_model(self, model, "CPU", {})
      return real_core.compile_model(self, model, device_name, config or {})

  ov.Core = Core
  ov.get_version = lambda: version


def install(spec):
  for item in [s.strip() for s in spec.split(",") if s.strip()]:
    name, _, arg = item.partition("=")
    if name == "nvml":
      install_nvml()
    elif name == "ort_cuda":
      install_ort_cuda()
    elif name == "ina3221":
      install_ina3221(arg)
    elif name == "usb_meter":
      install_usb_meter(arg)
    elif name == "myriad":
      install_myriad()
    else:
      raise ValueError("TEA_FAKE_HARDWARE: unknown fake %r" % name)
