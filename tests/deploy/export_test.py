"""Tests of deploy/export.py: real exports of a tiny network, parity checked."""

import json
import os
import subprocess
import sys

import onnx
import pytest
import tensorflow as tf

from deploy import export
from tests.deploy import tiny_model


class ExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def test_export_model_onnx_opset_and_parity(self):
    out = os.path.join(self.get_temp_dir(), "m.onnx")
    result = export.export_model(self.tiny["keras"], "onnx", out,
                                 check_images=self.tiny["images"][:16])
    self.assertEqual((result.fmt, result.precision, result.opset), ("onnx", "fp32", 13))
    self.assertLess(result.max_abs_diff, 1e-3)
    self.assertEqual(result.checked_images, 16)
    proto = onnx.load(out)
    self.assertEqual([o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")],
                     [13])
    self.assertEqual(proto.graph.input[0].name, "images")
    self.assertEqual(proto.graph.output[0].name, "logits")
    with open(out + ".export.json") as f:
      self.assertEqual(json.load(f)["max_abs_diff"], result.max_abs_diff)

  def test_export_model_openvino_fp32_and_fp16(self):
    for precision, tolerance in (("fp32", 1e-3), ("fp16", 0.1)):
      out = os.path.join(self.get_temp_dir(), "m_%s.xml" % precision)
      result = export.export_model(self.tiny["model"], "openvino", out, precision,
                                   check_images=self.tiny["images"][:16])
      self.assertLess(result.max_abs_diff, tolerance)
      self.assertTrue(os.path.exists(out[:-4] + ".bin"))
      self.assertEqual(result.parity_runtime, "openvino")
    fp32 = os.path.getsize(os.path.join(self.get_temp_dir(), "m_fp32.bin"))
    fp16 = os.path.getsize(os.path.join(self.get_temp_dir(), "m_fp16.bin"))
    self.assertLess(fp16, 0.6 * fp32)

  def test_export_model_onnx_fp16_keeps_float32_io(self):
    out = os.path.join(self.get_temp_dir(), "m16.onnx")
    result = export.export_model(self.tiny["model"], "onnx", out, "fp16",
                                 check_images=self.tiny["images"][:8])
    self.assertLess(result.max_abs_diff, export.FP16_TOLERANCE)
    self.assertGreater(result.max_abs_diff, 0.0)
    proto = onnx.load(out)
    self.assertEqual(proto.graph.input[0].type.tensor_type.elem_type, onnx.TensorProto.FLOAT)

  def test_export_model_rejects_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "onnx\\|openvino\\|tensorrt\\|saved_model"):
      export.export_model(self.tiny["model"], "tflite", "x")
    with self.assertRaisesRegex(ValueError, "fp32\\|fp16\\|int8"):
      export.export_model(self.tiny["model"], "onnx", "x", "int4")
    with self.assertRaisesRegex(ValueError, "calibration_images"):
      export.export_model(self.tiny["model"], "onnx", "x", "int8")
    with self.assertRaisesRegex(ValueError, "model_dir holding model.keras"):
      export.export_model(self.get_temp_dir(), "onnx", "x")
    with self.assertRaisesRegex(ValueError, "ending in .xml"):
      export.export_model(self.tiny["model"], "openvino", "x.ir")

  def test_export_model_tensorrt_needs_tensorrt(self):
    try:
      import tensorrt  # noqa: F401
      self.skipTest("TensorRT is installed here; the missing-TensorRT path is not testable")
    except ImportError:
      pass
    with self.assertRaisesRegex(ImportError, "deploy.device.tensorrt_build"):
      export.export_model(self.tiny["model"], "tensorrt",
                          os.path.join(self.get_temp_dir(), "m.engine"))

  @pytest.mark.slow
  def test_export_model_saved_model_parity(self):
    out = os.path.join(self.get_temp_dir(), "sm")
    result = export.export_model(self.tiny["model"], "saved_model", out,
                                 check_images=self.tiny["images"][:8])
    self.assertLess(result.max_abs_diff, 1e-5)

  @pytest.mark.slow
  def test_cli_writes_onnx_next_to_model(self):
    model_dir = os.path.join(self.get_temp_dir(), "cli")
    os.makedirs(model_dir)
    self.tiny["model"].save(os.path.join(model_dir, "model.keras"))
    out = subprocess.run([sys.executable, "-m", "deploy.export", "--model_dir=" + model_dir,
                          "--format=onnx"], capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertEqual(result["path"], os.path.join(model_dir, "model.onnx"))
    self.assertLess(result["max_abs_diff"], 1e-3)


if __name__ == "__main__":
  tf.test.main()
