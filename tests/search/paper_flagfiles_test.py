"""End to end: each paper flagfile through `python -m search.run`, the real
agent on loopback for the boards, `search.reports.cross_device` and `search.reports
--figure=table2`, with the hardware emulated only at its boundary, by fakes
as strict as the boards (tests/fakes/README.md): NVML's functions and ONNX
Runtime's CUDA provider for the TITAN X (a launch-bound tiny model keeps its
power below the paper's 80 W, so the threshold-miss path runs); a Jetson TX2
on JetPack 4.6 (fake TensorRT 8.2 with pycuda only, whose contexts are per
thread, no fast INT8) and an INA3221 sysfs tree; OpenVINO 2022.3 with its own
API and a MYRIAD that compiles static shapes in FP16, and a USB meter logging
at 5 Hz, for the Movidius, through the agent and as a local device of an
OpenVINO 2022.3 host. Budgets are tiny (2 trials, N=1, F=4, 1 epoch on 256
images, 200 images measured); everything else comes from the flagfile. The
random baseline (paper_random_movidius.cfg) runs against the same agent as
the PESMO search and its settings are compared with those the PESMO search
ran with.

Then the refusals: on this machine (no GPU, no TensorRT, no MYRIAD) each
misconfiguration is refused before any trial, naming the missing piece and
how to get it: among them an agent whose images are too few or not the
search's, and int8 on a TX2.
"""

import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf


from search import store as store_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARDWARE_SITE = os.path.join(ROOT, "tests", "fakes", "hardware_site")
GPU_SITE = os.path.join(ROOT, "tests", "fakes", "gpu_site")
TINY = ["--num_samples=2", "--num_initial=2", "--dataset=cifar10_sample", "--num_cells=1",
        "--filters=4", "--epochs=1", "--train_images=256", "--measure_images=200",
        "--measure_repeats=1", "--contention_policy=warn"]
# --contention_policy=warn: two searches share the 2 cores here, so every repeat is contended;
# re-measuring each up to 6 times would test nothing more (deploy/contention_test.py does).
TOKEN = "e2e-token"


def _env(fakes="", paths=(), **extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(list(paths) + [ROOT] + (
      [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  env.pop("TEA_FAKE_HARDWARE", None)
  if fakes:
    env["TEA_FAKE_HARDWARE"] = fakes
  env.update(extra)
  return env


def _search_cmd(flagfile, results_dir, *extra):
  return [sys.executable, "-m", "search.run",
          "--flagfile=" + os.path.join(ROOT, "flags", flagfile),
          "--results_dir=" + results_dir] + TINY + list(extra)


def run_search(flagfile, results_dir, *extra, env=None, timeout=600):
  return subprocess.run(_search_cmd(flagfile, results_dir, *extra), capture_output=True,
                        text=True, env=env or _env(), cwd=ROOT, timeout=timeout)


def _rapl_readable():
  from deploy.device import capabilities  # pylint: disable=g-import-not-at-top
  return capabilities.probe_power("cpu", "rapl")["readable"]


def finished_trials(results_dir):
  store = store_lib.TrialStore(os.path.join(results_dir, "trials.db"))
  try:
    return store.trials()
  finally:
    store.close()


@contextlib.contextmanager
def agent(workdir, device, *args, env=None, images=None):
  """`python -m deploy.device.agent` on 127.0.0.1 (a free port); yields its URL.
  images: what it measures (default: the first 200 validation images of the
  sample, as `deploy.measure --dataset=cifar10_sample --num_images=200
  --write_data` writes them)."""
  os.makedirs(workdir, exist_ok=True)
  token_file = os.path.join(workdir, "token")
  with open(token_file, "w") as f:
    f.write(TOKEN)
  from tea_keras import data  # pylint: disable=g-import-not-at-top
  if images is None:
    images = data.normalize(data.load("cifar10_sample").x_val[:200])
  images_path = os.path.join(workdir, "images.npy")
  np.save(images_path, images)
  images = images_path
  log_path = os.path.join(workdir, "agent.log")
  log = open(log_path, "w+")
  proc = subprocess.Popen(
      [sys.executable, "-m", "deploy.device.agent", "--host=127.0.0.1", "--port=0",
       "--token_file=" + token_file, "--data=" + images, "--device=" + device] + list(args),
      stdout=log, stderr=subprocess.STDOUT, env=env or _env(), cwd=ROOT)
  try:
    deadline, url = time.time() + 120, None
    while url is None:
      if proc.poll() is not None or time.time() > deadline:
        raise AssertionError("agent did not start:\n" + open(log_path).read())
      found = re.search(r"agent: \w+ on http://127\.0\.0\.1:(\d+)", open(log_path).read())
      url = "http://127.0.0.1:%s" % found.group(1) if found else None
      time.sleep(0.2)
    yield url, token_file, log_path
  finally:
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


class PaperFlagfilesTest(tf.test.TestCase):
  """Runs the three paper searches once; each test checks one of them."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "paper_e2e")
    cls.dirs, cls.outputs = {}, {}
    cls.stack = contextlib.ExitStack()
    cls.running = {}
    # The searches at once: each trial's training is mostly single-threaded
    # tracing, so several processes keep both cores of a CI machine busy.
    cls._titanx()
    cls._jetson()
    cls._movidius()
    cls._local_myriad()
    cls._wait()

  @classmethod
  def tearDownClass(cls):
    cls.stack.close()
    super().tearDownClass()

  @classmethod
  def _search(cls, name, flagfile, *extra, env=None):
    d = os.path.join(cls.root, name)
    cls.dirs[name] = d
    cls.running[name] = subprocess.Popen(
        _search_cmd(flagfile, d, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env or _env(), cwd=ROOT)

  @classmethod
  def _wait(cls):
    for name, proc in cls.running.items():
      stdout, stderr = proc.communicate(timeout=900)
      cls.outputs[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    cls.running = {}

  @classmethod
  def _titanx(cls):
    cls._search("titanx", "paper_titanx.cfg", env=_env("nvml,ort_cuda", [HARDWARE_SITE]))

  @classmethod
  def _jetson(cls):
    sysfs = os.path.join(cls.root, "tx2_sysfs")
    env = _env("ina3221=" + sysfs, [GPU_SITE, HARDWARE_SITE],
               TEA_FAKE_TENSORRT_VERSION="8.2.1")
    # The agent holds calibration images, but the TX2 has no fast INT8: int8 is
    # refused (RefusalTest), fp16 is what the board offers beside fp32.
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    os.makedirs(cls.root, exist_ok=True)
    calibration = os.path.join(cls.root, "tx2_calibration.npy")
    np.save(calibration, data.normalize(data.load("cifar10_sample").x_train[:50]))
    cls.jetson_url, cls.jetson_token, cls.jetson_log = cls.stack.enter_context(agent(
        os.path.join(cls.root, "tx2_agent"), "jetson", "--power_source=ina3221",
        "--power_root=" + sysfs, "--engine_cache=" + os.path.join(cls.root, "engines"),
        "--calibration=" + calibration, env=env))
    cls._search("jetson", "paper_jetson_tx2.cfg", "--device_url=" + cls.jetson_url,
                "--device_token_file=" + cls.jetson_token, "--precisions=fp32,fp16")

  @classmethod
  def _movidius(cls):
    meter = os.path.join(cls.root, "ncs_meter.csv")
    env = _env("myriad,usb_meter=" + meter, [HARDWARE_SITE])
    cls.ncs_url, cls.ncs_token, cls.ncs_log = cls.stack.enter_context(agent(
        os.path.join(cls.root, "ncs_agent"), "myriad", "--power_source=usb_meter",
        "--usb_csv=" + meter, env=env))
    cls._search("movidius", "paper_movidius.cfg", "--device_url=" + cls.ncs_url,
                "--device_token_file=" + cls.ncs_token)
    cls._search("random_movidius", "paper_random_movidius.cfg", "--device_url=" + cls.ncs_url,
                "--device_token_file=" + cls.ncs_token)

  @classmethod
  def _local_myriad(cls):
    """The stick on the search host itself, whose OpenVINO is 2022.3 (the
    last with MYRIAD): it reads IR of its own version, written through the
    2022.3 API; the USB meter's log is passed as a search flag."""
    meter = os.path.join(cls.root, "local_meter.csv")
    cls._search("local_myriad", "paper_movidius.cfg", "--device=myriad", "--usb_csv=" + meter,
                "--device_url=", "--device_token_file=",
                env=_env("myriad,usb_meter=" + meter, [HARDWARE_SITE]))

  def _check_done(self, name, power_source, threshold_w):
    out = self.outputs[name]
    self.assertEqual(out.returncode, 0, msg=out.stdout[-3000:] + out.stderr[-3000:])
    trials = finished_trials(self.dirs[name])
    self.assertLen(trials, 2)
    for t in trials:
      self.assertEqual(t["status"], "done", msg=t["error"])
      m = t["metrics"]
      self.assertGreater(m["time_s"], 0.0)
      self.assertGreater(m["energy_j"], 0.0)
      self.assertEqual(m["power_source"], power_source)
      self.assertEqual(m["threshold_w"], threshold_w)
      self.assertIn(m["time_source"], ("power_threshold", "host_clock"))
    with open(os.path.join(self.dirs[name], "config.json")) as f:
      return trials, json.load(f)

  def test_paper_titanx_measures_on_the_gpu_with_nvml(self):
    trials, config = self._check_done("titanx", "nvml", 80.0)
    self.assertEqual(config["device_kind"], "gpu")
    self.assertEqual(config["artifact_format"], "onnx")
    for t in trials:
      m = t["metrics"]
      self.assertEqual(m["runtime"], "onnxruntime")
      # A launch-bound tiny CNN keeps the board under the paper's 80 W: no working
      # span, so the time is the host clock's and the energy the host window's.
      self.assertLess(m["mean_power_w"], 80.0)
      self.assertEqual(m["time_source"], "host_clock")
      self.assertGreater(m["host_time_s"], 0.0)
      # Measured by the device script in a process of its own, which never
      # loaded TensorFlow (the trainer holds the GPU's memory).
      self.assertFalse(m["measure_tensorflow_loaded"])
      self.assertNotEqual(m["measure_pid"], None)
      self.assertEqual(m["precisions"]["fp32"]["val_error_source"],
                       "device (onnxruntime fp32 on gpu, 200 images)")

  def test_paper_jetson_tx2_builds_the_tensorrt_engine_on_the_board(self):
    trials, config = self._check_done("jetson", "ina3221", 1.0)
    self.assertEqual(config["device_kind"], "jetson")
    self.assertEqual(config["artifact_format"], "onnx")
    self.assertEqual(config["onnx_opset"], 13)
    for t in trials:
      self.assertEqual(t["metrics"]["runtime"], "tensorrt")
      self.assertGreater(t["metrics"]["engine_build_s"], 0.0)
      self.assertFalse(t["metrics"]["engine_cached"])
      self.assertTrue(t["artifacts"]["export"].endswith(".onnx"))
      self._check_engine_pairs(t)

  def _check_engine_pairs(self, t):
    """Each precision's engine was built on the board from the fp32 ONNX
    export, and its error is the engine's on the measured validation images:
    the fake engine runs that ONNX, so ONNX Runtime on the same export gives
    the fp32 figure independently."""
    import onnxruntime  # pylint: disable=g-import-not-at-top
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    pairs = t["metrics"]["precisions"]
    self.assertEqual(sorted(pairs), ["fp16", "fp32"])
    splits = data.load("cifar10_sample")
    x, y = data.normalize(splits.x_val[:200]), np.asarray(splits.y_val[:200]).ravel()
    session = onnxruntime.InferenceSession(pairs["fp32"]["export"],
                                           providers=["CPUExecutionProvider"])
    ort_error = float(np.mean(np.argmax(session.run(None, {session.get_inputs()[0].name: x})[0],
                                        axis=1) != y))
    self.assertAlmostEqual(pairs["fp32"]["val_error"], ort_error, places=6)
    for precision, pair in pairs.items():
      self.assertEqual(pair["status"], "done")
      self.assertEqual(pair["val_error_source"],
                       "device (tensorrt %s on jetson, 200 images)" % precision)
      self.assertTrue(pair["export"].endswith(".onnx"))
      # Built for this pair (a cache hit reports 0.0): int8 has its own engine.
      self.assertGreater(pair["engine_build_s"], 0.0)
      self.assertGreater(pair["time_s"], 0.0)

  def test_paper_movidius_sends_onnx_that_openvino_2022_3_reads(self):
    trials, config = self._check_done("movidius", "usb_meter", 0.45)
    self.assertEqual(config["device_kind"], "myriad")
    self.assertEqual(config["artifact_format"], "onnx")
    self.assertIn("sending ONNX (opset 13) to OpenVINO 2022.3", self.outputs["movidius"].stdout)
    self.assertEqual([t["source"] for t in trials], ["initial", "initial"])
    for t in trials:  # the stick's own predictions (FP16), not the host's CPU
      self.assertEqual(t["metrics"]["precisions"]["fp32"]["val_error_source"],
                       "device (openvino fp32 on myriad, 200 images)")
    with open(self.ncs_log) as f:
      self.assertNotIn("cannot", f.read().lower())

  def test_paper_random_movidius_runs_the_movidius_search_with_random_strategy(self):
    """Run against the same agent, the random baseline's settings are those
    the PESMO search ran with (its config.json), but the strategy."""
    trials, random = self._check_done("random_movidius", "usb_meter", 0.45)
    self.assertIn("sending ONNX (opset 13) to OpenVINO 2022.3",
                  self.outputs["random_movidius"].stdout)
    self.assertEqual([t["source"] for t in trials], ["initial", "initial"])
    with open(os.path.join(self.dirs["movidius"], "config.json")) as f:
      pesmo = json.load(f)
    self.assertEqual((random.pop("strategy"), pesmo.pop("strategy")), ("random", "pesmo"))
    self.assertEqual((random.pop("results_dir"), pesmo.pop("results_dir")),
                     (self.dirs["random_movidius"], self.dirs["movidius"]))
    self.assertEqual(random, pesmo)

  def test_local_myriad_on_an_openvino_2022_3_host_sends_ir_written_by_its_own_api(self):
    trials, config = self._check_done("local_myriad", "usb_meter", 0.45)
    self.assertEqual((config["device_kind"], config["artifact_format"]), ("myriad", "openvino"))
    self.assertEqual(config["power_options"], {"csv_path": os.path.join(self.root,
                                                                        "local_meter.csv")})
    for t in trials:
      self.assertTrue(t["artifacts"]["export"].endswith(".xml"))
      with open(t["artifacts"]["export"]) as f:  # IR that 2022.3 wrote and reads
        self.assertNotIn('version="opset12"', f.read())
      self.assertEqual(t["metrics"]["precisions"]["fp32"]["val_error_source"],
                       "device (openvino fp32 on myriad, 200 images)")

  def test_report_remeasures_the_titanx_front_back_to_back(self):
    out_dir = os.path.join(self.root, "titanx_front")
    proc = subprocess.run(
        [sys.executable, "-m", "search.reports", "--figure=remeasure",
         "--results_dir=" + self.dirs["titanx"], "--out_dir=" + out_dir],
        capture_output=True, text=True, env=_env("nvml,ort_cuda", [HARDWARE_SITE]), cwd=ROOT,
        timeout=600)
    self.assertEqual(proc.returncode, 0, msg=proc.stderr[-3000:])
    with open(os.path.join(out_dir, "remeasured_front.csv")) as f:
      rows = list(csv.DictReader(f))
    self.assertNotEmpty(rows)
    for row in rows:
      self.assertGreater(float(row["time_s"]), 0.0)
      self.assertGreater(float(row["energy_j"]), 0.0)
      self.assertIn(row["contended"], ("True", "False"))
    self.assertIn("now / then", proc.stdout)

  def test_cross_device_remeasures_titanx_models_on_the_tx2(self):
    out_dir = os.path.join(self.root, "titanx_on_tx2")
    proc = subprocess.run(
        [sys.executable, "-m", "search.reports.cross_device", "--source_dir=" + self.dirs["titanx"],
         "--target_dir=" + self.dirs["jetson"], "--out_dir=" + out_dir,
         "--device_url=" + self.jetson_url, "--device_token_file=" + self.jetson_token],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    self.assertEqual(proc.returncode, 0, msg=proc.stderr[-3000:])
    with open(os.path.join(out_dir, "cross_device.csv")) as f:
      rows = list(csv.DictReader(f))
    source = {t["trial_id"]: t for t in finished_trials(self.dirs["titanx"])}
    self.assertNotEmpty(rows)
    for row in rows:
      self.assertGreater(float(row["time_s"]), 0.0)
      self.assertGreater(float(row["energy_j"]), 0.0)
      self.assertAlmostEqual(float(row["error"]), source[int(row["trial_id"])]["metrics"]["val_error"])
    self.assertTrue(os.path.exists(os.path.join(out_dir, "cross_error_time.png")))

  def test_report_table2_measures_trained_models_locally_and_on_the_tx2(self):
    model_dirs = ",".join(t["artifacts"]["model_dir"] for t in finished_trials(self.dirs["titanx"]))
    out_dir = os.path.join(self.root, "table2")
    common = [sys.executable, "-m", "search.reports", "--figure=table2", "--model_dirs=" + model_dirs,
              "--dataset=cifar10_sample", "--measure_images=200", "--out_dir=" + out_dir]
    for extra in (["--measure_label=cpu", "--device=cpu", "--power_source=none"],
                  ["--measure_label=tx2", "--device=remote", "--runtime=tensorrt",
                   "--device_url=" + self.jetson_url, "--device_token_file=" + self.jetson_token]):
      proc = subprocess.run(common + extra, capture_output=True, text=True, env=_env(), cwd=ROOT,
                            timeout=600)
      self.assertEqual(proc.returncode, 0, msg=proc.stderr[-3000:])
    with open(os.path.join(out_dir, "table2.md")) as f:
      lines = f.read().splitlines()
    self.assertIn("cpu time (s)", lines[0])
    self.assertIn("tx2 energy (J)", lines[0])
    self.assertLen(lines, 2 + 2)
    for line in lines[2:]:
      cells = [c.strip() for c in line.strip("|").split("|")]
      cpu_time, tx2_time, tx2_energy = float(cells[5]), float(cells[7]), float(cells[8])
      self.assertGreater(min(cpu_time, tx2_time, tx2_energy), 0.0)
      self.assertEqual(cells[6], "n/a" if not _rapl_readable() else cells[6])


class RefusalTest(tf.test.TestCase):
  """No GPU, TensorRT or MYRIAD here: refused before any trial, in seconds."""

  def _refused(self, flagfile, *extra, expected=(), env=None):
    d = os.path.join(self.get_temp_dir(), "refused_" + flagfile)
    start = time.time()
    out = run_search(flagfile, d, *extra, env=env, timeout=120)
    took = time.time() - start
    self.assertNotEqual(out.returncode, 0, msg=out.stdout)
    self.assertLess(took, 60.0)
    self.assertFalse(os.path.exists(os.path.join(d, "trials.db")))
    self.assertNotIn("Traceback", out.stderr)
    for text in expected:
      self.assertIn(text, out.stderr)
    return out.stderr

  def test_search_refuses_gpu_without_cuda(self):
    self._refused("paper_titanx.cfg", expected=("CUDAExecutionProvider", "onnxruntime-gpu"))

  def test_search_refuses_gpu_whose_nvml_does_not_read(self):
    self._refused("paper_titanx.cfg", env=_env("ort_cuda", [HARDWARE_SITE]),
                  expected=("power_source=nvml cannot be read", "NVML"))

  def test_search_refuses_local_jetson_without_tensorrt(self):
    self._refused("paper_jetson_tx2.cfg", "--device=jetson",
                  expected=("runtime=tensorrt is not installed", "pip install tensorrt"))

  def test_search_refuses_local_myriad_without_the_plugin(self):
    self._refused("paper_movidius.cfg", "--device=myriad",
                  expected=("not MYRIAD", "openvino==2022.3"))

  def test_search_refuses_remote_agent_that_cannot_run_the_runtime(self):
    workdir = os.path.join(self.get_temp_dir(), "agent_no_trt")
    with agent(workdir, "jetson", "--power_source=none") as (url, token, _):
      self._refused("paper_jetson_tx2.cfg", "--device_url=" + url, "--device_token_file=" + token,
                    expected=("the agent at %s" % url, "runtime=tensorrt is not installed"))

  def test_search_refuses_remote_agent_whose_power_source_differs(self):
    workdir = os.path.join(self.get_temp_dir(), "agent_cpu")
    with agent(workdir, "cpu", "--power_source=none") as (url, token, _):
      self._refused("paper_movidius.cfg", "--device_url=" + url, "--device_token_file=" + token,
                    "--runtime=onnxruntime", expected=("measures with power source none",
                                                       "--power_source=usb_meter"))

  def _tx2_env(self, name, board=None):
    sysfs = os.path.join(self.get_temp_dir(), name)
    extra = {"TEA_FAKE_GPU_BOARD": board} if board else {}
    return sysfs, _env("ina3221=" + sysfs, [GPU_SITE, HARDWARE_SITE],
                       TEA_FAKE_TENSORRT_VERSION="8.2.1", **extra)

  def test_search_refuses_int8_on_a_tx2_before_training(self):
    """The TX2 has no fast INT8: refused by the handshake, though the agent
    holds calibration images, before any training."""
    sysfs, env = self._tx2_env("tx2_sysfs_int8")
    calibration = os.path.join(self.get_temp_dir(), "calibration.npy")
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    np.save(calibration, data.normalize(data.load("cifar10_sample").x_train[:50]))
    workdir = os.path.join(self.get_temp_dir(), "agent_tx2_int8")
    with agent(workdir, "jetson", "--power_source=ina3221", "--power_root=" + sysfs,
               "--calibration=" + calibration, env=env) as (url, token, _):
      self._refused("paper_jetson_tx2.cfg", "--device_url=" + url, "--device_token_file=" + token,
                    "--precisions=fp32,int8",
                    expected=("cannot deploy precision int8 with runtime=tensorrt",
                              "NVIDIA Tegra X2 [fake] has no fast INT8",
                              "Drop int8 from --precisions"))

  def test_search_refuses_an_agent_with_fewer_images_than_it_measures(self):
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    workdir = os.path.join(self.get_temp_dir(), "agent_few_images")
    with agent(workdir, "cpu", "--power_source=none",
               images=data.normalize(data.load("cifar10_sample").x_val[:100])) as (url, token, _):
      self._refused("paper_movidius.cfg", "--device_url=" + url, "--device_token_file=" + token,
                    "--runtime=onnxruntime", "--power_source=auto", "--objectives=error,time",
                    expected=("holds 100 images; each measurement runs --measure_images=200",
                              "python -m deploy.measure --dataset=cifar10_sample "
                              "--num_images=200 --write_data=images.npy"))

  def test_search_refuses_an_agent_holding_other_images(self):
    """The README's old Jetson recipe wrote the sample's images for a search
    of another data set: the agent's images must be the search's own."""
    from tea_keras import data  # pylint: disable=g-import-not-at-top
    workdir = os.path.join(self.get_temp_dir(), "agent_other_images")
    with agent(workdir, "cpu", "--power_source=none",
               images=data.normalize(data.load("cifar10_sample").x_train[:200])) as (url, token,
                                                                                      _):
      self._refused("paper_movidius.cfg", "--device_url=" + url, "--device_token_file=" + token,
                    "--runtime=onnxruntime", "--power_source=auto", "--objectives=error,time",
                    expected=("holds 200 images that are not this search's validation images",
                              "--write_data=images.npy"))

  def test_search_refuses_tensorrt_int8_on_an_agent_without_calibration_images(self):
    sysfs, env = self._tx2_env("tx2_sysfs_refused", board="jetson_xavier")  # fast INT8
    workdir = os.path.join(self.get_temp_dir(), "agent_tx2_no_calibration")
    with agent(workdir, "jetson", "--power_source=ina3221", "--power_root=" + sysfs,
               env=env) as (url, token, _):
      self._refused("paper_jetson_tx2.cfg", "--device_url=" + url, "--device_token_file=" + token,
                    "--precisions=fp32,int8",
                    expected=("holds no calibration images", "--write_calibration=",
                              "--calibration=calibration.npy"))

  def test_search_refuses_unreachable_agent(self):
    token = os.path.join(self.get_temp_dir(), "token")
    with open(token, "w") as f:
      f.write(TOKEN)
    self._refused("paper_jetson_tx2.cfg", "--device_url=http://127.0.0.1:9",
                  "--device_token_file=" + token, expected=("unreachable",))
