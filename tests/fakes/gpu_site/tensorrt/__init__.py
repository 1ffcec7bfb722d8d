"""A fake ``tensorrt`` Python package, for tests on machines without a GPU.

It stands in for NVIDIA's library only, so that the real code around it
(``deploy.device.tensorrt_build``, ``deploy.device.runtimes.tensorrt_runtime``) runs
unchanged: build an "engine" from ONNX, serialize and deserialize it, set
shapes and addresses, execute. An engine runs its ONNX model with ONNX
Runtime on the CPU, reading inputs from and writing outputs to "device"
memory (the fake ``cuda`` runtime next to this package). See
``tests/fakes/README.md``.

Version-true where the project depends on it (``__version__`` from env
``TEA_FAKE_TENSORRT_VERSION``, default 10.3.0):

* < 8.5: engines and contexts have only the binding API; >= 10: only the
  named-tensor API; in between both (as the real 8.5 - 9.x);
* < 10: the ONNX parser needs an EXPLICIT_BATCH network, and reads opsets
  7-13 (TensorRT 8.2, JetPack 4.6); 10.x reads up to opset 20;
* ``max_workspace_size`` before 10, ``set_memory_pool_limit`` from 8.4;
* an engine deserializes only under the version that built it.

* INT8 (``BuilderFlag.INT8``): an ``IInt8EntropyCalibrator2`` subclass
  feeds batches from device memory (``_calibrator``); the engine quantizes
  its input symmetrically to int8 (scale amax / 127), the only int8
  numerics emulated.

``BUILDS`` and ``EXECUTIONS`` count successful builds and executions,
``CALIBRATION_BATCHES`` the calibration batches read.
"""

from tensorrt._common import __version__  # noqa: F401
from tensorrt._common import BuilderFlag  # noqa: F401
from tensorrt._common import DataType  # noqa: F401
from tensorrt._common import ErrorCode  # noqa: F401
from tensorrt._common import ILogger  # noqa: F401
from tensorrt._common import Logger  # noqa: F401
from tensorrt._common import MemoryPoolType  # noqa: F401
from tensorrt._common import NetworkDefinitionCreationFlag  # noqa: F401
from tensorrt._common import TensorIOMode  # noqa: F401
from tensorrt._common import nptype  # noqa: F401

BUILDS = 0
EXECUTIONS = 0
CALIBRATION_BATCHES = 0

from tensorrt._builder import Builder  # noqa: E402,F401
from tensorrt._builder import IBuilderConfig  # noqa: E402,F401
from tensorrt._builder import INetworkDefinition  # noqa: E402,F401
from tensorrt._builder import IOptimizationProfile  # noqa: E402,F401
from tensorrt._builder import OnnxParser  # noqa: E402,F401
from tensorrt._builder import ParserError  # noqa: E402,F401
from tensorrt._calibrator import CalibrationAlgoType  # noqa: E402,F401
from tensorrt._calibrator import IInt8Calibrator  # noqa: E402,F401
from tensorrt._calibrator import IInt8EntropyCalibrator2  # noqa: E402,F401
from tensorrt._calibrator import IInt8MinMaxCalibrator  # noqa: E402,F401
from tensorrt._engine import ICudaEngine  # noqa: E402,F401
from tensorrt._engine import IExecutionContext  # noqa: E402,F401
from tensorrt._engine import Runtime  # noqa: E402,F401
