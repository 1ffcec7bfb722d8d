"""Tests of deploy/formats.py: rounding to eEmM bit-for-bit against NumPy's
float16 (e5m10) and ml_dtypes' bfloat16 (e8m7) and IEEE-style 8-bit floats,
the TensorFlow rounding against the NumPy one, and the model study."""

import os
import subprocess
import sys

from absl.testing import parameterized
import ml_dtypes
import numpy as np
import tensorflow as tf

from deploy import formats
from tests.deploy import tiny_model

REFERENCES = {(5, 10): np.float16, (8, 7): ml_dtypes.bfloat16,
              (5, 2): ml_dtypes.float8_e5m2, (4, 3): ml_dtypes.float8_e4m3,
              (3, 4): ml_dtypes.float8_e3m4}


def _samples():
  """Random float32 bit patterns over the whole range, plus every edge."""
  rng = np.random.default_rng(0)
  bits = rng.integers(0, 2 ** 32, size=400_000, dtype=np.uint64).astype(np.uint32)
  x = bits.view(np.float32)
  x = x[np.isfinite(x)]
  # dense samples where the small formats live, and exact ties
  dense = rng.uniform(-300.0, 300.0, 200_000).astype(np.float32)
  small = (rng.uniform(-1, 1, 100_000) * 2.0 ** rng.integers(-30, 2, 100_000)).astype(np.float32)
  edges = []
  for e, m in REFERENCES:
    emin, largest = formats.format_limits(e, m)
    ulp = 2.0 ** ((2 ** (e - 1) - 1) - m)  # at the largest binade: 2^(emax - m)
    q = 2.0 ** (emin - m)
    edges += [largest, largest + ulp / 2, largest + ulp / 4, largest + 0.75 * ulp, 2.0 ** emin,
              2.0 ** emin - q / 2, q, q / 2, 1.5 * q, 2.5 * q, q / 4, 0.0, -0.0]
  edges = np.array(edges + [-v for v in edges], np.float32)
  return np.concatenate([x, dense, small, edges])


class FormatsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*sorted(REFERENCES))
  def test_round_to_format_matches_reference_bit_for_bit(self, e, m):
    x = _samples()
    ours = formats.round_to_format(x, e, m)
    with np.errstate(over="ignore"):
      ref = x.astype(REFERENCES[(e, m)]).astype(np.float32)
    both_nan = np.isnan(ours) & np.isnan(ref)
    same = (ours.view(np.uint32) == ref.view(np.uint32)) | both_nan
    bad = np.flatnonzero(~same)[:5]
    self.assertTrue(same.all(), msg="e%dm%d differs at %s: ours %s, reference %s"
                    % (e, m, x[bad], ours[bad], ref[bad]))

  def test_round_to_format_keeps_special_values(self):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    out = formats.round_to_format(x, 4, 3)
    self.assertEqual(out[0], np.inf)
    self.assertEqual(out[1], -np.inf)
    self.assertTrue(np.isnan(out[2]))
    self.assertEqual(out[4].view(np.uint32), np.float32(-0.0).view(np.uint32))

  @parameterized.parameters((5, 10), (8, 7), (4, 3), (6, 5))
  def test_tensorflow_rounding_equals_numpy(self, e, m):
    x = _samples()
    # TensorFlow's CPU kernels flush float32 subnormals (|x| < 2^-126) to zero.
    x = x[(np.abs(x) >= 2.0 ** -126) | (x == 0)]
    ours = np.asarray(formats.round_to_format_tf(tf.constant(x), e, m))
    ref = formats.round_to_format(x, e, m)
    same = (ours.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(ours) & np.isnan(ref))
    self.assertTrue(same.all(), msg=str(x[~same][:5]))

  @parameterized.parameters("e9m3", "e1m4", "e5m24", "fp16", "")
  def test_parse_format_refuses_what_float32_cannot_hold(self, name):
    with self.assertRaisesRegex(ValueError, "Invalid float format"):
      formats.parse_format(name)

  def test_model_study_full_precision_format_is_exact(self):
    tiny = tiny_model.artifacts()
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    split = data.load("cifar10_sample")
    images = data.normalize(split.x_val[:64])
    labels = np.asarray(split.y_val[:64]).reshape(-1)
    rows = formats.format_errors(tiny["model"], images, labels, ["e8m23", "e5m10", "e3m1"])
    self.assertEqual([r["format"] for r in rows], ["fp32", "e8m23", "e5m10", "e3m1"])
    self.assertEqual(rows[1]["error"], rows[0]["error"])  # float32 itself: no change
    logits = np.asarray(formats.emulate(tiny["model"], 5, 10)(images, training=False))
    reference = np.asarray(tiny["model"](images, training=False))
    self.assertLess(np.max(np.abs(logits - reference)), 0.1)
    self.assertGreater(np.max(np.abs(logits - reference)), 0.0)  # something was rounded
    text = formats.write_report(rows, self.get_temp_dir(), "tiny")
    self.assertIn("| e5m10 | 5 | 10 | 16 |", text)
    self.assertTrue(os.path.exists(os.path.join(self.get_temp_dir(), "formats.png")))

  def test_cli_writes_table_and_plot(self):
    tiny = tiny_model.artifacts()
    out = os.path.join(self.get_temp_dir(), "study")
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.formats", "--model_dir=" + tiny["dir"],
         "--formats=e5m10,e4m3", "--dataset=cifar10_sample", "--num_images=100",
         "--out_dir=" + out], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    self.assertEqual(proc.returncode, 0, msg=proc.stderr[-2000:])
    for name in ("formats.csv", "formats.md", "formats.png"):
      self.assertTrue(os.path.exists(os.path.join(out, name)), msg=name)
    bad = subprocess.run([sys.executable, "-m", "deploy.formats", "--model_dir=" + tiny["dir"],
                          "--formats=e9m9"], capture_output=True, text=True, timeout=120)
    self.assertNotEqual(bad.returncode, 0)
    self.assertIn("Invalid float format 'e9m9'", bad.stderr)


if __name__ == "__main__":
  tf.test.main()
