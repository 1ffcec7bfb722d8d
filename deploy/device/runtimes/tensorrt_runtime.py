"""TensorRT engines, prebuilt (.engine/.plan/.trt) or built here from ONNX.

Model files:

* ``.onnx``: the engine is built on this device with its own TensorRT
  (``deploy.device.tensorrt_build``; fp32, fp16 or int8 when asked; optimization
  profile for batches 1..``max_batch_size``) and cached under
  ``engine_cache_dir`` (default: ``$TEA_ENGINE_CACHE``, else
  ``~/.cache/tea-keras/engines``) as ``<key>.engine``, key = sha256 of (ONNX
  bytes, precision, max batch size, TensorRT version, GPU name, and for int8
  the sha256 of the calibration images). int8 needs ``calibration_images``
  (float32 normalized NHWC training images; TensorRT's entropy calibrator
  runs on them during the build). A later load with the same key
  deserializes the cached engine. Building happens in ``__init__``, never
  inside a timed ``predict``; ``describe()`` reports ``engine_build_s`` (0.0
  on a cache hit), ``engine_cached``, ``engine_bytes`` (the serialized
  engine's size) and ``calibration_images`` (their count, 0 without).
* anything else: a serialized engine built by this TensorRT for this GPU.

TensorRT Python APIs:

* TensorRT >= 8.5 (incl. 10.x): the named-tensor API (``num_io_tensors``,
  ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``);
* TensorRT 8.0 - 8.4 (JetPack 4.6 ships 8.2 on Python 3.6): the binding API
  (``num_bindings``, ``set_binding_shape``, ``execute_async_v2``).

Device memory through pycuda (JetPack's usual companion) or NVIDIA's
cuda-python (``cuda.bindings.runtime`` / older ``cuda.cudart``). Device-side:
Python 3.6 syntax, standard library + numpy. The tests run this module
around a fake TensorRT and CUDA (``tests/fakes/gpu_site``).
"""

import hashlib
import json
import numbers
import os
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import cuda_memory as cuda_memory_lib
from .. import errors
from .. import image_files
from .. import tensorrt_build
from . import base

CACHE_ENV = "TEA_ENGINE_CACHE"
DEFAULT_MAX_BATCH_SIZE = 100
#: bumped when the way engines are built changes, to invalidate old caches
ENGINE_KEY_FORMAT = "tea-keras-tensorrt-engine/1"


def default_cache_dir() -> str:
  """``$TEA_ENGINE_CACHE``, else ``~/.cache/tea-keras/engines``."""
  return os.environ.get(CACHE_ENV) or os.path.join(
      os.path.expanduser("~"), ".cache", "tea-keras", "engines")


def engine_key(onnx_bytes: bytes, precision: str, max_batch_size: int, tensorrt_version: str,
               gpu_name: str, calibration_sha256: Optional[str] = None) -> str:
  """sha256 hex digest naming the engine of these build inputs
  (calibration_sha256: ``image_files.images_sha256(images, with_shape=True)`` of an
  int8 build's images)."""
  h = hashlib.sha256()
  h.update(("%s\n%d\n" % (ENGINE_KEY_FORMAT, len(onnx_bytes))).encode("utf-8"))
  h.update(onnx_bytes)
  fields = [precision, int(max_batch_size), str(tensorrt_version), gpu_name or ""]
  if calibration_sha256 is not None:
    fields += [calibration_sha256, tensorrt_build.CALIBRATION_BATCH_SIZE]
  h.update(json.dumps(fields).encode("utf-8"))
  return h.hexdigest()


def is_onnx(model_path: str) -> bool:
  return model_path.lower().endswith(".onnx")


def _check_args(precision: str, max_batch_size: Optional[int]) -> None:
  tensorrt_build.check_precision(precision)
  if (isinstance(max_batch_size, bool) or not isinstance(max_batch_size, numbers.Integral)
      or max_batch_size < 1):
    raise errors.invalid_value("max_batch_size", "a positive integer", max_batch_size)


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


class _Tensor(object):
  def __init__(self, name: str, index: int, is_input: bool, shape: Sequence[int],
               dtype: Any) -> None:
    self.name, self.index, self.is_input = name, index, is_input
    self.shape, self.dtype = tuple(shape), dtype
    self.ptr, self.host = None, None  # type: Any, Any


class TensorRtRuntime(base.Runtime):
  """``precision``, ``max_batch_size`` (default 100) and, for int8,
  ``calibration_images`` apply to engines built from ``.onnx``; a prebuilt
  engine keeps those it was built with."""
  name = "tensorrt"

  def __init__(self, model_path: str, device: str = "gpu", precision: str = "fp32",
               max_batch_size: Optional[int] = None, engine_cache_dir: Optional[str] = None,
               calibration_images: Optional[np.ndarray] = None) -> None:
    super(TensorRtRuntime, self).__init__(model_path, device)
    if max_batch_size is None:
      max_batch_size = DEFAULT_MAX_BATCH_SIZE
    _check_args(precision, max_batch_size)
    if is_onnx(model_path):
      tensorrt_build.check_int8_inputs(precision, calibration_images, None)
    # a prebuilt engine was calibrated when it was built: the images are unused
    self.calibration_images = (calibration_images if precision == "int8" and
                               is_onnx(model_path) else None)
    self.precision, self.max_batch_size = precision, int(max_batch_size)
    self.engine_bytes = None  # type: Optional[int]
    trt = base.require("tensorrt", "tensorrt", self.name)
    self.trt = trt
    self.cuda = cuda_memory_lib.cuda_memory()
    try:
      with self.cuda.active():  # TensorRT works in the thread's current context
        self._load(model_path, engine_cache_dir)
    except BaseException:
      self.cuda.close()
      raise

  def _load(self, model_path: str, engine_cache_dir: Optional[str]) -> None:
    trt = self.trt
    self.gpu_name = self.cuda.device_name()
    self._logger = trt.Logger(trt.Logger.WARNING)
    self._runtime = trt.Runtime(self._logger)
    self.engine_build_s, self.engine_cached = 0.0, False
    self.engine_key, self.engine_path = None, model_path  # type: Optional[str], str
    if is_onnx(model_path):
      self.engine = self._engine_from_onnx(engine_cache_dir or default_cache_dir())
    else:
      plan = _read(model_path)
      self.engine_bytes = len(plan)
      self.engine = self._runtime.deserialize_cuda_engine(plan)
    if self.engine is None:
      raise base.ModelLoadError("TensorRT cannot deserialize %r: not an engine built by "
                                "this TensorRT version for this GPU." % (model_path,))
    self.context = self.engine.create_execution_context()
    self.named_api = hasattr(self.engine, "num_io_tensors")
    self.tensors = self._io_tensors()
    inputs = [t for t in self.tensors if t.is_input]
    if len(inputs) != 1:
      raise base.ModelLoadError("Expected an engine with one input; %r has %d."
                                % (model_path, len(inputs)))
    self.input = inputs[0]
    self.output = [t for t in self.tensors if not t.is_input][0]
    self._allocate()

  def _engine_from_onnx(self, cache_dir: str) -> Any:
    """The engine of the ONNX model: the cached one, else built and cached."""
    onnx_bytes = _read(self.model_path)
    calibration = self.calibration_images
    self.engine_key = engine_key(onnx_bytes, self.precision, self.max_batch_size,
                                 self.trt.__version__, self.gpu_name,
                                 None if calibration is None else
                                 image_files.images_sha256(calibration, with_shape=True))
    self.engine_path = os.path.join(cache_dir, self.engine_key + ".engine")
    if os.path.exists(self.engine_path):
      plan = _read(self.engine_path)
      engine = self._runtime.deserialize_cuda_engine(plan)
      if engine is not None:
        self.engine_cached, self.engine_bytes = True, len(plan)
        return engine
      warnings.warn("Cached TensorRT engine %s cannot be deserialized; rebuilding it."
                    % self.engine_path)
    start = time.monotonic()
    try:
      serialized = tensorrt_build.build_serialized(
          self.trt, onnx_bytes, self.precision, self.max_batch_size,
          source=self.model_path, logger=self._logger, calibration_images=calibration)
    except (ValueError, RuntimeError) as e:
      raise base.ModelLoadError(str(e))
    self.engine_build_s = time.monotonic() - start
    self.engine_bytes = len(serialized)
    try:
      tensorrt_build.write_atomic(self.engine_path, serialized)
    except OSError as e:
      warnings.warn("Cannot cache the TensorRT engine in %s (%s); it will be rebuilt "
                    "next time." % (cache_dir, e))
    return self._runtime.deserialize_cuda_engine(serialized)

  def _io_tensors(self) -> List[_Tensor]:
    trt, engine = self.trt, self.engine
    out = []
    if self.named_api:
      for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = list(engine.get_tensor_shape(name))
        if is_input and -1 in shape:
          shape = list(engine.get_tensor_profile_shape(name, 0)[2])  # profile max
        out.append(_Tensor(name, i, is_input, shape, trt.nptype(engine.get_tensor_dtype(name))))
    else:
      for i in range(engine.num_bindings):
        is_input = engine.binding_is_input(i)
        shape = list(engine.get_binding_shape(i))
        if is_input and -1 in shape:
          shape = list(engine.get_profile_shape(0, i)[2])
        out.append(_Tensor(engine.get_binding_name(i), i, is_input, shape,
                           trt.nptype(engine.get_binding_dtype(i))))
    return out

  def _allocate(self) -> None:
    self.max_batch = self.input.shape[0]
    self._set_input_shape(self.input.shape)
    for t in self.tensors:
      shape = t.shape if t.is_input else self._output_shape(t)
      t.host = np.empty(shape, dtype=t.dtype)
      t.ptr = self.cuda.alloc(t.host.nbytes)
      if self.named_api:
        self.context.set_tensor_address(t.name, t.ptr)
    batch_dim = self.engine.get_tensor_shape(self.input.name)[0] if self.named_api \
        else self.engine.get_binding_shape(self.input.index)[0]
    self.fixed_batch_size = None if batch_dim == -1 else int(batch_dim)

  def _set_input_shape(self, shape: Tuple[int, ...]) -> None:
    if self.named_api:
      ok = self.context.set_input_shape(self.input.name, tuple(shape))
    else:
      ok = self.context.set_binding_shape(self.input.index, tuple(shape))
    if ok is False:
      raise ValueError("TensorRT refused input shape %s for %r (engine profile max %s)."
                       % (tuple(shape), self.input.name, self.input.shape))

  def _output_shape(self, tensor: _Tensor) -> Tuple[int, ...]:
    if self.named_api:
      return tuple(self.context.get_tensor_shape(tensor.name))
    return tuple(self.context.get_binding_shape(tensor.index))

  def predict(self, batch: Any) -> Any:
    batch = np.ascontiguousarray(batch, dtype=self.input.dtype)
    n = batch.shape[0]
    if n > self.max_batch:
      raise ValueError("Batch of %d exceeds the engine's maximum batch %d."
                       % (n, self.max_batch))
    with self.cuda.active():
      return self._run(batch, n)

  def _run(self, batch: np.ndarray, n: int) -> np.ndarray:
    self._set_input_shape(batch.shape)
    self.cuda.htod(self.input.ptr, batch)
    if self.named_api:
      ok = self.context.execute_async_v3(self.cuda.stream_handle)
    else:
      ok = self.context.execute_async_v2([t.ptr for t in self.tensors], self.cuda.stream_handle)
    if ok is False:
      raise RuntimeError("TensorRT failed to run %s (see its log above)." % (self.model_path,))
    self.cuda.sync()                      # the engine has finished
    out = self.output.host[:n]
    self.cuda.dtoh(out, self.output.ptr)
    self.cuda.sync()
    return out.copy()

  def describe(self) -> Dict[str, Any]:
    out = super(TensorRtRuntime, self).describe()
    out["tensorrt_version"] = self.trt.__version__
    out["api"] = "named_tensors" if self.named_api else "bindings"
    out["engine_build_s"] = float(self.engine_build_s)
    out["engine_cached"] = bool(self.engine_cached)
    out["engine_key"] = self.engine_key
    out["gpu_name"] = self.gpu_name
    out["engine_bytes"] = None if self.engine_bytes is None else int(self.engine_bytes)
    out["calibration_images"] = (0 if self.calibration_images is None
                                 else int(len(self.calibration_images)))
    if self.engine_key is not None:
      out["precision"], out["max_batch_size"] = self.precision, self.max_batch_size
    return out

  def close(self) -> None:
    """Drop the execution context and engine, then free the device buffers
    and the stream (a long-lived agent closes one runtime per request)."""
    with self.cuda.active():
      self.context = None
      self.engine = None
    self.cuda.close()
