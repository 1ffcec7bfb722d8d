"""Fakes of the hardware this machine lacks, at the hardware boundary only,
each defaulting to the board it emulates (tests/fakes/README.md has the
table and the sources).

``TEA_FAKE_HARDWARE`` is a comma-separated list of:

* ``nvml`` / ``nvml=titan_x``: pynvml's functions answer as the paper's TITAN
  X (Pascal: no instantaneous power field, no energy counter); ``nvml=a100``
  as an Ampere GPU (instant field, 1 s averaged power usage, energy counter).
  Board power: 60 W idle plus 200 W times this process's CPU utilization
  times the GPU's occupancy by the model running (``gpu_occupancy``), so a
  small launch-bound model stays below the paper's 80 W;
* ``ort_cuda``: ONNX Runtime reports a ``CUDAExecutionProvider``, runs
  sessions asked for it on its CPU provider and sets the GPU's occupancy
  from the session's model;
* ``ina3221=ROOT``: a JetPack 4.x ``ina3221x`` iio tree under ROOT whose
  ``VDD_IN`` rail reads 0.6 W plus 4 W times this process's CPU utilization,
  rewritten every 5 ms (atomically, as sysfs reads are);
* ``usb_meter=CSV``: a USB power meter's timestamped log, 5 readings a
  second (``TEA_FAKE_USB_METER_HZ``), each 0.3 W plus 1.5 W times this
  process's mean CPU utilization over its period;
* ``rapl=ROOT``: an Intel powercap tree under ROOT whose ``package-0``
  counter integrates 3 W plus 12 W times this process's share of all cores,
  updated every 5 ms and wrapping as the real one (for ``--power_source=rapl
  --power_root=ROOT`` on a machine without readable RAPL);
* ``myriad``: OpenVINO 2022.3 with its own Python API (``openvino.runtime``;
  no ``openvino.Core``/``convert_model``/``save_model``) and a ``MYRIAD``
  device that reads only what 2022.3 reads (ONNX at opset <= 13, IR v10/v11
  of opset1-opset10 operations), compiles static shapes only, refuses
  unknown configuration keys and runs with FP16 weights and FP16 I/O.

The code under test (power readers, runtimes, the protocol, the agent) is
the real one around these fakes.
"""

import os
import threading
import time

import numpy as np

MYRIAD_MAX_ONNX_OPSET = 13
MYRIAD_IR_OPSETS = set("opset%d" % i for i in range(1, 11))


class Activity(object):
  """This process's CPU utilization (0..1) since the previous call, in CPU
  seconds per wall second divided by ``cores`` (1: one busy core is full)."""

  def __init__(self, cores=1):
    self._lock, self._cores = threading.Lock(), float(cores)
    self._wall, self._cpu, self._last = time.monotonic(), time.process_time(), 0.0

  def utilization(self):
    with self._lock:
      wall, cpu = time.monotonic(), time.process_time()
      if wall - self._wall >= 0.004:
        self._last = min(1.0, max(0.0, (cpu - self._cpu) / (wall - self._wall) / self._cores))
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


#: the GPU's load from the ONNX Runtime CUDA sessions of this process (ort_cuda):
#: the weights of the model last run, and the fraction of the GPU it keeps busy
GPU = {"weights": None}
NVML_IDLE_W, NVML_DYNAMIC_W = 60.0, 200.0


def gpu_occupancy():
  """How much of the fake GPU the running model keeps busy (0.05..1): a
  model of up to ``TEA_FAKE_GPU_LAUNCH_BOUND_WEIGHTS`` (200,000) weights is
  launch-bound, its kernels too small to fill the GPU, and loads it only by
  the launches (0.05: the board stays near idle, as a tiny CNN on a TITAN X
  stays below the paper's 80 W); from there the load grows linearly to a
  full GPU at ``TEA_FAKE_GPU_SATURATING_WEIGHTS`` (1,000,000; the paper's
  N=2, F=24 cells have 1-9.5 million). Without a CUDA session: fully busy
  (the process's own work is all there is)."""
  weights = GPU["weights"]
  if weights is None:
    return 1.0
  knee = float(os.environ.get("TEA_FAKE_GPU_LAUNCH_BOUND_WEIGHTS", "200000"))
  full = float(os.environ.get("TEA_FAKE_GPU_SATURATING_WEIGHTS", "1000000"))
  return 0.05 + 0.95 * min(1.0, max(0.0, (weights - knee) / (full - knee)))


def _onnx_weights(path_or_bytes):
  try:
    import onnx
    model = (onnx.load_model_from_string(bytes(path_or_bytes))
             if isinstance(path_or_bytes, (bytes, bytearray)) else onnx.load(str(path_or_bytes)))
  except Exception:  # pylint: disable=broad-except  (not a file the fake can read)
    return None
  return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def _board_power_w():
  return NVML_IDLE_W + NVML_DYNAMIC_W * ACTIVITY.utilization() * gpu_occupancy()


def install_nvml(gpu="titan_x"):
  """pynvml's functions answer as the GPU ``gpu``:

  * ``titan_x`` (the paper's; Pascal): ``nvmlDeviceGetPowerUsage`` only, no
    instantaneous field, no energy counter;
  * ``a100`` (Ampere, a current driver): the instantaneous power field
    (``NVML_FI_DEV_POWER_INSTANT``), ``nvmlDeviceGetPowerUsage`` averaged
    over the last second (as NVIDIA documents for Ampere+), and the total
    energy counter (mJ), the integral of the board power every 5 ms.
  """
  import types
  import pynvml
  if gpu not in ("titan_x", "a100"):
    raise ValueError("TEA_FAKE_HARDWARE: nvml=%r: expected titan_x or a100" % gpu)
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
  if gpu == "titan_x":
    pynvml.nvmlDeviceGetName = lambda h: "NVIDIA TITAN X (Pascal) [fake]"
    pynvml.nvmlDeviceGetArchitecture = lambda h: pynvml.NVML_DEVICE_ARCH_PASCAL
    pynvml.nvmlDeviceGetFieldValues = not_supported
    pynvml.nvmlDeviceGetTotalEnergyConsumption = not_supported
    pynvml.nvmlDeviceGetPowerUsage = lambda h: int(1000 * _board_power_w())
    return
  lock = threading.Lock()
  meter = {"w": _board_power_w(), "mj": 0.0, "t": time.monotonic(), "history": []}

  def integrate():
    now, watts = time.monotonic(), _board_power_w()
    with lock:
      meter["mj"] += 1000.0 * 0.5 * (meter["w"] + watts) * (now - meter["t"])
      meter["w"], meter["t"] = watts, now
      meter["history"] = [(t, w) for t, w in meter["history"] if t > now - 1.0] + [(now, watts)]
  _every(0.005, integrate)

  def fields(h, field_ids):
    with lock:
      mw = int(1000 * meter["w"])
    return [types.SimpleNamespace(nvmlReturn=0, value=types.SimpleNamespace(uiVal=mw))
            for _ in field_ids]

  def averaged(h):
    with lock:
      history = list(meter["history"]) or [(0.0, meter["w"])]
    return int(1000 * sum(w for _, w in history) / len(history))

  def energy(h):
    with lock:
      return int(meter["mj"])

  pynvml.nvmlDeviceGetName = lambda h: "NVIDIA A100-SXM4-40GB [fake]"
  pynvml.nvmlDeviceGetArchitecture = lambda h: pynvml.NVML_DEVICE_ARCH_AMPERE
  pynvml.nvmlDeviceGetFieldValues = fields
  pynvml.nvmlDeviceGetTotalEnergyConsumption = energy
  pynvml.nvmlDeviceGetPowerUsage = averaged


def install_ort_cuda():
  import onnxruntime as ort
  real_providers = ort.get_available_providers
  real_session = ort.InferenceSession
  cuda = "CUDAExecutionProvider"

  class Session(real_session):
    def __init__(self, path_or_bytes, sess_options=None, providers=None, **kwargs):
      self._fake_cuda = bool(providers) and cuda in providers
      self._weights = _onnx_weights(path_or_bytes) if self._fake_cuda else None
      providers = [p for p in (providers or []) if p != cuda] or None
      real_session.__init__(self, path_or_bytes, sess_options, providers=providers, **kwargs)

    def run(self, *args, **kwargs):
      if self._fake_cuda:
        GPU["weights"] = self._weights
      return real_session.run(self, *args, **kwargs)

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
  """A meter logging ``TEA_FAKE_USB_METER_HZ`` (default 5) readings a second,
  each the mean over its period (USB meters log at 1-10 Hz)."""
  if os.path.dirname(csv_path):
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
  lock = threading.Lock()
  meter = Activity()  # its own window: the mean utilization since its last reading
  with open(csv_path, "w") as f:
    f.write("timestamp,power_w\n%.6f,%.4f\n" % (time.time(), 0.3))

  def append():
    with lock, open(csv_path, "a") as f:
      f.write("%.6f,%.4f\n" % (time.time(), 0.3 + 1.5 * meter.utilization()))
  _every(1.0 / float(os.environ.get("TEA_FAKE_USB_METER_HZ", "5")), append)


#: the fake RAPL package: idle and full-load watts, and the counter's wrap (a
#: common max_energy_range_uj of Intel packages, 2^32 * 61 uJ)
RAPL_IDLE_W, RAPL_DYNAMIC_W, RAPL_MAX_UJ = 3.0, 12.0, 262143328850


def install_rapl(root):
  """An Intel powercap tree under ROOT (``sys/class/powercap/intel-rapl:0``,
  ``package-0``) whose ``energy_uj`` counts up every 5 ms by the integral of
  3 W + 12 W x this process's share of all the machine's cores, wrapping at
  ``max_energy_range_uj`` as the real counter. Energy is then a function of
  the time and CPU use of the measuring process only, nothing else."""
  zone = os.path.join(root, "sys/class/powercap/intel-rapl:0")
  os.makedirs(zone, exist_ok=True)
  _write_atomic(os.path.join(zone, "name"), "package-0\n")
  _write_atomic(os.path.join(zone, "max_energy_range_uj"), "%d\n" % RAPL_MAX_UJ)
  activity = Activity(cores=os.cpu_count() or 1)
  counter = {"uj": 0.0, "t": time.monotonic()}
  lock = threading.Lock()

  def tick():
    with lock:
      now = time.monotonic()
      watts = RAPL_IDLE_W + RAPL_DYNAMIC_W * activity.utilization()
      counter["uj"] += 1e6 * watts * (now - counter["t"])
      counter["t"] = now
      _write_atomic(os.path.join(zone, "energy_uj"), "%d\n" % (counter["uj"] % RAPL_MAX_UJ))
  tick()
  _every(0.005, tick)


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


OPENVINO_2022_3 = "2022.3.0-9052-9752fafe8eb-releases/2022/3 [fake]"
#: what the MYRIAD plugin of 2022.3 answers (device capabilities: FP16 only)
MYRIAD_PROPERTIES = {"FULL_DEVICE_NAME": "Intel Movidius Myriad X VPU [fake]",
                     "OPTIMIZATION_CAPABILITIES": ["FP16", "EXPORT_IMPORT"],
                     "RANGE_FOR_ASYNC_INFER_REQUESTS": (3, 6, 1)}
#: compile-time configuration keys the fake MYRIAD accepts (any other is refused,
#: as the plugin refuses keys it does not know): the common ones and MYRIAD_*
MYRIAD_CONFIG_KEYS = ("PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS", "PERF_COUNT",
                      "LOG_LEVEL", "DEVICE_ID", "EXCLUSIVE_ASYNC_REQUESTS")


def _fp16(array):
  return np.asarray(array, np.float32).astype(np.float16).astype(np.float32)


class _Fp16Tensor(object):
  def __init__(self, tensor):
    self.data = _fp16(tensor.data)
    self.shape = tuple(self.data.shape)


class _Fp16Request(object):
  """An infer request whose inputs and outputs pass through float16, as the
  stick's FP16 I/O (its weights were compressed to FP16 before compiling)."""

  def __init__(self, request):
    self._request = request

  def infer(self, inputs=None, *args, **kwargs):
    if isinstance(inputs, dict):
      inputs = dict((k, _fp16(v)) for k, v in inputs.items())
    elif inputs is not None:
      inputs = [_fp16(v) for v in inputs]
    return self._request.infer(inputs, *args, **kwargs)

  def get_output_tensor(self, index=0):
    return _Fp16Tensor(self._request.get_output_tensor(index))

  def __getattr__(self, name):
    return getattr(self._request, name)


class _MyriadCompiled(object):
  """A model compiled "for MYRIAD": FP16 weights, run by the CPU plugin."""

  def __init__(self, compiled):
    self._compiled = compiled

  def create_infer_request(self):
    return _Fp16Request(self._compiled.create_infer_request())

  def __getattr__(self, name):
    return getattr(self._compiled, name)


def _pad_opset1(xml_path):
  """The IR as 2022.3 writes it: its ONNX frontend makes ``Pad`` opset1 (the
  newer release underneath makes Pad-12, the same for the non-negative pads
  tf2onnx writes)."""
  import xml.etree.ElementTree as ET
  tree = ET.parse(xml_path)
  changed = False
  for layer in tree.getroot().iter("layer"):
    if layer.get("type") == "Pad" and layer.get("version") == "opset12":
      layer.set("version", "opset1")
      changed = True
  if changed:
    tree.write(xml_path)


def install_myriad():
  """OpenVINO 2022.3 with its own Python API and a MYRIAD device.

  2022.3's ``openvino`` package is a namespace: ``openvino.runtime`` holds
  ``Core``, ``get_version`` and ``serialize``, ``openvino.offline_transformations``
  ``compress_model_transformation``; there is no ``openvino.Core``,
  ``convert_model`` or ``save_model`` (2023.1+). The real (newer) OpenVINO
  runs underneath: these modules replace ``openvino`` in ``sys.modules``;
  the names of the newer top-level API (``TOP_LEVEL_2023``) raise
  AttributeError, any other still reaches the real module (its compiled
  bindings look up classes such as ``openvino.Model`` there).
  """
  import sys
  import types
  import openvino as real
  from openvino import _offline_transformations as real_offline
  real_core = real.Core

  class Core(real_core):
    def __init__(self, *args, **kwargs):
      real_core.__init__(self, *args, **kwargs)
      self._sources = {}

    @property
    def available_devices(self):
      return list(real_core.available_devices.fget(self)) + ["MYRIAD"]

    def get_property(self, device_name, name, *args):
      if device_name == "MYRIAD":
        if name not in MYRIAD_PROPERTIES:
          raise RuntimeError("[ NOT_FOUND ] Unsupported property %s by MYRIAD plugin" % name)
        return MYRIAD_PROPERTIES[name]
      return real_core.get_property(self, device_name, name, *args)

    def read_model(self, model, *args, **kwargs):
      read = real_core.read_model(self, model, *args, **kwargs)
      self._sources[id(read)] = str(model)
      return read

    def compile_model(self, model, device_name=None, config=None):
      if device_name != "MYRIAD":
        return real_core.compile_model(self, model, device_name, config or {})
      check_myriad_model(self._sources.get(id(model), ""))
      for key in (config or {}):
        if key not in MYRIAD_CONFIG_KEYS and not key.startswith("MYRIAD_"):
          raise RuntimeError("[ NOT_FOUND ] Unsupported property %s by MYRIAD plugin" % key)
      for port in model.inputs:
        if port.get_partial_shape().is_dynamic:
          raise RuntimeError("[ GENERAL_ERROR ] MYRIAD plugin: input %s has the dynamic shape "
                             "%s; the plugin compiles static shapes only (reshape the model "
                             "first)" % (port.get_any_name(), port.get_partial_shape()))
      fp16 = model.clone()
      real_offline.compress_model_transformation(fp16)
      return _MyriadCompiled(real_core.compile_model(self, fp16, "CPU", {}))

  def serialize(model, xml_path, bin_path="", version="UNSPECIFIED"):
    del version
    real.serialize(model, xml_path, bin_path or os.path.splitext(xml_path)[0] + ".bin")
    _pad_opset1(xml_path)

  package = types.ModuleType("openvino")
  package.__path__ = []
  package.__file__ = real.__file__
  package.__getattr__ = lambda name: (_missing("openvino", name) if name in TOP_LEVEL_2023
                                      else getattr(real, name))
  runtime = types.ModuleType("openvino.runtime")
  for name in ("Model", "CompiledModel", "InferRequest", "Tensor", "Type", "Shape",
               "PartialShape", "Dimension", "Layout", "AsyncInferQueue", "Output",
               "ConstOutput", "Node"):
    setattr(runtime, name, getattr(real, name))
  runtime.Core, runtime.serialize = Core, serialize
  runtime.get_version = lambda: OPENVINO_2022_3
  runtime.__version__ = OPENVINO_2022_3
  offline = types.ModuleType("openvino.offline_transformations")
  offline.compress_model_transformation = real_offline.compress_model_transformation
  package.runtime, package.offline_transformations = runtime, offline
  sys.modules.update({"openvino": package, "openvino.runtime": runtime,
                      "openvino.offline_transformations": offline})


#: what ``import openvino as ov; ov.<name>`` gives from 2023.1 on, not in 2022.3
TOP_LEVEL_2023 = ("Core", "convert_model", "save_model", "get_version", "compile_model",
                  "serialize", "tools")


def _missing(module, name):
  raise AttributeError("module %r has no attribute %r (OpenVINO 2022.3 [fake])" % (module, name))


def install(spec):
  for item in [s.strip() for s in spec.split(",") if s.strip()]:
    name, _, arg = item.partition("=")
    if name == "nvml":
      install_nvml(arg or "titan_x")
    elif name == "ort_cuda":
      install_ort_cuda()
    elif name == "ina3221":
      install_ina3221(arg)
    elif name == "usb_meter":
      install_usb_meter(arg)
    elif name == "rapl":
      install_rapl(arg)
    elif name == "myriad":
      install_myriad()
    else:
      raise ValueError("TEA_FAKE_HARDWARE: unknown fake %r" % name)
