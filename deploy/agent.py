"""Remote measurement agent: runs on the device, measures uploaded models.

``python3 -m deploy.agent --port=8470 --token_file=token.txt --data=images.npy
--device=jetson [--power_source=ina3221] [--max_upload_mb=256]``

HTTP API (standard library server; JSON responses)::

  GET  /v1/health                      -> {"ok": true, "device": ..., "busy": ...,
                                           "capabilities": {...}}
  POST /v1/measure                     body: the artifact bytes
       X-Artifact-Format: onnx|openvino|tensorrt|keras
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

Every request needs ``Authorization: Bearer <token>``; without it (or with a
wrong one) the answer is 401 and nothing is read or run. Uploads larger than
``--max_upload_mb`` get 413 before the body is read; unknown formats 415;
bad settings 400; a model the runtime cannot load 422 with its message; any
other failure during the measurement 500 with its message.
Measurements are serialized by one lock: two never overlap, since they would
corrupt each other's power trace (a waiting request reports ``queued_s``).
OpenVINO IR travels as a zip holding one ``.xml`` and one ``.bin``.
Device-side module: Python 3.6 syntax, standard library + numpy.
"""

import argparse
import hmac
import json
import os
import shutil
import socketserver
import sys
import tempfile
import threading
import time
import zipfile
from http import server

from deploy import capabilities as capabilities_lib
from deploy import device_main
from deploy import devices
from deploy import session
from deploy.runtimes import base as runtime_base

SETTINGS = {"runtime": str, "batch_size": int, "num_images": int, "repeats": int,
            "warmup_batches": int, "threshold_w": float, "sample_interval_s": float,
            "idle_s": float, "precision": str}
PRECISIONS = ("fp32", "fp16")


class BadRequest(Exception):
  def __init__(self, status, message):
    super(BadRequest, self).__init__(message)
    self.status = status


def parse_settings(text, fmt, device):
  """Validated measurement settings from the X-Measure-Settings header."""
  try:
    raw = json.loads(text or "{}")
  except ValueError as e:
    raise BadRequest(400, "X-Measure-Settings is not JSON: %s" % e)
  if not isinstance(raw, dict):
    raise BadRequest(400, "X-Measure-Settings must be a JSON object.")
  unknown = sorted(set(raw) - set(SETTINGS))
  if unknown:
    raise BadRequest(400, "Unknown settings %s; expected some of %s."
                     % (unknown, sorted(SETTINGS)))
  out = {}
  for key, value in raw.items():
    if value is None:
      continue
    try:
      out[key] = SETTINGS[key](value)
    except (TypeError, ValueError):
      raise BadRequest(400, "Setting %s=%r is not a %s." % (key, value,
                                                            SETTINGS[key].__name__))
  readers = [r for r in devices.device(device).runtimes if fmt in devices.RUNTIMES[r].formats]
  runtime = out.setdefault("runtime", readers[0] if readers else None)
  if runtime not in readers:
    raise BadRequest(400, "runtime=%s cannot run a %s artifact on %s; expected one of %s."
                     % (runtime, fmt, device, readers))
  if out.get("precision", "fp32") not in PRECISIONS:
    raise BadRequest(400, "precision=%s: expected one of %s." % (out["precision"], PRECISIONS))
  return out


def unpack_openvino(zip_path, work_dir):
  """The .xml path of an IR zip holding exactly one .xml and one .bin."""
  try:
    with zipfile.ZipFile(zip_path) as z:
      names = z.namelist()
      xml = [n for n in names if n.endswith(".xml")]
      binary = [n for n in names if n.endswith(".bin")]
      if len(xml) != 1 or len(binary) != 1 or len(names) != 2:
        raise BadRequest(422, "OpenVINO upload must zip one .xml and one .bin; found %s."
                         % names)
      stem = os.path.splitext(os.path.basename(xml[0]))[0]
      for name, ext in ((xml[0], ".xml"), (binary[0], ".bin")):
        with z.open(name) as src, open(os.path.join(work_dir, stem + ext), "wb") as dst:
          shutil.copyfileobj(src, dst)
  except zipfile.BadZipFile as e:
    raise BadRequest(422, "OpenVINO upload is not a valid zip: %s" % e)
  return os.path.join(work_dir, stem + ".xml")


class Agent(object):
  """Holds the device configuration and the measurement lock."""

  def __init__(self, token, images, device, power_source="none", power_options=None,
               max_upload_bytes=256 << 20, work_dir=None, trace_root=None,
               engine_cache_dir=None):
    if not token:
      raise ValueError("The agent needs a non-empty token.")
    devices.device(device)
    self.token = token.encode() if not isinstance(token, bytes) else token
    self.images, self.device = images, device
    self.power_options = dict(power_options or {})
    self.capabilities = capabilities_lib.probe(device, power_source, self.power_options)
    power = self.capabilities["power"]
    self.power_source = power["name"] if power["readable"] else "none"
    self.max_upload_bytes = int(max_upload_bytes)
    self.work_dir = work_dir or tempfile.mkdtemp(prefix="tea-agent-")
    self.trace_root = trace_root
    self.engine_cache_dir = engine_cache_dir
    self.lock = threading.Lock()
    self.count = 0

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
            "capabilities": self.capabilities}

  def authorized(self, header):
    given = (header or "").encode()
    return hmac.compare_digest(given, b"Bearer " + self.token)

  def measure(self, artifact_path, fmt, settings):
    """Load and measure one artifact (call with ``lock`` held)."""
    self.count += 1
    model = artifact_path
    if fmt == "openvino":
      model = unpack_openvino(artifact_path, os.path.dirname(artifact_path))
    batch_size = settings.get("batch_size", 100)
    images = self.images
    if "num_images" in settings:
      if not 0 < settings["num_images"] <= len(images):
        raise BadRequest(400, "num_images=%d: expected 1..%d (the images this agent "
                         "was started with)." % (settings["num_images"], len(images)))
      images = images[:settings["num_images"]]
    options = {}
    if settings["runtime"] == "tensorrt":
      options.update(precision=settings.get("precision", "fp32"),
                     engine_cache_dir=self.engine_cache_dir)
    try:
      runtime = device_main.build_runtime(self.device, settings["runtime"], model, batch_size,
                                          **options)
    except runtime_base.ModelLoadError as e:
      raise BadRequest(422, str(e))
    trace_dir = None
    if self.trace_root:
      trace_dir = os.path.join(self.trace_root, "measurement_%04d" % self.count)
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


class Handler(server.BaseHTTPRequestHandler):
  server_version = "tea-keras-agent/1"
  timeout = 120  # seconds of socket inactivity before a slow client is dropped

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

  def _guard(self):
    if not self.server.agent.authorized(self.headers.get("Authorization")):
      self._reply(401, {"error": "missing or wrong token (Authorization: Bearer ...)"})
      return False
    return True

  def do_GET(self):
    if not self._guard():
      return
    agent = self.server.agent
    if self.path != "/v1/health":
      return self._reply(404, {"error": "unknown path %s" % self.path})
    self._reply(200, agent.health())

  def do_POST(self):
    if not self._guard():
      return
    try:
      self._reply(200, self._measure())
    except BadRequest as e:
      self._reply(e.status, {"error": str(e)})
    except Exception as e:  # a failure on the device: say what, keep serving
      self._reply(500, {"error": "measurement failed on the device: %s: %s"
                                 % (type(e).__name__, e)})

  def _measure(self):
    agent = self.server.agent
    if self.path != "/v1/measure":
      raise BadRequest(404, "unknown path %s" % self.path)
    fmt = self.headers.get("X-Artifact-Format", "")
    if fmt not in devices.FORMATS:
      raise BadRequest(415, "X-Artifact-Format %r is not one of %s."
                       % (fmt, list(devices.FORMATS)))
    length = self.headers.get("Content-Length")
    if length is None or not length.isdigit():
      raise BadRequest(411, "Content-Length is required.")
    if int(length) > agent.max_upload_bytes:
      raise BadRequest(413, "Upload of %s bytes exceeds the limit of %d bytes."
                       % (length, agent.max_upload_bytes))
    settings = parse_settings(self.headers.get("X-Measure-Settings"), fmt, agent.device)
    work = tempfile.mkdtemp(dir=agent.work_dir)
    try:
      path = os.path.join(work, "model" + devices.FORMATS[fmt].upload_suffix)
      with open(path, "wb") as f:
        remaining = int(length)
        while remaining:
          chunk = self.rfile.read(min(remaining, 1 << 20))
          if not chunk:
            raise BadRequest(400, "Upload ended %d bytes early." % remaining)
          f.write(chunk)
          remaining -= len(chunk)
      waited = time.time()
      with agent.lock:
        queued = time.time() - waited
        result = agent.measure(path, fmt, settings)
      result["queued_s"] = queued
      return result
    finally:
      shutil.rmtree(work, ignore_errors=True)


class AgentServer(socketserver.ThreadingMixIn, server.HTTPServer):
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, address, agent):
    server.HTTPServer.__init__(self, address, Handler)
    self.agent = agent


def serve_in_thread(agent, host="127.0.0.1", port=0):
  """Start a server on a daemon thread; returns it (``server_address``)."""
  srv = AgentServer((host, port), agent)
  thread = threading.Thread(target=srv.serve_forever, name="tea-agent")
  thread.daemon = True
  thread.start()
  return srv


def read_token(path):
  with open(path) as f:
    token = f.read().strip()
  if not token:
    raise ValueError("Token file %s is empty." % path)
  return token


def main(argv=None):
  p = argparse.ArgumentParser(description="TEA-DNN remote measurement agent.")
  p.add_argument("--port", type=int, default=8470)
  p.add_argument("--host", default="0.0.0.0")
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
  p.add_argument("--trace_root", default=None, help="keep traces of every measurement")
  args = p.parse_args(argv)
  try:
    devices.check_power_source(args.device, args.power_source)
  except ValueError as e:
    p.error(str(e))
  agent = Agent(read_token(args.token_file), device_main.load_data(args.data), args.device,
                args.power_source, device_main.power_options(args),
                int(args.max_upload_mb * (1 << 20)), trace_root=args.trace_root,
                engine_cache_dir=args.engine_cache)
  srv = AgentServer((args.host, args.port), agent)
  usable = [r for r, a in sorted(agent.capabilities["runtimes"].items()) if a["available"]]
  sys.stderr.write("agent: %s on %s:%d, power %s, runtimes %s\n"
                   % (args.device, args.host, srv.server_address[1], agent.power_source,
                      ", ".join(usable) or "none usable"))
  for name, answer in sorted(agent.capabilities["runtimes"].items()):
    if answer["error"]:
      sys.stderr.write("agent: runtime %s unavailable: %s\n" % (name, answer["error"]))
  sys.stderr.flush()
  srv.serve_forever()


if __name__ == "__main__":
  main()
