"""Fakes of vendor libraries for tests (see README.md in this folder).

``fake_gpu(version)`` activates the fake TensorRT and CUDA runtime in this
process for the duration of a ``with`` block; ``subprocess_env(version)``
is the environment that activates them in a child process.
"""

import contextlib
import importlib
import os
import sys

GPU_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_site")
#: top-level packages the fakes replace; dropped from sys.modules around use
FAKED_PACKAGES = ("tensorrt", "cuda", "pycuda", "tea_fake_gpu")
ENV_VARS = ("TEA_FAKE_TENSORRT_VERSION", "TEA_FAKE_GPU_NAME", "TEA_FAKE_TENSORRT_FAST_FP16",
            "TEA_FAKE_TENSORRT_FAST_INT8", "TEA_FAKE_GPU_BOARD", "TEA_FAKE_CUDA_LIBS")


def drop_modules():
  """Forget every imported ``tensorrt``/``cuda``/``pycuda`` module (fake or
  real) and the fake GPU's state."""
  for name in list(sys.modules):
    if name.split(".")[0] in FAKED_PACKAGES:
      del sys.modules[name]


@contextlib.contextmanager
def fake_gpu(tensorrt_version="10.3.0", gpu_name=None, board=None):
  """Yields the freshly imported fake ``tensorrt`` (BUILDS starts at 0).

  board: a ``tea_fake_gpu.BOARDS`` name; default the one of the version
  (TensorRT 8.2 = JetPack 4.6 on a TX2: pycuda only, no fast INT8; 10.x a
  GPU server with cuda-python).
  On exit sys.path, sys.modules (for tensorrt/cuda/pycuda) and the TEA_FAKE_*
  variables are as before.
  """
  saved_path = list(sys.path)
  saved_env = dict((k, os.environ.get(k)) for k in ENV_VARS)
  drop_modules()
  for key in ENV_VARS:
    os.environ.pop(key, None)
  os.environ["TEA_FAKE_TENSORRT_VERSION"] = tensorrt_version
  if gpu_name is not None:
    os.environ["TEA_FAKE_GPU_NAME"] = gpu_name
  if board is not None:
    os.environ["TEA_FAKE_GPU_BOARD"] = board
  sys.path.insert(0, GPU_SITE)
  importlib.invalidate_caches()
  try:
    yield importlib.import_module("tensorrt")
  finally:
    drop_modules()
    sys.path[:] = saved_path
    for key, value in saved_env.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value


def subprocess_env(tensorrt_version="10.3.0", base=None, gpu_name=None, board=None):
  """A copy of ``base`` (default os.environ) with the fakes first on
  PYTHONPATH and the fake TensorRT's version (and board) set."""
  env = dict(os.environ if base is None else base)
  for key in ENV_VARS:
    env.pop(key, None)
  paths = [GPU_SITE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
  env["PYTHONPATH"] = os.pathsep.join(paths)
  env["TEA_FAKE_TENSORRT_VERSION"] = tensorrt_version
  if gpu_name is not None:
    env["TEA_FAKE_GPU_NAME"] = gpu_name
  if board is not None:
    env["TEA_FAKE_GPU_BOARD"] = board
  return env
