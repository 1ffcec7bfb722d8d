"""Remote measurement agent: runs on the device, measures uploaded models.

``python3 -m deploy.device.agent --port=8470 --token_file=token.txt --data=images.npy
--device=jetson [--power_source=ina3221] [--max_upload_mb=256]
[--calibration=train_images.npy]``

HTTP API (standard library server; JSON responses)::

  GET  /v1/health                      -> {"ok": true, "device": ..., "busy": ...,
                                           "images": N, "data_sha256": ...,
                                           "calibration_images": M,
                                           "capabilities": {...}}
  POST /v1/measure                     body: the artifact bytes
       X-Artifact-Format: onnx|openvino|tensorrt|keras|cascade
       X-Artifact-Name: model.onnx (optional; named in error messages)
       X-Measure-Settings: {"runtime": ..., "batch_size": 100, ...} (JSON)
       X-Request-Id: one id per measurement, the same on its retries (optional)
       X-Return-Traces: 1 (optional): the answer carries the trace files
       -> the measurement JSON (``deploy.device.session.run_measurement``, with
          ``host``: the agent's host name)

A retry (same ``X-Request-Id``, same upload and settings) waits for the
first attempt and gets its answer, marked ``"replayed": true``, instead of
measuring again; the last 64 answers are kept for 10 minutes
(``deploy.device.agent_requests``).

``capabilities`` is ``deploy.device.capabilities.probe``'s answer, taken at start:
the device kind, each runtime with its version, the formats it reads and
whether it really works here, the power source and whether it reads. The
power source (``auto``: the kind's first that reads) is resolved again under
the measurement lock, by each measurement before it runs and by a health
request while none runs, so ``power_source`` and ``capabilities.power`` are
what the next measurement uses (a meter plugged in after start is used).
The host decides from it what to send (``deploy.target``). TensorRT builds
its engine from an uploaded ONNX file on the device, cached by content hash
under ``--engine_cache``; the build time is reported apart from inference
(``runtime_info.engine_build_s``). TensorRT int8 calibrates that build on
the training images given by ``--calibration`` (``python -m deploy.measure
--write_calibration=FILE.npy``); health reports their count
(``calibration_images``, 0 without) and ``data_sha256``, the sha256 of the
float32 bytes of the images it measures on (so the host can check they are
the ones it evaluates with).

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
  precision          fp32 | fp16 | int8: the engine TensorRT builds from ONNX
                     (int8 needs the agent's --calibration images: without
                     them 422 before the measurement lock); other runtimes
                     run the artifact as uploaded
  predictions        true | false (default false): after the measurement, one
                     untimed pass over the measured images; the result gets
                     "top1": [argmax per image] (every runtime)
  cascade_point      cascade only: integer 0..its points - 1, the point to run
  max_energy_per_image_j, max_time_per_image_s, max_error
                     cascade only: numbers > 0, pick the point by a budget
                     per image (``deploy.device.cascade_runner.choose_point``); default:
                     the lowest-error point. The old names max_energy_j and
                     max_time_s (a search's totals) are refused (400)

OpenVINO IR travels as a zip holding exactly one ``.xml`` and one ``.bin``.
Before the measurement lock is taken, the zip's end record must declare two
members (no Zip64), their declared sizes must fit ``--max_unpacked_mb``
(default 4x ``--max_upload_mb``) and the bytes are counted while unpacking
(headers can lie): 413 past the limit, 422 for anything else wrong.

A cascade (``deploy.device.cascade_runner``, ``python -m search.cascades.build``) travels as a zip
of ``cascade.json`` and the stage models it names (``deploy.device.cascade_runner.pack``;
the client zips a cascade directory itself), checked and unpacked under the
same limits (``agent_uploads.unpack_cascade``); then its spec
(``deploy.device.cascade_runner.check_spec``: every stage present, ``confidence`` known,
``points`` a list whose points have one threshold in [0, 1] per stage but
the last, an ``error`` in [0, 1] and costs >= 0 or null) and the chosen point
are checked, all before the measurement lock (422 / 400). A stage that fails
to load is named by its file. It is measured
with the protocol like one model, its stages on the runtime chosen (one that
reads ONNX); the result's ``runtime_info.cascade`` gives the point, the
fraction of images reaching each stage and the predicted cost.

The first input of an ONNX model, an IR's Parameter layer and every
cascade stage's input are read without their runtime
(``deploy.device.model_inputs``) and checked against the agent's images before the
lock: a float32 input of shape (N, H, W, C) as the images (a symbolic or
unknown dim matches anything), else 422 naming the shape expected.

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

Traces with the result. With ``X-Return-Traces: 1`` the answer carries the
measurement's trace files (``trace_repeatN.csv``, ``trace.png``,
``result.json``) as ``"trace_files": {name: base64}``, at most
``MAX_RETURNED_TRACE_BYTES`` in all (the rest is named in ``warnings``), so
that the host keeps them with its own records (``agent_client.save_traces``).
Without ``--trace_root`` they are written in the request's work folder and
removed with it: the agent keeps nothing, and the answer's ``trace``,
``traces`` and ``trace_png`` name the files only.

Modules: ``deploy.device.agent_server`` (the server: connection bound, header
deadline, TLS, exposure rules), ``deploy.device.agent_uploads`` (request bodies,
the IR zip checks and unpacking), ``deploy.device.agent_workdirs`` (the work dir
and the traces) and ``deploy.device.agent_settings`` (the settings' types, bounds
and checks); this one holds the ``Agent``, the request handler and the
command line, and re-exports the others' public names.

Device-side module: Python 3.6 syntax, standard library + numpy.
"""

import argparse
import atexit
import base64
import hmac
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import agent_requests
from . import agent_server
from . import agent_uploads
from . import agent_workdirs
from . import capabilities as capabilities_lib
from . import cascade_runner
from . import contention
from . import device_main
from . import devices
from . import errors
from . import image_files
from . import model_inputs
from . import session
from . import tensorrt_build
from .runtimes import base as runtime_base
# Re-exported: the names callers and tests reach through deploy.device.agent.
from .agent_server import check_exposure, is_loopback, server_ssl_context  # noqa: F401
from .agent_uploads import LINGER_S, BadRequest, artifact_name, unpack_openvino  # noqa: F401
from .agent_uploads import copy_bounded as _copy_bounded  # noqa: F401
from .agent_workdirs import (OWNER_FILE, WORK_PREFIX, clean_stale_work_dirs,  # noqa: F401
                                   make_work_dir, new_trace_dir, prune_traces)

# Settings of a measure request (re-exported: deploy.device.agent_settings).
from .agent_settings import (CASCADE_SETTINGS, CHOICES, PRECISIONS, SETTINGS,  # noqa: E402,F401
                                   Setting, cascade_options, check_setting,
                                   parse_settings, top1)


MAX_RETURNED_TRACE_BYTES = 32 << 20
TRACES_HEADER = "X-Return-Traces"


def trace_files(trace_dir: str,
                limit: int = MAX_RETURNED_TRACE_BYTES) -> Tuple[Dict[str, str], List[str]]:
  """``({name: base64 text}, [names left out])`` of the files in
  ``trace_dir``, smallest first, at most ``limit`` bytes before encoding."""
  names = sorted((os.path.getsize(os.path.join(trace_dir, n)), n) for n in os.listdir(trace_dir)
                 if os.path.isfile(os.path.join(trace_dir, n)))
  out, left, total = {}, [], 0
  for size, name in names:
    if total + size > limit:
      left.append(name)
      continue
    with open(os.path.join(trace_dir, name), "rb") as f:
      out[name] = base64.b64encode(f.read()).decode("ascii")
    total += size
  return out, left


def scrub_paths(message: str, replacements: Sequence[Tuple[Optional[str], str]]) -> str:
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
  calibration_images: float32 normalized NHWC training images for TensorRT
  int8 builds (None: int8 on TensorRT is refused).
  """

  def __init__(self, token: str, images: Any, device: str, power_source: str = "none",
               power_options: Optional[Dict[str, Any]] = None, max_upload_bytes: int = 256 << 20,
               work_dir: Optional[str] = None, trace_root: Optional[str] = None,
               engine_cache_dir: Optional[str] = None, max_unpacked_bytes: Optional[int] = None,
               max_traces: int = 1000, calibration_images: Any = None) -> None:
    if not token:
      raise ValueError("The agent needs a non-empty token.")
    for name, value in (("max_upload_bytes", max_upload_bytes),
                        ("max_unpacked_bytes", max_unpacked_bytes or 1)):
      if int(value) < 1:
        raise errors.invalid_value(name, "a positive number of bytes", value)
    if int(max_traces) < 0:
      raise errors.invalid_value("max_traces", "0 (keep all) or a positive count", max_traces)
    devices.device(device)
    if calibration_images is not None:
      tensorrt_build.check_calibration_images(calibration_images)
    self.calibration_images = calibration_images
    self.data_sha256 = image_files.images_sha256(images)
    self.token = token.encode() if not isinstance(token, bytes) else token
    self.images, self.device = images, device
    self.power_options = dict(power_options or {})
    self.capabilities = capabilities_lib.probe(device, power_source, self.power_options)
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
    self.requests = agent_requests.RequestLog()

  def close(self) -> None:
    """Remove the work dir the agent made (not one it was given)."""
    if self.own_work_dir:
      shutil.rmtree(self.work_dir, ignore_errors=True)

  @property
  def power_source(self) -> str:
    """The power source the last probe resolved: what the next measurement
    uses unless a probe under the lock finds otherwise ("none": none reads)."""
    return _power_name(self.capabilities["power"])

  def resolve_power(self) -> str:
    """Probe the requested power source again and keep the answer (call
    with ``lock`` held: health when idle, each measurement before it runs);
    returns the source's name."""
    self.capabilities["power"] = capabilities_lib.probe_power(
        self.device, self.capabilities["power"]["requested"], self.power_options)
    return self.power_source

  def health(self) -> Dict[str, Any]:
    """The health answer; the power source is probed again when idle, else
    it is the one the running measurement resolved."""
    if self.lock.acquire(False):
      try:
        self.resolve_power()
      finally:
        self.lock.release()
    power = self.capabilities["power"]  # one read: power_source and capabilities agree
    return {"ok": True, "device": self.device, "power_source": _power_name(power),
            "images": int(len(self.images)), "data_sha256": self.data_sha256,
            "calibration_images": (0 if self.calibration_images is None
                                   else int(len(self.calibration_images))),
            "busy": self.lock.locked(),
            "formats": list(devices.FORMATS), "max_upload_bytes": self.max_upload_bytes,
            "max_unpacked_bytes": self.max_unpacked_bytes,
            "capabilities": dict(self.capabilities, power=power)}

  def authorized(self, header: Optional[str]) -> bool:
    given = (header or "").encode()
    return hmac.compare_digest(given, b"Bearer " + self.token)

  def private_dirs(self) -> List[Tuple[Optional[str], str]]:
    """(directory, placeholder) pairs that error messages must not show."""
    return [(self.work_dir, "<work_dir>"), (self.trace_root, "<trace_root>"),
            (self.engine_cache_dir, "<engine_cache>"), (tempfile.gettempdir(), "<tmp>"),
            (os.path.expanduser("~"), "~")]

  def check_calibration(self, settings: Dict[str, Any]) -> None:
    """422 for TensorRT int8 without calibration images (before the lock)."""
    if (settings.get("runtime") == "tensorrt" and settings.get("precision") == "int8"
        and self.calibration_images is None):
      raise BadRequest(422, "precision=int8 on runtime=tensorrt needs calibration images, "
                            "and this agent has none: restart it with --calibration=FILE.npy "
                            "(float32 normalized training images: python -m deploy.measure "
                            "--write_calibration=FILE.npy).")

  def check_input(self, path: str, what: str) -> None:
    """422 when the first input of the model file ``path`` (ONNX or an IR
    .xml; ``deploy.device.model_inputs``) cannot take this agent's images; a file
    that cannot be read so is left to its runtime, which says why."""
    try:
      found = model_inputs.model_input(path)
    except (model_inputs.ModelHeaderError, OSError):
      return
    problem = model_inputs.check_image_input(found, self.images.shape[1:], what)
    if problem:
      raise BadRequest(422, problem)

  def prepare(self, upload_path: str, fmt: str, settings: Optional[Dict[str, Any]] = None) -> str:
    """The model file of an upload (an OpenVINO zip unpacked within the
    limit; a cascade zip unpacked, its spec and chosen point checked), its
    input checked against the images; runs before the measurement lock."""
    if fmt == "openvino":
      upload_path = unpack_openvino(upload_path, os.path.dirname(upload_path),
                                    self.max_unpacked_bytes)
    if fmt != "cascade":
      self.check_input(upload_path, "'%s'" % upload_path)
      return upload_path
    directory = os.path.join(os.path.dirname(upload_path), "cascade")
    os.mkdir(directory)
    agent_uploads.unpack_cascade(upload_path, directory, self.max_unpacked_bytes)
    try:
      _, spec = cascade_runner.load_spec(directory)
    except runtime_base.ModelLoadError as e:
      raise BadRequest(422, "Cascade upload: %s" % e)
    picks = cascade_options(settings or {})
    points = spec["points"]
    point = picks.pop("point", None)
    try:
      if point is None:
        point = cascade_runner.choose_point(points, **picks)
    except ValueError as e:
      raise BadRequest(400, str(e))
    if point >= len(points):
      raise BadRequest(400, errors.message(
          "cascade_point", "a JSON integer in 0..%d (the cascade's points)" % (len(points) - 1),
          noun="setting", shown="cascade_point=%d" % point))
    for k, stage in enumerate(spec["stages"]):
      self.check_input(os.path.join(directory, stage["file"]),
                       "cascade stage %d (%s)" % (k + 1, stage["file"]))
    return directory

  def measure(self, model_path: str, fmt: str, settings: Dict[str, Any],
              return_traces: bool = False, scratch_dir: Optional[str] = None) -> Dict[str, Any]:
    """Load and measure one prepared model (call with ``lock`` held);
    ``return_traces``: the answer carries the trace files (see the module
    doc), written under ``scratch_dir`` (the request's, removed with it)
    when the agent keeps no traces."""
    self.count += 1
    batch_size = settings.get("batch_size", 100)
    images = self.images[:settings.get("num_images", len(self.images))]
    options = cascade_options(settings) if fmt == "cascade" else {}
    if settings["runtime"] == "tensorrt":
      options.update(precision=settings.get("precision", "fp32"),
                     engine_cache_dir=self.engine_cache_dir)
      if options["precision"] == "int8":
        options["calibration_images"] = self.calibration_images
    try:
      runtime = device_main.build_runtime(self.device, settings["runtime"], model_path,
                                          batch_size, **options)
    except runtime_base.ModelLoadError as e:
      raise BadRequest(422, str(e))
    trace_dir = new_trace_dir(self.trace_root) if self.trace_root else None
    if trace_dir is None and return_traces and scratch_dir:
      trace_dir = os.path.join(scratch_dir, "traces")
    try:
      with device_main.build_power(self.resolve_power(), self.device,
                                   **self.power_options) as power:
        result = session.run_measurement(
            runtime, power, images, self.device, batch_size=batch_size,
            threshold_w=settings.get("threshold_w"),
            sample_interval_s=settings.get("sample_interval_s", 0.02),
            repeats=settings.get("repeats", session.DEFAULT_REPEATS),
            warmup_batches=settings.get("warmup_batches", session.DEFAULT_WARMUP_BATCHES),
            idle_s=settings.get("idle_s"), trace_dir=trace_dir,
            contention_policy=settings.get("contention_policy", contention.DEFAULT_POLICY))
      if settings.get("predictions"):
        result["top1"] = top1(runtime, images, batch_size)
      # Which images were measured: the host checks they are its own.
      result["images_sha256"] = image_files.images_sha256(images)
      result["host"] = socket.gethostname()
      if return_traces and trace_dir:
        self._attach_traces(result, trace_dir)
      return result
    except ValueError as e:
      raise BadRequest(400, str(e))
    finally:
      runtime.close()
      if trace_dir:
        agent_workdirs.tidy_traces(self.trace_root, trace_dir, self.max_traces)


  def _attach_traces(self, result: Dict[str, Any], trace_dir: str) -> None:
    """Put the trace files into ``result`` (module doc); without a trace
    root the paths, of a folder about to go, become file names."""
    result["trace_files"], left = trace_files(trace_dir)
    if left:
      result.setdefault("warnings", []).append(
          "trace files %s not returned: over %d bytes in all" % (left, MAX_RETURNED_TRACE_BYTES))
    if not self.trace_root:
      for key in ("trace", "trace_png"):
        if result.get(key):
          result[key] = os.path.basename(result[key])
      result["traces"] = [os.path.basename(p) for p in result.get("traces") or []]


def _power_name(power: Dict[str, Any]) -> str:
  """The source a probe answer (``capabilities.probe_power``) resolves to."""
  return power["name"] if power["readable"] else "none"


def _device_failure(e: BaseException) -> str:
  """The 500 message of an unexpected exception during a measurement."""
  return "measurement failed on the device: %s: %s" % (type(e).__name__, e)


class Handler(agent_server.ConnectionHandler):
  """The API of the module doc on one connection: ``body``, the request's
  unread body (``agent_uploads.Body``); ``names``, the (directory, name)
  pairs its error messages show instead of paths; ``trusted``, whether it
  gave the right token."""
  server_version = "tea-keras-agent/1"
  server: "agent_server.AgentServer"  # set by socketserver for each connection

  def setup(self) -> None:
    agent_server.ConnectionHandler.setup(self)
    self.body = agent_uploads.Body(self.rfile, self.reader)
    self.names, self.trusted = [], False  # type: List[Tuple[Optional[str], str]], bool

  def parse_request(self) -> bool:
    ok = agent_server.ConnectionHandler.parse_request(self)
    if ok:
      length = self.headers.get("Content-Length", "")
      self.body.left = int(length) if length.isdigit() else None
    return ok

  def _reply(self, status: int, obj: Dict[str, Any]) -> None:
    body = json.dumps(obj, sort_keys=True).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    if status >= 400:
      self.send_header("Connection", "close")
      self.close_connection = True
    self.end_headers()
    self.wfile.write(body)

  def _scrub(self, message: str) -> str:
    return scrub_paths(message, self.names + self.server.agent.private_dirs())

  def _refuse(self, status: int, message: str) -> None:
    """An error answer without the agent's paths, then the unread body
    dropped: an authorized upload within the limit whole, any other up to
    the limit for at most LINGER_S (so that the client reads the answer)."""
    self._reply(status, {"error": self._scrub(message)})
    self.body.discard(self.server.agent.max_upload_bytes, self.trusted)

  def _guard(self) -> bool:
    self.trusted = self.server.agent.authorized(self.headers.get("Authorization"))
    if not self.trusted:
      self._refuse(401, "missing or wrong token (Authorization: Bearer ...)")
    return self.trusted

  def do_GET(self) -> None:
    if not self._guard():
      return
    if self.path != "/v1/health":
      return self._refuse(404, "unknown path %s" % self.path[:200])
    self._reply(200, self.server.agent.health())

  def do_POST(self) -> None:
    if not self._guard():
      return
    try:
      result = self._measure()
    except BadRequest as e:
      return self._refuse(e.status, str(e))
    except Exception as e:  # a failure on the device: say what, keep serving
      return self._refuse(500, _device_failure(e))
    self._reply(200, result)

  def _measure(self) -> Dict[str, Any]:
    agent = self.server.agent
    if self.path != "/v1/measure":
      raise BadRequest(404, "unknown path %s" % self.path[:200])
    fmt = self.headers.get("X-Artifact-Format", "")
    if fmt not in devices.FORMATS:
      raise BadRequest(415, "X-Artifact-Format %r is not one of %s."
                       % (fmt[:40], list(devices.FORMATS)))
    if self.body.left is None:
      raise BadRequest(411, "Content-Length is required.")
    if self.body.left > agent.max_upload_bytes:
      raise BadRequest(413, "Upload of %d bytes exceeds the limit of %d bytes."
                       % (self.body.left, agent.max_upload_bytes))
    settings = parse_settings(self.headers.get("X-Measure-Settings"), fmt, agent.device,
                              len(agent.images))
    request_id = agent_requests.check_id(self.headers.get(agent_requests.HEADER))
    agent.check_calibration(settings)
    work = tempfile.mkdtemp(dir=agent.work_dir)
    self.names = [(work, artifact_name(self.headers.get("X-Artifact-Name"), fmt))]
    try:
      path = os.path.join(work, "model" + devices.FORMATS[fmt].upload_suffix)
      digest = self.body.save(path, self.timeout)
      entry, first = agent.requests.begin(
          request_id, (fmt, json.dumps(settings, sort_keys=True), digest))
      if not first:  # a retry: the first attempt's answer, measured once
        return agent.requests.wait(entry)
      outcome = {"error": (500, "the first attempt of this request ended without an answer")}  # type: Dict[str, Any]
      try:
        outcome = {"result": self._prepare_and_measure(
            path, fmt, settings, self.headers.get(TRACES_HEADER, "") in ("1", "true"), work)}
      except BadRequest as e:
        outcome = {"error": (e.status, self._scrub(str(e)))}
        raise
      except Exception as e:  # pylint: disable=broad-except  (re-raised: do_POST answers)
        outcome = {"error": (500, self._scrub(_device_failure(e)))}
        raise
      finally:
        agent.requests.finish(entry, **outcome)
      return outcome["result"]
    finally:
      shutil.rmtree(work, ignore_errors=True)

  def _prepare_and_measure(self, path: str, fmt: str, settings: Dict[str, Any],
                           return_traces: bool = False,
                           work: Optional[str] = None) -> Dict[str, Any]:
    agent = self.server.agent
    model = agent.prepare(path, fmt, settings)
    waited = time.time()
    with agent.lock:
      queued = time.time() - waited
      result = agent.measure(model, fmt, settings, return_traces, work)
    result["queued_s"] = queued
    return result


def make_server(agent: Agent, host: str = "127.0.0.1", port: int = 0,
                **server_options: Any) -> agent_server.AgentServer:
  """An ``agent_server.AgentServer`` for ``agent`` on (host, port), not yet
  serving. server_options: its ssl_context, max_connections, header_timeout_s."""
  return agent_server.AgentServer((host, port), Handler, agent, **server_options)


def serve_in_thread(agent: Agent, host: str = "127.0.0.1", port: int = 0,
                    **server_options: Any) -> agent_server.AgentServer:
  """Start a server on a daemon thread; returns it (``server_address``).
  server_options: ``make_server``'s."""
  srv = make_server(agent, host, port, **server_options)
  thread = threading.Thread(target=srv.serve_forever, name="tea-agent")
  thread.daemon = True
  thread.start()
  return srv


def read_token(path: str) -> str:
  with open(path) as f:
    token = f.read().strip()
  if not token:
    raise ValueError("Token file %s is empty." % path)
  return token


def _exit_on_signal(signum: int, frame: Any) -> None:
  raise SystemExit(128 + signum)  # atexit handlers (the work dir) then run


def build_parser() -> argparse.ArgumentParser:
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
  device_main.add_measurement_arguments(p, precision=False)
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


def _check_options(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> Tuple[Any, Optional[str]]:
  """(TLS context or None, exposure warning or None) of the command line;
  an inconsistent one ends the program with the parser's error."""
  try:
    devices.check_power_source(args.device, args.power_source)
    if bool(args.tls_cert) != bool(args.tls_key):
      raise ValueError("--tls_cert and --tls_key go together (the certificate and its key).")
    warning = check_exposure(args.host, bool(args.tls_cert), args.insecure_http)
    context = server_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
  except (ValueError, OSError) as e:  # ssl.SSLError is an OSError
    parser.error(str(e))
  return context, warning


def _agent_from_args(args: argparse.Namespace) -> Agent:
  mb = 1 << 20
  return Agent(read_token(args.token_file), image_files.load_data(args.data), args.device,
               args.power_source, device_main.power_options(args),
               int(args.max_upload_mb * mb), trace_root=args.trace_root,
               engine_cache_dir=args.engine_cache,
               max_unpacked_bytes=int(args.max_unpacked_mb * mb) if args.max_unpacked_mb else None,
               max_traces=args.max_traces,
               calibration_images=(image_files.load_data(args.calibration)
                                   if args.calibration else None))


def _announce(agent: Agent, srv: agent_server.AgentServer, host: str, tls: Any,
              warning: Optional[str]) -> None:
  """Say on stderr where the agent serves and with what (and any warning)."""
  usable = [r for r, a in sorted(agent.capabilities["runtimes"].items()) if a["available"]]
  sys.stderr.write("agent: %s on %s://%s:%d, power %s, runtimes %s\n"
                   % (agent.device, "https" if tls else "http", host,
                      srv.server_address[1], agent.power_source,
                      ", ".join(usable) or "none usable"))
  for name, answer in sorted(agent.capabilities["runtimes"].items()):
    if answer["error"]:
      sys.stderr.write("agent: runtime %s unavailable: %s\n" % (name, answer["error"]))
  if warning:
    sys.stderr.write("\n%s\n%s\n%s\n\n" % ("!" * 78, warning, "!" * 78))
  sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None) -> None:
  p = build_parser()
  args = p.parse_args(argv)
  context, warning = _check_options(p, args)
  for path in clean_stale_work_dirs():
    sys.stderr.write("agent: removed %s (its agent is gone)\n" % path)
  agent = _agent_from_args(args)
  signal.signal(signal.SIGTERM, _exit_on_signal)
  srv = make_server(agent, args.host, args.port, ssl_context=context,
                    max_connections=args.max_connections, header_timeout_s=args.header_timeout_s)
  _announce(agent, srv, args.host, context is not None, warning)
  try:
    srv.serve_forever()
  finally:
    srv.server_close()
    agent.close()


if __name__ == "__main__":
  main()
