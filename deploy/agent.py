"""Remote measurement agent: runs on the device, measures uploaded models.

``python3 -m deploy.agent --port=8470 --token_file=token.txt --data=images.npy
--device=jetson [--power_source=ina3221] [--max_upload_mb=256]``

HTTP API (standard library server; JSON responses)::

  GET  /v1/health                      -> {"ok": true, "device": ..., "busy": ...,
                                           "capabilities": {...}}
  POST /v1/measure                     body: the artifact bytes
       X-Artifact-Format: onnx|openvino|tensorrt|keras
       X-Artifact-Name: model.onnx (optional; named in error messages)
       X-Measure-Settings: {"runtime": ..., "batch_size": 100, ...} (JSON)
       -> the measurement JSON (``deploy.session.run_measurement``)

``capabilities`` is ``deploy.capabilities.probe``'s answer, taken at start
(the power source is read again on each health request while no measurement
runs): the device kind, each runtime with its version, the formats it reads
and whether it really works here, the power source and whether it reads.
The host decides from it what to send (``deploy.target``). TensorRT builds
its engine from an uploaded ONNX file on the device, cached by content hash
under ``--engine_cache``; the build time is reported apart from inference
(``runtime_info.engine_build_s``).

Exposure. The agent listens on 127.0.0.1 by default: reach it through an SSH
tunnel (``ssh -N -L 8470:127.0.0.1:8470 board``, then
``--device_url=http://127.0.0.1:8470``). ``--host=0.0.0.0`` (or an address)
serves on the network and then needs TLS, ``--tls_cert`` and ``--tls_key``
(PEM; the handshake runs on the connection's own thread, under the header
deadline), for ``--device_url=https://board:8470``; ``--insecure_http`` serves
plain HTTP on the network anyway, with a warning, the token in clear text.

Every request needs ``Authorization: Bearer <token>``; without it (or with a
wrong one) the answer is 401 and nothing is stored or run. Uploads larger than
``--max_upload_mb`` get 413 before the body is read; unknown formats 415;
bad settings 400; a model the runtime cannot load 422 with its message; any
other failure during the measurement 500 with its message. Error messages
name the artifact (``X-Artifact-Name``), never the agent's own paths. When
the agent refuses a request before its body is read, it answers first and
then reads and discards the body (up to the upload limit; a wrong token or an
oversize upload for at most ``LINGER_S``), so that the client, still
sending, gets the answer instead of a broken pipe.

Settings (JSON types are strict: an integer setting takes a JSON integer, not
``true`` or ``1.5``; a number setting a finite number), all checked before
the model is loaded:

  runtime            one the device kind lists for the format (default: first)
  batch_size         integer 1..10000 (default 100)
  num_images         integer 1..the images the agent was started with
  repeats            integer 1..100
  warmup_batches     integer 0..1000
  threshold_w        number > 0 (default: the device kind's, or derived)
  sample_interval_s  number in [0.001, 10] (default 0.02)
  idle_s             number in [0, 60] (default: from the power source)
  precision          fp32 | fp16 (TensorRT)

OpenVINO IR travels as a zip holding exactly one ``.xml`` and one ``.bin``.
Before the measurement lock is taken, the zip's end record must declare two
members (no Zip64), their declared sizes must fit ``--max_unpacked_mb``
(default 4x ``--max_upload_mb``) and the bytes are counted while unpacking
(headers can lie): 413 past the limit, 422 for anything else wrong.

Measurements are serialized by one lock: two never overlap, since they would
corrupt each other's power trace (a waiting request reports ``queued_s``).

Resources. At most ``--max_connections`` (16) connections are served at once,
each on its own thread. A request's headers must all arrive within
``--header_timeout_s`` (10 s) of the connection's start, however slowly they
trickle in (a TLS handshake included); the body then has ``Handler.timeout``
of inactivity per read. When every connection is taken, a new one takes the
place of the one that has waited longest for its headers, if that one has
waited over a second (so slow clients cannot lock out a real one); else it is
answered 503 and closed at once (over TLS: closed).
The work dir (``$TMPDIR/tea-agent-*``, holding the uploads while they are
measured) records its owner's PID and start time; it is removed at exit
(atexit, SIGTERM), and at start the agent removes the work dirs of agents
that are no longer alive (and, from agents older than owner files, those
untouched for an hour). ``--trace_root`` gets one ``measurement_NNNN`` folder
per measurement, numbered after the highest already there and created
exclusively; ``--max_traces`` (1000; 0 = all) keeps the newest.

Device-side module: Python 3.6 syntax, standard library + numpy.
"""

import argparse
import atexit
import collections
import hmac
import io
import ipaddress
import json
import math
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from http import server

from deploy import capabilities as capabilities_lib
from deploy import device_main
from deploy import devices
from deploy import session
from deploy.runtimes import base as runtime_base

# kind: int (a JSON integer, not a bool), float (a finite JSON number) or str;
# low/high: inclusive bounds (None: none; num_images: the agent's images);
# threshold_w's low bound is exclusive (> 0).
Setting = collections.namedtuple("Setting", "kind low high")
SETTINGS = {"runtime": Setting(str, None, None), "batch_size": Setting(int, 1, 10000),
            "num_images": Setting(int, 1, None), "repeats": Setting(int, 1, 100),
            "warmup_batches": Setting(int, 0, 1000), "threshold_w": Setting(float, 0.0, None),
            "sample_interval_s": Setting(float, 0.001, 10.0),
            "idle_s": Setting(float, 0.0, 60.0), "precision": Setting(str, None, None)}
PRECISIONS = ("fp32", "fp16")
LINGER_S = 2.0  # at most this long reading an unwanted body before closing
WORK_PREFIX = "tea-agent-"
OWNER_FILE = "owner"
LEGACY_WORK_DIR_AGE_S = 3600.0
TRACE_NAME = re.compile(r"^measurement_(\d+)$")


class BadRequest(Exception):
  def __init__(self, status, message):
    super(BadRequest, self).__init__(message)
    self.status = status


def _expected(key, spec, high):
  if spec.kind is int:
    return ("a JSON integer in %d..%d" % (spec.low, high) if high is not None
            else "a JSON integer >= %d" % spec.low)
  if spec.kind is float and high is None:
    return "a finite number > %g" % spec.low
  if spec.kind is float:
    return "a finite number in [%g, %g]" % (spec.low, high)
  return "one of %s" % (list(PRECISIONS),) if key == "precision" else "a string"


def check_setting(key, value, high=None):
  """``value`` of setting ``key`` (a float setting as float), or BadRequest 400."""
  spec, given = SETTINGS[key], value
  high = spec.high if high is None else high
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if spec.kind is int:
    ok = (number and isinstance(value, int) and value >= spec.low and
          (high is None or value <= high))
  elif spec.kind is float:
    try:
      value = float(value) if number else None
    except OverflowError:  # an integer past the float range
      value = None
    ok = (value is not None and math.isfinite(value) and
          (value > spec.low if high is None else spec.low <= value <= high))
  else:
    ok = isinstance(value, str) and (key != "precision" or value in PRECISIONS)
  if not ok:
    raise BadRequest(400, "Invalid value for setting `%s`. Expected %s. Received %s=%s"
                     % (key, _expected(key, spec, high), key, json.dumps(given)[:100]))
  return value


def parse_settings(text, fmt, device, num_images=None):
  """Validated measurement settings from the X-Measure-Settings header;
  ``num_images``: the images the agent holds (the bound of that setting)."""
  try:
    raw = json.loads(text or "{}")
  except ValueError as e:
    raise BadRequest(400, "X-Measure-Settings is not JSON: %s" % e)
  if not isinstance(raw, dict):
    raise BadRequest(400, "X-Measure-Settings must be a JSON object.")
  unknown = sorted(set(raw) - set(SETTINGS))
  if unknown:
    raise BadRequest(400, "Unknown settings %s; expected some of %s."
                     % (unknown[:20], sorted(SETTINGS)))
  out = {}
  for key, value in sorted(raw.items()):
    if value is not None:
      out[key] = check_setting(key, value, num_images if key == "num_images" else None)
  readers = [r for r in devices.device(device).runtimes if fmt in devices.RUNTIMES[r].formats]
  runtime = out.setdefault("runtime", readers[0] if readers else None)
  if runtime not in readers:
    raise BadRequest(400, "runtime=%s cannot run a %s artifact on %s; expected one of %s."
                     % (runtime, fmt, device, readers))
  return out


def _zip_end_record(path):
  """(members, central directory size) from a zip's end record, read without
  parsing the directory (which could hold millions of entries); 422 for Zip64."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    f.seek(max(0, size - (22 + 0xFFFF)))
    tail = f.read()
  at = tail.rfind(b"PK\x05\x06")
  if at < 0 or len(tail) - at < 22:
    raise BadRequest(422, "OpenVINO upload is not a valid zip: no end of central directory.")
  if at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
    raise BadRequest(422, "OpenVINO upload is a Zip64 archive; expected a plain zip of one "
                          ".xml and one .bin.")
  fields = struct.unpack("<4s4H2LH", tail[at:at + 22])
  return fields[4], fields[5]


def _copy_bounded(src, dst, budget, what):
  """Copy ``src`` to ``dst`` counting bytes; 413 once more than ``budget`` came."""
  copied = 0
  while True:
    chunk = src.read(1 << 20)
    if not chunk:
      return copied
    copied += len(chunk)
    if copied > budget:
      raise BadRequest(413, "%s unpacks to more than the limit of %d bytes "
                            "(--max_unpacked_mb)." % (what, budget))
    dst.write(chunk)


def unpack_openvino(zip_path, work_dir, max_bytes=1 << 30):
  """The .xml path of an IR zip holding exactly one .xml and one .bin,
  unpacked into ``work_dir`` writing at most ``max_bytes`` bytes."""
  members, directory_bytes = _zip_end_record(zip_path)
  if members != 2:
    raise BadRequest(422, "OpenVINO upload must zip exactly one .xml and one .bin; its end "
                          "record declares %d members." % members)
  if directory_bytes > 2 * (46 + 3 * 0xFFFF):  # two entries' headers, names and comments
    raise BadRequest(422, "OpenVINO upload declares a central directory of %d bytes, more "
                          "than two members can need." % directory_bytes)
  try:
    with zipfile.ZipFile(zip_path) as z:
      infos = z.infolist()
      names = [i.filename for i in infos]
      xml = [i for i in infos if i.filename.endswith(".xml")]
      binary = [i for i in infos if i.filename.endswith(".bin")]
      if len(infos) != 2 or len(xml) != 1 or len(binary) != 1:
        raise BadRequest(422, "OpenVINO upload must zip exactly one .xml and one .bin; "
                              "found %s." % (names[:10],))
      declared = sum(i.file_size for i in infos)
      if declared > max_bytes:
        raise BadRequest(413, "OpenVINO upload declares %d bytes unpacked; the limit is %d "
                              "bytes (--max_unpacked_mb)." % (declared, max_bytes))
      budget = max_bytes
      for info, name in ((xml[0], "model.xml"), (binary[0], "model.bin")):
        with z.open(info) as src, open(os.path.join(work_dir, name), "wb") as dst:
          budget -= _copy_bounded(src, dst, budget, "OpenVINO upload")
  except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
          RuntimeError, ValueError) as e:
    raise BadRequest(422, "OpenVINO upload is not a valid zip: %s" % e)
  return os.path.join(work_dir, "model.xml")


def _process_start(pid):
  """The start time of process ``pid`` (Linux /proc), '' where unknown: tells
  a live owner from a new process that got a dead owner's PID."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[-1].split()[19]
  except (OSError, IndexError):
    return ""


def _owner_alive(pid, start):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  now = _process_start(pid)
  return not start or not now or now == start


def make_work_dir(root=None):
  """A new ``tea-agent-*`` dir under ``root`` (the temp dir) naming its owner."""
  path = tempfile.mkdtemp(prefix=WORK_PREFIX, dir=root)
  with open(os.path.join(path, OWNER_FILE), "w") as f:
    f.write("%d %s\n" % (os.getpid(), _process_start(os.getpid())))
  return path


def clean_stale_work_dirs(root=None, now=None):
  """Remove this user's ``tea-agent-*`` dirs under ``root`` whose owner is not
  alive (without an owner file: untouched for an hour); returns their paths."""
  root = root or tempfile.gettempdir()
  now = time.time() if now is None else now
  removed = []
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name)
    try:
      st = os.lstat(path)
    except OSError:  # gone meanwhile
      continue
    if (not name.startswith(WORK_PREFIX) or not os.path.isdir(path) or os.path.islink(path)
        or st.st_uid != os.getuid()):
      continue
    try:
      with open(os.path.join(path, OWNER_FILE)) as f:
        fields = f.read().split()
      stale = not _owner_alive(int(fields[0]), fields[1] if len(fields) > 1 else "")
    except (OSError, ValueError, IndexError):
      stale = now - st.st_mtime > LEGACY_WORK_DIR_AGE_S
    if stale:
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
  return removed


def new_trace_dir(root):
  """A new ``measurement_NNNN`` folder under ``root``, numbered after the
  highest there and created exclusively (two agents never share one)."""
  if not os.path.isdir(root):
    os.makedirs(root)
  numbers = [int(m.group(1)) for m in map(TRACE_NAME.match, os.listdir(root)) if m]
  number = max(numbers) + 1 if numbers else 1
  while True:
    path = os.path.join(root, "measurement_%04d" % number)
    try:
      os.mkdir(path)
      return path
    except FileExistsError:
      number += 1


def prune_traces(root, keep):
  """Remove all but the newest ``keep`` measurement folders; their paths."""
  found = sorted((int(m.group(1)), m.group(0)) for m in map(TRACE_NAME.match, os.listdir(root))
                 if m and os.path.isdir(os.path.join(root, m.group(0))))
  old = [os.path.join(root, name) for _, name in found[:max(0, len(found) - keep)]]
  for path in old:
    shutil.rmtree(path, ignore_errors=True)
  return old


def scrub_paths(message, replacements):
  """``message`` with each (directory, name) directory and any path under it
  replaced by ``name``: error bodies never show the agent's filesystem."""
  for directory, name in replacements:
    directory = (directory or "").rstrip(os.sep)
    if directory:  # never the root itself
      message = re.sub(re.escape(directory) + r"[^\s'\"(),;]*", name, message)
  return message


class Agent(object):
  """Holds the device configuration and the measurement lock.

  max_unpacked_bytes: what an OpenVINO zip may unpack to (default 4x
  ``max_upload_bytes``); max_traces: the measurement folders kept under
  ``trace_root`` (0: all). Without ``work_dir`` the agent makes its own
  ``tea-agent-*`` dir, removed by ``close()`` and at exit.
  """

  def __init__(self, token, images, device, power_source="none", power_options=None,
               max_upload_bytes=256 << 20, work_dir=None, trace_root=None,
               engine_cache_dir=None, max_unpacked_bytes=None, max_traces=1000):
    if not token:
      raise ValueError("The agent needs a non-empty token.")
    for name, value in (("max_upload_bytes", max_upload_bytes),
                        ("max_unpacked_bytes", max_unpacked_bytes or 1)):
      if int(value) < 1:
        raise ValueError("Invalid value for argument `%s`. Expected a positive number of "
                         "bytes. Received %s=%r" % (name, name, value))
    if int(max_traces) < 0:
      raise ValueError("Invalid value for argument `max_traces`. Expected 0 (keep all) or a "
                       "positive count. Received max_traces=%r" % (max_traces,))
    devices.device(device)
    self.token = token.encode() if not isinstance(token, bytes) else token
    self.images, self.device = images, device
    self.power_options = dict(power_options or {})
    self.capabilities = capabilities_lib.probe(device, power_source, self.power_options)
    power = self.capabilities["power"]
    self.power_source = power["name"] if power["readable"] else "none"
    self.max_upload_bytes = int(max_upload_bytes)
    self.max_unpacked_bytes = int(max_unpacked_bytes or 4 * self.max_upload_bytes)
    self.own_work_dir = not work_dir
    self.work_dir = work_dir or make_work_dir()
    if self.own_work_dir:
      atexit.register(shutil.rmtree, self.work_dir, True)
    self.trace_root, self.max_traces = trace_root, int(max_traces)
    self.engine_cache_dir = engine_cache_dir
    self.lock = threading.Lock()
    self.count = 0

  def close(self):
    """Remove the work dir the agent made (not one it was given)."""
    if self.own_work_dir:
      shutil.rmtree(self.work_dir, ignore_errors=True)

  def health(self):
    """The health answer; the power source is read again when idle."""
    if self.lock.acquire(False):
      try:
        power = capabilities_lib.probe_power(self.device, self.capabilities["power"]["requested"],
                                             self.power_options)
        self.capabilities["power"] = power
      finally:
        self.lock.release()
    return {"ok": True, "device": self.device, "power_source": self.power_source,
            "images": int(len(self.images)), "busy": self.lock.locked(),
            "formats": list(devices.FORMATS), "max_upload_bytes": self.max_upload_bytes,
            "max_unpacked_bytes": self.max_unpacked_bytes, "capabilities": self.capabilities}

  def authorized(self, header):
    given = (header or "").encode()
    return hmac.compare_digest(given, b"Bearer " + self.token)

  def private_dirs(self):
    """(directory, placeholder) pairs that error messages must not show."""
    return [(self.work_dir, "<work_dir>"), (self.trace_root, "<trace_root>"),
            (self.engine_cache_dir, "<engine_cache>"), (tempfile.gettempdir(), "<tmp>"),
            (os.path.expanduser("~"), "~")]

  def prepare(self, upload_path, fmt):
    """The model file of an upload (an OpenVINO zip unpacked within the
    limit); runs before the measurement lock is taken."""
    if fmt != "openvino":
      return upload_path
    return unpack_openvino(upload_path, os.path.dirname(upload_path), self.max_unpacked_bytes)

  def measure(self, model_path, fmt, settings):
    """Load and measure one prepared model (call with ``lock`` held)."""
    self.count += 1
    batch_size = settings.get("batch_size", 100)
    images = self.images[:settings.get("num_images", len(self.images))]
    options = {}
    if settings["runtime"] == "tensorrt":
      options.update(precision=settings.get("precision", "fp32"),
                     engine_cache_dir=self.engine_cache_dir)
    try:
      runtime = device_main.build_runtime(self.device, settings["runtime"], model_path,
                                          batch_size, **options)
    except runtime_base.ModelLoadError as e:
      raise BadRequest(422, str(e))
    trace_dir = new_trace_dir(self.trace_root) if self.trace_root else None
    try:
      with device_main.build_power(self.power_source, self.device,
                                   **self.power_options) as power:
        return session.run_measurement(
            runtime, power, images, self.device, batch_size=batch_size,
            threshold_w=settings.get("threshold_w"),
            sample_interval_s=settings.get("sample_interval_s", 0.02),
            repeats=settings.get("repeats", session.DEFAULT_REPEATS),
            warmup_batches=settings.get("warmup_batches", session.DEFAULT_WARMUP_BATCHES),
            idle_s=settings.get("idle_s"), trace_dir=trace_dir)
    except ValueError as e:
      raise BadRequest(400, str(e))
    finally:
      runtime.close()
      if trace_dir:
        self._tidy_traces(trace_dir)

  def _tidy_traces(self, trace_dir):
    try:
      if os.path.isdir(trace_dir) and not os.listdir(trace_dir):  # failed before writing
        os.rmdir(trace_dir)
      if self.max_traces:
        prune_traces(self.trace_root, self.max_traces)
    except OSError as e:  # never at the cost of the measurement
      sys.stderr.write("agent: could not tidy %s: %s\n" % (self.trace_root, e))


def artifact_name(header, fmt):
  """The name error messages give the upload: the client's file name
  (``X-Artifact-Name``, reduced to a safe basename), else a description."""
  name = re.sub(r"[^A-Za-z0-9._+-]", "_", (header or "").replace("\\", "/").split("/")[-1])
  return name[:100] if name.strip("._") else "the uploaded %s artifact" % fmt


class _DeadlineReader(io.RawIOBase):
  """Socket reads that fail once ``deadline`` (``time.monotonic()``) passes,
  however slowly the bytes trickle in; each read waits at most ``timeout``."""

  def __init__(self, sock, timeout):
    io.RawIOBase.__init__(self)
    self.sock, self.timeout, self.deadline = sock, timeout, None

  def readable(self):
    return True

  def readinto(self, buf):
    wait = self.timeout
    if self.deadline is not None:
      wait = min(wait, self.deadline - time.monotonic())
      if wait <= 0:
        raise socket.timeout("the request did not arrive within its deadline")
    self.sock.settimeout(wait)
    return self.sock.recv_into(buf)


class Handler(server.BaseHTTPRequestHandler):
  """One connection, one request (HTTP/1.0): the headers must arrive within
  the server's ``header_timeout_s`` of the connection's start (a TLS
  handshake included), then each body read waits at most ``timeout``.
  Until its headers are in, the server may evict the connection."""
  server_version = "tea-keras-agent/1"
  timeout = 120  # seconds of inactivity while a body is read

  def setup(self):
    srv = self.server
    deadline = time.monotonic() + srv.header_timeout_s
    self.raw_request = self.request
    if srv.ssl_context is not None:
      self.request.settimeout(srv.header_timeout_s)  # bounds the whole handshake
      self.request = srv.ssl_context.wrap_socket(self.request, server_side=True)
    self.connection = self.request
    self.reader = _DeadlineReader(self.connection, self.timeout)
    self.reader.deadline = deadline
    self.rfile = io.BufferedReader(self.reader, 1 << 16)
    self.wfile = self.connection.makefile("wb", 0)
    self.body_left, self.names, self.trusted = 0, [], False

  def finish(self):
    server.BaseHTTPRequestHandler.finish(self)
    if self.server.ssl_context is not None:  # the server closes only the raw socket
      self.server.headers_in(self.raw_request)
      self.connection.close()

  def parse_request(self):
    ok = server.BaseHTTPRequestHandler.parse_request(self)
    self.reader.deadline = None  # the headers are in
    if not self.server.headers_in(self.raw_request):  # evicted: cut short, not a request
      self.close_connection = True
      return False
    length = self.headers.get("Content-Length", "") if ok else ""
    self.body_left = int(length) if length.isdigit() else None
    return ok

  def log_message(self, fmt, *args):
    sys.stderr.write("agent %s %s\n" % (self.address_string(), fmt % args))

  def _reply(self, status, obj):
    body = json.dumps(obj, sort_keys=True).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    if status >= 400:
      self.send_header("Connection", "close")
      self.close_connection = True
    self.end_headers()
    self.wfile.write(body)

  def _refuse(self, status, message):
    """An error answer without the agent's paths, then the unread body dropped."""
    message = scrub_paths(message, self.names + self.server.agent.private_dirs())
    self._reply(status, {"error": message})
    self._discard_body()

  def _discard_body(self):
    """Read and drop what the client still sends, so that it reads the answer
    rather than a reset: an authorized upload within the limit whole, any
    other up to the limit for at most LINGER_S."""
    limit = self.server.agent.max_upload_bytes
    left = self.body_left or 0
    if not (self.trusted and left <= limit):
      left = min(left, limit)
      self.reader.deadline = time.monotonic() + LINGER_S
    try:
      while left > 0:
        chunk = self.rfile.read(min(left, 1 << 16))
        if not chunk:
          break
        left -= len(chunk)
    except OSError:  # a timeout or a reset: the client has had its answer
      pass
    self.body_left = 0

  def _guard(self):
    self.trusted = self.server.agent.authorized(self.headers.get("Authorization"))
    if not self.trusted:
      self._refuse(401, "missing or wrong token (Authorization: Bearer ...)")
    return self.trusted

  def do_GET(self):
    if not self._guard():
      return
    if self.path != "/v1/health":
      return self._refuse(404, "unknown path %s" % self.path[:200])
    self._reply(200, self.server.agent.health())

  def do_POST(self):
    if not self._guard():
      return
    try:
      result = self._measure()
    except BadRequest as e:
      return self._refuse(e.status, str(e))
    except Exception as e:  # a failure on the device: say what, keep serving
      return self._refuse(500, "measurement failed on the device: %s: %s"
                          % (type(e).__name__, e))
    self._reply(200, result)

  def _measure(self):
    agent = self.server.agent
    if self.path != "/v1/measure":
      raise BadRequest(404, "unknown path %s" % self.path[:200])
    fmt = self.headers.get("X-Artifact-Format", "")
    if fmt not in devices.FORMATS:
      raise BadRequest(415, "X-Artifact-Format %r is not one of %s."
                       % (fmt[:40], list(devices.FORMATS)))
    if self.body_left is None:
      raise BadRequest(411, "Content-Length is required.")
    if self.body_left > agent.max_upload_bytes:
      raise BadRequest(413, "Upload of %d bytes exceeds the limit of %d bytes."
                       % (self.body_left, agent.max_upload_bytes))
    settings = parse_settings(self.headers.get("X-Measure-Settings"), fmt, agent.device,
                              len(agent.images))
    work = tempfile.mkdtemp(dir=agent.work_dir)
    self.names = [(work, artifact_name(self.headers.get("X-Artifact-Name"), fmt))]
    try:
      path = os.path.join(work, "model" + devices.FORMATS[fmt].upload_suffix)
      self._receive(path)
      model = agent.prepare(path, fmt)
      waited = time.time()
      with agent.lock:
        queued = time.time() - waited
        result = agent.measure(model, fmt, settings)
      result["queued_s"] = queued
      return result
    finally:
      shutil.rmtree(work, ignore_errors=True)

  def _receive(self, path):
    with open(path, "wb") as f:
      while self.body_left:
        try:
          chunk = self.rfile.read(min(self.body_left, 1 << 20))
        except socket.timeout:
          self.body_left = 0  # nothing more to wait for
          raise BadRequest(408, "Upload stalled: no data for %d s." % self.timeout)
        if not chunk:
          left, self.body_left = self.body_left, 0
          raise BadRequest(400, "Upload ended %d bytes early." % left)
        f.write(chunk)
        self.body_left -= len(chunk)


_BUSY = json.dumps({"error": "the agent serves its limit of connections; retry later"})
BUSY_RESPONSE = ("HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)).encode()


class AgentServer(socketserver.ThreadingMixIn, server.HTTPServer):
  """At most ``max_connections`` connections at once, each on its own
  thread. When all are taken, a new connection takes the place of the one
  that has waited longest for its headers if that one waited more than
  ``evict_after_s`` (a slow client gives way); else it is answered 503 (over
  TLS: closed) at once by the accepting thread. ``ssl_context``: serve HTTPS."""
  daemon_threads = True
  block_on_close = False
  allow_reuse_address = True
  request_queue_size = 64

  def __init__(self, address, agent, ssl_context=None, max_connections=16,
               header_timeout_s=10.0):
    if int(max_connections) < 1:
      raise ValueError("Invalid value for argument `max_connections`. Expected a positive "
                       "integer. Received max_connections=%r" % (max_connections,))
    if not float(header_timeout_s) > 0:
      raise ValueError("Invalid value for argument `header_timeout_s`. Expected a positive "
                       "number of seconds. Received header_timeout_s=%r" % (header_timeout_s,))
    server.HTTPServer.__init__(self, address, Handler)
    self.agent, self.ssl_context = agent, ssl_context
    self.max_connections, self.header_timeout_s = int(max_connections), float(header_timeout_s)
    self.evict_after_s = min(1.0, self.header_timeout_s / 2)
    self.slots = threading.BoundedSemaphore(self.max_connections)
    self.waiting, self.waiting_lock = {}, threading.Lock()  # request -> (accepted, dup)
    self.refused = self.evicted = 0

  def process_request(self, request, client_address):
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

  def process_request_thread(self, request, client_address):
    try:
      socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
    finally:
      self.slots.release()

  def headers_in(self, request):
    """Mark ``request`` past its headers; False when it was evicted before."""
    with self.waiting_lock:
      entry = self.waiting.pop(request, None)
    if entry is not None:
      entry[1].close()
    return entry is not None

  def shutdown_request(self, request):
    self.headers_in(request)
    server.HTTPServer.shutdown_request(self, request)

  def _evict_slowest(self):
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

  def _refuse_busy(self, request):
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

  def handle_error(self, request, client_address):
    e = sys.exc_info()[1]
    if not isinstance(e, OSError):  # a bug: the traceback
      return server.HTTPServer.handle_error(self, request, client_address)
    sys.stderr.write("agent %s connection failed: %s: %s\n"
                     % (client_address[0], type(e).__name__, e))


def server_ssl_context(cert_file, key_file):
  """A TLS 1.2+ server context for a PEM certificate (chain) and its key."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  if sys.version_info < (3, 10):  # 3.10+ contexts start at TLS 1.2 already
    context.options |= ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
  context.load_cert_chain(cert_file, key_file)
  return context


def serve_in_thread(agent, host="127.0.0.1", port=0, **server_options):
  """Start a server on a daemon thread; returns it (``server_address``).
  server_options: ``AgentServer``'s ssl_context, max_connections, header_timeout_s."""
  srv = AgentServer((host, port), agent, **server_options)
  thread = threading.Thread(target=srv.serve_forever, name="tea-agent")
  thread.daemon = True
  thread.start()
  return srv


def is_loopback(host):
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:  # a name, or "" (every interface)
    return False


def check_exposure(host, tls, insecure_http):
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


def read_token(path):
  with open(path) as f:
    token = f.read().strip()
  if not token:
    raise ValueError("Token file %s is empty." % path)
  return token


def _exit_on_signal(signum, frame):
  raise SystemExit(128 + signum)  # atexit handlers (the work dir) then run


def build_parser():
  p = argparse.ArgumentParser(description="TEA-DNN remote measurement agent.")
  p.add_argument("--port", type=int, default=8470)
  p.add_argument("--host", default="127.0.0.1",
                 help="default loopback only (use an SSH tunnel); an address or 0.0.0.0 "
                      "serves on the network and needs --tls_cert/--tls_key")
  p.add_argument("--tls_cert", default=None, help="PEM certificate (chain) to serve HTTPS")
  p.add_argument("--tls_key", default=None, help="PEM private key of --tls_cert")
  p.add_argument("--insecure_http", action="store_true",
                 help="serve plain HTTP on a network --host anyway (the token in clear text)")
  p.add_argument("--token_file", required=True)
  p.add_argument("--data", required=True, help="float32 normalized images (.npy)")
  p.add_argument("--device", default="cpu", choices=list(devices.DEVICES))
  p.add_argument("--power_source", default=devices.AUTO,
                 choices=(devices.AUTO,) + devices.POWER_SOURCES,
                 help="default auto: the device kind's first readable source")
  p.add_argument("--rail", default=None, help="ina3221 rail label(s)")
  p.add_argument("--gpu_index", type=int, default=None, help="nvml device index")
  p.add_argument("--usb_csv", default=None, help="usb_meter: timestamped CSV log")
  p.add_argument("--usb_port", default=None, help="usb_meter: serial port")
  p.add_argument("--power_root", default=None,
                 help="root of the sysfs tree read by ina3221/rapl (default /)")
  p.add_argument("--engine_cache", default=None,
                 help="tensorrt: cache of engines built from uploaded ONNX "
                      "(default ~/.cache/tea-keras/engines)")
  p.add_argument("--max_upload_mb", type=float, default=256)
  p.add_argument("--max_unpacked_mb", type=float, default=None,
                 help="what an OpenVINO zip may unpack to (default 4x --max_upload_mb)")
  p.add_argument("--max_connections", type=int, default=16,
                 help="connections served at once; more get 503")
  p.add_argument("--header_timeout_s", type=float, default=10.0,
                 help="a request's headers must all arrive within this many seconds")
  p.add_argument("--trace_root", default=None, help="keep traces of every measurement")
  p.add_argument("--max_traces", type=int, default=1000,
                 help="measurement folders kept under --trace_root, newest first (0: all)")
  return p


def main(argv=None):
  p = build_parser()
  args = p.parse_args(argv)
  try:
    devices.check_power_source(args.device, args.power_source)
    if bool(args.tls_cert) != bool(args.tls_key):
      raise ValueError("--tls_cert and --tls_key go together (the certificate and its key).")
    warning = check_exposure(args.host, bool(args.tls_cert), args.insecure_http)
    context = server_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
  except (ValueError, OSError) as e:  # ssl.SSLError is an OSError
    p.error(str(e))
  for path in clean_stale_work_dirs():
    sys.stderr.write("agent: removed %s (its agent is gone)\n" % path)
  mb = 1 << 20
  agent = Agent(read_token(args.token_file), device_main.load_data(args.data), args.device,
                args.power_source, device_main.power_options(args),
                int(args.max_upload_mb * mb), trace_root=args.trace_root,
                engine_cache_dir=args.engine_cache,
                max_unpacked_bytes=int(args.max_unpacked_mb * mb) if args.max_unpacked_mb else None,
                max_traces=args.max_traces)
  signal.signal(signal.SIGTERM, _exit_on_signal)
  srv = AgentServer((args.host, args.port), agent, ssl_context=context,
                    max_connections=args.max_connections, header_timeout_s=args.header_timeout_s)
  usable = [r for r, a in sorted(agent.capabilities["runtimes"].items()) if a["available"]]
  sys.stderr.write("agent: %s on %s://%s:%d, power %s, runtimes %s\n"
                   % (args.device, "https" if context else "http", args.host,
                      srv.server_address[1], agent.power_source,
                      ", ".join(usable) or "none usable"))
  for name, answer in sorted(agent.capabilities["runtimes"].items()):
    if answer["error"]:
      sys.stderr.write("agent: runtime %s unavailable: %s\n" % (name, answer["error"]))
  if warning:
    sys.stderr.write("\n%s\n%s\n%s\n\n" % ("!" * 78, warning, "!" * 78))
  sys.stderr.flush()
  try:
    srv.serve_forever()
  finally:
    srv.server_close()
    agent.close()


if __name__ == "__main__":
  main()
