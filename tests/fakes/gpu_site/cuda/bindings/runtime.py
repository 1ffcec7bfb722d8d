"""Fake ``cuda.bindings.runtime`` (NVIDIA cuda-python) for tests.

Covers the calls of ``deploy.runtimes.tensorrt_runtime._CudaPython``, with
cuda-python's conventions: every function returns a tuple whose first item
is a ``cudaError_t`` (``(err,)`` or ``(err, value)``), pointers are ints.
"Device memory" is host memory from ctypes buffers kept alive in
``_ALLOCATIONS``, so a device pointer is a real address the fake TensorRT
(and ``ctypes.memmove``) can read and write. Copies check that the device
side lies inside one live allocation and answer ``cudaErrorInvalidValue``
otherwise, so a wrong pointer or size fails instead of corrupting memory.

Environment: ``TEA_FAKE_GPU_NAME`` (default "Fake GPU (host memory)") is the
name ``cudaGetDeviceProperties`` reports.
"""

import ctypes
import enum
import itertools
import os

DEFAULT_GPU_NAME = "Fake GPU (host memory)"


class cudaError_t(enum.IntEnum):
  cudaSuccess = 0
  cudaErrorInvalidValue = 1
  cudaErrorMemoryAllocation = 2
  cudaErrorInvalidDevice = 101
  cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):
  cudaMemcpyHostToHost = 0
  cudaMemcpyHostToDevice = 1
  cudaMemcpyDeviceToHost = 2
  cudaMemcpyDeviceToDevice = 3
  cudaMemcpyDefault = 4


class cudaStream_t(object):
  """A stream handle; ``int()`` gives the value passed back to the API."""

  def __init__(self, handle=0):
    self._handle = int(handle)

  def __int__(self):
    return self._handle

  def getPtr(self):
    return self._handle

  def __repr__(self):
    return "<cudaStream_t 0x%x>" % self._handle


class cudaDeviceProp(object):
  def __init__(self, name):
    self.name = name.encode("utf-8")
    self.major, self.minor = 8, 7
    self.totalGlobalMem = 8 << 30
    self.multiProcessorCount = 1


_SUCCESS = cudaError_t.cudaSuccess
_INVALID = cudaError_t.cudaErrorInvalidValue
#: device pointer -> the ctypes buffer that backs it (kept alive here)
_ALLOCATIONS = {}
_STREAMS = set()
_STREAM_IDS = itertools.count(0x5000)


def device_range_ok(ptr, nbytes):
  """Whether [ptr, ptr + nbytes) lies inside one live allocation."""
  ptr, nbytes = int(ptr), int(nbytes)
  for start, buf in _ALLOCATIONS.items():
    if start <= ptr and ptr + nbytes <= start + ctypes.sizeof(buf):
      return True
  return False


def cudaMalloc(size):
  size = int(size)
  if size < 0:
    return (_INVALID, 0)
  buf = ctypes.create_string_buffer(max(1, size))
  ptr = ctypes.addressof(buf)
  _ALLOCATIONS[ptr] = buf
  return (_SUCCESS, ptr)


def cudaFree(ptr):
  if _ALLOCATIONS.pop(int(ptr), None) is None:
    return (_INVALID,)
  return (_SUCCESS,)


def _stream_ok(stream):
  return int(stream) == 0 or int(stream) in _STREAMS


def cudaMemcpy(dst, src, count, kind):
  kind, count = cudaMemcpyKind(int(kind)), int(count)
  device_dst = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice,
                        cudaMemcpyKind.cudaMemcpyDeviceToDevice)
  device_src = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost,
                        cudaMemcpyKind.cudaMemcpyDeviceToDevice)
  if count < 0 or (device_dst and not device_range_ok(dst, count)) or \
      (device_src and not device_range_ok(src, count)):
    return (_INVALID,)
  ctypes.memmove(int(dst), int(src), count)
  return (_SUCCESS,)


def cudaMemcpyAsync(dst, src, count, kind, stream):
  """Copies at once (the fake has no queue), after checking the stream."""
  if not _stream_ok(stream):
    return (cudaError_t.cudaErrorInvalidResourceHandle,)
  return cudaMemcpy(dst, src, count, kind)


def cudaStreamCreate():
  handle = next(_STREAM_IDS)
  _STREAMS.add(handle)
  return (_SUCCESS, cudaStream_t(handle))


def cudaStreamDestroy(stream):
  if int(stream) not in _STREAMS:
    return (cudaError_t.cudaErrorInvalidResourceHandle,)
  _STREAMS.discard(int(stream))
  return (_SUCCESS,)


def cudaStreamSynchronize(stream):
  if not _stream_ok(stream):
    return (cudaError_t.cudaErrorInvalidResourceHandle,)
  return (_SUCCESS,)


def cudaDeviceSynchronize():
  return (_SUCCESS,)


def cudaGetDeviceCount():
  return (_SUCCESS, 1)


def cudaGetDevice():
  return (_SUCCESS, 0)


def cudaSetDevice(device):
  return (_SUCCESS,) if int(device) == 0 else (cudaError_t.cudaErrorInvalidDevice,)


def cudaGetDeviceProperties(device):
  if int(device) != 0:
    return (cudaError_t.cudaErrorInvalidDevice, None)
  return (_SUCCESS, cudaDeviceProp(os.environ.get("TEA_FAKE_GPU_NAME", DEFAULT_GPU_NAME)))


def cudaGetErrorString(error):
  return (_SUCCESS, cudaError_t(int(error)).name.encode("utf-8"))
