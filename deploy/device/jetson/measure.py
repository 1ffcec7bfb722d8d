"""Measure on a Jetson: ``python3 -m deploy.device.jetson.measure --model=model.engine
--data=images.npy [--rail=VDD_IN]``.

Build the engine on the Jetson first (engines are device-specific):
``python3 -m deploy.device.tensorrt_build --onnx=model.onnx --engine=model.engine
--precision=fp16 --batch_size=100``, or let the script build it from ONNX:
``python3 -m deploy.device.jetson.measure --model=model.onnx --data=images.npy
--precision=int8 --calibration=calib.npy`` (int8: TensorRT calibrates on
the training images written on the host by ``python -m deploy.measure
--write_calibration=calib.npy``). Threshold default 1 W (paper, TX2).
For stable numbers fix the clocks first (``sudo nvpmodel -m 0 && sudo
jetson_clocks``) and report the mode with the result.
"""

from .. import device_main

if __name__ == "__main__":
  device_main.main("jetson")
