"""Tests of deploy/agent_client.py that need no agent."""

import io
import json
import os
import socket
import threading
import zipfile

import tensorflow as tf

from deploy import agent_client


def _answering_server(status, error, connections):
  """A server on 127.0.0.1 that answers each of ``connections`` right after
  the request headers and closes without reading the body (as an agent that
  refuses early); returns (url, thread)."""
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(connections)
  listener.settimeout(30)
  body = json.dumps({"error": error}).encode()
  answer = (b"HTTP/1.0 %d Refused\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (status, len(body)) + body)

  def serve():
    try:
      for _ in range(connections):
        conn, _ = listener.accept()
        with conn:
          conn.settimeout(30)
          data = b""
          while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
          conn.sendall(answer)
    finally:
      listener.close()

  thread = threading.Thread(target=serve, daemon=True)
  thread.start()
  return "http://127.0.0.1:%d" % listener.getsockname()[1], thread


class AgentClientTest(tf.test.TestCase):

  def test_request_reads_answer_sent_before_upload_finished(self):
    url, thread = _answering_server(400, "Unknown settings ['x']", 1)
    client = agent_client.AgentClient(url, "t", retries=0)
    with self.assertRaises(agent_client.AgentError) as ctx:
      client.request("POST", "/v1/measure", b"\0" * (32 << 20))  # far past socket buffers
    self.assertEqual((ctx.exception.status, ctx.exception.message), (400, "Unknown settings ['x']"))
    thread.join(30)

  def test_request_retries_503_then_raises_agent_busy_error(self):
    url, thread = _answering_server(503, "busy", 2)
    client = agent_client.AgentClient(url, "t", retries=1, backoff_s=0.01)
    with self.assertRaisesRegex(agent_client.AgentError,
                                "503: busy \\(after 2 attempts\\)") as ctx:
      client.health()
    self.assertIsInstance(ctx.exception, agent_client.AgentBusyError)
    self.assertIsInstance(ctx.exception, ConnectionError)  # a search retries the trial
    thread.join(30)

  def test_unreachable_device_raises_connection_error(self):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                     # nothing listens there now
    client = agent_client.AgentClient("http://127.0.0.1:%d" % port, "t", timeout_s=2,
                                      retries=2, backoff_s=0.01)
    with self.assertRaises(agent_client.DeviceUnreachableError) as ctx:
      client.health()
    self.assertIsInstance(ctx.exception, ConnectionError)
    self.assertIn("after 3 attempts", str(ctx.exception))
    self.assertIn("ConnectionRefusedError", str(ctx.exception))

  def test_artifact_bytes_zips_openvino_ir(self):
    d = self.get_temp_dir()
    for name, data in (("m.xml", b"<net/>"), ("m.bin", b"\x01\x02")):
      with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    fmt, body = agent_client.artifact_bytes(os.path.join(d, "m.xml"))
    self.assertEqual(fmt, "openvino")
    with zipfile.ZipFile(io.BytesIO(body)) as z:
      self.assertEqual(sorted(z.namelist()), ["model.bin", "model.xml"])
      self.assertEqual(z.read("model.bin"), b"\x01\x02")

  def test_artifact_bytes_errors(self):
    with self.assertRaisesRegex(ValueError, "Cannot tell the artifact format"):
      agent_client.artifact_bytes("model.tflite")
    with self.assertRaisesRegex(ValueError, "does not exist"):
      agent_client.artifact_bytes(os.path.join(self.get_temp_dir(), "none.onnx"))

  def test_constructor_validates_url_and_token(self):
    with self.assertRaisesRegex(ValueError, "http://HOST:PORT"):
      agent_client.AgentClient("tx2:8470", "t")
    with self.assertRaisesRegex(ValueError, "token"):
      agent_client.AgentClient("http://tx2:8470", "")
    with self.assertRaisesRegex(ValueError, "`ca_file`. Expected it only with an https:// url"):
      agent_client.AgentClient("http://tx2:8470", "t", ca_file="ca.pem")
    with self.assertRaisesRegex(ValueError, "`ca_file`. Expected a PEM file"):
      agent_client.AgentClient("https://tx2:8470", "t", ca_file="/nonexistent/ca.pem")
    client = agent_client.AgentClient("https://tx2:8470", "t")
    self.assertTrue(client.ssl_context.check_hostname)


if __name__ == "__main__":
  tf.test.main()
