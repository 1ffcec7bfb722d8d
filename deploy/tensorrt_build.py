"""Build a TensorRT engine from an ONNX file, on the device that will run it.

Engines are specific to the GPU and the TensorRT version, so this runs on the
target (Jetson, GPU server): ``python3 -m deploy.tensorrt_build
--onnx=model.onnx --engine=model.engine --precision=fp16 --batch_size=100``.
Uses the TensorRT Python builder API (8.x and 10.x) when ``tensorrt`` is
importable, else ``trtexec`` from PATH. Device-side: Python 3.6 syntax.
"""

import argparse
import json
import os
import shutil
import subprocess


def _network_flags(trt):
  # TensorRT 8.x needs EXPLICIT_BATCH for ONNX; 10.x makes it the default and
  # deprecates the flag.
  major = int(trt.__version__.split(".")[0])
  if major >= 10:
    return 0
  return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _set_workspace(trt, config, nbytes):
  if hasattr(config, "set_memory_pool_limit"):       # 8.4+
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
  else:                                               # 8.0 - 8.3
    config.max_workspace_size = nbytes


def build_with_api(trt, onnx_path, engine_path, precision, batch_size, workspace_mb):
  logger = trt.Logger(trt.Logger.WARNING)
  builder = trt.Builder(logger)
  network = builder.create_network(_network_flags(trt))
  parser = trt.OnnxParser(network, logger)
  with open(onnx_path, "rb") as f:
    if not parser.parse(f.read()):
      errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
      raise ValueError("TensorRT cannot parse %s: %s" % (onnx_path, "; ".join(errors)))
  config = builder.create_builder_config()
  _set_workspace(trt, config, int(workspace_mb) << 20)
  if precision == "fp16":
    if not builder.platform_has_fast_fp16:
      raise ValueError("precision=fp16 requested but this GPU has no fast FP16.")
    config.set_flag(trt.BuilderFlag.FP16)
  inp = network.get_input(0)
  dims = list(inp.shape)[1:]
  profile = builder.create_optimization_profile()
  profile.set_shape(inp.name, [1] + dims, [batch_size] + dims, [batch_size] + dims)
  config.add_optimization_profile(profile)
  serialized = builder.build_serialized_network(network, config)
  if serialized is None:
    raise RuntimeError("TensorRT failed to build an engine from %s (see its log)."
                       % onnx_path)
  with open(engine_path, "wb") as f:
    f.write(serialized)
  return {"builder": "tensorrt-python", "tensorrt_version": trt.__version__}


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


def build_engine(onnx_path, engine_path, precision="fp32", batch_size=100, workspace_mb=1024):
  """Engine for batch sizes 1..batch_size (optimized for batch_size)."""
  if precision not in ("fp32", "fp16"):
    raise ValueError("Invalid value for argument `precision`. Expected fp32 or fp16. "
                     "Received precision=%r" % (precision,))
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
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--onnx", required=True)
  parser.add_argument("--engine", required=True)
  parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
  parser.add_argument("--batch_size", type=int, default=100)
  parser.add_argument("--workspace_mb", type=int, default=1024)
  args = parser.parse_args(argv)
  info = build_engine(args.onnx, args.engine, args.precision, args.batch_size,
                      args.workspace_mb)
  info.update(engine=args.engine, precision=args.precision, batch_size=args.batch_size)
  print(json.dumps(info))


if __name__ == "__main__":
  main()
