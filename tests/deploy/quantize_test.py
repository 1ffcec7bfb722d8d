"""Tests of deploy/quantize.py and the fp16/int8 exports of deploy/export.py on a
tiny TRAINED network, parity against Keras per runtime (ONNX Runtime and
OpenVINO CPU run here)."""

import os

import numpy as np
import onnx
import pytest
import tensorflow as tf

from deploy import export
from deploy import quantize

_TRAINED = {}


def trained():
  """A N=1, F=4 cell network trained one epoch on 256 sample images (BN
  statistics and weights away from their initial values), with normalized
  validation images and training images for calibration."""
  if _TRAINED:
    return _TRAINED
  import keras  # pylint: disable=g-import-not-at-top
  from tea_keras import data, network, space
  splits = data.load("cifar10_sample")
  keras.utils.set_random_seed(0)
  model = network.build_network(space.resolve("random", 3), num_cells=1, filters=4)
  model.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  # Slots built before fit: the train step is then traced once, not twice
  # (tea_keras.training.compile_model does the same).
  model.optimizer.build(model.trainable_variables)
  model.fit(data.normalize(splits.x_train[:256]), splits.y_train[:256], epochs=1,
            batch_size=64, verbose=0)
  _TRAINED.update(model=model, val=data.normalize(splits.x_val[:64]),
                  calibration=data.normalize(splits.x_train[:64]))
  return _TRAINED


def _agreement(a, b):
  return float(np.mean(np.argmax(a, 1) == np.argmax(b, 1)))


class QuantizeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.t = trained()
    cls.reference = export.keras_logits(cls.t["model"], cls.t["val"])

  def _export(self, fmt, precision):
    ext = ".onnx" if fmt == "onnx" else ".xml"
    out = os.path.join(self.get_temp_dir(), "%s_%s%s" % (fmt, precision, ext))
    if not os.path.exists(out):
      export.export_model(self.t["model"], fmt, out, precision, check_images=self.t["val"][:8],
                          calibration_images=self.t["calibration"])
    _, logits = export.run_artifact(fmt, out, self.t["val"])
    return out, logits

  def test_onnx_fp16_and_int8_parity_and_size(self):
    fp32, logits32 = self._export("onnx", "fp32")
    fp16, logits16 = self._export("onnx", "fp16")
    int8, logits8 = self._export("onnx", "int8")
    self.assertLess(np.max(np.abs(logits32 - self.reference)), export.FP32_TOLERANCE)
    self.assertLess(np.max(np.abs(logits16 - self.reference)), 0.02)
    self.assertGreaterEqual(_agreement(logits16, self.reference), 0.95)
    # int8: bounded logit error relative to the logit range, and top-1 kept
    # where the network is decided (top-1 ahead of top-2 by a tenth of the
    # logit range); a one-epoch network has many near ties, which int8 may
    # flip (a quarter of the images here, depending on the CPU's kernels).
    ptp = np.ptp(self.reference)
    self.assertLess(np.max(np.abs(logits8 - self.reference)), 0.25 * ptp)
    top2 = np.sort(self.reference, 1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.1 * ptp
    self.assertGreaterEqual(int(np.sum(decided)), 10)
    self.assertGreaterEqual(_agreement(logits8[decided], self.reference[decided]), 0.95)
    self.assertGreaterEqual(_agreement(logits8, self.reference), 0.7)
    w32, w16, w8 = (quantize.weight_bytes(p) for p in (fp32, fp16, int8))
    self.assertLess(w16, 0.55 * w32)
    self.assertLess(w8, 0.45 * w32)
    ops = {n.op_type for n in onnx.load(int8).graph.node}
    self.assertContainsSubset({"QuantizeLinear", "DequantizeLinear"}, ops)

  @pytest.mark.slow
  def test_openvino_int8_nncf_parity_and_size(self):
    fp32, _ = self._export("openvino", "fp32")
    int8, logits8 = self._export("openvino", "int8")
    self.assertGreaterEqual(_agreement(logits8, self.reference), 0.85)
    self.assertLess(np.max(np.abs(logits8 - self.reference)), 0.25 * np.ptp(self.reference))
    self.assertLess(quantize.weight_bytes(int8), 0.45 * quantize.weight_bytes(fp32))
    self.assertEqual(quantize.artifact_bytes(int8),
                     os.path.getsize(int8) + os.path.getsize(int8[:-4] + ".bin"))

  def test_compact_names_keeps_outputs(self):
    fp32, logits = self._export("onnx", "fp32")
    proto = onnx.load(fp32)
    self.assertEqual(proto.graph.input[0].name, "images")
    self.assertEqual(proto.graph.output[0].name, "logits")
    self.assertTrue(all(len(n.name) <= 8 for n in proto.graph.node))
    self.assertLess(np.max(np.abs(logits - self.reference)), export.FP32_TOLERANCE)

  def test_int8_needs_calibration_and_a_quantizable_format(self):
    out = os.path.join(self.get_temp_dir(), "bad.onnx")
    with self.assertRaisesRegex(ValueError, "calibration_images"):
      export.export_model(self.t["model"], "onnx", out, "int8")
    with self.assertRaisesRegex(ValueError, "exported for fmt=onnx\\|openvino"):
      export.export_model(self.t["model"], "saved_model", out, "int8",
                          calibration_images=self.t["calibration"])
    with self.assertRaisesRegex(ValueError, "calibration_images.*NHWC"):
      quantize.quantize_onnx("unused.onnx", out, np.zeros((3, 32), np.float32))


if __name__ == "__main__":
  tf.test.main()
