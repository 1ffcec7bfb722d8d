"""Client of the remote measurement agent (``deploy.agent``).

    client = AgentClient("http://tx2.local:8470", token)
    result = client.measure("model.onnx", runtime="tensorrt", batch_size=100)

Connection failures (refused, reset, timed out) and 503 answers are retried
``retries`` times with exponential backoff; after that ``DeviceUnreachableError``
(a ``ConnectionError``) says which device could not be reached and why.
HTTP errors the agent answers on purpose (401 token, 413 size, 415 format,
400 settings, 422 model) raise ``AgentError`` at once with the agent's
message. Note that a retry after a timeout that hit *during* a measurement
submits it again (the agent queues it behind the first): give ``timeout_s``
room for the slowest measurement. Standard library only (Python 3.6+).
"""

import http.client
import io
import json
import os
import socket
import time
import zipfile
from urllib import parse

from deploy import devices

_RETRYABLE = (ConnectionError, socket.timeout, http.client.RemoteDisconnected,
              http.client.IncompleteRead, OSError)


class DeviceUnreachableError(ConnectionError):
  """The agent could not be reached after all retries."""


class AgentError(RuntimeError):
  """The agent answered with an error status; ``status`` holds it."""

  def __init__(self, status, message):
    super(AgentError, self).__init__("agent answered %d: %s" % (status, message))
    self.status, self.message = status, message


def artifact_bytes(path, fmt=None):
  """(format, bytes) to upload; OpenVINO IR is zipped with its .bin."""
  fmt = devices.format_of_path(path, fmt)
  if not os.path.isfile(path):
    raise ValueError("Artifact %r does not exist." % (path,))
  if fmt == "openvino" and path.endswith(".xml"):
    bin_path = os.path.splitext(path)[0] + ".bin"
    if not os.path.isfile(bin_path):
      raise ValueError("OpenVINO IR %r has no %s next to it." % (path, bin_path))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
      z.write(path, "model.xml")
      z.write(bin_path, "model.bin")
    return fmt, buf.getvalue()
  with open(path, "rb") as f:
    return fmt, f.read()


class AgentClient(object):

  def __init__(self, url, token, timeout_s=900.0, retries=3, backoff_s=1.0):
    parts = parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
      raise ValueError("Invalid value for argument `url`. Expected http://HOST:PORT or "
                       "https://HOST:PORT. Received url=%r" % (url,))
    if not token:
      raise ValueError("Invalid value for argument `token`. Expected the agent's token.")
    self.url, self.token = url, token
    self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
    self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), backoff_s

  @classmethod
  def from_token_file(cls, url, token_file, **kwargs):
    with open(token_file) as f:
      return cls(url, f.read().strip(), **kwargs)

  def _once(self, method, path, body, headers):
    cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
    conn = cls(self.host, self.port, timeout=self.timeout_s)
    try:
      conn.request(method, path, body=body, headers=headers)
      response = conn.getresponse()
      payload = response.read()
    finally:
      conn.close()
    try:
      obj = json.loads(payload.decode() or "{}")
    except ValueError:
      obj = {"error": payload[:500].decode("utf-8", "replace")}
    return response.status, obj

  def request(self, method, path, body=None, headers=None):
    """JSON object of a request, retried on connection failures and 503."""
    headers = dict(headers or {})
    headers["Authorization"] = "Bearer %s" % self.token
    last = None
    for attempt in range(self.retries + 1):
      if attempt:
        time.sleep(self.backoff_s * 2 ** (attempt - 1))
      try:
        status, obj = self._once(method, path, body, headers)
      except _RETRYABLE as e:
        last = "%s: %s" % (type(e).__name__, e)
        continue
      if status == 503:
        last = "503 %s" % obj.get("error")
        continue
      if status >= 400:
        raise AgentError(status, obj.get("error", obj))
      return obj
    raise DeviceUnreachableError("Measurement agent at %s unreachable after %d attempts "
                                 "(last error: %s). Is `python3 -m deploy.agent` running "
                                 "there and the port open?" % (self.url, self.retries + 1, last))

  def health(self):
    return self.request("GET", "/v1/health")

  def measure(self, artifact_path, fmt=None, **settings):
    """Upload ``artifact_path`` and measure it; returns the result dict.

    settings: runtime, batch_size, num_images, repeats, warmup_batches,
    threshold_w, sample_interval_s, idle_s (see ``deploy.agent``).
    """
    fmt, body = artifact_bytes(artifact_path, fmt)
    limit = self.health().get("max_upload_bytes")
    if limit is not None and len(body) > limit:
      raise AgentError(413, "artifact %s is %d bytes; the agent accepts at most %d."
                       % (artifact_path, len(body), limit))
    headers = {"X-Artifact-Format": fmt, "X-Measure-Settings": json.dumps(settings),
               "Content-Type": "application/octet-stream"}
    return self.request("POST", "/v1/measure", body, headers)
