"""The self-check's model: a tiny CNN written as ONNX bytes by the standard
library (no ``onnx`` package on a board), with the project's input contract.

``tiny_cnn_onnx(seed)``: input ``images`` (N, 32, 32, 3) float32 NHWC, output
``logits`` (N, 10); opset 13 (what TensorRT 8.2 and OpenVINO 2022.3 read),
dynamic batch. Transpose to NCHW -> Conv 3x3 (3 -> 16, pad 1) -> Relu ->
Conv 3x3 stride 2 (16 -> 32, pad 1) -> Relu -> GlobalAveragePool ->
Flatten -> Gemm (32 -> 10). Weights are seeded normal draws (He scaling),
so every machine builds the same model. ``reference_logits`` computes the
same network in NumPy (the tests' independent check of the encoding).

The encoding follows ``onnx.proto`` (proto2): ModelProto 1 ir_version,
7 graph, 8 opset_import; GraphProto 1 node, 2 name, 5 initializer,
11 input, 12 output; NodeProto 1 input, 2 output, 3 name, 4 op_type,
5 attribute; AttributeProto 1 name, 3 i, 8 ints, 20 type; TensorProto
1 dims, 2 data_type, 8 name, 9 raw_data; ValueInfoProto 1 name, 2 type;
TypeProto 1 tensor_type (1 elem_type, 2 shape (1 dim: 1 dim_value,
2 dim_param)).

Device-side module: Python 3.6 syntax, standard library + numpy.
"""

from typing import Any, Dict, Sequence

import numpy as np

OPSET = 13
IR_VERSION = 7
INPUT_NAME, OUTPUT_NAME = "images", "logits"
INPUT_SHAPE = (32, 32, 3)
CLASSES = 10
_FLOAT = 1                      # TensorProto.FLOAT
_ATTR_INT, _ATTR_INTS = 2, 7    # AttributeProto.INT, INTS


def _varint(value: int) -> bytes:
  value = int(value)
  if value < 0:
    value += 1 << 64
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _key(field: int, wire: int) -> bytes:
  return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
  return _key(field, 0) + _varint(value)


def _bytes(field: int, payload: Any) -> bytes:
  if not isinstance(payload, bytes):
    payload = payload.encode("utf-8")
  return _key(field, 2) + _varint(len(payload)) + payload


def _attribute(name: str, value: Any) -> bytes:
  if isinstance(value, (list, tuple)):
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)
  return _bytes(1, name) + _int(3, value) + _int(20, _ATTR_INT)


def _node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
          **attributes: Any) -> bytes:
  out = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
  out += _bytes(3, name) + _bytes(4, op_type)
  for key in sorted(attributes):
    out += _bytes(5, _attribute(key, attributes[key]))
  return out


def _tensor(name: str, array: np.ndarray) -> bytes:
  array = np.ascontiguousarray(array, np.float32)
  return (b"".join(_int(1, d) for d in array.shape) + _int(2, _FLOAT) + _bytes(8, name)
          + _bytes(9, array.astype("<f4").tobytes()))


def _value_info(name: str, dims: Sequence[Any]) -> bytes:
  shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
  tensor_type = _int(1, _FLOAT) + _bytes(2, shape)
  return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def weights(seed: int = 0) -> Dict[str, np.ndarray]:
  """The model's parameters (dict name -> float32 array), seeded."""
  rng = np.random.RandomState(seed)

  def he(shape: Sequence[int], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  return {"w1": he((16, 3, 3, 3), 27), "b1": np.zeros(16, np.float32),
          "w2": he((32, 16, 3, 3), 144), "b2": np.zeros(32, np.float32),
          "w3": he((CLASSES, 32), 32), "b3": np.zeros(CLASSES, np.float32)}


def tiny_cnn_onnx(seed: int = 0) -> bytes:
  """The model's ONNX bytes (see module doc)."""
  params = weights(seed)
  nodes = [
      _node("Transpose", [INPUT_NAME], ["nchw"], "to_nchw", perm=[0, 3, 1, 2]),
      _node("Conv", ["nchw", "w1", "b1"], ["c1"], "conv1", kernel_shape=[3, 3],
            pads=[1, 1, 1, 1], strides=[1, 1]),
      _node("Relu", ["c1"], ["r1"], "relu1"),
      _node("Conv", ["r1", "w2", "b2"], ["c2"], "conv2", kernel_shape=[3, 3],
            pads=[1, 1, 1, 1], strides=[2, 2]),
      _node("Relu", ["c2"], ["r2"], "relu2"),
      _node("GlobalAveragePool", ["r2"], ["pooled"], "pool"),
      _node("Flatten", ["pooled"], ["flat"], "flatten", axis=1),
      _node("Gemm", ["flat", "w3", "b3"], [OUTPUT_NAME], "classifier", transB=1),
  ]
  graph = b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "tea_selfcheck")
  graph += b"".join(_bytes(5, _tensor(k, params[k])) for k in sorted(params))
  graph += _bytes(11, _value_info(INPUT_NAME, ("batch",) + INPUT_SHAPE))
  graph += _bytes(12, _value_info(OUTPUT_NAME, ("batch", CLASSES)))
  opset = _bytes(1, "") + _int(2, OPSET)
  return (_int(1, IR_VERSION) + _bytes(2, "tea-keras selfcheck") + _bytes(7, graph)
          + _bytes(8, opset))


def write(path: str, seed: int = 0) -> str:
  with open(path, "wb") as f:
    f.write(tiny_cnn_onnx(seed))
  return path


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
  """NCHW convolution, 3x3, padding 1, in float64 NumPy."""
  n, c, h, wd = x.shape
  padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  oh, ow = (h - 1) // stride + 1, (wd - 1) // stride + 1
  out = np.zeros((n, w.shape[0], oh, ow))
  for i in range(3):
    for j in range(3):
      patch = padded[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
      out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
  return out + b[None, :, None, None]


def reference_logits(images: np.ndarray, seed: int = 0) -> np.ndarray:
  """The model's logits computed in NumPy (float64), for tests."""
  p = dict((k, v.astype(np.float64)) for k, v in weights(seed).items())
  x = np.transpose(np.asarray(images, np.float64), (0, 3, 1, 2))
  x = np.maximum(_conv(x, p["w1"], p["b1"], 1), 0.0)
  x = np.maximum(_conv(x, p["w2"], p["b2"], 2), 0.0)
  return x.mean(axis=(2, 3)).dot(p["w3"].T) + p["b3"]

