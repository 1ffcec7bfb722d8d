"""Build a TensorRT engine from an ONNX file, on the device that will run it.

Engines are specific to the GPU and the TensorRT version, so this runs on the
target (Jetson, GPU server): ``python3 -m deploy.device.tensorrt_build
--onnx=model.onnx --engine=model.engine --precision=fp16 --batch_size=100``
(int8: add ``--calibration=train_images.npy``, see below).
Uses the TensorRT Python builder API (8.x and 10.x) when ``tensorrt`` is
importable, else ``trtexec`` from PATH. ``build_serialized`` is the in-memory
step that ``deploy.device.runtimes.tensorrt_runtime`` uses to build (and cache) the
engine of an ``.onnx`` model when it loads it. Device-side: Python 3.6
syntax, standard library (+ numpy for int8 calibration).

TensorRT API differences handled here:

* 8.x needs the EXPLICIT_BATCH network flag for ONNX; 10.x makes explicit
  batch the only mode (the flag is deprecated);
* the workspace limit is ``config.max_workspace_size`` before 8.4 and
  ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)`` from 8.4 on
  (``max_workspace_size`` is gone in 10.x);
* TensorRT 8.2's ONNX parser (JetPack 4.6) reads opsets 7-13 only, which is
  why ``deploy.export`` writes opset 13 by default.

INT8 (post-training quantization, implicit quantization): the builder
calibrates on normalized float32 NHWC TRAINING images (``--calibration``;
``python -m deploy.measure --write_calibration=FILE.npy`` writes them on the
host) through an ``IInt8EntropyCalibrator2`` (``make_calibrator``) that feeds
them in fixed batches of ``CALIBRATION_BATCH_SIZE`` (50, capped at the
number of images) through device memory; a remainder smaller than a batch is
not used (the calibration profile fixes the batch shape). The scales can be
kept in a calibration cache file (``--calibration_cache``): TensorRT reads it
first and then asks for no batch. ``trtexec`` cannot calibrate from images:
it builds int8 only from an existing cache (``--int8 --calib=FILE``).
TensorRT 10.1+ deprecates these implicit-quantization calibrators in favour
of explicit Q/DQ networks (they still work throughout 10.x); 8.x, as on
JetPack 4.6, has only them.
"""

import argparse
import json
import numbers
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import cuda_memory as cuda_memory_lib
from . import devices
from . import errors
from . import image_files

#: the precisions TensorRT builds: those with a "tensorrt" conversion in the registry
PRECISIONS = tuple(name for name, spec in devices.PRECISIONS.items()
                   if "tensorrt" in spec.conversion)
DEFAULT_BATCH_SIZE = 100
DEFAULT_WORKSPACE_MB = 1024
#: images per calibration batch (capped at the number of calibration images)
CALIBRATION_BATCH_SIZE = 50


def check_precision(precision: str) -> None:
  if precision not in PRECISIONS:
    raise errors.invalid_value("precision", "one of %s" % ", ".join(PRECISIONS), precision)


def check_build_args(precision: str, batch_size: int) -> None:
  """Keras-style ValueErrors for an unsupported precision or batch size."""
  check_precision(precision)
  if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
      or batch_size < 1):
    raise errors.invalid_value("batch_size", "a positive integer", batch_size)


def tensorrt_major(trt: Any) -> int:
  return int(str(trt.__version__).split(".")[0])


def _network_flags(trt: Any) -> int:
  if tensorrt_major(trt) >= 10:
    return 0
  return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _set_workspace(trt: Any, config: Any, nbytes: int) -> None:
  if hasattr(config, "set_memory_pool_limit"):       # 8.4+
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
  else:                                               # 8.0 - 8.3
    config.max_workspace_size = nbytes


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_bytes: bytes,
                source: str) -> Tuple[Any, Any]:
  """(network, parser): the parser owns the weights, keep it until built."""
  network = builder.create_network(_network_flags(trt))
  parser = trt.OnnxParser(network, logger)
  if not parser.parse(onnx_bytes):
    messages = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    hint = ""
    if tensorrt_major(trt) < 10:
      hint = (" (TensorRT 8.2, as on JetPack 4.6, reads ONNX opsets up to 13: "
              "export with deploy.export's default opset=13)")
    raise ValueError("TensorRT %s cannot parse %s: %s%s"
                     % (trt.__version__, source, "; ".join(messages) or "no details", hint))
  return network, parser


def _add_profile(builder: Any, config: Any, network: Any, batch_size: int, source: str) -> None:
  """Profile batch 1..batch_size (optimized for batch_size) for every input
  whose batch dimension is dynamic; other dimensions must be static."""
  profile = None
  for i in range(network.num_inputs):
    inp = network.get_input(i)
    shape = [int(d) for d in inp.shape]
    if not shape or shape[0] != -1:
      continue
    if -1 in shape[1:]:
      raise ValueError("%s: input %r has dynamic dimensions other than the batch %s; "
                       "expected static image dimensions." % (source, inp.name, shape))
    if profile is None:
      profile = builder.create_optimization_profile()
    dims = shape[1:]
    profile.set_shape(inp.name, [1] + dims, [batch_size] + dims, [batch_size] + dims)
  if profile is not None:
    config.add_optimization_profile(profile)


def check_calibration_images(images: Any, name: str = "calibration_images") -> None:
  """Keras-style ValueError unless ``images`` is a non-empty float32 NHWC array."""
  dtype, ndim = getattr(images, "dtype", None), getattr(images, "ndim", None)
  if str(dtype) != "float32" or ndim != 4 or len(images) < 1:
    raise errors.invalid_value(name, "float32 normalized NHWC training images (a non-empty "
                               "4-D array)", shown="%s of dtype %s and shape %s"
                               % (name, dtype, getattr(images, "shape", None)))


def check_int8_inputs(precision: str, calibration_images: Any,
                      calibration_cache: Optional[str]) -> None:
  """int8 needs calibration images or an existing calibration cache file."""
  if calibration_images is not None:
    check_calibration_images(calibration_images)
  if precision != "int8" or calibration_images is not None:
    return
  if not (calibration_cache and os.path.exists(calibration_cache)):
    raise ValueError("Invalid value for argument `calibration_images`. precision=int8 needs "
                     "float32 normalized NHWC training images to calibrate on (--calibration="
                     "FILE.npy) or an existing calibration cache (--calibration_cache=FILE). "
                     "Received calibration_images=None, calibration_cache=%r"
                     % (calibration_cache,))


def make_calibrator(trt: Any, images: Any, batch_size: Optional[int] = None,
                    cache_path: Optional[str] = None) -> Any:
  """An ``trt.IInt8EntropyCalibrator2`` feeding ``images`` (float32 NHWC) in
  batches of min(batch_size, len(images)) through device memory (a
  remainder smaller than a batch is dropped); reads/writes ``cache_path``."""
  base = trt.IInt8EntropyCalibrator2

  class Calibrator(base):  # type: ignore[valid-type,misc]  # TensorRT's class, imported at run time
    def __init__(self) -> None:
      base.__init__(self)
      self.images = images
      self.batch = max(1, min(int(batch_size or CALIBRATION_BATCH_SIZE), len(images)))
      self.cuda, self.ptr, self.next = None, None, 0  # type: Any, Any, int
      self.batches_read = 0

    def get_batch_size(self) -> int:
      return self.batch

    def get_batch(self, names: Sequence[str]) -> Optional[List[int]]:  # pylint: disable=unused-argument
      if self.next + self.batch > len(self.images):
        return None
      if self.cuda is None:
        self.cuda = cuda_memory_lib.cuda_memory()
        self.ptr = self.cuda.alloc(self.images[:self.batch].nbytes)
      chunk = np.ascontiguousarray(self.images[self.next:self.next + self.batch], np.float32)
      self.cuda.htod(self.ptr, chunk)
      self.cuda.sync()
      self.next += self.batch
      self.batches_read += 1
      return [int(self.ptr)]

    def read_calibration_cache(self) -> Optional[bytes]:
      if cache_path and os.path.exists(cache_path):
        with open(cache_path, "rb") as f:
          return f.read()
      return None

    def write_calibration_cache(self, cache: Any) -> None:
      if cache_path:
        write_atomic(cache_path, bytes(cache))

    def close(self) -> None:
      if self.cuda is not None:
        self.cuda.free_all()
        self.cuda = None

  return Calibrator()


def _network_input(network: Any, source: str) -> Tuple[str, List[int]]:
  if network.num_inputs != 1:
    raise ValueError("%s: int8 calibration expects a network with one input; it has %d."
                     % (source, network.num_inputs))
  inp = network.get_input(0)
  return inp.name, [int(d) for d in inp.shape]


def _set_int8(trt: Any, builder: Any, config: Any, network: Any, calibrator: Any,
              source: str) -> None:
  """INT8 flag, calibrator and (dynamic batch) calibration profile."""
  name, shape = _network_input(network, source)
  images = calibrator.images
  if list(images.shape[1:]) != shape[1:]:
    raise errors.invalid_value("calibration_images",
                               "images of shape (N, %s) like the input %r of %s"
                               % (", ".join(str(d) for d in shape[1:]), name, source),
                               shown="shape %s" % (images.shape,))
  config.set_flag(trt.BuilderFlag.INT8)
  config.int8_calibrator = calibrator
  if shape[0] == -1:
    profile = builder.create_optimization_profile()
    dims = [calibrator.batch] + shape[1:]
    profile.set_shape(name, dims, dims, dims)
    config.set_calibration_profile(profile)


def _check_platform(builder: Any, precision: str) -> None:
  fast = {"fp16": "platform_has_fast_fp16", "int8": "platform_has_fast_int8"}.get(precision)
  if fast and not getattr(builder, fast):
    raise ValueError("precision=%s requested but this GPU has no fast %s. Use "
                     "precision=fp32." % (precision, precision.upper()))


def build_serialized(trt: Any, onnx_bytes: bytes, precision: str = "fp32",
                     batch_size: int = DEFAULT_BATCH_SIZE, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                     source: str = "<onnx bytes>", logger: Any = None,
                     calibration_images: Any = None, calibration_cache: Optional[str] = None,
                     calibration_batch_size: Optional[int] = None) -> bytes:
  """The serialized engine (bytes) of an ONNX model, for batches 1..batch_size.

  trt: the imported ``tensorrt`` module. source: the model's name in errors.
  int8: calibration_images (float32 normalized NHWC training images) and/or
  calibration_cache (a file path: read if it exists, else written);
  calibration_batch_size: default ``CALIBRATION_BATCH_SIZE``.
  Raises ValueError when TensorRT cannot parse the model, the GPU lacks
  fast FP16/INT8 or the calibration input is wrong, RuntimeError when the
  builder fails.
  """
  check_build_args(precision, batch_size)
  check_int8_inputs(precision, calibration_images, calibration_cache)
  batch_size = int(batch_size)
  if logger is None:
    logger = trt.Logger(trt.Logger.WARNING)
  builder = trt.Builder(logger)
  _check_platform(builder, precision)
  network, parser = _parse_onnx(trt, builder, logger, onnx_bytes, source)
  config = builder.create_builder_config()
  _set_workspace(trt, config, int(workspace_mb) << 20)
  if precision == "fp16":
    config.set_flag(trt.BuilderFlag.FP16)
  calibrator = None
  if precision == "int8":
    images = calibration_images
    if images is None:  # the cache alone: TensorRT reads it and asks for no batch
      shape = _network_input(network, source)[1]
      images = _empty_images(shape)
    calibrator = make_calibrator(trt, images, calibration_batch_size, calibration_cache)
    _set_int8(trt, builder, config, network, calibrator, source)
  _add_profile(builder, config, network, batch_size, source)
  try:
    serialized = builder.build_serialized_network(network, config)
  finally:
    if calibrator is not None:
      calibrator.close()
  del parser
  if serialized is None:
    raise RuntimeError("TensorRT %s failed to build an engine from %s (see its log above)."
                       % (trt.__version__, source))
  return bytes(serialized)


def _empty_images(shape: Sequence[int]) -> Any:
  return np.zeros([0] + [max(1, d) for d in shape[1:]], np.float32)


def write_atomic(path: str, data: bytes) -> None:
  """Write ``data`` to ``path`` through a temporary file and os.replace, so a
  reader never sees a partial file (and concurrent writers do not mix)."""
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                             dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def build_with_api(trt: Any, onnx_path: str, engine_path: str, precision: str, batch_size: int,
                   workspace_mb: int, calibration_images: Any = None,
                   calibration_cache: Optional[str] = None) -> Dict[str, Any]:
  with open(onnx_path, "rb") as f:
    onnx_bytes = f.read()
  start = time.monotonic()
  serialized = build_serialized(trt, onnx_bytes, precision, batch_size, workspace_mb,
                                source=onnx_path, calibration_images=calibration_images,
                                calibration_cache=calibration_cache)
  build_s = time.monotonic() - start
  write_atomic(engine_path, serialized)
  return {"builder": "tensorrt-python", "tensorrt_version": trt.__version__,
          "engine_build_s": build_s}


def build_with_trtexec(trtexec: str, onnx_path: str, engine_path: str, precision: str,
                       batch_size: int, input_name: str = "images",
                       hwc: Tuple[int, int, int] = (32, 32, 3),
                       calibration_cache: Optional[str] = None) -> Dict[str, Any]:
  """trtexec's build; int8 only from an existing calibration cache."""
  if precision == "int8" and not (calibration_cache and os.path.exists(calibration_cache)):
    raise ValueError("trtexec cannot calibrate int8 from images; it needs an existing "
                     "calibration cache. Install TensorRT's Python API (python3 -m "
                     "deploy.device.tensorrt_build then calibrates from --calibration=FILE.npy), or "
                     "pass --calibration_cache=FILE written by such a build. Received "
                     "calibration_cache=%r" % (calibration_cache,))
  dims = "x".join(str(d) for d in hwc)
  cmd = [trtexec, "--onnx=%s" % onnx_path, "--saveEngine=%s" % engine_path,
         "--minShapes=%s:1x%s" % (input_name, dims),
         "--optShapes=%s:%dx%s" % (input_name, batch_size, dims),
         "--maxShapes=%s:%dx%s" % (input_name, batch_size, dims)]
  if precision == "fp16":
    cmd.append("--fp16")
  if precision == "int8":
    cmd += ["--int8", "--calib=%s" % calibration_cache]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  log = proc.communicate()[0].decode("utf-8", "replace")
  if proc.returncode != 0:
    raise RuntimeError("trtexec failed (%d): %s" % (proc.returncode, log[-2000:]))
  return {"builder": "trtexec", "command": " ".join(cmd)}


def build_engine(onnx_path: str, engine_path: str, precision: str = "fp32",
                 batch_size: int = DEFAULT_BATCH_SIZE, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 calibration_images: Any = None,
                 calibration_cache: Optional[str] = None) -> Dict[str, Any]:
  """Engine for batch sizes 1..batch_size (optimized for batch_size); int8
  calibrated on ``calibration_images`` or from ``calibration_cache``."""
  check_build_args(precision, batch_size)
  check_int8_inputs(precision, calibration_images, calibration_cache)
  if not os.path.exists(onnx_path):
    raise ValueError("ONNX file %r does not exist." % (onnx_path,))
  try:
    # vendor runtime: optional, imported only on a machine that has it.
    import tensorrt as trt
  except ImportError:
    trt = None
  if trt is not None:
    return build_with_api(trt, onnx_path, engine_path, precision, batch_size, workspace_mb,
                          calibration_images, calibration_cache)
  trtexec = shutil.which("trtexec") or (
      "/usr/src/tensorrt/bin/trtexec" if os.path.exists("/usr/src/tensorrt/bin/trtexec")
      else None)
  if trtexec:
    return build_with_trtexec(trtexec, onnx_path, engine_path, precision, batch_size,
                              calibration_cache=calibration_cache)
  raise ImportError("TensorRT is not available here (no `tensorrt` Python module, no "
                    "trtexec). Build the engine on the target device: python3 -m "
                    "deploy.device.tensorrt_build --onnx=%s --engine=%s" % (onnx_path, engine_path))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Command line; prints (and returns) the build's JSON description."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--onnx", required=True)
  parser.add_argument("--engine", required=True)
  parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
  parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
  parser.add_argument("--workspace_mb", type=int, default=DEFAULT_WORKSPACE_MB)
  parser.add_argument("--calibration", default=None,
                      help="int8: .npy float32 normalized NHWC TRAINING images (or .npz with "
                           "an `images` array), e.g. python -m deploy.measure "
                           "--write_calibration=FILE.npy on the host")
  parser.add_argument("--calibration_cache", default=None,
                      help="int8: calibration cache file, read if it exists (then no "
                           "calibration runs), else written")
  args = parser.parse_args(argv)
  images = None
  if args.calibration:
    try:
      images = image_files.load_data(args.calibration)
    except ValueError as e:
      parser.error("--calibration: %s" % e)
  try:
    check_int8_inputs(args.precision, images, args.calibration_cache)
  except ValueError as e:
    parser.error(str(e))
  info = build_engine(args.onnx, args.engine, args.precision, args.batch_size,
                      args.workspace_mb, images, args.calibration_cache)
  if images is not None:
    info["calibration_images"] = int(len(images))
  info.update(engine=args.engine, precision=args.precision, batch_size=args.batch_size)
  print(json.dumps(info, sort_keys=True))
  return info


if __name__ == "__main__":
  main()
