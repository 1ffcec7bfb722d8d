"""Fake pycuda (tests only): ``pycuda.driver`` and ``pycuda.autoinit`` over
the fake GPU of ``tea_fake_gpu``, with pycuda's per-thread contexts.

Importable only on a fake board that has pycuda (a Jetson on JetPack 4.6)."""

import tea_fake_gpu

tea_fake_gpu.require_library("pycuda")
VERSION = (2021, 1)
VERSION_TEXT = "2021.1"
