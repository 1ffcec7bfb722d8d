"""Tests of deploy/device/device_main.py and the device scripts: Python 3.6
compatibility of the whole device subpackage checked by vermin, and a device script run in a fresh
interpreter that must not import TensorFlow, Keras or tea_keras."""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from deploy.device import device_main
from deploy.device import image_files
from tests import fakes
from tests.deploy import tiny_model

VERMIN = [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Everything that runs on a device (Jetson TX2: Python 3.6): the whole device
# subpackage, which is what deploy/README.md says to copy to the board.
DEVICE_SIDE = ["deploy/__init__.py", "deploy/device"]


class DeviceMainTest(tf.test.TestCase):

  def test_device_side_modules_are_python36_clean(self):
    out = subprocess.run(VERMIN + ["-t=3.6-", "--no-tips",
                          "--violations", "--eval-annotations"] + DEVICE_SIDE,
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
    self.assertNotIn("Target versions not met", out.stdout)

  def test_vermin_catches_newer_syntax(self):
    path = os.path.join(self.get_temp_dir(), "new.py")
    with open(path, "w") as f:
      f.write("import dataclasses\nx = 1\nprint(f'{x=}')\n")
    out = subprocess.run(VERMIN + ["-t=3.6-", "--no-tips",
                          "--violations", path], capture_output=True, text=True, timeout=120)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("Target versions not met", out.stdout)

  def test_cpu_script_prints_json_without_tensorflow(self):
    tiny = tiny_model.artifacts()
    data = os.path.join(self.get_temp_dir(), "images.npy")
    np.save(data, tiny["images"])
    code = ("import runpy, sys\n"
            "sys.argv = ['measure', '--model=%s', '--data=%s', '--batch_size=16',"
            " '--repeats=2', '--warmup_batches=1', '--power_source=none']\n"
            "runpy.run_module('deploy.device.cpu.measure', run_name='__main__')\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tea_keras', 'absl'))\n"
            "sys.stderr.write('HEAVY=%%r\\n' %% heavy)\n") % (tiny["onnx"], data)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    self.assertIn("HEAVY=[]", out.stderr)
    self.assertIn("repeat 2/2", out.stderr)                # progress with ETA
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertGreater(result["time_s"], 0)
    self.assertIsNone(result["energy_j"])
    self.assertEqual((result["device"], result["runtime"], result["images"]),
                     ("cpu", "onnxruntime", 64))

  def test_load_data_validates(self):
    path = os.path.join(self.get_temp_dir(), "u8.npy")
    np.save(path, np.zeros((2, 32, 32, 3), np.uint8))
    with self.assertRaisesRegex(ValueError, "float32 normalized NHWC.*--write_data"):
      image_files.load_data(path)
    npz = os.path.join(self.get_temp_dir(), "d.npz")
    np.savez(npz, images=np.ones((5, 32, 32, 3), np.float32))
    self.assertEqual(image_files.load_data(npz, num_images=3).shape, (3, 32, 32, 3))
    with self.assertRaisesRegex(ValueError, "does not exist"):
      image_files.load_data(path + ".missing")

  def test_build_power_auto_falls_back_to_none_without_rapl(self):
    source = device_main.build_power("auto", root=os.path.join(self.get_temp_dir(), "x"))
    self.assertEqual(source.name, "none")

  def test_main_int8_needs_calibration_and_builds_with_it(self):
    tiny = tiny_model.artifacts()
    data = os.path.join(self.get_temp_dir(), "images.npy")
    calib = os.path.join(self.get_temp_dir(), "calib.npy")
    np.save(data, tiny["images"])
    np.save(calib, tiny["images"][:50])
    argv = ["--model=" + tiny["onnx"], "--data=" + data, "--runtime=tensorrt",
            "--precision=int8", "--power_source=none", "--batch_size=16", "--repeats=1",
            "--warmup_batches=0", "--contention_policy=warn",
            "--engine_cache=" + os.path.join(self.get_temp_dir(), "engines")]
    with fakes.fake_gpu("8.2.1", board="jetson_xavier") as trt:  # the TX2 has no fast INT8
      with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        device_main.main("gpu", argv)
      self.assertIn("--precision=int8 needs --calibration=FILE.npy", err.getvalue())
      self.assertEqual(trt.BUILDS, 0)
      with contextlib.redirect_stdout(io.StringIO()):
        result = device_main.main("gpu", argv + ["--calibration=" + calib])
      self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (1, 1))
    info = result["runtime_info"]
    self.assertEqual((info["precision"], info["calibration_images"]), ("int8", 50))
    self.assertGreater(result["time_s"], 0.0)
    with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
      device_main.main("cpu", ["--model=m.onnx", "--data=" + data, "--precision=fp16"])
    self.assertIn("applies to --runtime=tensorrt", err.getvalue())

  def test_build_runtime_validates_names(self):
    with self.assertRaisesRegex(ValueError, "cpu\\|gpu\\|jetson\\|myriad"):
      device_main.build_runtime("tpu", "onnxruntime", "m.onnx", 1)
    with self.assertRaisesRegex(ValueError, "onnxruntime\\|openvino\\|tensorrt\\|keras"):
      device_main.build_runtime("cpu", "tvm", "m.onnx", 1)


if __name__ == "__main__":
  tf.test.main()
