"""Tests of deploy/agent_client.py that need no agent."""

import io
import os
import socket
import zipfile

import tensorflow as tf

from deploy import agent_client


class AgentClientTest(tf.test.TestCase):

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


if __name__ == "__main__":
  tf.test.main()
