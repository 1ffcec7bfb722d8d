"""The first input of a model file, read without its runtime: what the agent
checks an upload against before it takes the measurement lock.

``onnx_input(path)`` reads an ONNX file's first graph input (name, element
type, dims) straight from the protobuf wire format, so that a board without
the ``onnx`` package can read it; ``openvino_input(xml_path)`` reads the
Parameter layer of an OpenVINO IR ``.xml``. ``check_image_input`` says why a
model whose input that is cannot take the agent's float32 NHWC images.

The ONNX messages read (field numbers of onnx/onnx.proto)::

  ModelProto        7 graph (GraphProto)
  GraphProto        5 initializer (TensorProto), 11 input (ValueInfoProto),
                    15 sparse_initializer (SparseTensorProto: 1 values)
  TensorProto       8 name
  ValueInfoProto    1 name, 2 type (TypeProto)
  TypeProto         1 tensor_type (TypeProto.Tensor: 1 elem_type, 2 shape)
  TensorShapeProto  1 dim (Dimension: 1 dim_value, 2 dim_param)

Graph inputs that are initializers (ONNX IR version < 4 lists every weight
among the inputs) are skipped. The file is walked with seeks, never read
whole: the weights are skipped over. A file that is not a protobuf as ONNX
writes it raises ``ModelHeaderError`` (the runtime then says what it is).

Device-side module: Python 3.6 syntax, standard library only.
"""

import collections
import os
import re
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple
from xml.parsers import expat

#: name: str; elem_type: ONNX TensorProto.DataType number (0: not given;
#: None: not a tensor); dims: None (rank unknown) or a tuple with, per
#: dimension, an int (dim_value), a str (dim_param) or None (neither).
ModelInput = collections.namedtuple("ModelInput", "name elem_type dims")

FLOAT = 1
ELEM_TYPES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
              7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32",
              13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"}
# OpenVINO element_type of a Parameter -> the ONNX number (f32 is what we feed).
_OPENVINO_TYPES = {"f32": 1, "u8": 2, "i8": 3, "u16": 4, "i16": 5, "i32": 6, "i64": 7,
                   "boolean": 9, "f16": 10, "f64": 11, "u32": 12, "u64": 13, "bf16": 16}
_MAX_NAME_BYTES = 1 << 16
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class ModelHeaderError(ValueError):
  """The file is not laid out as an ONNX protobuf (or an IR .xml) should be."""


# -- protobuf wire format --------------------------------------------------------
def _varint(f: BinaryIO) -> int:
  result, shift = 0, 0
  while True:
    byte = f.read(1)
    if not byte:
      raise ModelHeaderError("the file ends inside a varint")
    value = byte[0]
    result |= (value & 0x7F) << shift
    if not value & 0x80:
      return result
    shift += 7
    if shift > 63:
      raise ModelHeaderError("a varint longer than 10 bytes")


def _fields(f: BinaryIO, start: int, end: int) -> Iterator[Tuple[int, int, Any]]:
  """Yields (field number, wire type, value) of the message in [start, end):
  an int for a varint, (offset, length) for a length-delimited field, None
  for a fixed-size one. The caller may seek anywhere between two fields."""
  pos = start
  while pos < end:
    f.seek(pos)
    key = _varint(f)
    number, wire = key >> 3, key & 7
    if number == 0:
      raise ModelHeaderError("field number 0 at byte %d" % pos)
    value = None  # type: Any
    if wire == _VARINT:
      value = _varint(f)
      pos = f.tell()
    elif wire == _FIXED64:
      pos = f.tell() + 8
    elif wire == _FIXED32:
      pos = f.tell() + 4
    elif wire == _BYTES:
      length = _varint(f)
      value = (f.tell(), length)
      pos = value[0] + length
    else:  # groups (3, 4) are not in ONNX; 6, 7 do not exist
      raise ModelHeaderError("wire type %d at byte %d" % (wire, pos))
    if pos > end:
      raise ModelHeaderError("field %d at byte %d runs past its message" % (number, pos))
    yield number, wire, value


def _messages(f: BinaryIO, span: Tuple[int, int], number: int) -> List[Tuple[int, int]]:
  """(offset, length) of each length-delimited field ``number`` in ``span``."""
  return [v for n, w, v in _fields(f, span[0], span[0] + span[1])
          if n == number and w == _BYTES]


def _string(f: BinaryIO, span: Tuple[int, int]) -> str:
  f.seek(span[0])
  return f.read(min(span[1], _MAX_NAME_BYTES)).decode("utf-8", "replace")


def _first_string(f: BinaryIO, span: Tuple[int, int], number: int) -> str:
  found = _messages(f, span, number)
  return _string(f, found[0]) if found else ""


def _dimension(f: BinaryIO, span: Tuple[int, int]) -> Any:
  value = None
  for n, w, v in _fields(f, span[0], span[0] + span[1]):
    if n == 1 and w == _VARINT:
      value = v - (1 << 64) if v >= 1 << 63 else v  # int64 two's complement
      value = value if value >= 0 else None
    elif n == 2 and w == _BYTES:
      value = _string(f, v)
  return value


def _tensor_type(f: BinaryIO, span: Tuple[int, int]) -> Tuple[int, Optional[Tuple[Any, ...]]]:
  """(elem_type, dims) of a TypeProto.Tensor."""
  elem_type, dims = 0, None
  for n, w, v in _fields(f, span[0], span[0] + span[1]):
    if n == 1 and w == _VARINT:
      elem_type = v
    elif n == 2 and w == _BYTES:
      dims = tuple(_dimension(f, d) for d in _messages(f, v, 1))
  return elem_type, dims


def _value_info(f: BinaryIO, span: Tuple[int, int]) -> ModelInput:
  name, elem_type, dims = "", None, None
  for n, w, v in _fields(f, span[0], span[0] + span[1]):
    if n == 1 and w == _BYTES:
      name = _string(f, v)
    elif n == 2 and w == _BYTES:
      tensors = _messages(f, v, 1)
      if tensors:
        elem_type, dims = _tensor_type(f, tensors[0])
  return ModelInput(name, elem_type, dims)


def onnx_input(path: str) -> Optional[ModelInput]:
  """The first graph input of the ONNX file ``path`` that is not an
  initializer (``ModelInput``), or None when the graph has none;
  ``ModelHeaderError`` when the file is not an ONNX protobuf."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    graphs = _messages(f, (0, size), 7)
    if not graphs:
      raise ModelHeaderError("no graph (ModelProto field 7)")
    weights, inputs = set(), []
    for n, w, v in _fields(f, graphs[0][0], graphs[0][0] + graphs[0][1]):
      if w != _BYTES:
        continue
      if n == 5:
        weights.add(_first_string(f, v, 8))
      elif n == 15:
        for values in _messages(f, v, 1):
          weights.add(_first_string(f, values, 8))
      elif n == 11:
        inputs.append(v)
    for span in inputs:
      found = _value_info(f, span)
      if found.name not in weights:
        return found
  return None


# -- OpenVINO IR -------------------------------------------------------------------
def _ir_dim(text: str) -> Optional[int]:
  text = text.strip()
  return int(text) if re.match(r"^\d+$", text) else None  # ?, -1, 1..10: not static


class _IrReader(object):
  """expat handlers that keep the first Parameter layer (its ``data``
  attributes, its first output port's dims) and stop at its end."""

  class Done(Exception):
    pass

  layer: Optional[Dict[str, str]]
  data: Optional[Dict[str, str]]
  port_dims: Optional[List[Any]]

  def __init__(self) -> None:
    self.layer = self.data = self.port_dims = None
    self.path, self.text = [], ""  # type: List[str], str

  def start(self, tag: str, attrs: Dict[str, str]) -> None:
    self.path.append(tag)
    if self.layer is None:
      if tag == "layer" and attrs.get("type") == "Parameter":
        self.layer = dict(attrs)
    elif self.path[-2:] == ["layer", "data"]:
      self.data = dict(attrs)
    elif self.path[-2:] == ["output", "port"] and self.port_dims is None:
      self.port_dims = []
    elif self.path[-3:] == ["output", "port", "dim"]:
      self.text = ""

  def chars(self, text: str) -> None:
    self.text += text

  def end(self, tag: str) -> None:
    if self.layer is not None and self.path[-3:] == ["output", "port", "dim"]:
      self.port_dims.append(self.text)  # type: ignore[union-attr]  # set at its <port>
    self.path.pop()
    if tag == "layer" and self.layer is not None:
      raise self.Done()

  @staticmethod
  def refuse(*args: Any) -> None:
    raise ModelHeaderError("the .xml declares a DOCTYPE or an entity; an OpenVINO IR has "
                           "none")

  def result(self) -> Optional[ModelInput]:
    if self.layer is None:
      return None
    data = self.data or {}
    shape = data.get("shape")
    if shape is not None:
      shape = shape.strip().strip("[]")
      dims = None if "..." in shape else tuple(_ir_dim(d) for d in shape.split(",")
                                               if d.strip())
    else:
      dims = None if self.port_dims is None else tuple(_ir_dim(d) for d in self.port_dims)
    return ModelInput(self.layer.get("name", ""),
                      _OPENVINO_TYPES.get(data.get("element_type"), 0), dims)  # type: ignore[arg-type]


def openvino_input(xml_path: str) -> Optional[ModelInput]:
  """The first Parameter layer of an OpenVINO IR ``.xml`` (``ModelInput``,
  element type as ONNX numbers it), or None; ``ModelHeaderError`` when the
  file is not XML or declares a DOCTYPE (which an IR never has: no entity is
  ever expanded). Read with expat up to that layer's end."""
  reader = _IrReader()
  parser = expat.ParserCreate()
  parser.StartElementHandler, parser.EndElementHandler = reader.start, reader.end
  parser.CharacterDataHandler = reader.chars
  parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = reader.refuse
  with open(xml_path, "rb") as f:
    try:
      parser.ParseFile(f)
    except reader.Done:
      pass
    except expat.ExpatError as e:
      raise ModelHeaderError("not XML: %s" % e)
  return reader.result()


# -- the check -------------------------------------------------------------------------
def _shape_text(dims: Sequence[Any]) -> str:
  return "(%s)" % ", ".join("N" if i == 0 and not isinstance(d, int) else
                            "?" if d is None else str(d) for i, d in enumerate(dims))


def check_image_input(found: Optional[ModelInput], image_shape: Sequence[int],
                      what: str) -> Optional[str]:
  """None, or why a model whose first input is ``found`` (``ModelInput`` or
  None: nothing to check) cannot take float32 images of shape (N,) +
  ``image_shape`` (H, W, C). ``what`` names the model in the message."""
  if found is None:
    return None
  expected = (None,) + tuple(int(d) for d in image_shape)
  if found.elem_type not in (0, FLOAT):
    return ("Invalid input of %s. Expected a float (float32) input taking the agent's "
            "images %s. Received input `%s` of element type %s"
            % (what, _shape_text(expected), found.name,
               ELEM_TYPES.get(found.elem_type, found.elem_type)))
  if found.dims is None:
    return None
  wrong = len(found.dims) != len(expected) or any(
      isinstance(d, int) and d != e for d, e in zip(found.dims[1:], expected[1:]))
  if wrong:
    return ("Invalid input shape of %s. Expected %s, the agent's images (N, H, W, C): "
            "export the model for %s inputs. Received input `%s` of shape %s"
            % (what, _shape_text(expected), "x".join(str(d) for d in image_shape),
               found.name, _shape_text(found.dims)))
  return None


def model_input(path: str) -> Optional[ModelInput]:
  """``onnx_input`` or ``openvino_input`` by the file's suffix (None for
  other formats: nothing is read)."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix == ".onnx":
    return onnx_input(path)
  if suffix == ".xml":
    return openvino_input(path)
  return None
