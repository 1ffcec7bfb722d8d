"""CUDA device memory and a stream for TensorRT: pycuda (JetPack) or
cuda-python, whichever imports (``cuda_memory()``); used by the TensorRT
runtime, the int8 calibrator and the capability probe."""

import contextlib
import threading
from typing import Any, Iterator, List, Optional


class _PyCuda(object):
  """Device memory and a stream through pycuda (JetPack's CUDA library).

  pycuda's contexts are per thread: a context is current only on the thread
  that pushed it, and ``import pycuda.autoinit`` makes a new one current on
  the importing thread alone. The agent probes on its main thread and serves
  each request on a thread of its own, so this class never relies on a
  current context: it retains the device's *primary* context (the one
  TensorRT's own CUDA runtime calls use on a thread with none current) and
  makes it current around every call (``active()``), on whichever thread.
  """

  def __init__(self) -> None:
    # CUDA bindings: optional, imported only on a GPU machine.
    import pycuda.driver as driver
    driver.init()
    self.driver = driver
    self._depth = threading.local()
    self.context = driver.Device(0).retain_primary_context()
    with self.active():
      self.stream = driver.Stream()
      self.stream_handle = self.stream.handle
    self._keep = []  # type: List[Any]

  @contextlib.contextmanager
  def active(self) -> Iterator[None]:
    """The primary context current on this thread for the block (nests)."""
    depth = getattr(self._depth, "n", 0)
    if depth == 0:
      self.context.push()
    self._depth.n = depth + 1
    try:
      yield
    finally:
      self._depth.n = depth
      if depth == 0:
        self.driver.Context.pop()

  def device_name(self) -> str:
    try:
      with self.active():
        return str(self.driver.Context.get_device().name()).strip()
    except Exception:  # pylint: disable=broad-except
      return ""

  def alloc(self, nbytes: int) -> int:
    with self.active():
      mem = self.driver.mem_alloc(max(1, int(nbytes)))
    self._keep.append(mem)
    return int(mem)

  def free_all(self) -> None:
    with self.active():
      for mem in self._keep:
        mem.free()
    self._keep = []

  # Synchronous copies: the host arrays are ordinary (pageable) numpy memory,
  # which pycuda's *_async copies do not accept.
  def htod(self, ptr: int, array: Any) -> None:
    with self.active():
      self.driver.memcpy_htod(ptr, array)

  def dtoh(self, array: Any, ptr: int) -> None:
    with self.active():
      self.driver.memcpy_dtoh(array, ptr)

  def sync(self) -> None:
    with self.active():
      self.stream.synchronize()

  def close(self) -> None:
    """Free the buffers, destroy the stream (pycuda does so when the object
    goes, with its context current) and release the primary context."""
    self.free_all()
    if self.stream is not None:
      with self.active():
        self.stream = None
    self.context.detach()


class _CudaPython(object):
  """Device memory and a stream through NVIDIA's cuda-python (runtime API:
  every call uses the thread's current context, else the primary one, the
  same as TensorRT's, so no context handling is needed)."""

  def __init__(self) -> None:
    try:
      # CUDA bindings: optional, imported only on a GPU machine.
      from cuda.bindings import runtime as cudart
    except ImportError:
      from cuda import cudart
    self.rt = cudart
    self.stream_handle = int(self._check(cudart.cudaStreamCreate()))  # type: Optional[int]
    self._keep = []  # type: List[Any]

  @contextlib.contextmanager
  def active(self) -> Iterator[None]:
    yield

  def _check(self, result: Any) -> Any:
    err, rest = result[0], result[1:]
    if int(err) != 0:
      raise RuntimeError("CUDA runtime error %s" % (err,))
    return rest[0] if rest else None

  def device_name(self) -> str:
    try:
      device = self._check(self.rt.cudaGetDevice())
      name = self._check(self.rt.cudaGetDeviceProperties(device)).name
    except Exception:  # pylint: disable=broad-except
      return ""
    if isinstance(name, bytes):
      name = name.split(b"\0")[0].decode("utf-8", "replace")
    return str(name).strip()

  def alloc(self, nbytes: int) -> int:
    ptr = int(self._check(self.rt.cudaMalloc(max(1, int(nbytes)))))
    self._keep.append(ptr)
    return ptr

  def free_all(self) -> None:
    for ptr in self._keep:
      self.rt.cudaFree(ptr)
    self._keep = []

  def htod(self, ptr: int, array: Any) -> None:
    self._check(self.rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes,
                                        self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                        self.stream_handle))

  def dtoh(self, array: Any, ptr: int) -> None:
    self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes,
                                        self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                        self.stream_handle))

  def sync(self) -> None:
    self._check(self.rt.cudaStreamSynchronize(self.stream_handle))

  def close(self) -> None:
    """Free the buffers and destroy the stream."""
    self.free_all()
    if self.stream_handle is not None:
      self.rt.cudaStreamDestroy(self.stream_handle)
      self.stream_handle = None


def cuda_memory() -> Any:
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
