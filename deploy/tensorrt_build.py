"""Build a TensorRT engine from an ONNX file, on the device that will run it.

Engines are specific to the GPU and the TensorRT version, so this runs on the
target (Jetson, GPU server): ``python3 -m deploy.tensorrt_build
--onnx=model.onnx --engine=model.engine --precision=fp16 --batch_size=100``.
Uses the TensorRT Python builder API (8.x and 10.x) when ``tensorrt`` is
importable, else ``trtexec`` from PATH. ``build_serialized`` is the in-memory
step that ``deploy.runtimes.tensorrt_runtime`` uses to build (and cache) the
engine of an ``.onnx`` model when it loads it. Device-side: Python 3.6
syntax, standard library only.

TensorRT API differences handled here:

* 8.x needs the EXPLICIT_BATCH network flag for ONNX; 10.x makes explicit
  batch the only mode (the flag is deprecated);
* the workspace limit is ``config.max_workspace_size`` before 8.4 and
  ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)`` from 8.4 on
  (``max_workspace_size`` is gone in 10.x);
* TensorRT 8.2's ONNX parser (JetPack 4.6) reads opsets 7-13 only, which is
  why ``deploy.export`` writes opset 13 by default.
"""

import argparse
import json
import numbers
import os
import shutil
import subprocess
import tempfile
import time

PRECISIONS = ("fp32", "fp16")
DEFAULT_BATCH_SIZE = 100
DEFAULT_WORKSPACE_MB = 1024


def check_build_args(precision, batch_size):
  """Keras-style ValueErrors for an unsupported precision or batch size."""
  if precision not in PRECISIONS:
    raise ValueError("Invalid value for argument `precision`. Expected fp32 or fp16. "
                     "Received precision=%r" % (precision,))
  if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
      or batch_size < 1):
    raise ValueError("Invalid value for argument `batch_size`. Expected a positive "
                     "integer. Received batch_size=%r" % (batch_size,))


def tensorrt_major(trt):
  return int(str(trt.__version__).split(".")[0])


def _network_flags(trt):
  if tensorrt_major(trt) >= 10:
    return 0
  return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _set_workspace(trt, config, nbytes):
  if hasattr(config, "set_memory_pool_limit"):       # 8.4+
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
  else:                                               # 8.0 - 8.3
    config.max_workspace_size = nbytes


def _parse_onnx(trt, builder, logger, onnx_bytes, source):
  """(network, parser): the parser owns the weights, keep it until built."""
  network = builder.create_network(_network_flags(trt))
  parser = trt.OnnxParser(network, logger)
  if not parser.parse(onnx_bytes):
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    hint = ""
    if tensorrt_major(trt) < 10:
      hint = (" (TensorRT 8.2, as on JetPack 4.6, reads ONNX opsets up to 13: "
              "export with deploy.export's default opset=13)")
    raise ValueError("TensorRT %s cannot parse %s: %s%s"
                     % (trt.__version__, source, "; ".join(errors) or "no details", hint))
  return network, parser


def _add_profile(builder, config, network, batch_size, source):
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


def build_serialized(trt, onnx_bytes, precision="fp32", batch_size=DEFAULT_BATCH_SIZE,
                     workspace_mb=DEFAULT_WORKSPACE_MB, source="<onnx bytes>", logger=None):
  """The serialized engine (bytes) of an ONNX model, for batches 1..batch_size.

  trt: the imported ``tensorrt`` module. source: the model's name in errors.
  Raises ValueError when TensorRT cannot parse the model or the GPU lacks
  fast FP16, RuntimeError when the builder fails.
  """
  check_build_args(precision, batch_size)
  batch_size = int(batch_size)
  if logger is None:
    logger = trt.Logger(trt.Logger.WARNING)
  builder = trt.Builder(logger)
  network, parser = _parse_onnx(trt, builder, logger, onnx_bytes, source)
  config = builder.create_builder_config()
  _set_workspace(trt, config, int(workspace_mb) << 20)
  if precision == "fp16":
    if not builder.platform_has_fast_fp16:
      raise ValueError("precision=fp16 requested but this GPU has no fast FP16. "
                       "Use precision=fp32.")
    config.set_flag(trt.BuilderFlag.FP16)
  _add_profile(builder, config, network, batch_size, source)
  serialized = builder.build_serialized_network(network, config)
  del parser
  if serialized is None:
    raise RuntimeError("TensorRT %s failed to build an engine from %s (see its log above)."
                       % (trt.__version__, source))
  return bytes(serialized)


def write_atomic(path, data):
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


def build_with_api(trt, onnx_path, engine_path, precision, batch_size, workspace_mb):
  with open(onnx_path, "rb") as f:
    onnx_bytes = f.read()
  start = time.monotonic()
  serialized = build_serialized(trt, onnx_bytes, precision, batch_size, workspace_mb,
                                source=onnx_path)
  build_s = time.monotonic() - start
  write_atomic(engine_path, serialized)
  return {"builder": "tensorrt-python", "tensorrt_version": trt.__version__,
          "engine_build_s": build_s}


def build_with_trtexec(trtexec, onnx_path, engine_path, precision, batch_size,
                       input_name="images", hwc=(32, 32, 3)):
  dims = "x".join(str(d) for d in hwc)
  cmd = [trtexec, "--onnx=%s" % onnx_path, "--saveEngine=%s" % engine_path,
         "--minShapes=%s:1x%s" % (input_name, dims),
         "--optShapes=%s:%dx%s" % (input_name, batch_size, dims),
         "--maxShapes=%s:%dx%s" % (input_name, batch_size, dims)]
  if precision == "fp16":
    cmd.append("--fp16")
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  log = proc.communicate()[0].decode("utf-8", "replace")
  if proc.returncode != 0:
    raise RuntimeError("trtexec failed (%d): %s" % (proc.returncode, log[-2000:]))
  return {"builder": "trtexec", "command": " ".join(cmd)}


def build_engine(onnx_path, engine_path, precision="fp32", batch_size=DEFAULT_BATCH_SIZE,
                 workspace_mb=DEFAULT_WORKSPACE_MB):
  """Engine for batch sizes 1..batch_size (optimized for batch_size)."""
  check_build_args(precision, batch_size)
  if not os.path.exists(onnx_path):
    raise ValueError("ONNX file %r does not exist." % (onnx_path,))
  try:
    import tensorrt as trt
  except ImportError:
    trt = None
  if trt is not None:
    return build_with_api(trt, onnx_path, engine_path, precision, batch_size, workspace_mb)
  trtexec = shutil.which("trtexec") or (
      "/usr/src/tensorrt/bin/trtexec" if os.path.exists("/usr/src/tensorrt/bin/trtexec")
      else None)
  if trtexec:
    return build_with_trtexec(trtexec, onnx_path, engine_path, precision, batch_size)
  raise ImportError("TensorRT is not available here (no `tensorrt` Python module, no "
                    "trtexec). Build the engine on the target device: python3 -m "
                    "deploy.tensorrt_build --onnx=%s --engine=%s" % (onnx_path, engine_path))


def main(argv=None):
  """Command line; prints (and returns) the build's JSON description."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--onnx", required=True)
  parser.add_argument("--engine", required=True)
  parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
  parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
  parser.add_argument("--workspace_mb", type=int, default=DEFAULT_WORKSPACE_MB)
  args = parser.parse_args(argv)
  info = build_engine(args.onnx, args.engine, args.precision, args.batch_size,
                      args.workspace_mb)
  info.update(engine=args.engine, precision=args.precision, batch_size=args.batch_size)
  print(json.dumps(info, sort_keys=True))
  return info


if __name__ == "__main__":
  main()
