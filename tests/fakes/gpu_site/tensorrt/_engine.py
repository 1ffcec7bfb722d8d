"""Runtime side of the fake TensorRT: Runtime, engine, execution context.

A fake engine is ``MAGIC + JSON header + b"\\n" + ONNX bytes``. Executing it
reads each input from its device pointer, runs the ONNX model with ONNX
Runtime (CPUExecutionProvider) and writes each output to its device pointer.
Pointers are checked against the fake GPU's live allocations
(``tea_fake_gpu``) of the context the calling thread runs in (its current
one, else the primary context, as TensorRT's CUDA runtime calls do): an
invalid pointer, or one of another context, fails the execution, as a GPU
faults on it.
"""

import ctypes
import json

import numpy as np

import tea_fake_gpu
import tensorrt
from tensorrt import _common

MAGIC = b"TEA-FAKE-TENSORRT-ENGINE\n"


def serialize(header, onnx_bytes):
  return MAGIC + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + onnx_bytes


def _parse_plan(data):
  """((header, onnx bytes), None) or (None, why TensorRT would refuse it)."""
  if not data.startswith(MAGIC):
    return None, ("1: [stdArchiveReader.cpp::StdArchiveReader] Error Code 1: Serialization "
                  "(Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag "
                  "does not match)")
  line, _, onnx_bytes = data[len(MAGIC):].partition(b"\n")
  try:
    header = json.loads(line.decode("utf-8"))
  except ValueError:
    return None, "Serialization Error: the engine header is corrupt."
  if header.get("version") != tensorrt.__version__:
    return None, ("The engine plan file is not compatible with this version of TensorRT, "
                  "expecting library version %s got %s, please rebuild."
                  % (tensorrt.__version__, header.get("version")))
  if not onnx_bytes:
    return None, "Serialization Error: the engine has no network."
  return (header, onnx_bytes), None


class Runtime(object):
  def __init__(self, logger):
    self.logger = logger

  def deserialize_cuda_engine(self, serialized):
    """An engine, or None after logging an error (as the real one)."""
    try:
      data = bytes(serialized)
    except TypeError:
      _common.log_error(self.logger, "deserialize_cuda_engine needs a buffer.")
      return None
    parsed, error = _parse_plan(data)
    if error:
      _common.log_error(self.logger, error)
      return None
    return ICudaEngine(parsed[0], parsed[1], self.logger)


class _Io(object):
  def __init__(self, spec, is_input):
    self.name, self.shape = spec["name"], tuple(spec["shape"])
    self.dtype, self.is_input = _common.DataType(spec["dtype"]), is_input
    profile = spec.get("profile")
    self.profile = [tuple(s) for s in profile] if profile else None


def _device_ok(ptr, nbytes):
  return tea_fake_gpu.range_ok(ptr, nbytes, tea_fake_gpu.effective())


class _EngineBase(object):
  num_optimization_profiles = 1

  def __init__(self, header, onnx_bytes, logger):
    self._header, self._onnx, self.logger = header, onnx_bytes, logger
    self._io = ([_Io(s, True) for s in header["inputs"]]
                + [_Io(s, False) for s in header["outputs"]])
    self._session = None

  def _tensor(self, key):
    """The tensor named ``key`` or at binding index ``key``; loud if unknown."""
    for i, t in enumerate(self._io):
      if key == t.name or (not isinstance(key, str) and int(key) == i):
        return t
    raise ValueError("The fake TensorRT engine has no tensor %r (has %s)."
                     % (key, [t.name for t in self._io]))

  def _profile(self, key, profile_index):
    tensor = self._tensor(key)
    if int(profile_index) != 0 or tensor.profile is None:
      raise ValueError("No optimization profile %r for tensor %r." % (profile_index, key))
    return [tuple(s) for s in tensor.profile]

  def create_execution_context(self):
    return IExecutionContext(self)

  def serialize(self):
    return serialize(self._header, self._onnx)

  def _run(self, feeds):
    if self._session is None:
      import onnxruntime
      options = onnxruntime.SessionOptions()
      options.intra_op_num_threads = 1
      options.log_severity_level = 3
      self._session = onnxruntime.InferenceSession(
          self._onnx, sess_options=options, providers=["CPUExecutionProvider"])
    if self._header["fp16"]:
      feeds = dict((k, v.astype(np.float16).astype(v.dtype)) for k, v in feeds.items())
    if self._header.get("int8"):
      from tensorrt import _calibrator
      feeds = dict((k, _calibrator.quantize(v, self._header["amax"][k]))
                   for k, v in feeds.items())
    names = [o.name for o in self._session.get_outputs()]
    values = self._session.run(names, feeds)
    if self._header["fp16"]:
      values = [v.astype(np.float16).astype(v.dtype) for v in values]
    return dict(zip(names, values))


class _NamedEngine(object):
  """TensorRT >= 8.5: tensors by name."""

  @property
  def num_io_tensors(self):
    return len(self._io)

  def get_tensor_name(self, index):
    return self._io[index].name

  def get_tensor_mode(self, name):
    tensor = self._tensor(name)
    return _common.TensorIOMode.INPUT if tensor.is_input else _common.TensorIOMode.OUTPUT

  def get_tensor_shape(self, name):
    return self._tensor(name).shape

  def get_tensor_dtype(self, name):
    return self._tensor(name).dtype

  def get_tensor_profile_shape(self, name, profile_index):
    return self._profile(name, profile_index)


class _BindingEngine(object):
  """TensorRT < 10: tensors by binding index (inputs first)."""
  has_implicit_batch_dimension = False

  @property
  def num_bindings(self):
    return len(self._io)

  def binding_is_input(self, binding):
    return self._tensor(binding).is_input

  def get_binding_name(self, index):
    return self._io[index].name

  def get_binding_index(self, name):
    return [t.name for t in self._io].index(name)

  def get_binding_shape(self, binding):
    return self._tensor(binding).shape

  def get_binding_dtype(self, binding):
    return self._tensor(binding).dtype

  def get_profile_shape(self, profile_index, binding):
    return self._profile(binding, profile_index)


def _compose(name, parts, base):
  return type(name, tuple(c for c, on in parts if on) + (base,), {})


ICudaEngine = _compose("ICudaEngine", ((_NamedEngine, _common.NAMED_API),
                                       (_BindingEngine, _common.BINDING_API)), _EngineBase)


def _shape_error(tensor, shape):
  if not tensor.is_input:
    return "%r is an output; only input shapes can be set." % tensor.name
  if len(shape) != len(tensor.shape):
    return "shape %s for %r has the wrong rank (engine: %s)." % (shape, tensor.name,
                                                                  tensor.shape)
  for axis, dim in enumerate(shape):
    if tensor.shape[axis] != -1 and dim != tensor.shape[axis]:
      return "shape %s for %r changes static dimension %d." % (shape, tensor.name, axis)
    if tensor.shape[axis] == -1 and not tensor.profile[0][axis] <= dim <= tensor.profile[2][axis]:
      return ("IExecutionContext::setInputShape: Error Code 3: API Usage Error (shape %s "
              "for %r is outside the profile [%s, %s])." % (shape, tensor.name,
                                                            tensor.profile[0], tensor.profile[2]))
  return None


class _ContextBase(object):
  def __init__(self, engine):
    self.engine, self.logger = engine, engine.logger
    self._shapes = dict((t.name, tuple(t.shape)) for t in engine._io if t.is_input)
    self._addresses = {}

  def _fail(self, msg):
    _common.log_error(self.logger, msg)
    return False

  def _set_shape(self, key, shape):
    tensor = self.engine._tensor(key)
    shape = tuple(int(d) for d in shape)
    error = _shape_error(tensor, shape)
    if error:
      return self._fail(error)
    self._shapes[tensor.name] = shape
    return True

  def _shape(self, key):
    tensor = self.engine._tensor(key)
    if tensor.is_input:
      return self._shapes[tensor.name]
    batch = [s[0] for s in self._shapes.values()][0] if self._shapes else -1
    return tuple(batch if (axis == 0 and d == -1) else d for axis, d in enumerate(tensor.shape))

  def _execute(self, addresses):
    feeds = {}
    for t in self.engine._io:
      if not t.is_input:
        continue
      shape = self._shapes[t.name]
      if -1 in shape:
        return self._fail("Input %r has no shape set before execution." % t.name)
      dtype = np.dtype(_common.nptype(t.dtype))
      nbytes = int(np.prod(shape)) * dtype.itemsize
      ptr = addresses.get(t.name)
      if not ptr or not _device_ok(ptr, nbytes):
        return self._fail("Input %r: invalid device address %r for %d bytes."
                          % (t.name, ptr, nbytes))
      buf = (ctypes.c_char * nbytes).from_address(int(ptr))
      feeds[t.name] = np.frombuffer(buf, dtype=dtype).reshape(shape).copy()
    results = self.engine._run(feeds)
    for t in self.engine._io:
      if t.is_input:
        continue
      value = np.ascontiguousarray(results[t.name], dtype=_common.nptype(t.dtype))
      ptr = addresses.get(t.name)
      if value.shape != self._shape(t.name):
        return self._fail("Output %r: ONNX Runtime gave shape %s, the engine expects %s."
                          % (t.name, value.shape, self._shape(t.name)))
      if not ptr or not _device_ok(ptr, value.nbytes):
        return self._fail("Output %r: invalid device address %r for %d bytes."
                          % (t.name, ptr, value.nbytes))
      ctypes.memmove(int(ptr), value.ctypes.data, value.nbytes)
    tensorrt.EXECUTIONS += 1
    return True


class _NamedContext(object):
  def set_input_shape(self, name, shape):
    return self._set_shape(name, shape)

  def get_tensor_shape(self, name):
    return self._shape(name)

  def set_tensor_address(self, name, memory):
    self._addresses[self.engine._tensor(name).name] = int(memory)
    return True

  def get_tensor_address(self, name):
    return self._addresses.get(self.engine._tensor(name).name, 0)

  def infer_shapes(self):
    return []

  def execute_async_v3(self, stream_handle):
    int(stream_handle)
    return self._execute(self._addresses)


class _BindingContext(object):
  active_optimization_profile = 0

  def set_binding_shape(self, binding, shape):
    return self._set_shape(binding, shape)

  def get_binding_shape(self, binding):
    return self._shape(binding)

  @property
  def all_binding_shapes_specified(self):
    return all(-1 not in s for s in self._shapes.values())

  def execute_v2(self, bindings):
    if len(bindings) != len(self.engine._io):
      return self._fail("execute: %d bindings given, the engine has %d."
                        % (len(bindings), len(self.engine._io)))
    return self._execute(dict((t.name, int(b)) for t, b in zip(self.engine._io, bindings)))

  def execute_async_v2(self, bindings, stream_handle):
    int(stream_handle)
    return self.execute_v2(bindings)


IExecutionContext = _compose("IExecutionContext", ((_NamedContext, _common.NAMED_API),
                                                   (_BindingContext, _common.BINDING_API)),
                             _ContextBase)
