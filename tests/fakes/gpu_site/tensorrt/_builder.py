"""Builder side of the fake TensorRT: network, ONNX parser, config, profile.

The parser validates the model with the real ``onnx`` package and records
its inputs/outputs; the "engine" it leads to is the ONNX model itself plus
a header (``_engine.serialize``), run later with ONNX Runtime.
"""

import tea_fake_gpu
import tensorrt
from tensorrt import _calibrator
from tensorrt import _common
from tensorrt import _engine
from tensorrt._common import ErrorCode


class ITensor(object):
  def __init__(self, name, shape, dtype):
    self.name, self.shape, self.dtype = name, tuple(shape), dtype

  def __repr__(self):
    return "ITensor(%r, %s, %s)" % (self.name, self.shape, self.dtype.name)


class INetworkDefinition(object):
  def __init__(self, flags):
    self.flags = int(flags)
    self._inputs, self._outputs, self._onnx, self._layers = [], [], None, 0

  @property
  def has_explicit_batch(self):
    if not _common.NEEDS_EXPLICIT_BATCH_FLAG:
      return True
    return bool(self.flags & (1 << int(_common.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))

  @property
  def num_inputs(self):
    return len(self._inputs)

  @property
  def num_outputs(self):
    return len(self._outputs)

  @property
  def num_layers(self):
    return self._layers

  def get_input(self, index):
    return self._inputs[index]

  def get_output(self, index):
    return self._outputs[index]


class ParserError(object):
  def __init__(self, code, desc, node=-1, func="importModel"):
    self._code, self._desc, self._node, self._func = code, desc, node, func

  def code(self):
    return self._code

  def desc(self):
    return self._desc

  def node(self):
    return self._node

  def func(self):
    return self._func

  def __str__(self):
    return "In node %d (%s): %s: %s" % (self._node, self._func, self._code.name, self._desc)


def _value_info_tensor(info):
  dims = [d.dim_value if d.HasField("dim_value") else -1
          for d in info.type.tensor_type.shape.dim]
  dtype = _common.ONNX_TYPES.get(info.type.tensor_type.elem_type)
  return ITensor(info.name, dims, dtype), dtype is not None


class OnnxParser(object):
  def __init__(self, network, logger):
    self.network, self.logger = network, logger
    self._errors = []

  @property
  def num_errors(self):
    return len(self._errors)

  def get_error(self, index):
    return self._errors[index]

  def clear_errors(self):
    self._errors = []

  def _fail(self, code, desc):
    self._errors.append(ParserError(code, desc))
    _common.log_error(self.logger, "ModelImporter: %s" % desc)
    return False

  def parse_from_file(self, path):
    with open(path, "rb") as f:
      return self.parse(f.read(), path)

  def parse(self, model, path=None):
    import onnx
    raw = bytes(model)
    try:
      proto = onnx.load_model_from_string(raw)
      onnx.checker.check_model(proto)
    except Exception as e:  # pylint: disable=broad-except
      return self._fail(ErrorCode.MODEL_DESERIALIZE_FAILED,
                        "Failed to parse ONNX model: %s: %s" % (type(e).__name__, e))
    opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    opset = opsets[0] if opsets else 0
    if not _common.MIN_ONNX_OPSET <= opset <= _common.MAX_ONNX_OPSET:
      return self._fail(ErrorCode.UNSUPPORTED_GRAPH,
                        "Unsupported ONNX opset %d: the ONNX parser of TensorRT %s reads "
                        "opsets %d to %d." % (opset, tensorrt.__version__,
                                              _common.MIN_ONNX_OPSET, _common.MAX_ONNX_OPSET))
    if not self.network.has_explicit_batch:
      return self._fail(ErrorCode.INVALID_VALUE,
                        "Network must have explicit batch dimensions: create it with "
                        "1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH.")
    initializers = set(t.name for t in proto.graph.initializer)
    inputs = [_value_info_tensor(i) for i in proto.graph.input if i.name not in initializers]
    outputs = [_value_info_tensor(o) for o in proto.graph.output]
    for tensor, known in inputs + outputs:
      if not known:
        return self._fail(ErrorCode.UNSUPPORTED_GRAPH, "Tensor %r has a data type the "
                          "fake TensorRT does not map." % tensor.name)
    self.network._inputs = [t for t, _ in inputs]
    self.network._outputs = [t for t, _ in outputs]
    self.network._layers = len(proto.graph.node)
    self.network._onnx = raw
    return True


class IOptimizationProfile(object):
  def __init__(self):
    self._shapes = {}

  def set_shape(self, input, min, opt, max):  # pylint: disable=redefined-builtin
    self._shapes[input] = [tuple(int(d) for d in s) for s in (min, opt, max)]

  def get_shape(self, input):  # pylint: disable=redefined-builtin
    return self._shapes.get(input, [])


class _ConfigBase(object):
  __slots__ = ("_flags", "_profiles", "_pools", "_calibrator", "_calibration_profile")

  def __init__(self):
    self._flags, self._profiles = set(), []
    self._pools = {_common.MemoryPoolType.WORKSPACE: 0}
    self._calibrator, self._calibration_profile = None, None

  @property
  def int8_calibrator(self):
    return self._calibrator

  @int8_calibrator.setter
  def int8_calibrator(self, calibrator):
    if calibrator is not None and not isinstance(calibrator, _calibrator.IInt8Calibrator):
      raise TypeError("int8_calibrator: incompatible type %s (expected an "
                      "IInt8Calibrator)" % type(calibrator).__name__)
    self._calibrator = calibrator

  def set_calibration_profile(self, profile):
    self._calibration_profile = profile
    return True

  def get_calibration_profile(self):
    return self._calibration_profile

  def set_flag(self, flag):
    self._flags.add(_common.BuilderFlag(int(flag)))

  def clear_flag(self, flag):
    self._flags.discard(_common.BuilderFlag(int(flag)))

  def get_flag(self, flag):
    return _common.BuilderFlag(int(flag)) in self._flags

  def add_optimization_profile(self, profile):
    self._profiles.append(profile)
    return len(self._profiles) - 1

  @property
  def num_optimization_profiles(self):
    return len(self._profiles)


class _WorkspaceSizeConfig(object):
  """TensorRT < 10: ``max_workspace_size`` (the only way before 8.4)."""
  __slots__ = ()

  @property
  def max_workspace_size(self):
    return self._pools[_common.MemoryPoolType.WORKSPACE]

  @max_workspace_size.setter
  def max_workspace_size(self, nbytes):
    self._pools[_common.MemoryPoolType.WORKSPACE] = int(nbytes)


class _MemoryPoolConfig(object):
  """TensorRT >= 8.4: ``set_memory_pool_limit``."""
  __slots__ = ()

  def set_memory_pool_limit(self, pool, pool_size):
    self._pools[_common.MemoryPoolType(int(pool))] = int(pool_size)

  def get_memory_pool_limit(self, pool):
    return self._pools.get(_common.MemoryPoolType(int(pool)), 0)


IBuilderConfig = type("IBuilderConfig", tuple(
    [c for c, on in ((_WorkspaceSizeConfig, _common.WORKSPACE_SIZE_ATTR),
                     (_MemoryPoolConfig, _common.MEMORY_POOL_API)) if on]
    + [_ConfigBase]), {"__slots__": ()})


def _profile_error(tensor, shapes):
  """Why ``shapes`` ([min, opt, max]) cannot serve ``tensor``, or None."""
  if len(shapes) != 3 or any(len(s) != len(tensor.shape) for s in shapes):
    return "profile for %r has the wrong rank: %s vs %s" % (tensor.name, shapes, tensor.shape)
  for axis, dim in enumerate(tensor.shape):
    lo, opt, hi = (s[axis] for s in shapes)
    if dim != -1 and not lo == opt == hi == dim:
      return "profile for %r changes static dimension %d (%d)" % (tensor.name, axis, dim)
    if not 1 <= lo <= opt <= hi:
      return "profile for %r needs 1 <= min <= opt <= max on axis %d: %s" % (
          tensor.name, axis, shapes)
  return None


class Builder(object):
  def __init__(self, logger):
    self.logger = logger

  @property
  def platform_has_fast_fp16(self):
    return tea_fake_gpu.board().fast_fp16

  @property
  def platform_has_fast_int8(self):
    return tea_fake_gpu.board().fast_int8

  def create_network(self, flags=0):
    return INetworkDefinition(flags)

  def create_builder_config(self):
    return IBuilderConfig()

  def create_optimization_profile(self):
    return IOptimizationProfile()

  def _fail(self, msg):
    _common.log_error(self.logger, msg)
    return None

  def build_serialized_network(self, network, config):
    """The serialized engine (bytes), or None after logging an error."""
    if network._onnx is None:
      return self._fail("Network has no layers (nothing was parsed into it).")
    inputs = []
    for tensor in network._inputs:
      shapes = None
      if -1 in tensor.shape:
        found = [p.get_shape(tensor.name) for p in config._profiles
                 if p.get_shape(tensor.name)]
        if not found:
          return self._fail("Network has dynamic or shape inputs, but no optimization "
                            "profile has been defined (input %r)." % tensor.name)
        shapes = found[0]
        error = _profile_error(tensor, shapes)
        if error:
          return self._fail(error)
      inputs.append({"name": tensor.name, "shape": list(tensor.shape),
                     "dtype": int(tensor.dtype),
                     "profile": [list(s) for s in shapes] if shapes else None})
    for tensor in network._outputs:
      if -1 in tensor.shape[1:]:
        return self._fail("The fake TensorRT supports a dynamic batch dimension only; "
                          "output %r has shape %s." % (tensor.name, tensor.shape))
    outputs = [{"name": t.name, "shape": list(t.shape), "dtype": int(t.dtype)}
               for t in network._outputs]
    header = {"version": tensorrt.__version__, "inputs": inputs, "outputs": outputs,
              "fp16": config.get_flag(_common.BuilderFlag.FP16),
              "workspace": config._pools[_common.MemoryPoolType.WORKSPACE], "int8": False}
    if config.get_flag(_common.BuilderFlag.INT8):
      fields, error = _calibrator.calibrate(self.logger, network, config)
      if error:
        return self._fail(error)
      header.update(fields)
    tensorrt.BUILDS += 1
    return _engine.serialize(header, network._onnx)
