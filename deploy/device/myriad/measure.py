"""Measure on a Movidius NCS2: ``python3 -m deploy.device.myriad.measure
--model=model.onnx --data=images.npy --usb_csv=meter.csv`` (or
``--usb_port=/dev/ttyUSB0``, or ``--power_source=none`` for time only).

OpenVINO 2022.3 reads the ONNX export (opset 13) directly; the model is
reshaped to the static ``--batch_size`` that MYRIAD requires. Threshold
default 0.45 W (paper, NCS). The USB meter's log is aligned to the run by
wall-clock timestamps (see ``deploy.device.power.usb_meter``).
"""

from .. import device_main

if __name__ == "__main__":
  device_main.main("myriad")
