"""Fake NVIDIA cuda-python package (tests only); see tests/fakes/README.md.

Importable only on a fake board that has cuda-python (``tea_fake_gpu``): a
Jetson on JetPack 4.6 (CUDA 10.2) has pycuda only, as the real one."""

import tea_fake_gpu

tea_fake_gpu.require_library("cuda-python")
