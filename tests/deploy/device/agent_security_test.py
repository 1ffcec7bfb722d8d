"""Tests of deploy/device/agent.py exposed to hostile or careless clients, on
loopback only: TLS and the listening address, zip bombs, strict settings and
path-free error bodies, bounded connections and header deadlines, work dirs
and trace folders across restarts. Every hostile client is bounded in count
and time."""

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from deploy.device import agent
from deploy import agent_client

TOKEN = "hostile-test-token"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
IMAGES = np.random.RandomState(0).rand(64, 32, 32, 3).astype(np.float32)
QUICK = dict(batch_size=16, repeats=1, warmup_batches=0, idle_s=0)


def _linear_onnx(path, image_shape=(32, 32, 3)):
  """A (N,)+image_shape -> (N,10) ONNX model, opset 13: measurable in milliseconds."""
  import onnx
  from onnx import helper, numpy_helper
  size = int(np.prod(image_shape))
  weights = numpy_helper.from_array(np.ones((size, 10), np.float32), "w")
  shape = helper.make_tensor("shape", onnx.TensorProto.INT64, [2], [-1, size])
  graph = helper.make_graph(
      [helper.make_node("Reshape", ["images", "shape"], ["flat"]),
       helper.make_node("MatMul", ["flat", "w"], ["logits"])], "linear",
      [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT,
                                     ["N"] + list(image_shape))],
      [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])],
      [weights, shape])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
  model.ir_version = 7
  onnx.save(model, path)
  return path


def _zip(members):
  """Zip bytes of (name, data) members, deflated."""
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in members:
      z.writestr(name, data)
  return buf.getvalue()


def _self_signed(directory):
  """(cert, key) PEM paths for localhost/127.0.0.1, or None with the reason."""
  cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
  openssl = shutil.which("openssl")
  if openssl is None:
    return None, "neither the cryptography package nor an openssl binary is installed"
  out = subprocess.run(
      [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
       "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
  if out.returncode:
    return None, "openssl req failed: %s" % out.stderr.decode()[-300:]
  return (cert, key), None


class _AgentCase(object):
  """One agent on loopback per test class (a mixin of TestCases)."""
  server_options = {}

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp(prefix="tea-agent-security-test-")
    cls.onnx = _linear_onnx(os.path.join(cls.dir, "linear.onnx"))
    cls.agent = agent.Agent(TOKEN, IMAGES, "cpu", "none", max_upload_bytes=4 << 20)
    cls.server = agent.serve_in_thread(cls.agent, **cls.server_options)
    cls.port = cls.server.server_address[1]
    cls.url = "http://127.0.0.1:%d" % cls.port

  @classmethod
  def tearDownClass(cls):
    cls.server.shutdown()
    cls.server.server_close()
    cls.agent.close()
    shutil.rmtree(cls.dir, ignore_errors=True)
    super().tearDownClass()

  def _post(self, body, fmt="openvino", settings=None, token=TOKEN, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
    try:
      conn.request("POST", "/v1/measure", body=body, headers={
          "Authorization": "Bearer " + token, "X-Artifact-Format": fmt,
          "X-Measure-Settings": json.dumps(settings or QUICK)})
      response = conn.getresponse()
      return response.status, json.loads(response.read().decode())
    finally:
      conn.close()


class ExposureTest(tf.test.TestCase):

  def test_parser_listens_on_loopback_by_default(self):
    args = agent.build_parser().parse_args(["--token_file=t", "--data=d"])
    self.assertEqual((args.host, args.tls_cert, args.insecure_http), ("127.0.0.1", None, False))

  def test_check_exposure_needs_tls_or_explicit_insecure_http_off_loopback(self):
    for host in ("127.0.0.1", "localhost", "::1"):
      self.assertIsNone(agent.check_exposure(host, tls=False, insecure_http=False))
    self.assertIsNone(agent.check_exposure("0.0.0.0", tls=True, insecure_http=False))
    for host in ("0.0.0.0", "", "192.168.1.20", "board.local"):
      with self.assertRaisesRegex(ValueError, "serves on the network: give --tls_cert and "
                                  "--tls_key.*ssh -N -L 8470:127.0.0.1:8470"):
        agent.check_exposure(host, tls=False, insecure_http=False)
    warning = agent.check_exposure("0.0.0.0", tls=False, insecure_http=True)
    self.assertIn("WARNING: --insecure_http: serving plain HTTP on 0.0.0.0", warning)

  def test_main_refuses_network_host_without_tls_before_loading_anything(self):
    for argv, message in ((["--host=0.0.0.0"], "serves on the network"),
                          (["--host=0.0.0.0", "--tls_cert=c.pem"], "go together")):
      err = io.StringIO()
      with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
        agent.main(argv + ["--token_file=missing", "--data=missing.npy"])
      self.assertEqual(ctx.exception.code, 2)
      self.assertIn(message, err.getvalue())


class TlsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp(prefix="tea-agent-tls-test-")
    cls.pems, cls.why = _self_signed(cls.dir)
    if cls.pems is None:
      return
    cls.onnx = _linear_onnx(os.path.join(cls.dir, "linear.onnx"))
    cls.agent = agent.Agent(TOKEN, IMAGES, "cpu", "none")
    cls.server = agent.serve_in_thread(
        cls.agent, ssl_context=agent.server_ssl_context(*cls.pems), header_timeout_s=5)
    cls.url = "https://127.0.0.1:%d" % cls.server.server_address[1]

  @classmethod
  def tearDownClass(cls):
    if cls.pems is not None:
      cls.server.shutdown()
      cls.server.server_close()
      cls.agent.close()
    shutil.rmtree(cls.dir, ignore_errors=True)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    if self.pems is None:
      self.skipTest(self.why)

  def test_tls_client_with_ca_file_measures(self):
    client = agent_client.AgentClient(self.url, TOKEN, ca_file=self.pems[0])
    self.assertEqual(client.health()["device"], "cpu")
    result = client.measure(self.onnx, **QUICK)
    self.assertGreater(result["time_s"], 0.0)

  def test_tls_client_refuses_unverified_certificate_at_once(self):
    client = agent_client.AgentClient(self.url, TOKEN, retries=3, backoff_s=5.0)
    started = time.monotonic()
    with self.assertRaisesRegex(agent_client.AgentTLSError, "TLS to the agent at https://"
                                ".*the system's CAs \\(or pass ca_file\\)"):
      client.health()
    self.assertLess(time.monotonic() - started, 4.0)  # not retried

  def test_tls_plain_http_client_gets_no_answer(self):
    plain = "http://127.0.0.1:%d" % self.server.server_address[1]
    with self.assertRaises(agent_client.DeviceUnreachableError):
      agent_client.AgentClient(plain, TOKEN, retries=0, timeout_s=10).health()

  def test_tls_https_client_to_plain_agent_says_so(self):
    srv = agent.serve_in_thread(self.agent)
    try:
      url = "https://127.0.0.1:%d" % srv.server_address[1]
      with self.assertRaisesRegex(agent_client.AgentTLSError, "started with --tls_cert"):
        agent_client.AgentClient(url, TOKEN, ca_file=self.pems[0]).health()
    finally:
      srv.shutdown()
      srv.server_close()


class ZipBombTest(_AgentCase, tf.test.TestCase, parameterized.TestCase):

  def test_unpack_openvino_refuses_declared_size_past_limit(self):
    path = os.path.join(self.get_temp_dir(), "bomb.zip")
    with open(path, "wb") as f:
      f.write(_zip([("m.xml", b"<net/>"), ("m.bin", b"\0" * (64 << 20))]))
    self.assertLess(os.path.getsize(path), 1 << 20)
    out = tempfile.mkdtemp(dir=self.get_temp_dir())
    with self.assertRaisesRegex(agent.BadRequest, "declares 67108870 bytes unpacked; the limit "
                                "is 16777216 bytes \\(--max_unpacked_mb\\)") as ctx:
      agent.unpack_openvino(path, out, 16 << 20)
    self.assertEqual(ctx.exception.status, 413)
    self.assertEqual(os.listdir(out), [])

  def test_unpack_openvino_counts_bytes_when_headers_lie(self):
    data = bytearray(_zip([("m.xml", b"<net/>"), ("m.bin", b"\0" * (8 << 20))]))
    at = data.rfind(b"PK\x01\x02")  # the .bin's central directory entry
    data[at + 24:at + 28] = struct.pack("<L", 1000)  # declares 1000 bytes unpacked
    path = os.path.join(self.get_temp_dir(), "liar.zip")
    with open(path, "wb") as f:
      f.write(bytes(data))
    out = tempfile.mkdtemp(dir=self.get_temp_dir())
    with self.assertRaises(agent.BadRequest) as ctx:
      agent.unpack_openvino(path, out, 1 << 20)
    self.assertIn(ctx.exception.status, (413, 422))
    written = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    self.assertLessEqual(written, 1 << 20)

  def test_copy_bounded_stops_past_budget(self):
    dst = io.BytesIO()
    with self.assertRaisesRegex(agent.BadRequest, "unpacks to more than the limit of 1048576"):
      agent._copy_bounded(io.BytesIO(b"\0" * (3 << 20)), dst, 1 << 20, "x")
    self.assertLessEqual(dst.tell(), 1 << 20)

  @parameterized.parameters(
      ([("a.xml", b"x"), ("a.bin", b"y"), ("b.bin", b"z")], "end record declares 3 members"),
      ([("a.xml", b"x")], "end record declares 1 members"),
      ([("a.xml", b"x"), ("b.xml", b"y")], "found \\['a.xml', 'b.xml'\\]"))
  def test_unpack_openvino_wants_one_xml_and_one_bin(self, members, message):
    path = os.path.join(self.get_temp_dir(), "members.zip")
    with open(path, "wb") as f:
      f.write(_zip(members))
    with self.assertRaisesRegex(agent.BadRequest, message) as ctx:
      agent.unpack_openvino(path, self.get_temp_dir(), 1 << 20)
    self.assertEqual(ctx.exception.status, 422)

  def test_zip_bomb_upload_refused_without_the_measurement_lock(self):
    bomb = _zip([("m.xml", b"<net/>"), ("m.bin", b"\0" * (64 << 20))])  # 16 MiB allowed
    with self.agent.lock:  # held: an unpack behind the lock would block this request
      started = time.monotonic()
      status, answer = self._post(bomb)
    self.assertEqual(status, 413)
    self.assertIn("OpenVINO upload declares 67108870 bytes unpacked", answer["error"])
    self.assertLess(time.monotonic() - started, 10.0)
    status, answer = self._post(b"PK\x05\x06 not a zip at all")
    self.assertEqual(status, 422)


class SettingsTest(_AgentCase, tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ('{"num_images": 1e400}', "num_images", "a JSON integer in 1..64", "Infinity"),
      ('{"num_images": 65}', "num_images", "a JSON integer in 1..64", "65"),
      ('{"batch_size": 1.9}', "batch_size", "a JSON integer in 1..10000", "1.9"),
      ('{"batch_size": true}', "batch_size", "a JSON integer in 1..10000", "true"),
      ('{"batch_size": "16"}', "batch_size", "a JSON integer in 1..10000", '"16"'),
      ('{"batch_size": 10001}', "batch_size", "a JSON integer in 1..10000", "10001"),
      ('{"repeats": 0}', "repeats", "a JSON integer in 1..100", "0"),
      ('{"repeats": 101}', "repeats", "a JSON integer in 1..100", "101"),
      ('{"warmup_batches": -1}', "warmup_batches", "a JSON integer in 0..1000", "-1"),
      ('{"warmup_batches": 1001}', "warmup_batches", "a JSON integer in 0..1000", "1001"),
      ('{"threshold_w": 0}', "threshold_w", "a finite number > 0", "0"),
      ('{"threshold_w": NaN}', "threshold_w", "a finite number > 0", "NaN"),
      ('{"sample_interval_s": 0.0001}', "sample_interval_s", "a finite number in \\[0.001, 10\\]",
       "0.0001"),
      ('{"sample_interval_s": 11}', "sample_interval_s", "a finite number in \\[0.001, 10\\]",
       "11"),
      ('{"idle_s": -1}', "idle_s", "a finite number in \\[0, 60\\]", "-1"),
      ('{"idle_s": 1%s}' % ("0" * 400), "idle_s", "a finite number in \\[0, 60\\]", "1000"),
      ('{"idle_s": Infinity}', "idle_s", "a finite number in \\[0, 60\\]", "Infinity"),
      ('{"precision": "int4"}', "precision", "one of \\['fp32', 'fp16', 'int8'\\]",
       '"int4"'),
      ('{"predictions": 1}', "predictions", "a JSON boolean \\(true or false\\)", "1"),
      ('{"predictions": "yes"}', "predictions", "a JSON boolean \\(true or false\\)",
       '"yes"'),
      ('{"runtime": 5}', "runtime", "a string", "5"))
  def test_parse_settings_refuses_bad_value(self, text, key, expected, received):
    with self.assertRaisesRegex(agent.BadRequest, "Invalid value for setting `%s`. Expected %s. "
                                "Received %s=%s" % (key, expected, key, received)) as ctx:
      agent.parse_settings(text, "onnx", "cpu", num_images=64)
    self.assertEqual(ctx.exception.status, 400)

  def test_parse_settings_accepts_bounds_and_integral_numbers(self):
    out = agent.parse_settings(json.dumps(dict(
        batch_size=10000, num_images=64, repeats=100, warmup_batches=0, threshold_w=0.01,
        sample_interval_s=0.001, idle_s=60, precision="int8", predictions=False)),
        "onnx", "cpu", num_images=64)
    self.assertIs(out["predictions"], False)
    self.assertEqual(out["runtime"], "onnxruntime")
    self.assertEqual((out["idle_s"], type(out["idle_s"])), (60.0, float))
    self.assertEqual((out["batch_size"], out["num_images"]), (10000, 64))

  def test_parse_settings_refuses_old_budget_names_naming_the_new(self):
    for old, new in (("max_time_s", "max_time_per_image_s"),
                     ("max_energy_j", "max_energy_per_image_j")):
      with self.assertRaises(agent.BadRequest) as ctx:
        agent.parse_settings(json.dumps({old: 0.001}), "cascade", "cpu", num_images=64)
      self.assertEqual(ctx.exception.status, 400)
      self.assertIn("Invalid setting `%s`. Expected `%s`: a cascade's budget per image (a "
                    "search's `%s` is the total for its --measure_images images). Received "
                    "%s=0.001" % (old, new, old, old), str(ctx.exception))
    out = agent.parse_settings('{"max_time_per_image_s": 0.001, "max_energy_per_image_j": 2}',
                               "cascade", "cpu", num_images=64)
    self.assertEqual(agent.cascade_options(out),
                     {"max_time_per_image_s": 0.001, "max_energy_per_image_j": 2.0})

  def test_bad_setting_refused_before_warm_up(self):
    client = agent_client.AgentClient(self.url, TOKEN, retries=0)
    for settings in (dict(idle_s=-1, warmup_batches=1000), dict(num_images=1e400),
                     dict(batch_size=True)):
      with self.agent.lock:  # held: nothing behind the lock may run
        started = time.monotonic()
        with self.assertRaisesRegex(agent_client.AgentError, "400.*Invalid value for setting"):
          client.measure(self.onnx, **settings)
      self.assertLess(time.monotonic() - started, 5.0)

  def test_error_bodies_name_the_artifact_not_agent_paths(self):
    bad = os.path.join(self.get_temp_dir(), "corrupt.onnx")
    with open(bad, "wb") as f:
      f.write(b"not an onnx protobuf" * 50)
    with self.assertRaises(agent_client.AgentError) as ctx:
      agent_client.AgentClient(self.url, TOKEN, retries=0).measure(bad, **QUICK)
    self.assertEqual(ctx.exception.status, 422)
    self.assertIn("onnxruntime cannot load 'corrupt.onnx'", ctx.exception.message)
    self.assertNotIn(self.agent.work_dir, ctx.exception.message)
    self.assertNotIn(tempfile.gettempdir() + os.sep, ctx.exception.message)

  def test_scrub_paths_replaces_directories_and_paths_below(self):
    message = "cannot load '/srv/a/tmp1/model.onnx': Load model from /srv/a/tmp1/model.onnx"
    self.assertEqual(agent.scrub_paths(message, [("/srv/a/tmp1", "net.onnx"), ("/srv", "<x>")]),
                     "cannot load 'net.onnx': Load model from net.onnx")
    self.assertEqual(agent.artifact_name("../../etc/pass wd", "onnx"), "pass_wd")
    self.assertEqual(agent.artifact_name(None, "onnx"), "the uploaded onnx artifact")


class ConnectionsTest(_AgentCase, tf.test.TestCase):
  server_options = dict(max_connections=8, header_timeout_s=4.0)  # evicts after 1 s

  def _open(self, first=b"GET /v1/health HTTP/1.0\r\n"):
    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
    sock.sendall(first)
    sock.setblocking(False)
    return sock

  @staticmethod
  def _poll(sock):
    """The bytes the server sent, and whether it closed the connection."""
    got = b""
    try:
      while True:
        chunk = sock.recv(4096)
        if not chunk:
          return got, True
        got += chunk
    except BlockingIOError:
      return got, False
    except OSError:
      return got, True

  def test_server_slowloris_cannot_raise_threads_above_bound(self):
    done, counts, health = threading.Event(), [], {}

    def sample():
      while not done.is_set():
        counts.append(threading.active_count())
        time.sleep(0.01)

    def legit():
      started = time.monotonic()
      client = agent_client.AgentClient(self.url, TOKEN, retries=6, backoff_s=0.25)
      health.update(answer=client.health(), seconds=time.monotonic() - started)

    sampler, legit_client = threading.Thread(target=sample), threading.Thread(target=legit)
    sampler.start()
    time.sleep(0.1)
    baseline = threading.active_count() + 1  # + the legit client's thread
    socks = [(self._open(), time.monotonic()) for _ in range(40)]
    legit_client.start()
    closed_after, answers = {}, []
    try:
      while len(closed_after) < len(socks) and time.monotonic() - socks[0][1] < 8.0:
        for i, (sock, opened) in enumerate(socks):  # one header byte per 0.5 s each
          if i in closed_after:
            continue
          got, closed = self._poll(sock)
          answers.append(got)
          try:
            sock.send(b"X")
          except OSError:
            closed = True
          if closed:
            closed_after[i] = time.monotonic() - opened
        time.sleep(0.5)
    finally:
      legit_client.join(30)
      done.set()
      sampler.join()
      for sock, _ in socks:
        sock.close()
    self.assertLessEqual(max(counts), baseline + 8)
    self.assertLen(closed_after, 40)
    self.assertLess(max(closed_after.values()), 4.0 + 2.0)  # the deadline, not byte pacing
    self.assertGreaterEqual(self.server.refused, 32)
    self.assertGreaterEqual(sum(a.startswith(b"HTTP/1.0 503") for a in answers), 1)
    self.assertTrue(health["answer"]["ok"])
    self.assertGreaterEqual(self.server.evicted, 1)  # it took a slow client's place
    self.assertLess(health["seconds"], 3.5)  # before the slow clients' deadline

  def test_server_header_deadline_is_not_extended_by_trickling(self):
    sock = self._open(b"G")
    opened, closed = time.monotonic(), False
    try:
      while not closed and time.monotonic() - opened < 8.0:
        time.sleep(0.2)
        got, closed = self._poll(sock)
        if not closed:
          try:
            sock.send(b"E")
          except OSError:
            closed = True
    finally:
      sock.close()
    self.assertTrue(closed)
    self.assertBetween(time.monotonic() - opened, 3.5, 6.0)


class RefusedUploadTest(_AgentCase, tf.test.TestCase):

  def test_client_reads_refusal_of_large_upload_sent_before_body(self):
    big = os.path.join(self.get_temp_dir(), "big.onnx")
    with open(big, "wb") as f:
      f.write(b"\0" * (4 << 20))  # at the limit; far past the socket buffers
    client = agent_client.AgentClient(self.url, TOKEN, retries=2, backoff_s=0.1)
    for settings, message in ((dict(learning_rate=0.1), "400.*Unknown settings"),
                              (dict(runtime="tensorrt"), "400.*runtime=tensorrt")):
      with self.assertRaisesRegex(agent_client.AgentError, message):
        client.measure(big, **settings)

  def test_refusals_of_raw_uploads_are_answered(self):
    body = b"\0" * (4 << 20)
    for fmt, settings, token, status in (("tflite", None, TOKEN, 415),
                                         ("onnx", {"x": 1}, TOKEN, 400),
                                         ("onnx", None, "wrong", 401)):
      self.assertEqual(self._post(body, fmt, settings, token)[0], status)
    self.assertEqual(self.agent.count, 0)


def _toy_cascade(directory, stage_shapes=((32, 32, 3), (32, 32, 3))):
  """(spec, {stage file: bytes}) of a cascade of linear ONNX stages."""
  stages, files = [], {}
  for k, shape in enumerate(stage_shapes):
    name = "stages/stage%d.onnx" % (k + 1)
    path = _linear_onnx(os.path.join(directory, "stage%d.onnx" % (k + 1)), shape)
    with open(path, "rb") as f:
      files[name] = f.read()
    stages.append({"file": name})
  points = [{"thresholds": [t], "error": e, "time_s_per_image": c, "energy_j_per_image": None}
            for t, e, c in ((0.0, 0.5, 1e-4), (1.0, 0.3, 4e-4))]
  return {"format": "tea-keras-cascade", "version": 1, "confidence": "max_softmax",
          "stages": stages, "points": points}, files


class ClientFaultTest(_AgentCase, tf.test.TestCase, parameterized.TestCase):
  """Faults of the client's upload answered 4xx before the measurement lock,
  the message naming the field and what was expected (issue 28)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.spec, cls.stages = _toy_cascade(cls.dir)

  def _refused_before_lock(self, body, fmt, settings=None):
    """(status, error) of an upload posted while a measurement holds the lock."""
    before = self.agent.count
    with self.agent.lock:  # a request that reached the lock would wait: the post times out
      status, answer = self._post(body, fmt, settings or QUICK, timeout=15)
    self.assertEqual(self.agent.count, before)  # nothing was measured
    return status, answer["error"]

  def _cascade(self, spec, stages=None):
    return _zip([("cascade.json", json.dumps(spec))] + sorted((stages or self.stages).items()))

  def _point(self, **changes):
    points = [dict(p) for p in self.spec["points"]]
    points[0].update(changes)
    return dict(self.spec, points=points)

  @parameterized.named_parameters(
      ("points_number", dict(points=7), "invalid `points`. Expected a non-empty list of "
       "\\{\"thresholds\": \\[...\\], \"error\": ...\\}. Received points=7"),
      ("points_object", dict(points={"thresholds": [0.5]}), "invalid `points`. Expected a "
       "non-empty list.*Received points=\\{\"thresholds\": \\[0.5\\]\\}"),
      ("confidence", dict(confidence="entropy"), "invalid `confidence`. Expected one of "
       "max_softmax\\|margin. Received confidence=\"entropy\""))
  def test_cascade_spec_fault_is_422_before_the_lock(self, changes, message):
    status, error = self._refused_before_lock(self._cascade(dict(self.spec, **changes)),
                                              "cascade")
    self.assertEqual(status, 422)
    self.assertRegex(error, "Cascade upload: .*" + message)

  def test_cascade_point_without_error_is_422_before_the_lock(self):
    spec = self._point()
    del spec["points"][0]["error"]
    status, error = self._refused_before_lock(self._cascade(spec), "cascade")
    self.assertEqual(status, 422)
    self.assertIn("invalid `points[0].error`. Expected a number in [0, 1] (the point's "
                  "error). Received error=null", error)

  def test_cascade_string_error_is_422_before_the_lock(self):
    settings = dict(QUICK, max_error=0.4)
    status, error = self._refused_before_lock(self._cascade(self._point(error="0.1")),
                                              "cascade", settings)
    self.assertEqual(status, 422)
    self.assertIn("invalid `points[0].error`. Expected a number in [0, 1] (the point's "
                  "error). Received error=\"0.1\"", error)

  def test_cascade_string_cost_is_422_before_the_lock(self):
    status, error = self._refused_before_lock(
        self._cascade(self._point(time_s_per_image="fast")), "cascade")
    self.assertEqual(status, 422)
    self.assertIn("invalid `points[0].time_s_per_image`. Expected a finite number >= 0, or "
                  "null (not measured). Received time_s_per_image=\"fast\"", error)

  def test_onnx_for_other_images_is_422_before_the_lock(self):
    path = _linear_onnx(os.path.join(self.get_temp_dir(), "mnist.onnx"), (28, 28, 1))
    with open(path, "rb") as f:
      status, error = self._refused_before_lock(f.read(), "onnx")
    self.assertEqual(status, 422)
    self.assertIn("Invalid input shape of 'the uploaded onnx artifact'. Expected (N, 32, 32, "
                  "3), the agent's images (N, H, W, C): export the model for 32x32x3 inputs. "
                  "Received input `images` of shape (N, 28, 28, 1)", error)

  def test_openvino_ir_for_other_images_is_422_before_the_lock(self):
    import openvino as ov
    onnx_path = _linear_onnx(os.path.join(self.get_temp_dir(), "mnist.onnx"), (28, 28, 1))
    xml = os.path.join(self.get_temp_dir(), "mnist.xml")
    ov.save_model(ov.convert_model(onnx_path), xml)
    with open(xml, "rb") as f, open(xml[:-4] + ".bin", "rb") as g:
      body = _zip([("model.xml", f.read()), ("model.bin", g.read())])
    status, error = self._refused_before_lock(body, "openvino")
    self.assertEqual(status, 422)
    self.assertIn("Invalid input shape of 'the uploaded openvino artifact'. Expected (N, 32, "
                  "32, 3)", error)
    self.assertIn("Received input `images` of shape (N, 28, 28, 1)", error)

  def test_cascade_stage_for_other_images_is_422_before_the_lock(self):
    spec, stages = _toy_cascade(tempfile.mkdtemp(dir=self.get_temp_dir()),
                                ((32, 32, 3), (28, 28, 1)))
    status, error = self._refused_before_lock(self._cascade(spec, stages), "cascade")
    self.assertEqual(status, 422)
    self.assertIn("Invalid input shape of cascade stage 2 (stages/stage2.onnx). Expected "
                  "(N, 32, 32, 3)", error)

  def test_cascade_stage_that_fails_to_load_is_named(self):
    stages = dict(self.stages, **{"stages/stage2.onnx": b"not an onnx protobuf" * 50})
    status, answer = self._post(self._cascade(self.spec, stages), "cascade")
    self.assertEqual(status, 422)
    self.assertIn("cascade stage 2 (stages/stage2.onnx): onnxruntime cannot load "
                  "'stages/stage2.onnx'", answer["error"])


class WorkDirTest(tf.test.TestCase):

  def test_agent_work_dir_names_owner_and_close_removes_it(self):
    the_agent = agent.Agent(TOKEN, IMAGES, "cpu", "none")
    with open(os.path.join(the_agent.work_dir, agent.OWNER_FILE)) as f:
      self.assertEqual(int(f.read().split()[0]), os.getpid())
    the_agent.close()
    self.assertFalse(os.path.exists(the_agent.work_dir))
    given = tempfile.mkdtemp(dir=self.get_temp_dir())
    agent.Agent(TOKEN, IMAGES, "cpu", "none", work_dir=given).close()
    self.assertTrue(os.path.isdir(given))

  def test_clean_stale_work_dirs_removes_only_dead_owners(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    alive = agent.make_work_dir(root)
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    dirs = {}
    for name, owner, age_s in (("dead", "%d x" % dead_pid.pid, 0),
                               ("reused", "%d 1" % os.getpid(), 0),  # our PID, not our start
                               ("legacy_old", None, 7200), ("legacy_new", None, 0)):
      dirs[name] = os.path.join(root, agent.WORK_PREFIX + name)
      os.mkdir(dirs[name])
      if owner:
        with open(os.path.join(dirs[name], agent.OWNER_FILE), "w") as f:
          f.write(owner)
      os.utime(dirs[name], (time.time() - age_s,) * 2)
    os.mkdir(os.path.join(root, "other-dir"))
    removed = agent.clean_stale_work_dirs(root)
    self.assertCountEqual(removed, [dirs["dead"], dirs["reused"], dirs["legacy_old"]])
    self.assertCountEqual(os.listdir(root), [os.path.basename(alive), "other-dir",
                                             agent.WORK_PREFIX + "legacy_new"])

  def test_trace_dirs_continue_numbering_and_keep_newest(self):
    root = os.path.join(self.get_temp_dir(), "traces")
    os.makedirs(os.path.join(root, "measurement_0007"))
    open(os.path.join(root, "measurement_0008"), "w").close()  # a file: skipped
    self.assertEqual(os.path.basename(agent.new_trace_dir(root)), "measurement_0009")
    self.assertEqual(os.path.basename(agent.new_trace_dir(root)), "measurement_0010")
    removed = agent.prune_traces(root, 2)
    self.assertEqual([os.path.basename(p) for p in removed], ["measurement_0007"])
    self.assertCountEqual(os.listdir(root), ["measurement_0008", "measurement_0009",
                                             "measurement_0010"])

  def test_agent_traces_never_mix_with_earlier_runs(self):
    root = os.path.join(self.get_temp_dir(), "agent_traces")
    os.makedirs(os.path.join(root, "measurement_0003"))
    onnx = _linear_onnx(os.path.join(self.get_temp_dir(), "linear.onnx"))
    for _ in range(2):  # two agent lifetimes sharing one trace root
      the_agent = agent.Agent(TOKEN, IMAGES, "cpu", "none", trace_root=root, max_traces=2)
      srv = agent.serve_in_thread(the_agent)
      try:
        url = "http://127.0.0.1:%d" % srv.server_address[1]
        result = agent_client.AgentClient(url, TOKEN).measure(onnx, **QUICK)
      finally:
        srv.shutdown()
        srv.server_close()
        the_agent.close()
    self.assertEqual(sorted(os.listdir(root)), ["measurement_0004", "measurement_0005"])
    self.assertEqual(os.path.dirname(result["trace"]), os.path.join(root, "measurement_0005"))

  def test_agent_process_removes_its_work_dir_on_sigterm_and_dead_ones_at_start(self):
    d = tempfile.mkdtemp(dir=self.get_temp_dir())
    tmp = os.path.join(d, "tmp")
    os.mkdir(tmp)
    token, data = os.path.join(d, "token"), os.path.join(d, "images.npy")
    with open(token, "w") as f:
      f.write(TOKEN)
    np.save(data, IMAGES[:4])
    env = dict(os.environ, TMPDIR=tmp, PYTHONPATH=REPO)

    def start():
      proc = subprocess.Popen(
          [sys.executable, "-m", "deploy.device.agent", "--port=0", "--token_file=" + token,
           "--data=" + data, "--power_source=none"], cwd=REPO, env=env,
          stderr=subprocess.PIPE, universal_newlines=True)
      lines = []
      for line in proc.stderr:
        lines.append(line)
        if line.startswith("agent: cpu on http://127.0.0.1:"):
          return proc, lines
      proc.wait(30)
      self.fail("agent did not start: %s" % "".join(lines)[-2000:])

    first, _ = start()
    killed = [n for n in os.listdir(tmp) if n.startswith(agent.WORK_PREFIX)]
    self.assertLen(killed, 1)
    first.kill()
    first.wait(30)
    self.assertTrue(os.path.isdir(os.path.join(tmp, killed[0])))  # SIGKILL leaves it
    second, lines = start()
    self.assertIn("agent: removed %s (its agent is gone)\n" % os.path.join(tmp, killed[0]),
                  lines)
    self.assertLen([n for n in os.listdir(tmp) if n.startswith(agent.WORK_PREFIX)], 1)
    second.send_signal(signal.SIGTERM)
    self.assertEqual(second.wait(30), 128 + signal.SIGTERM)
    second.stderr.close()
    first.stderr.close()
    self.assertEqual([n for n in os.listdir(tmp) if n.startswith(agent.WORK_PREFIX)], [])


if __name__ == "__main__":
  tf.test.main()
