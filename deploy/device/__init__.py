"""The device side: everything that runs on the measured board (a Jetson TX2
with Python 3.6 is the oldest target), standard library and NumPy only, plus
the vendor runtime it drives: the device registry (``devices``), the
capability probe, the measurement protocol and session, contention checks,
power sources (``power/``), runtimes (``runtimes/``), the TensorRT engine
build, the cascade runner, the per-device scripts (``cpu/``, ``gpu/``,
``jetson/``, ``myriad/`` + ``device_main``), the self-check and the remote
agent. It imports nothing outside this folder (relative imports only), so
the folder can be copied to a board on its own (``deploy/README.md``).
"""
