"""Fake ``pycuda.autoinit``: as the real one, creates a (non-primary)
context on device 0 and makes it current **on the importing thread only**;
other threads have no current context (pycuda calls there fail with
"invalid device context")."""

import atexit

import pycuda.driver as cuda

cuda.init()
device = cuda.Device(0)
context = device.make_context()


def _pop():
  try:
    context.pop()
  except cuda.Error:  # another thread's exit, or already popped
    pass


atexit.register(_pop)
