"""Device-side scripts for NVIDIA Jetson (TX2 with JetPack 4.6: Python 3.6,
TensorRT 8.2, pycuda). Power from the on-board INA3221 (board input rail)."""
