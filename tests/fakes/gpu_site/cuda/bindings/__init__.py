"""Fake ``cuda.bindings`` (cuda-python >= 12.6 layout); only ``runtime``."""
