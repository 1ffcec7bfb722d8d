"""Measure on an NVIDIA GPU: ``python3 -m deploy.device.gpu.measure --model=model.engine
--data=images.npy [--runtime=tensorrt|onnxruntime] [--gpu_index=0]``.

Power from NVML; the paper's threshold for its TITAN X is 80 W (pass
``--threshold_w`` for another GPU: about midway between its idle and loaded
power). On Ampere and newer without the instantaneous power field NVML
averages over ~1 s: the result says so; keep runs long (many images).
Build the engine here first: ``python3 -m deploy.device.tensorrt_build --onnx=... --engine=...``,
or from ONNX at int8: ``python3 -m deploy.device.gpu.measure --model=model.onnx
--data=images.npy --runtime=tensorrt --precision=int8 --calibration=calib.npy``
(training images from ``python -m deploy.measure --write_calibration=calib.npy``).
"""

from .. import device_main

if __name__ == "__main__":
  device_main.main("gpu")
