"""The agent's HTTP server: bounded connections, a header deadline per
connection, TLS, and the rules for exposing it on the network.

At most ``max_connections`` connections are served at once, each on its own
thread. A request's headers must all arrive within ``header_timeout_s`` of
the connection's start, however slowly they trickle in (a TLS handshake
included). When every connection is taken, a new one takes the place of the
one that has waited longest for its headers, if that one has waited over a
second (so slow clients cannot lock out a real one); else it is answered 503
and closed at once (over TLS: closed). What a request means is the handler
class's business (``deploy.device.agent.Handler``, a ``ConnectionHandler``).

Device-side module: Python 3.6 syntax, standard library only.
"""

import io
import ipaddress
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from http import server
from typing import Any, Dict, Optional, Tuple

from . import errors


class DeadlineReader(io.RawIOBase):
  """Socket reads that fail once ``deadline`` (``time.monotonic()``) passes,
  however slowly the bytes trickle in; each read waits at most ``timeout``."""

  def __init__(self, sock: socket.socket, timeout: float) -> None:
    io.RawIOBase.__init__(self)
    self.sock, self.timeout, self.deadline = sock, timeout, None  # type: socket.socket, float, Optional[float]

  def readable(self) -> bool:
    return True

  def readinto(self, buf: Any) -> int:
    wait = self.timeout
    if self.deadline is not None:
      wait = min(wait, self.deadline - time.monotonic())
      if wait <= 0:
        raise socket.timeout("the request did not arrive within its deadline")
    self.sock.settimeout(wait)
    return self.sock.recv_into(buf)


class ConnectionHandler(server.BaseHTTPRequestHandler):
  """One connection, one request (HTTP/1.0): the headers must arrive within
  the server's ``header_timeout_s`` of the connection's start (a TLS
  handshake included), then each body read waits at most ``timeout``.
  Until its headers are in, the server may evict the connection.
  ``reader``: the ``DeadlineReader`` under ``rfile``."""
  timeout = 120  # seconds of inactivity while a body is read
  server: "AgentServer"

  def setup(self) -> None:
    srv = self.server
    deadline = time.monotonic() + srv.header_timeout_s
    self.raw_request = self.request
    if srv.ssl_context is not None:
      self.request.settimeout(srv.header_timeout_s)  # bounds the whole handshake
      self.request = srv.ssl_context.wrap_socket(self.request, server_side=True)
    self.connection = self.request
    self.reader = DeadlineReader(self.connection, self.timeout)
    self.reader.deadline = deadline
    self.rfile = io.BufferedReader(self.reader, 1 << 16)
    self.wfile = self.connection.makefile("wb", 0)

  def finish(self) -> None:
    server.BaseHTTPRequestHandler.finish(self)
    if self.server.ssl_context is not None:  # the server closes only the raw socket
      self.server.headers_in(self.raw_request)
      self.connection.close()

  def parse_request(self) -> bool:
    ok = server.BaseHTTPRequestHandler.parse_request(self)
    self.reader.deadline = None  # the headers are in
    if not self.server.headers_in(self.raw_request):  # evicted: cut short, not a request
      self.close_connection = True
      return False
    return ok

  def log_message(self, fmt: str, *args: Any) -> None:
    sys.stderr.write("agent %s %s\n" % (self.address_string(), fmt % args))


_BUSY = json.dumps({"error": "the agent serves its limit of connections; retry later"})
BUSY_RESPONSE = ("HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)).encode()


class AgentServer(socketserver.ThreadingMixIn, server.HTTPServer):
  """At most ``max_connections`` connections at once, each on its own
  thread. When all are taken, a new connection takes the place of the one
  that has waited longest for its headers if that one waited more than
  ``evict_after_s`` (a slow client gives way); else it is answered 503 (over
  TLS: closed) at once by the accepting thread. ``ssl_context``: serve HTTPS.
  ``handler_class``: a ``ConnectionHandler``, which finds ``agent`` (what
  the requests are for) as ``self.server.agent``."""
  daemon_threads = True
  block_on_close = False
  allow_reuse_address = True
  request_queue_size = 64

  def __init__(self, address: Tuple[str, int], handler_class: Any, agent: Any,
               ssl_context: Optional[ssl.SSLContext] = None, max_connections: int = 16,
               header_timeout_s: float = 10.0) -> None:
    if int(max_connections) < 1:
      raise errors.invalid_value("max_connections", "a positive integer", max_connections)
    if not float(header_timeout_s) > 0:
      raise errors.invalid_value("header_timeout_s", "a positive number of seconds",
                                 header_timeout_s)
    server.HTTPServer.__init__(self, address, handler_class)
    self.agent, self.ssl_context = agent, ssl_context
    self.max_connections, self.header_timeout_s = int(max_connections), float(header_timeout_s)
    self.evict_after_s = min(1.0, self.header_timeout_s / 2)
    self.slots = threading.BoundedSemaphore(self.max_connections)
    self.waiting, self.waiting_lock = {}, threading.Lock()  # type: Dict[Any, Any], threading.Lock  # request -> (accepted, dup)
    self.refused = self.evicted = 0

  def process_request(self, request: Any, client_address: Any) -> None:
    if not self.slots.acquire(False) and not (self._evict_slowest() and
                                              self.slots.acquire(True, 1.0)):
      self.refused += 1
      return self._refuse_busy(request)
    with self.waiting_lock:  # a dup of the socket: eviction never meets a reused fd
      self.waiting[request] = (time.monotonic(), request.dup())
    try:
      socketserver.ThreadingMixIn.process_request(self, request, client_address)
    except Exception:
      self.headers_in(request)
      self.slots.release()
      raise

  def process_request_thread(self, request: Any, client_address: Any) -> None:
    try:
      socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
    finally:
      self.slots.release()

  def headers_in(self, request: Any) -> bool:
    """Mark ``request`` past its headers; False when it was evicted before."""
    with self.waiting_lock:
      entry = self.waiting.pop(request, None)
    if entry is not None:
      entry[1].close()
    return entry is not None

  def shutdown_request(self, request: Any) -> None:
    self.headers_in(request)
    server.HTTPServer.shutdown_request(self, request)

  def _evict_slowest(self) -> bool:
    with self.waiting_lock:
      if not self.waiting:
        return False
      request = min(self.waiting, key=lambda r: self.waiting[r][0])
      accepted, dup = self.waiting[request]
      if time.monotonic() - accepted <= self.evict_after_s:
        return False
      del self.waiting[request]
    try:
      dup.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
    except OSError:
      pass
    dup.close()
    self.evicted += 1
    return True

  def _refuse_busy(self, request: Any) -> None:
    try:
      request.setblocking(False)
      request.recv(1 << 16)  # what already came, so that closing sends no reset
    except OSError:
      pass
    try:
      if self.ssl_context is None:
        request.send(BUSY_RESPONSE)
    except OSError:
      pass
    self.shutdown_request(request)

  def handle_error(self, request: Any, client_address: Any) -> None:
    e = sys.exc_info()[1]
    if not isinstance(e, OSError):  # a bug: the traceback
      return server.HTTPServer.handle_error(self, request, client_address)
    sys.stderr.write("agent %s connection failed: %s: %s\n"
                     % (client_address[0], type(e).__name__, e))


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
  """A TLS 1.2+ server context for a PEM certificate (chain) and its key."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  if sys.version_info < (3, 10):  # 3.10+ contexts start at TLS 1.2 already
    context.options |= ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
  context.load_cert_chain(cert_file, key_file)
  return context


def is_loopback(host: str) -> bool:
  """Whether ``host`` (an address, ``localhost`` or "") is loopback only."""
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:  # a name, or "" (every interface)
    return False


def check_exposure(host: str, tls: Any, insecure_http: bool) -> Optional[str]:
  """None, or the warning to print; ValueError when ``host`` is on the
  network without TLS and without an explicit ``insecure_http``."""
  if is_loopback(host) or tls:
    return None
  if not insecure_http:
    raise ValueError(
        "--host=%s serves on the network: give --tls_cert and --tls_key (clients then use "
        "--device_url=https://...), or keep the default --host=127.0.0.1 and reach the agent "
        "through an SSH tunnel (ssh -N -L 8470:127.0.0.1:8470 board). --insecure_http serves "
        "plain HTTP anyway." % (host,))
  return ("WARNING: --insecure_http: serving plain HTTP on %s. The token and every upload "
          "cross the network unencrypted: anyone who can see the traffic can take the token "
          "and run models on this device. Use TLS or an SSH tunnel instead." % (host or "*",))
