"""Measure on a CPU: ``python3 -m deploy.device.cpu.measure --model=model.onnx
--data=images.npy [--runtime=onnxruntime|openvino] [--power_source=auto|rapl|none]``.

``auto`` uses RAPL when ``/sys/class/powercap/intel-rapl:*/energy_uj`` is
readable (root since Linux 5.10) and ``none`` otherwise; with RAPL the
threshold is chosen from the trace (midpoint of idle and working medians).
"""

from .. import device_main

if __name__ == "__main__":
  device_main.main("cpu")
