"""Device-side scripts for a CPU host: ONNX Runtime or OpenVINO CPU, power from
RAPL (``energy_uj`` readable) or none. Python 3.6+, numpy, the runtime."""
