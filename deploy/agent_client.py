"""Client of the remote measurement agent (``deploy.device.agent``).

    client = AgentClient("https://tx2.local:8470", token, ca_file="agent-cert.pem")
    result = client.measure("model.onnx", runtime="tensorrt", batch_size=100)

``http://`` talks plain HTTP (the agent on loopback, or through an SSH tunnel:
``ssh -N -L 8470:127.0.0.1:8470 board`` and ``http://127.0.0.1:8470``);
``https://`` verifies the agent's certificate and host name against the
system's CAs, or only against ``ca_file`` (a PEM: the agent's self-signed
certificate or the CA that signed it). A certificate that does not verify
raises ``AgentTLSError`` at once (never retried: it is a setting, not the
network).

Network failures (refused, reset, timed out) and 503 answers are retried
``retries`` times with exponential backoff; after that a network failure
raises ``DeviceUnreachableError`` (a ``ConnectionError``) saying which device
could not be reached and why. Every answer the agent gives on purpose (401
token, 413 size, 415 format, 400 settings, 422 model, 500 device failure)
raises ``AgentError`` with the agent's message (503 busy, after the retries:
``AgentBusyError``, also a ``ConnectionError`` so that a search retries),
even when the agent refused before reading the upload: the client then reads
its answer after the broken pipe. Before an upload the client checks its size
and format against the agent's health answer. Every attempt of one
``measure()`` carries the same random ``X-Request-Id``: a retry after a
timeout that hit *during* a measurement waits on the agent for that
measurement and gets its result (``"replayed": true``) instead of measuring
again (``deploy.device.agent_requests``; an agent keeps the last 64 answers for 10
minutes).

``measure(..., trace_dir=DIR)`` asks the agent for the measurement's trace
files with its answer (``X-Return-Traces``) and keeps them in ``DIR``
(``save_traces``: plain file names only); the answer's ``trace``, ``traces``
and ``trace_png`` then name the files there. An agent that returns none
(older than this) leaves the answer as it was.
Standard library only (Python 3.6+), but for zipping a cascade directory
(``deploy.device.cascade_runner.pack``: numpy).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import json
import os
import re
import socket
import ssl
import time
import zipfile
from urllib import parse
from typing import Any

from deploy.device import cascade_runner
from deploy.device import devices
from tea_keras import errors

_RETRYABLE = (ConnectionError, socket.timeout, http.client.RemoteDisconnected,
              http.client.IncompleteRead, OSError)
# A send that fails this way may mean the agent answered and closed before
# reading the whole body: its answer can still be read.
_SEND_CUT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLEOFError)


_TRACE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def save_traces(result: dict[str, Any], trace_dir: str) -> dict[str, Any]:
  """Write the agent's ``trace_files`` (popped from ``result``) into
  ``trace_dir`` and point ``result``'s ``trace``, ``traces`` and
  ``trace_png`` there; returns ``result``. Every name is checked before
  anything is written: a name that is not a plain file name raises
  ``ValueError``."""
  files = result.pop("trace_files", None)
  if files is None:
    return result
  for name in files:
    if not isinstance(name, str) or not _TRACE_NAME.match(name) or name in (".", ".."):
      raise ValueError("Invalid trace file name %r from the agent. Expected a plain file name "
                       "(letters, digits, _ . -)." % (name,))
  if not os.path.isdir(trace_dir):
    os.makedirs(trace_dir)
  for name, text in files.items():
    with open(os.path.join(trace_dir, name), "wb") as f:
      f.write(base64.b64decode(text))

  def local(path: str) -> str:
    name = os.path.basename(path or "")
    return os.path.join(trace_dir, name) if name in files else path
  for key in ("trace", "trace_png"):
    if result.get(key):
      result[key] = local(result[key])
  if result.get("traces"):
    result["traces"] = [local(p) for p in result["traces"]]
  return result


class DeviceUnreachableError(ConnectionError):
  """The agent could not be reached after all retries."""


class AgentError(RuntimeError):
  """The agent answered with an error status; ``status`` holds it."""

  def __init__(self, status: int, message: str) -> None:
    super(AgentError, self).__init__("agent answered %d: %s" % (status, message))
    self.status, self.message = status, message


class AgentBusyError(AgentError, ConnectionError):
  """The agent answered 503 (its connection limit) to every attempt: its
  message as an ``AgentError``, and a ``ConnectionError`` so that a search
  retries the trial later."""


class AgentTLSError(ValueError):
  """The TLS connection to the agent failed verification (or the agent
  does not serve TLS): fix ``ca_file`` or the URL; retrying cannot help."""


def _tls_setting_error(e: BaseException) -> bool:
  """Whether ``e`` is a TLS failure of the settings (certificate, host name,
  plain HTTP on the other side) rather than of the network."""
  if isinstance(e, ssl.CertificateError):  # 3.7+: also verification failures
    return True
  return getattr(e, "reason", None) in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER")


def artifact_bytes(path: str, fmt: str | None = None) -> tuple[str, bytes]:
  """(format, bytes) to upload; OpenVINO IR is zipped with its .bin, a
  cascade directory (or its cascade.json) with its stage models
  (``deploy.device.cascade_runner.pack``, which needs numpy on the host)."""
  fmt = devices.format_of_path(path, fmt)
  if fmt == "cascade" and not path.endswith(".zip"):
    buf = io.BytesIO()
    cascade_runner.pack(path, buf)
    return fmt, buf.getvalue()
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
  """ca_file: for ``https://`` URLs, a PEM to trust instead of the system's CAs."""

  def __init__(self, url: str, token: str, timeout_s: float = 900.0, retries: int = 3,
               backoff_s: float = 1.0, ca_file: str | None = None) -> None:
    parts = parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
      raise errors.invalid_value("url", "http://HOST:PORT or https://HOST:PORT", url)
    if not token:
      raise errors.invalid_value("token", "the agent's token")
    if ca_file is not None and parts.scheme != "https":
      raise errors.invalid_value("ca_file", "it only with an https:// url",
                                 shown="ca_file=%r with url=%r" % (ca_file, url))
    if ca_file is not None and not os.path.isfile(ca_file):
      raise errors.invalid_value("ca_file", "a PEM file",
                                 shown="ca_file=%r (no such file)" % (ca_file,))
    self.url, self.token, self.ca_file = url, token, ca_file
    self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
    self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), backoff_s
    self.ssl_context = (ssl.create_default_context(cafile=ca_file)
                        if parts.scheme == "https" else None)

  @classmethod
  def from_token_file(cls, url: str, token_file: str, **kwargs: Any) -> AgentClient:
    with open(token_file) as f:
      return cls(url, f.read().strip(), **kwargs)

  def _connection(self) -> http.client.HTTPConnection:
    if self.ssl_context is not None:
      return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                         context=self.ssl_context)
    return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

  def _once(self, method: str, path: str, body: bytes | None,
            headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    conn = self._connection()
    try:
      try:
        conn.request(method, path, body=body, headers=headers)
      except _SEND_CUT as cut:  # the agent may have answered and closed early
        try:
          response = conn.getresponse()
        except (http.client.HTTPException, OSError):
          raise cut
      else:
        response = conn.getresponse()
      payload = response.read()
    finally:
      conn.close()
    try:
      obj = json.loads(payload.decode() or "{}")
    except ValueError:
      obj = {"error": payload[:500].decode("utf-8", "replace")}
    return response.status, obj

  def request(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """JSON object of a request, retried on network failures and 503."""
    headers = dict(headers or {})
    headers["Authorization"] = "Bearer %s" % self.token
    last, busy = None, None
    for attempt in range(self.retries + 1):
      if attempt:
        time.sleep(self.backoff_s * 2 ** (attempt - 1))
      try:
        status, obj = self._once(method, path, body, headers)
      except (ssl.SSLError, ssl.CertificateError) as e:
        if _tls_setting_error(e):
          raise AgentTLSError(
              "TLS to the agent at %s failed: %s. Expected an agent started with --tls_cert/"
              "--tls_key whose certificate names %s and verifies against %s." % (
                  self.url, e, self.host, self.ca_file or "the system's CAs (or pass ca_file)"))
        last, busy = "%s: %s" % (type(e).__name__, e), None
        continue
      except _RETRYABLE as e:
        last, busy = "%s: %s" % (type(e).__name__, e), None
        continue
      if status == 503:
        last, busy = "503 %s" % obj.get("error"), obj.get("error", obj)
        continue
      if status >= 400:
        raise AgentError(status, obj.get("error", obj))
      return obj
    if busy is not None:
      raise AgentBusyError(503, "%s (after %d attempts)" % (busy, self.retries + 1))
    raise DeviceUnreachableError("Measurement agent at %s unreachable after %d attempts "
                                 "(last error: %s). Is `python3 -m deploy.device.agent` running "
                                 "there and the port open (http:// or https:// as the agent "
                                 "serves)?" % (self.url, self.retries + 1, last))

  def health(self) -> dict[str, Any]:
    return self.request("GET", "/v1/health")

  def measure(self, artifact_path: str, fmt: str | None = None, trace_dir: str | None = None,
              **settings: Any) -> dict[str, Any]:
    """Upload ``artifact_path`` and measure it; returns the result dict.
    ``trace_dir``: keep the measurement's traces there (module doc).

    settings: runtime, batch_size, num_images, repeats, warmup_batches,
    threshold_w, sample_interval_s, idle_s, precision (TensorRT: fp32, fp16,
    int8 with the agent's --calibration), predictions (true: the result's
    "top1", the argmax per measured image); for a cascade
    (a directory, or its zip with ``fmt="cascade"``) cascade_point or the
    budgets per image max_energy_per_image_j, max_time_per_image_s, max_error
    (see ``deploy.device.agent``).
    The size and format are checked against the agent's health answer first.
    """
    fmt, body = artifact_bytes(artifact_path, fmt)
    health = self.health()
    limit = health.get("max_upload_bytes")
    if limit is not None and len(body) > limit:
      raise AgentError(413, "artifact %s is %d bytes; the agent accepts at most %d."
                       % (artifact_path, len(body), limit))
    formats = health.get("formats")
    if formats is not None and fmt not in formats:
      raise AgentError(415, "artifact %s is %s; the agent reads %s." % (artifact_path, fmt,
                                                                        formats))
    name = os.path.basename(artifact_path).encode("ascii", "replace").decode()
    headers = {"X-Artifact-Format": fmt, "X-Artifact-Name": name,
               "X-Measure-Settings": json.dumps(settings),
               "X-Request-Id": binascii.hexlify(os.urandom(16)).decode(),  # same on retries
               "Content-Type": "application/octet-stream"}
    if trace_dir:
      headers["X-Return-Traces"] = "1"
    result = self.request("POST", "/v1/measure", body, headers)
    return save_traces(result, trace_dir) if trace_dir else result
