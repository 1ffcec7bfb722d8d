"""The fake GPU behind the fake ``tensorrt``, ``cuda`` (cuda-python) and
``pycuda`` packages of this folder: which board it is, its CUDA contexts and
its "device" memory.

Boards (``TEA_FAKE_GPU_BOARD``; default from ``TEA_FAKE_TENSORRT_VERSION``:
TensorRT below 8.3 is JetPack 4.6 on a Jetson TX2, anything newer a GPU
server), with what the real one has:

=================  ==========================  =====  =========  =========  ==================
board              GPU name                    SM     fast FP16  fast INT8  CUDA Python library
=================  ==========================  =====  =========  =========  ==================
``jetson_tx2``     NVIDIA Tegra X2             6.2    yes        **no**     pycuda only
``jetson_xavier``  Xavier                      7.2    yes        yes        pycuda only
``gpu_server``     NVIDIA A100-SXM4-40GB       8.0    yes        yes        cuda-python only
``titan_x``        NVIDIA TITAN X (Pascal)     6.1    **no**     yes        cuda-python only
=================  ==========================  =====  =========  =========  ==================

JetPack 4.6 (the TX2's last) is Python 3.6 with TensorRT 8.2 and CUDA 10.2:
cuda-python needs CUDA 11+, so a TX2 has pycuda only. The TX2's GPU (sm_62)
has no DP4A, hence no fast INT8 (``platform_has_fast_int8`` is False);
Pascal GP102 (sm_61) has DP4A but runs FP16 at 1/64 rate.

Overrides: ``TEA_FAKE_GPU_NAME``, ``TEA_FAKE_TENSORRT_FAST_FP16=0|1``,
``TEA_FAKE_TENSORRT_FAST_INT8=0|1``, ``TEA_FAKE_CUDA_LIBS=pycuda,cuda-python``.

Contexts follow CUDA's rules, as the project's code meets them: each thread
has its own stack of current contexts (``push``/``pop``), empty on a new
thread; the CUDA *runtime* API (cuda-python, and TensorRT itself) uses the
thread's current context, else the device's primary context; the *driver*
API (pycuda) needs a current context on the calling thread, else it fails
with "invalid device context". Device memory belongs to the context it was
allocated in; a TensorRT execution or calibration reads only memory of the
context its thread runs in (``range_ok(..., effective())``), as a real GPU
faults on another context's pointers.

"Device" memory is host memory from ctypes buffers kept alive here, so a
device pointer is a real address that the fake TensorRT (and ``ctypes.memmove``)
reads and writes after checking it lies inside one live allocation.
"""

import collections
import ctypes
import itertools
import os
import re
import threading

Board = collections.namedtuple(
    "Board", "name gpu_name compute_capability fast_fp16 fast_int8 cuda_libs")
BOARDS = collections.OrderedDict((b.name, b) for b in (
    Board("jetson_tx2", "NVIDIA Tegra X2 [fake]", (6, 2), True, False, ("pycuda",)),
    Board("jetson_xavier", "Xavier [fake]", (7, 2), True, True, ("pycuda",)),
    Board("gpu_server", "NVIDIA A100-SXM4-40GB [fake]", (8, 0), True, True, ("cuda-python",)),
    Board("titan_x", "NVIDIA TITAN X (Pascal) [fake]", (6, 1), False, True, ("cuda-python",)),
))
CUDA_LIBS = ("pycuda", "cuda-python")


def _tensorrt_version():
  text = os.environ.get("TEA_FAKE_TENSORRT_VERSION", "10.3.0")
  return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def board():
  """The ``Board`` of this process (module doc), overrides applied."""
  name = os.environ.get("TEA_FAKE_GPU_BOARD") or (
      "jetson_tx2" if _tensorrt_version() < (8, 3) else "gpu_server")
  if name not in BOARDS:
    raise ImportError("TEA_FAKE_GPU_BOARD=%r: expected one of %s." % (name, list(BOARDS)))
  spec = BOARDS[name]
  flag = lambda var, default: os.environ.get(var, "1" if default else "0") != "0"
  libs = os.environ.get("TEA_FAKE_CUDA_LIBS")
  return spec._replace(
      gpu_name=os.environ.get("TEA_FAKE_GPU_NAME") or spec.gpu_name,
      fast_fp16=flag("TEA_FAKE_TENSORRT_FAST_FP16", spec.fast_fp16),
      fast_int8=flag("TEA_FAKE_TENSORRT_FAST_INT8", spec.fast_int8),
      cuda_libs=tuple(l.strip() for l in libs.split(",") if l.strip()) if libs is not None
      else spec.cuda_libs)


def require_library(name):
  """ImportError unless this board's CUDA Python library ``name`` exists."""
  spec = board()
  if name not in spec.cuda_libs:
    raise ImportError("No module named %r (fake board %s has %s only)"
                      % ({"pycuda": "pycuda", "cuda-python": "cuda"}[name], spec.name,
                         ", ".join(spec.cuda_libs) or "no CUDA Python library"))


class Context(object):
  """A CUDA context of the one fake device."""
  _ids = itertools.count(1)

  def __init__(self, primary):
    self.id, self.primary, self.detached = next(Context._ids), primary, False

  def __repr__(self):
    return "<fake CUDA context %d%s>" % (self.id, " (primary)" if self.primary else "")


PRIMARY = Context(primary=True)
_LOCAL = threading.local()
_LOCK = threading.Lock()
#: device pointer -> (ctypes buffer, owning Context)
ALLOCATIONS = {}
STREAMS = {}  # stream handle -> owning Context
_STREAM_IDS = itertools.count(0x5000)


def stack():
  """This thread's context stack (a new thread starts with none)."""
  if not hasattr(_LOCAL, "stack"):
    _LOCAL.stack = []
  return _LOCAL.stack


def current():
  """The context current on this thread, or None."""
  s = stack()
  return s[-1] if s else None


def effective():
  """The context the CUDA runtime API uses on this thread: the current one,
  else the primary context (made current implicitly, as cudart does)."""
  return current() or PRIMARY


def alloc(nbytes, context):
  buf = ctypes.create_string_buffer(max(1, int(nbytes)))
  ptr = ctypes.addressof(buf)
  with _LOCK:
    ALLOCATIONS[ptr] = (buf, context)
  return ptr


def free(ptr):
  with _LOCK:
    return ALLOCATIONS.pop(int(ptr), None) is not None


def range_ok(ptr, nbytes, context=None):
  """Whether [ptr, ptr + nbytes) lies inside one live allocation (of
  ``context`` when given)."""
  ptr, nbytes = int(ptr), int(nbytes)
  with _LOCK:
    for start, (buf, owner) in ALLOCATIONS.items():
      if start <= ptr and ptr + nbytes <= start + ctypes.sizeof(buf):
        return context is None or owner is context
  return False


def new_stream(context):
  handle = next(_STREAM_IDS)
  with _LOCK:
    STREAMS[handle] = context
  return handle


def destroy_stream(handle):
  with _LOCK:
    return STREAMS.pop(int(handle), None) is not None


def live_streams():
  with _LOCK:
    return len(STREAMS)
