"""Fake NVIDIA cuda-python package (tests only); see tests/fakes/README.md."""
