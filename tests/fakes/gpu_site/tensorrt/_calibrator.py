"""INT8 calibration of the fake TensorRT: calibrator base classes and the
calibration step of a build (implicit quantization, TensorRT 8.x - 10.x).

As the real builder does, a build with ``BuilderFlag.INT8`` asks the
calibrator for its cache first (``read_calibration_cache``); without one it
asks ``get_batch_size()`` and then ``get_batch(input_names)`` until None,
reads every batch from "device" memory (shape: the calibration profile's,
the network input being dynamic) and writes the result back with
``write_calibration_cache``. The fake's "scales" are one amax (max |x|) per
network input; its cache is JSON (``CACHE_FORMAT``), not TensorRT's text.
"""

import ctypes
import enum
import json

import numpy as np

import tensorrt
from tensorrt import _common

CACHE_FORMAT = "tea-fake-tensorrt-calibration/1"


class CalibrationAlgoType(enum.IntEnum):
  LEGACY_CALIBRATION = 0
  ENTROPY_CALIBRATION = 1
  ENTROPY_CALIBRATION_2 = 2
  MINMAX_CALIBRATION = 3


class _PybindType(type):
  """Like pybind11's metaclass: an instance whose ``__init__`` did not run
  the bound base ``__init__`` is refused with pybind11's TypeError."""

  def __call__(cls, *args, **kwargs):
    obj = type.__call__(cls, *args, **kwargs)
    if not getattr(obj, "_tea_base_initialized", False):
      base = [c for c in cls.__mro__ if c.__module__ == __name__][0]
      raise TypeError("%s.__init__() must be called when overriding __init__"
                      % base.__name__)
    return obj


class IInt8Calibrator(metaclass=_PybindType):
  """Base of the calibrators; subclasses implement get_batch_size,
  get_batch, read_calibration_cache and write_calibration_cache."""
  algorithm = CalibrationAlgoType.LEGACY_CALIBRATION

  def __init__(self):
    self._tea_base_initialized = True

  def get_algorithm(self):
    return self.algorithm

  def get_batch_size(self):
    raise NotImplementedError("get_batch_size")

  def get_batch(self, names):
    raise NotImplementedError("get_batch")

  def read_calibration_cache(self):
    return None

  def write_calibration_cache(self, cache):
    pass


class IInt8EntropyCalibrator2(IInt8Calibrator):
  algorithm = CalibrationAlgoType.ENTROPY_CALIBRATION_2


class IInt8MinMaxCalibrator(IInt8Calibrator):
  algorithm = CalibrationAlgoType.MINMAX_CALIBRATION


def _read_cache(raw, inputs):
  """{input name: amax}, batches of a fake cache, or None if unreadable."""
  try:
    cache = json.loads(bytes(raw).decode("utf-8"))
    amax = dict((t.name, float(cache["amax"][t.name])) for t in inputs)
    return amax, int(cache["batches"])
  except (ValueError, KeyError, TypeError, AttributeError):
    return None


def _calibration_shapes(network, config):
  """{input name: shape of a calibration batch}, or an error text."""
  shapes = {}
  for tensor in network._inputs:
    if -1 not in tensor.shape:
      shapes[tensor.name] = tuple(tensor.shape)
      continue
    profile = config._calibration_profile
    found = profile.get_shape(tensor.name) if profile is not None else []
    if not found:
      return None, ("Calibration profile must be set for a network with dynamic input "
                    "%r (config.set_calibration_profile)." % tensor.name)
    shapes[tensor.name] = tuple(found[1])
  return shapes, None


def _read_batch(ptr, shape, dtype):
  from tensorrt import _engine
  nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
  if not ptr or not _engine._device_ok(ptr, nbytes):
    return None
  buf = (ctypes.c_char * nbytes).from_address(int(ptr))
  return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _run_batches(calibrator, network, shapes):
  """(amax per input, batches) read through the calibrator, or an error."""
  names = [t.name for t in network._inputs]
  amax, batches = dict((n, 0.0) for n in names), 0
  calibrator.get_batch_size()
  while True:
    pointers = calibrator.get_batch(names)
    if pointers is None:
      break
    if len(pointers) != len(names):
      return None, 0, "get_batch returned %d pointers for %d inputs." % (len(pointers),
                                                                          len(names))
    for tensor, ptr in zip(network._inputs, pointers):
      batch = _read_batch(int(ptr), shapes[tensor.name], _common.nptype(tensor.dtype))
      if batch is None:
        return None, 0, ("Calibration batch %d of %r: invalid device address %r."
                         % (batches, tensor.name, ptr))
      amax[tensor.name] = max(amax[tensor.name], float(np.max(np.abs(batch))))
    batches += 1
    tensorrt.CALIBRATION_BATCHES += 1
  if not batches:
    return None, 0, "Calibration failure: the calibrator gave no batch."
  return amax, batches, None


def calibrate(logger, network, config):
  """(header fields of an int8 engine, None) or (None, error text)."""
  calibrator = config.int8_calibrator
  if calibrator is None:
    return None, ("Int8 precision requested but no calibrator and no dynamic ranges were "
                  "set: calibration failure.")
  raw = calibrator.read_calibration_cache()
  if raw is not None:
    cached = _read_cache(raw, network._inputs)
    if cached is not None:
      return {"int8": True, "amax": cached[0], "calibration_batches": cached[1],
              "calibration_from_cache": True}, None
    logger.log(_common.Logger.WARNING, "Calibration cache unreadable; recalibrating.")
  shapes, error = _calibration_shapes(network, config)
  if error:
    return None, error
  amax, batches, error = _run_batches(calibrator, network, shapes)
  if error:
    return None, error
  cache = {"format": CACHE_FORMAT, "version": tensorrt.__version__,
           "algorithm": CalibrationAlgoType(calibrator.get_algorithm()).name,
           "amax": amax, "batches": batches}
  calibrator.write_calibration_cache(json.dumps(cache, sort_keys=True).encode("utf-8"))
  return {"int8": True, "amax": amax, "calibration_batches": batches,
          "calibration_from_cache": False}, None


def quantize(x, amax):
  """Symmetric int8 fake quantization of x with scale amax / 127."""
  if amax <= 0:
    return np.zeros_like(x)
  scale = np.float32(amax / 127.0)
  return (np.clip(np.round(x / scale), -127, 127) * scale).astype(x.dtype)
