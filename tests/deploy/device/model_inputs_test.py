"""Tests of deploy/device/model_inputs.py: the standard-library reader of a model's
first input against the ``onnx`` package's and OpenVINO's own view of the
same files (real exports and hand-built protos of unusual shapes), the IR
reader, the check against the agent's images, Python 3.6."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from deploy.device import model_inputs
from tests.deploy.device import cascade_runner_test
from tests.deploy import tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VERMIN = [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())"]


def onnx_view(path):
  """``ModelInput`` of the first non-initializer graph input, by ``onnx``."""
  import onnx  # pylint: disable=g-import-not-at-top
  graph = onnx.load(path).graph
  weights = set(t.name for t in graph.initializer) | set(
      t.values.name for t in graph.sparse_initializer)
  for value in graph.input:
    if value.name in weights:
      continue
    if value.type.WhichOneof("value") != "tensor_type":
      return model_inputs.ModelInput(value.name, None, None)
    tensor = value.type.tensor_type
    dims = None
    if tensor.HasField("shape"):
      dims = tuple(d.dim_value if d.HasField("dim_value") else
                   d.dim_param if d.HasField("dim_param") else None for d in tensor.shape.dim)
    return model_inputs.ModelInput(value.name, tensor.elem_type, dims)
  return None


def save_model(path, inputs, initializers=(), sparse=(), ir_version=8, **fields):
  """An ONNX model of an Identity node on the first input (not checked:
  unusual inputs are the point), with extra ModelProto ``fields`` set."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import helper  # pylint: disable=g-import-not-at-top
  first = inputs[0].name
  graph = helper.make_graph([helper.make_node("Identity", [first], ["out"])], "g", inputs,
                            [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)],
                            list(initializers), sparse_initializer=list(sparse))
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
  model.ir_version = ir_version
  for key, value in fields.items():
    setattr(model, key, value)
  onnx.save(model, path)
  return path


class OnnxInputTest(tf.test.TestCase):

  def _path(self, name):
    return os.path.join(self.get_temp_dir(), name)

  def assert_reads_as_onnx_does(self, path):
    expected = onnx_view(path)
    self.assertEqual(model_inputs.onnx_input(path), expected)
    return expected

  def test_onnx_input_of_real_exports_is_onnx_packages_view(self):
    tiny = tiny_model.artifacts()  # tf2onnx export of a TEA network
    found = self.assert_reads_as_onnx_does(tiny["onnx"])
    self.assertEqual((found.elem_type, found.dims[1:]), (1, (32, 32, 3)))
    linear = cascade_runner_test.linear_onnx(self._path("linear.onnx"), 0)  # onnx.helper, batch None
    self.assertEqual(self.assert_reads_as_onnx_does(linear),
                     model_inputs.ModelInput("images", 1, (None, 32, 32, 3)))

  def test_onnx_input_dim_param_and_large_initializer_before_inputs(self):
    import onnx
    from onnx import helper, numpy_helper
    big = numpy_helper.from_array(np.ones((1 << 20,), np.float32), "big")  # 4 MiB skipped
    path = save_model(self._path("param.onnx"), [helper.make_tensor_value_info(
        "x", onnx.TensorProto.FLOAT16, ["batch", 28, "width", 1])], [big],
                      doc_string="d" * 5000, producer_name="hand")
    self.assertEqual(self.assert_reads_as_onnx_does(path),
                     model_inputs.ModelInput("x", 10, ("batch", 28, "width", 1)))

  def test_onnx_input_skips_inputs_that_are_initializers(self):
    import onnx
    from onnx import helper, numpy_helper
    w = numpy_helper.from_array(np.zeros((3, 3), np.float32), "w")
    values = numpy_helper.from_array(np.ones(2, np.float32), "s")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(
        np.array([0, 4], np.int64), "s_idx"), [3, 3])
    inputs = [helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [3, 3]),
              helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [3, 3]),
              helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 8, 8, 3])]
    path = save_model(self._path("ir3.onnx"), inputs, [w], [sparse], ir_version=3)
    self.assertEqual(self.assert_reads_as_onnx_does(path),
                     model_inputs.ModelInput("images", 1, (1, 8, 8, 3)))
    only_weights = save_model(self._path("weights.onnx"), inputs[:1], [w], ir_version=3)
    self.assertIsNone(model_inputs.onnx_input(only_weights))
    self.assertIsNone(onnx_view(only_weights))

  def test_onnx_input_without_shape_scalar_and_non_tensor(self):
    import onnx
    from onnx import helper
    for name, value, expected in (
        ("noshape", helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None),
         model_inputs.ModelInput("x", 1, None)),
        ("scalar", helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, []),
         model_inputs.ModelInput("x", 1, ())),
        ("sequence", helper.make_tensor_sequence_value_info("x", onnx.TensorProto.FLOAT, None),
         model_inputs.ModelInput("x", None, None))):
      path = save_model(self._path(name + ".onnx"), [value])
      self.assertEqual(self.assert_reads_as_onnx_does(path), expected, msg=name)

  def test_onnx_input_negative_dim_value_is_unknown(self):
    import onnx
    from onnx import helper
    value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32, 32, 3])
    value.type.tensor_type.shape.dim[0].dim_value = -1  # 10-byte varint on the wire
    path = save_model(self._path("negative.onnx"), [value])
    self.assertEqual(onnx_view(path).dims[0], -1)
    self.assertEqual(model_inputs.onnx_input(path).dims, (None, 32, 32, 3))

  def test_onnx_input_refuses_what_is_not_a_protobuf(self):
    linear = cascade_runner_test.linear_onnx(self._path("whole.onnx"), 0)
    with open(linear, "rb") as f:
      data = f.read()
    for name, payload in (("text.onnx", b"this is not an onnx protobuf" * 20),
                          ("cut.onnx", data[:len(data) // 2]), ("empty.onnx", b"")):
      with open(self._path(name), "wb") as f:
        f.write(payload)
      with self.assertRaises(model_inputs.ModelHeaderError, msg=name):
        model_inputs.onnx_input(self._path(name))


class OpenVinoInputTest(tf.test.TestCase):

  def _ir(self, name, static_batch=None):
    import openvino as ov
    model = ov.convert_model(cascade_runner_test.linear_onnx(
        os.path.join(self.get_temp_dir(), name + ".onnx"), 0))
    if static_batch:
      model.reshape([static_batch, 32, 32, 3])
    path = os.path.join(self.get_temp_dir(), name + ".xml")
    ov.save_model(model, path)
    return path

  def _openvino_view(self, path):
    import openvino as ov
    port = ov.Core().read_model(path).inputs[0]
    dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return port.get_any_name(), dims

  def test_openvino_input_is_openvinos_view(self):
    for name, batch in (("dynamic", None), ("static", 4)):
      path = self._ir(name, batch)
      found = model_inputs.openvino_input(path)
      self.assertEqual((found.name, found.dims), self._openvino_view(path), msg=name)
      self.assertEqual(found.elem_type, 1)
    self.assertEqual(model_inputs.openvino_input(self._ir("d2")).dims, (None, 32, 32, 3))

  def test_openvino_input_from_port_dims_without_data_shape(self):
    path = os.path.join(self.get_temp_dir(), "v10.xml")
    with open(path, "w") as f:
      f.write('<?xml version="1.0"?>\n<net name="n" version="10"><layers>'
              '<layer id="0" name="c" type="Const"><output><port id="0"><dim>7</dim></port>'
              '</output></layer><layer id="1" name="in" type="Parameter" version="opset1">'
              '<data element_type="f16"/><output><port id="0" precision="FP16"><dim>1</dim>'
              '<dim>28</dim><dim>28</dim><dim>-1</dim></port></output></layer></layers></net>')
    self.assertEqual(model_inputs.openvino_input(path),
                     model_inputs.ModelInput("in", 10, (1, 28, 28, None)))

  def test_openvino_input_refuses_doctype_without_expanding_it(self):
    path = os.path.join(self.get_temp_dir(), "laughs.xml")
    entities = "".join('<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;">'
                       % ((k,) + (k - 1,) * 10) for k in range(1, 10))
    with open(path, "w") as f:
      f.write('<?xml version="1.0"?><!DOCTYPE net [<!ENTITY l0 "ha">%s]>'
              '<net><layers><layer type="Parameter" name="&l9;"/></layers></net>' % entities)
    with self.assertRaisesRegex(model_inputs.ModelHeaderError, "declares a DOCTYPE"):
      model_inputs.openvino_input(path)


class CheckImageInputTest(tf.test.TestCase):

  def test_check_image_input_accepts_unknown_and_matching_dims(self):
    for dims in ((None, 32, 32, 3), ("N", 32, 32, 3), (100, 32, 32, 3), ("N", "h", None, 3),
                 None):
      self.assertIsNone(model_inputs.check_image_input(
          model_inputs.ModelInput("x", 1, dims), (32, 32, 3), "m"), msg=str(dims))
    self.assertIsNone(model_inputs.check_image_input(None, (32, 32, 3), "m"))

  def test_check_image_input_names_shape_rank_and_type(self):
    check = model_inputs.check_image_input
    self.assertEqual(check(model_inputs.ModelInput("x", 1, ("N", 3, 32, 32)), (32, 32, 3),
                           "'m.onnx'"),
                     "Invalid input shape of 'm.onnx'. Expected (N, 32, 32, 3), the agent's "
                     "images (N, H, W, C): export the model for 32x32x3 inputs. Received "
                     "input `x` of shape (N, 3, 32, 32)")
    self.assertIn("Received input `x` of shape (N, 3072)",
                  check(model_inputs.ModelInput("x", 1, (None, 3072)), (32, 32, 3), "m"))
    self.assertEqual(check(model_inputs.ModelInput("x", 10, (None, 32, 32, 3)), (32, 32, 3),
                           "m"),
                     "Invalid input of m. Expected a float (float32) input taking the agent's "
                     "images (N, 32, 32, 3). Received input `x` of element type float16")


class DeviceSideTest(tf.test.TestCase):

  def test_model_inputs_is_python36_clean(self):
    out = subprocess.run(VERMIN + ["-t=3.6-", "--no-tips", "--violations",
                                   "deploy/device/model_inputs.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


if __name__ == "__main__":
  tf.test.main()
