"""Version switches, enums, Logger and dtype maps of the fake TensorRT."""

import enum
import os
import re
import sys

import numpy as np

__version__ = os.environ.get("TEA_FAKE_TENSORRT_VERSION", "10.3.0")
VERSION = tuple(int(p) for p in re.findall(r"\d+", __version__)[:3])
if len(VERSION) < 2:
  raise ImportError("TEA_FAKE_TENSORRT_VERSION must look like 8.2.1 or 10.3.0. "
                    "Received %r" % (__version__,))

#: engine/context API families the real TensorRT of this version exposes
BINDING_API = VERSION < (10,)             # removed in 10.0
NAMED_API = VERSION >= (8, 5)             # added in 8.5
#: 8.x parses ONNX only into EXPLICIT_BATCH networks; 10.x has no other kind
NEEDS_EXPLICIT_BATCH_FLAG = VERSION < (10,)
MEMORY_POOL_API = VERSION >= (8, 4)       # config.set_memory_pool_limit
WORKSPACE_SIZE_ATTR = VERSION < (10,)     # config.max_workspace_size
#: newest ONNX opset the parser reads (TensorRT 8.2: 13, as on JetPack 4.6)
MAX_ONNX_OPSET = 13 if VERSION < (10,) else 20
MIN_ONNX_OPSET = 7


class DataType(enum.IntEnum):
  FLOAT = 0
  HALF = 1
  INT8 = 2
  INT32 = 3
  BOOL = 4
  UINT8 = 5
  INT64 = 8


_NP_TYPES = {DataType.FLOAT: np.float32, DataType.HALF: np.float16,
             DataType.INT8: np.int8, DataType.INT32: np.int32, DataType.BOOL: np.bool_,
             DataType.UINT8: np.uint8, DataType.INT64: np.int64}
#: onnx.TensorProto element type -> DataType
ONNX_TYPES = {1: DataType.FLOAT, 2: DataType.UINT8, 3: DataType.INT8, 6: DataType.INT32,
              7: DataType.INT64, 9: DataType.BOOL, 10: DataType.HALF}


def nptype(trt_type):
  """The numpy scalar type of a DataType (as ``tensorrt.nptype``)."""
  return _NP_TYPES[DataType(int(trt_type))]


class TensorIOMode(enum.IntEnum):
  NONE = 0
  INPUT = 1
  OUTPUT = 2


class BuilderFlag(enum.IntEnum):
  FP16 = 0
  INT8 = 1
  DEBUG = 2
  GPU_FALLBACK = 3
  REFIT = 5
  TF32 = 7


class MemoryPoolType(enum.IntEnum):
  WORKSPACE = 0
  DLA_MANAGED_SRAM = 1
  DLA_LOCAL_DRAM = 2
  DLA_GLOBAL_DRAM = 3


class NetworkDefinitionCreationFlag(enum.IntEnum):
  EXPLICIT_BATCH = 0
  STRONGLY_TYPED = 1


class ErrorCode(enum.IntEnum):
  SUCCESS = 0
  INTERNAL_ERROR = 1
  MEM_ALLOC_FAILED = 2
  MODEL_DESERIALIZE_FAILED = 3
  INVALID_VALUE = 4
  INVALID_GRAPH = 5
  INVALID_NODE = 6
  UNSUPPORTED_GRAPH = 7
  UNSUPPORTED_NODE = 8


class Logger(object):
  """Prints messages at or above ``min_severity`` to stderr; keeps them all."""

  class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4

  INTERNAL_ERROR = Severity.INTERNAL_ERROR
  ERROR = Severity.ERROR
  WARNING = Severity.WARNING
  INFO = Severity.INFO
  VERBOSE = Severity.VERBOSE

  def __init__(self, min_severity=Severity.WARNING):
    self.min_severity = min_severity
    self.messages = []

  def log(self, severity, msg):
    self.messages.append((Logger.Severity(int(severity)), msg))
    if int(severity) <= int(self.min_severity):
      sys.stderr.write("[fake TensorRT %s] [%s] %s\n"
                       % (__version__, Logger.Severity(int(severity)).name, msg))


ILogger = Logger


def log_error(logger, msg):
  if logger is not None:
    logger.log(Logger.ERROR, msg)
