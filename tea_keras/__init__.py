"""tea-keras: TEA-DNN hardware-aware architecture search in TensorFlow/Keras.

Importing the package makes TensorFlow allocate GPU memory as it needs it
(``TF_FORCE_GPU_ALLOW_GROWTH=true``, unless the environment says otherwise)
instead of taking the whole GPU when it first runs: several trials training
on one GPU (``--max_parallel`` with Ray packing them), and ONNX Runtime or
TensorRT measuring there, need what one trainer does not use. TensorFlow
reads the variable when it first initializes the GPU, so it must be set
before that; every trainer imports this package first.
"""

import os

os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
