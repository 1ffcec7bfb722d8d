"""Fake ``pycuda.driver``: the calls ``deploy.device.runtimes.tensorrt_runtime``
makes, with the CUDA driver API's rules (``tea_fake_gpu``): allocations,
copies and streams need a context current **on the calling thread** and
raise ``LogicError("... invalid device context")`` otherwise; memory and
streams belong to that context; ``Context.push``/``pop`` act on the
calling thread's stack."""

import ctypes

import numpy as np

import tea_fake_gpu

_INITIALIZED = []


class Error(Exception):
  pass


class LogicError(Error):
  pass


class RuntimeError(Error):  # pylint: disable=redefined-builtin  (pycuda's own name)
  pass


def init(flags=0):
  del flags
  _INITIALIZED.append(True)


def _need_init(what):
  if not _INITIALIZED:
    raise LogicError("%s failed: initialization error (call pycuda.driver.init())" % what)


def _need_context(what):
  _need_init(what)
  context = tea_fake_gpu.current()
  if context is None:
    raise LogicError("%s failed: invalid device context" % what)
  return context


class Device(object):
  def __init__(self, ordinal):
    _need_init("cuDeviceGet")
    if int(ordinal) != 0:
      raise LogicError("cuDeviceGet failed: invalid device ordinal")
    self.ordinal = 0

  @staticmethod
  def count():
    _need_init("cuDeviceGetCount")
    return 1

  def name(self):
    return tea_fake_gpu.board().gpu_name

  def compute_capability(self):
    return tea_fake_gpu.board().compute_capability

  def total_memory(self):
    return 8 << 30

  def make_context(self, flags=0):
    del flags
    context = Context(tea_fake_gpu.Context(primary=False))
    tea_fake_gpu.stack().append(context._ctx)
    return context

  def retain_primary_context(self):
    return Context(tea_fake_gpu.PRIMARY)


class Context(object):
  def __init__(self, ctx):
    self._ctx = ctx

  def __eq__(self, other):
    return isinstance(other, Context) and other._ctx is self._ctx

  def __ne__(self, other):
    return not self == other

  def __hash__(self):
    return hash(self._ctx.id)

  def push(self):
    if self._ctx.detached:
      raise LogicError("cuCtxPushCurrent failed: invalid device context")
    tea_fake_gpu.stack().append(self._ctx)

  @staticmethod
  def pop():
    stack = tea_fake_gpu.stack()
    if not stack:
      raise LogicError("cuCtxPopCurrent failed: invalid device context")
    stack.pop()

  def detach(self):
    stack = tea_fake_gpu.stack()
    if stack and stack[-1] is self._ctx:
      stack.pop()
    if not self._ctx.primary:
      self._ctx.detached = True

  @staticmethod
  def get_current():
    ctx = tea_fake_gpu.current()
    return None if ctx is None else Context(ctx)

  @staticmethod
  def get_device():
    _need_context("cuCtxGetDevice")
    return Device(0)

  @staticmethod
  def synchronize():
    _need_context("cuCtxSynchronize")


class DeviceAllocation(object):
  def __init__(self, ptr):
    self.ptr = ptr

  def __int__(self):
    return self.ptr

  __index__ = __int__

  def free(self):
    if self.ptr is not None:
      _need_context("cuMemFree")
      tea_fake_gpu.free(self.ptr)
      self.ptr = None


def mem_alloc(nbytes):
  context = _need_context("cuMemAlloc")
  return DeviceAllocation(tea_fake_gpu.alloc(int(nbytes), context))


def _copy(what, dst, src, nbytes, device_ptr):
  context = _need_context(what)
  if not tea_fake_gpu.range_ok(device_ptr, nbytes, context):
    raise LogicError("%s failed: invalid argument" % what)
  ctypes.memmove(int(dst), int(src), int(nbytes))


def memcpy_htod(dest, src):
  src = np.ascontiguousarray(src)
  _copy("cuMemcpyHtoD", int(dest), src.ctypes.data, src.nbytes, int(dest))


def memcpy_dtoh(dest, src):
  if not (isinstance(dest, np.ndarray) and dest.flags["C_CONTIGUOUS"]):
    raise TypeError("memcpy_dtoh needs a contiguous numpy array to copy into")
  _copy("cuMemcpyDtoH", dest.ctypes.data, int(src), dest.nbytes, int(src))


class Stream(object):
  def __init__(self, flags=0):
    del flags
    context = _need_context("cuStreamCreate")
    self.handle = tea_fake_gpu.new_stream(context)

  def synchronize(self):
    _need_context("cuStreamSynchronize")

  def __del__(self):
    # The real pycuda destroys the stream when the object is collected, which
    # needs its context current then (else "cuStreamDestroy failed").
    handle = getattr(self, "handle", None)
    if handle is not None and tea_fake_gpu.STREAMS.get(handle) is tea_fake_gpu.current():
      tea_fake_gpu.destroy_stream(handle)
      self.handle = None
