"""Fake ``cuda.bindings.runtime`` (NVIDIA cuda-python) for tests.

Covers the calls of ``deploy.device.runtimes.cuda_memory._CudaPython``, with
cuda-python's conventions: every function returns a tuple whose first item
is a ``cudaError_t`` (``(err,)`` or ``(err, value)``), pointers are ints.
"Device memory" and contexts are ``tea_fake_gpu``'s: as the real runtime
API, every call works in the thread's current context, else the primary one.
Copies check that the device side lies inside one live allocation of that
context and answer ``cudaErrorInvalidValue`` otherwise, so a wrong pointer or
size fails instead of corrupting memory. The device's name and compute
capability are the board's (``tea_fake_gpu.board()``).
"""

import ctypes
import enum

import tea_fake_gpu


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
  def __init__(self, board):
    self.name = board.gpu_name.encode("utf-8")
    self.major, self.minor = board.compute_capability
    self.totalGlobalMem = 8 << 30
    self.multiProcessorCount = 1


_SUCCESS = cudaError_t.cudaSuccess
_INVALID = cudaError_t.cudaErrorInvalidValue


def device_range_ok(ptr, nbytes):
  """Whether [ptr, ptr + nbytes) lies inside one live allocation of the
  context this thread's runtime calls use."""
  return tea_fake_gpu.range_ok(ptr, nbytes, tea_fake_gpu.effective())


def cudaMalloc(size):
  size = int(size)
  if size < 0:
    return (_INVALID, 0)
  return (_SUCCESS, tea_fake_gpu.alloc(size, tea_fake_gpu.effective()))


def cudaFree(ptr):
  return (_SUCCESS,) if tea_fake_gpu.free(ptr) else (_INVALID,)


def _stream_ok(stream):
  return int(stream) == 0 or tea_fake_gpu.STREAMS.get(int(stream)) is tea_fake_gpu.effective()


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
  return (_SUCCESS, cudaStream_t(tea_fake_gpu.new_stream(tea_fake_gpu.effective())))


def cudaStreamDestroy(stream):
  if not tea_fake_gpu.destroy_stream(stream):
    return (cudaError_t.cudaErrorInvalidResourceHandle,)
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
  return (_SUCCESS, cudaDeviceProp(tea_fake_gpu.board()))


def cudaGetErrorString(error):
  return (_SUCCESS, cudaError_t(int(error)).name.encode("utf-8"))
