"""Tests of deploy/device/agent.py on loopback with the real client and a real
ONNX Runtime measurement: auth, size limit, formats, corrupt models,
serialization of concurrent requests."""

import hashlib
import http.client
import json
import os
import shutil
import socket
import tempfile
import threading

import numpy as np
import tensorflow as tf

from deploy.device import agent
from deploy import agent_client
from tests import fakes
from tests.deploy import tiny_model
from tests.deploy.device.power import sysfs_fakes
from tests.deploy.device.tensorrt_build_test import quantize_input

TOKEN = "s3cret-token"
SETTINGS = dict(batch_size=16, repeats=1, warmup_batches=0)


class AgentTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()
    cls.agent = agent.Agent(TOKEN, cls.tiny["images"], "cpu", "none",
                            max_upload_bytes=4 << 20)
    cls.server = agent.serve_in_thread(cls.agent)
    cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]

  @classmethod
  def tearDownClass(cls):
    cls.server.shutdown()
    cls.server.server_close()
    super().tearDownClass()

  def _raw(self, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    status, payload = response.status, json.loads(response.read().decode())
    conn.close()
    return status, payload

  def test_requests_without_or_with_wrong_token_get_401_and_run_nothing(self):
    before = self.agent.count
    with open(self.tiny["onnx"], "rb") as f:
      body = f.read()
    headers = {"X-Artifact-Format": "onnx", "Content-Length": str(len(body))}
    self.assertEqual(self._raw("POST", "/v1/measure", body, headers)[0], 401)
    headers["Authorization"] = "Bearer wrong"
    self.assertEqual(self._raw("POST", "/v1/measure", body, headers)[0], 401)
    self.assertEqual(self._raw("GET", "/v1/health")[0], 401)
    with self.assertRaises(agent_client.AgentError) as ctx:
      agent_client.AgentClient(self.url, "wrong", retries=0).measure(self.tiny["onnx"])
    self.assertEqual(ctx.exception.status, 401)
    self.assertEqual(self.agent.count, before)

  def test_measure_with_token_returns_result(self):
    client = agent_client.AgentClient(self.url, TOKEN)
    self.assertEqual(client.health()["device"], "cpu")
    result = client.measure(self.tiny["onnx"], **SETTINGS)
    self.assertGreater(result["time_s"], 0.0)
    self.assertIsNone(result["energy_j"])
    self.assertEqual((result["images"], result["runtime"], result["power_source"]),
                     (64, "onnxruntime", "none"))

  def test_openvino_ir_travels_zipped(self):
    from deploy import export
    xml = os.path.join(self.get_temp_dir(), "ir", "model.xml")
    export.export_model(self.tiny["model"], "openvino", xml,
                        check_images=self.tiny["images"][:4])
    result = agent_client.AgentClient(self.url, TOKEN).measure(xml, **SETTINGS)
    self.assertEqual(result["runtime"], "openvino")
    self.assertGreater(result["time_s"], 0.0)

  def test_oversize_upload_refused_before_reading(self):
    before = self.agent.count
    headers = {"Authorization": "Bearer " + TOKEN, "X-Artifact-Format": "onnx",
               "Content-Length": str(5 << 20)}
    status, payload = self._raw("POST", "/v1/measure", None, headers)
    self.assertEqual(status, 413)
    self.assertIn("exceeds the limit", payload["error"])
    big = os.path.join(self.get_temp_dir(), "big.onnx")
    with open(big, "wb") as f:
      f.write(b"\0" * (5 << 20))
    with self.assertRaisesRegex(agent_client.AgentError, "413.*at most"):
      agent_client.AgentClient(self.url, TOKEN).measure(big)
    self.assertEqual(self.agent.count, before)

  def test_unknown_format_and_bad_settings_refused(self):
    client = agent_client.AgentClient(self.url, TOKEN, retries=0)
    with self.assertRaises(agent_client.AgentError) as ctx:
      client.measure(self.tiny["onnx"], fmt="tflite")
    self.assertEqual(ctx.exception.status, 415)
    with self.assertRaisesRegex(agent_client.AgentError, "400.*Unknown settings"):
      client.measure(self.tiny["onnx"], learning_rate=0.1)
    with self.assertRaisesRegex(agent_client.AgentError, "400.*runtime=tensorrt"):
      client.measure(self.tiny["onnx"], runtime="tensorrt")
    with self.assertRaisesRegex(agent_client.AgentError, "400.*Invalid value for setting "
                                "`num_images`. Expected a JSON integer in 1..64. Received "
                                "num_images=100"):
      client.measure(self.tiny["onnx"], num_images=100)

  def test_corrupt_model_gives_clear_error(self):
    bad = os.path.join(self.get_temp_dir(), "corrupt.onnx")
    with open(bad, "wb") as f:
      f.write(b"this is not an onnx protobuf" * 100)
    with self.assertRaises(agent_client.AgentError) as ctx:
      agent_client.AgentClient(self.url, TOKEN).measure(bad, **SETTINGS)
    self.assertEqual(ctx.exception.status, 422)
    self.assertIn("onnxruntime cannot load", ctx.exception.message)

  def test_concurrent_requests_are_serialized(self):
    client = agent_client.AgentClient(self.url, TOKEN)
    results, errors = [], []

    def run():
      try:
        results.append(client.measure(self.tiny["onnx"], batch_size=16, repeats=2,
                                      warmup_batches=2))
      except Exception as e:  # reported below
        errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    self.assertEqual(errors, [])
    windows = sorted((r["started_at"], r["finished_at"]) for r in results)
    for (_, end), (start, _) in zip(windows, windows[1:]):
      self.assertLessEqual(end, start)
    self.assertGreater(max(r["queued_s"] for r in results), 0.0)


  def test_predictions_return_the_models_top1(self):
    result = agent_client.AgentClient(self.url, TOKEN).measure(
        self.tiny["onnx"], predictions=True, num_images=40, **SETTINGS)
    keras = self.tiny["model"](self.tiny["images"][:40], training=False).numpy()
    self.assertEqual(result["top1"], [int(k) for k in keras.argmax(-1)])
    self.assertNotIn("top1", agent_client.AgentClient(self.url, TOKEN).measure(
        self.tiny["onnx"], **SETTINGS))
    with self.assertRaisesRegex(agent_client.AgentError, "400.*`predictions`. Expected a "
                                "JSON boolean"):
      agent_client.AgentClient(self.url, TOKEN, retries=0).measure(self.tiny["onnx"],
                                                                   predictions=1)


  def test_measure_with_trace_dir_brings_the_traces_back(self):
    trace_dir = os.path.join(self.get_temp_dir(), "trial", "measure")
    result = agent_client.AgentClient(self.url, TOKEN).measure(
        self.tiny["onnx"], trace_dir=trace_dir, **SETTINGS)
    self.assertNotIn("trace_files", result)
    self.assertEqual(result["trace"], os.path.join(trace_dir, "trace_repeat0.csv"))
    self.assertEqual(result["traces"], [result["trace"]])
    with open(result["trace"]) as f:
      self.assertTrue(f.readline().startswith("t_s,"))
    with open(os.path.join(trace_dir, "result.json")) as f:
      self.assertEqual(json.load(f)["time_s"], result["time_s"])
    self.assertEqual(result["host"], socket.gethostname())
    # The agent has no --trace_root: it kept nothing of them.
    self.assertEqual(sorted(os.listdir(self.agent.work_dir)), [agent.OWNER_FILE])
    # Without trace_dir the answer carries no files, as before.
    self.assertNotIn("trace_files", agent_client.AgentClient(self.url, TOKEN).measure(
        self.tiny["onnx"], **SETTINGS))

  def test_client_keeps_trace_files_only_under_their_folder(self):
    trace_dir = os.path.join(self.get_temp_dir(), "evil")
    for name in ("../escape.csv", "/etc/x.csv", "a/b.csv", ".hidden", ""):
      with self.assertRaisesRegex(ValueError, "Expected a plain file name"):
        agent_client.save_traces({"trace_files": {name: "eA=="}}, trace_dir)
    self.assertFalse(os.path.exists(os.path.join(self.get_temp_dir(), "escape.csv")))


class RequestIdTest(tf.test.TestCase):
  """A retried measurement is measured once (X-Request-Id, deploy.device.agent_requests)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def _serve(self):
    a = agent.Agent(TOKEN, self.tiny["images"], "cpu", "none")
    srv = agent.serve_in_thread(a)
    self.addCleanup(a.close)
    self.addCleanup(srv.server_close)
    self.addCleanup(srv.shutdown)
    return a, srv.server_address[1]

  def test_client_retry_after_timeout_gets_the_one_measurement(self):
    a, port = self._serve()
    # each attempt waits 1.5 s for an answer; the measurement idles 2 x 1.5 s
    client = agent_client.AgentClient("http://127.0.0.1:%d" % port, TOKEN, timeout_s=1.5,
                                      retries=2, backoff_s=1.0)
    result = client.measure(self.tiny["onnx"], idle_s=1.5, contention_policy="warn",
                            **SETTINGS)
    self.assertGreaterEqual(result["idle_padding_s"], 1.5)
    self.assertIs(result["replayed"], True)
    with a.lock:  # any measurement queued behind the first has run by now
      self.assertEqual(a.count, 1)

  def _post(self, port, body, settings, request_id):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
      conn.request("POST", "/v1/measure", body=body, headers={
          "Authorization": "Bearer " + TOKEN, "X-Artifact-Format": "onnx",
          "X-Measure-Settings": json.dumps(settings), "X-Request-Id": request_id})
      response = conn.getresponse()
      return response.status, json.loads(response.read().decode())
    finally:
      conn.close()

  def test_same_request_id_replays_and_other_upload_with_it_is_409(self):
    a, port = self._serve()
    with open(self.tiny["onnx"], "rb") as f:
      body = f.read()
    status, first = self._post(port, body, SETTINGS, "retry-id-0001")
    self.assertEqual((status, a.count), (200, 1))
    self.assertNotIn("replayed", first)
    status, again = self._post(port, body, SETTINGS, "retry-id-0001")
    self.assertEqual((status, again.pop("replayed"), a.count), (200, True, 1))
    self.assertEqual(again, first)
    status, answer = self._post(port, body, dict(SETTINGS, batch_size=8), "retry-id-0001")
    self.assertEqual(status, 409)
    self.assertIn("X-Request-Id retry-id-0001 was sent with another upload or other "
                  "settings", answer["error"])
    status, answer = self._post(port, body, SETTINGS, "short")
    self.assertEqual(status, 400)
    self.assertIn("Invalid value for header `X-Request-Id`. Expected 8 to 128 characters",
                  answer["error"])
    self.assertEqual(a.count, 1)

  def test_request_log_keeps_the_last_answers_for_a_while(self):
    from deploy.device import agent_requests
    now = [0.0]
    log = agent_requests.RequestLog(keep=64, keep_s=300.0, clock=lambda: now[0])
    for k in range(65):
      entry, first = log.begin("request-%04d" % k, k)
      self.assertTrue(first)
      log.finish(entry, result={"k": k})
    self.assertLen(log, 64)  # the oldest was forgotten
    self.assertTrue(log.begin("request-0000", 0)[1])
    entry, first = log.begin("request-0064", 64)
    self.assertEqual((first, log.wait(entry)), (False, {"k": 64, "replayed": True}))
    now[0] = 301.0
    self.assertTrue(log.begin("request-0064", 64)[1])  # expired: measured again
    self.assertLen(log, 2)  # request-0000 and request-0064, both in flight


class PowerStateTest(tf.test.TestCase):
  """One power-source truth: what health reports is what the next measurement uses."""

  def test_meter_appearing_after_start_is_reported_and_used(self):
    tiny = tiny_model.artifacts()
    root = os.path.join(self.get_temp_dir(), "sysroot")  # RAPL's powercap tree goes here
    a = agent.Agent(TOKEN, tiny["images"], "cpu", "auto", power_options={"root": root})
    srv = agent.serve_in_thread(a)
    self.addCleanup(a.close)
    self.addCleanup(srv.server_close)
    self.addCleanup(srv.shutdown)
    client = agent_client.AgentClient("http://127.0.0.1:%d" % srv.server_address[1], TOKEN)
    settings = dict(SETTINGS, idle_s=0.2, contention_policy="warn")
    health = client.health()
    self.assertEqual((health["power_source"], health["capabilities"]["power"]["name"]),
                     ("none", "none"))  # auto on cpu: rapl does not read, so none
    zone = os.path.join(root, "sys/class/powercap/intel-rapl:0")
    os.makedirs(zone)
    for name, text in (("name", "package-0"), ("max_energy_range_uj", "1000000000000")):
      sysfs_fakes.write_atomic(os.path.join(zone, name), text + "\n")
    counter = os.path.join(zone, "energy_uj")
    with sysfs_fakes.Writer(lambda t: sysfs_fakes.write_atomic(counter, "%d\n" % (5e6 * t))):
      health = client.health()
      power = health["capabilities"]["power"]
      self.assertEqual((health["power_source"], power["name"], power["readable"]),
                       ("rapl", "rapl", True))
      result = client.measure(tiny["onnx"], **settings)
    self.assertEqual(result["power_source"], "rapl")
    self.assertEqual(result["power_info"]["zones"], [zone])
    shutil.rmtree(os.path.join(root, "sys"))  # the meter is gone again
    self.assertEqual(client.health()["power_source"], "none")
    self.assertEqual(client.measure(tiny["onnx"], **settings)["power_source"], "none")


class TensorRtAgentTest(tf.test.TestCase):
  """An agent on a (fake) GPU with TensorRT 10.3: int8 needs --calibration."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tiny = tiny_model.artifacts()

  def _serve(self, calibration_images):
    trt = self.enter_context(fakes.fake_gpu("10.3.0"))
    a = agent.Agent(TOKEN, self.tiny["images"], "gpu", "none",
                    engine_cache_dir=tempfile.mkdtemp(dir=self.get_temp_dir()),
                    calibration_images=calibration_images)
    srv = agent.serve_in_thread(a)
    self.addCleanup(srv.server_close)
    self.addCleanup(srv.shutdown)
    url = "http://127.0.0.1:%d" % srv.server_address[1]
    return trt, a, agent_client.AgentClient(url, TOKEN, retries=0)

  def test_agent_measures_int8_with_its_calibration_images(self):
    calib = self.tiny["images"][:50]
    trt, a, client = self._serve(calib)
    health = client.health()
    self.assertEqual((health["images"], health["calibration_images"]), (64, 50))
    expected = hashlib.sha256(np.ascontiguousarray(self.tiny["images"],
                                                   np.float32).tobytes()).hexdigest()
    self.assertEqual(health["data_sha256"], expected)
    result = client.measure(self.tiny["onnx"], runtime="tensorrt", precision="int8",
                            predictions=True, **SETTINGS)
    self.assertEqual((trt.BUILDS, trt.CALIBRATION_BATCHES), (1, 1))
    info = result["runtime_info"]
    self.assertEqual((info["precision"], info["calibration_images"]), ("int8", 50))
    self.assertGreater(info["engine_bytes"], 0)
    quantized = quantize_input(self.tiny["images"], float(np.max(np.abs(calib))))
    keras = self.tiny["model"](quantized, training=False).numpy()
    self.assertEqual(result["top1"], [int(k) for k in keras.argmax(-1)])
    self.assertEqual(a.count, 1)

  def test_agent_command_line_loads_calibration_images(self):
    root = self.get_temp_dir()
    paths = dict((name, os.path.join(root, name)) for name in ("token", "d.npy", "c.npz"))
    with open(paths["token"], "w") as f:
      f.write(TOKEN)
    np.save(paths["d.npy"], self.tiny["images"])
    np.savez(paths["c.npz"], images=self.tiny["images"][:20])
    args = agent.build_parser().parse_args(
        ["--token_file=" + paths["token"], "--data=" + paths["d.npy"], "--power_source=none",
         "--calibration=" + paths["c.npz"]])
    self.assertFalse(hasattr(args, "precision"))         # a per-request setting
    a = agent._agent_from_args(args)
    self.addCleanup(a.close)
    self.assertEqual(a.health()["calibration_images"], 20)

  def test_int8_without_calibration_is_422_before_the_lock(self):
    trt, a, client = self._serve(None)
    self.assertEqual(client.health()["calibration_images"], 0)
    with a.lock:        # a measurement "runs": the refusal must not wait for it
      with self.assertRaises(agent_client.AgentError) as ctx:
        client.measure(self.tiny["onnx"], runtime="tensorrt", precision="int8", **SETTINGS)
    self.assertEqual(ctx.exception.status, 422)
    self.assertIn("--calibration=FILE.npy", ctx.exception.message)
    self.assertEqual((a.count, trt.BUILDS), (0, 0))


if __name__ == "__main__":
  tf.test.main()
