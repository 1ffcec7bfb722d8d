"""Device-side scripts for an NVIDIA GPU server: TensorRT or ONNX Runtime
(CUDA), power from NVML. Python 3.6+, numpy, the runtime, nvidia-ml-py."""
