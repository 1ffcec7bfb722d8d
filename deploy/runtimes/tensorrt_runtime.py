"""TensorRT engines (.engine/.plan), TensorRT 8.x and 10.x Python APIs.

* TensorRT >= 8.5 (incl. 10.x): the named-tensor API (``num_io_tensors``,
  ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``);
* TensorRT 8.0 - 8.4 (JetPack 4.6 ships 8.2 on Python 3.6): the binding API
  (``num_bindings``, ``set_binding_shape``, ``execute_async_v2``).

Device memory through pycuda (JetPack's usual companion) or NVIDIA's
cuda-python (``cuda.bindings.runtime`` / older ``cuda.cudart``). Runs only
where TensorRT and a CUDA GPU exist; there is none in the development
environment, so this module is exercised on the devices.
"""

import numpy as np

from deploy.runtimes import base


class _PyCuda(object):
  def __init__(self):
    import pycuda.autoinit  # noqa: F401  (creates the context)
    import pycuda.driver as driver
    self.driver = driver
    self.stream = driver.Stream()
    self.stream_handle = self.stream.handle
    self._keep = []

  def alloc(self, nbytes):
    mem = self.driver.mem_alloc(max(1, int(nbytes)))
    self._keep.append(mem)
    return int(mem)

  # Synchronous copies: the host arrays are ordinary (pageable) numpy memory,
  # which pycuda's *_async copies do not accept.
  def htod(self, ptr, array):
    self.driver.memcpy_htod(ptr, array)

  def dtoh(self, array, ptr):
    self.driver.memcpy_dtoh(array, ptr)

  def sync(self):
    self.stream.synchronize()


class _CudaPython(object):
  def __init__(self):
    try:
      from cuda.bindings import runtime as cudart
    except ImportError:
      from cuda import cudart
    self.rt = cudart
    self.stream_handle = int(self._check(cudart.cudaStreamCreate()))

  def _check(self, result):
    err, rest = result[0], result[1:]
    if int(err) != 0:
      raise RuntimeError("CUDA runtime error %s" % (err,))
    return rest[0] if rest else None

  def alloc(self, nbytes):
    return int(self._check(self.rt.cudaMalloc(max(1, int(nbytes)))))

  def htod(self, ptr, array):
    self._check(self.rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes,
                                        self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                        self.stream_handle))

  def dtoh(self, array, ptr):
    self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes,
                                        self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                        self.stream_handle))

  def sync(self):
    self._check(self.rt.cudaStreamSynchronize(self.stream_handle))


def cuda_memory():
  """pycuda if importable, else cuda-python; a clear error when neither."""
  try:
    return _PyCuda()
  except ImportError:
    pass
  try:
    return _CudaPython()
  except ImportError:
    raise ImportError("runtime=tensorrt needs pycuda or cuda-python for device "
                      "memory: pip install pycuda (JetPack) or pip install cuda-python.")


class _Tensor(object):
  def __init__(self, name, index, is_input, shape, dtype):
    self.name, self.index, self.is_input = name, index, is_input
    self.shape, self.dtype = tuple(shape), dtype
    self.ptr, self.host = None, None


class TensorRtRuntime(base.Runtime):
  name = "tensorrt"

  def __init__(self, model_path, device="gpu"):
    super(TensorRtRuntime, self).__init__(model_path, device)
    trt = base.require("tensorrt", "tensorrt", self.name)
    self.trt = trt
    self.cuda = cuda_memory()
    self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with open(model_path, "rb") as f:
      self.engine = self._runtime.deserialize_cuda_engine(f.read())
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

  def _io_tensors(self):
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

  def _allocate(self):
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

  def _set_input_shape(self, shape):
    if self.named_api:
      self.context.set_input_shape(self.input.name, tuple(shape))
    else:
      self.context.set_binding_shape(self.input.index, tuple(shape))

  def _output_shape(self, tensor):
    if self.named_api:
      return tuple(self.context.get_tensor_shape(tensor.name))
    return tuple(self.context.get_binding_shape(tensor.index))

  def predict(self, batch):
    batch = np.ascontiguousarray(batch, dtype=self.input.dtype)
    n = batch.shape[0]
    if n > self.max_batch:
      raise ValueError("Batch of %d exceeds the engine's maximum batch %d."
                       % (n, self.max_batch))
    self._set_input_shape(batch.shape)
    self.cuda.htod(self.input.ptr, batch)
    if self.named_api:
      self.context.execute_async_v3(self.cuda.stream_handle)
    else:
      self.context.execute_async_v2([t.ptr for t in self.tensors], self.cuda.stream_handle)
    self.cuda.sync()                      # the engine has finished
    out = self.output.host[:n]
    self.cuda.dtoh(out, self.output.ptr)
    self.cuda.sync()
    return out.copy()

  def describe(self):
    out = super(TensorRtRuntime, self).describe()
    out["tensorrt_version"] = self.trt.__version__
    out["api"] = "named_tensors" if self.named_api else "bindings"
    return out
