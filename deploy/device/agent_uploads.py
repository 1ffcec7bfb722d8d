"""What the agent does with an upload before measuring it: receiving the
body (or dropping one it refuses), naming it in error messages, and checking
and unpacking an OpenVINO IR zip or a cascade zip within the unpacking limit.

An IR zip must hold exactly one ``.xml`` and one ``.bin``. Its end record
must declare two members (no Zip64), their declared sizes must fit the limit
and the bytes are counted while unpacking (headers can lie): 413 past the
limit, 422 for anything else wrong. A cascade zip (``deploy.device.cascade_runner.pack``)
must hold exactly ``cascade.json`` and the stage files it names (relative
paths, at most ``MAX_CASCADE_MEMBERS`` members), under the same rules. All of
it runs before the measurement lock is taken.

Device-side module: Python 3.6 syntax, standard library only.
"""

import hashlib
import json
import os
import re
import socket
import struct
import time
import zipfile
import zlib
from typing import Any, List, Optional, Tuple

LINGER_S = 2.0  # at most this long reading an unwanted body before closing
CASCADE_FILE = "cascade.json"
MAX_CASCADE_MEMBERS = 33  # cascade.json and up to 32 stage models
MAX_CASCADE_SPEC_BYTES = 1 << 20
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError,
               NotImplementedError, RuntimeError, ValueError)


class BadRequest(Exception):
  """A request the agent answers with ``status`` (4xx) and this message."""

  def __init__(self, status: int, message: str) -> None:
    super(BadRequest, self).__init__(message)
    self.status = status


class Body(object):
  """The unread rest of a request body: ``left`` bytes on ``rfile`` (None:
  no Content-Length). ``reader``: the deadline reader under ``rfile``
  (``agent_server.DeadlineReader``), given a deadline to drop a body nobody
  wants within LINGER_S."""

  def __init__(self, rfile: Any, reader: Any, left: Optional[int] = 0) -> None:
    self.rfile, self.reader, self.left = rfile, reader, left

  def save(self, path: str, stall_s: float) -> str:
    """Write the body to ``path``; returns its sha256 (hex). 408 once a read
    waited ``stall_s`` (the reader's timeout) in vain, 400 when the body
    ends early."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
      while self.left:
        try:
          chunk = self.rfile.read(min(self.left, 1 << 20))
        except socket.timeout:
          self.left = 0  # nothing more to wait for
          raise BadRequest(408, "Upload stalled: no data for %d s." % stall_s)
        if not chunk:
          left, self.left = self.left, 0
          raise BadRequest(400, "Upload ended %d bytes early." % left)
        f.write(chunk)
        digest.update(chunk)
        self.left -= len(chunk)
    return digest.hexdigest()

  def discard(self, limit: int, whole: bool) -> None:
    """Read and drop what the client still sends, so that it reads the answer
    rather than a reset: the whole body when ``whole`` (an authorized upload)
    and it is within ``limit`` bytes, else up to ``limit`` for at most LINGER_S."""
    left = self.left or 0
    if not (whole and left <= limit):
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
    self.left = 0


def artifact_name(header: Any, fmt: str) -> str:
  """The name error messages give the upload: the client's file name
  (``X-Artifact-Name``, reduced to a safe basename), else a description."""
  name = re.sub(r"[^A-Za-z0-9._+-]", "_", (header or "").replace("\\", "/").split("/")[-1])
  return name[:100] if name.strip("._") else "the uploaded %s artifact" % fmt


def _zip_end_record(path: str, what: str = "OpenVINO upload",
                    plain: str = "one .xml and one .bin") -> Tuple[int, int]:
  """(members, central directory size) from a zip's end record, read without
  parsing the directory (which could hold millions of entries); 422 for Zip64."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    f.seek(max(0, size - (22 + 0xFFFF)))
    tail = f.read()
  at = tail.rfind(b"PK\x05\x06")
  if at < 0 or len(tail) - at < 22:
    raise BadRequest(422, "%s is not a valid zip: no end of central directory." % what)
  if at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
    raise BadRequest(422, "%s is a Zip64 archive; expected a plain zip of %s." % (what, plain))
  fields = struct.unpack("<4s4H2LH", tail[at:at + 22])
  return fields[4], fields[5]


def copy_bounded(src: Any, dst: Any, budget: int, what: str) -> int:
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


def unpack_openvino(zip_path: str, work_dir: str, max_bytes: int = 1 << 30) -> str:
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
          budget -= copy_bounded(src, dst, budget, "OpenVINO upload")
  except _ZIP_ERRORS as e:
    raise BadRequest(422, "OpenVINO upload is not a valid zip: %s" % e)
  return os.path.join(work_dir, "model.xml")


def safe_member(name: str) -> bool:
  """Whether a zip member name is a plain relative path (no root, drive, ..)."""
  parts = name.replace("\\", "/").split("/")
  return bool(name) and not name.startswith(("/", "\\")) and ".." not in parts and \
      ":" not in name


def _cascade_members(z: zipfile.ZipFile) -> List[str]:
  """The member names a cascade zip must hold: cascade.json and its stages."""
  names = z.namelist()
  if CASCADE_FILE not in names:
    raise BadRequest(422, "Cascade upload must hold %s (deploy.device.cascade_runner.pack); found %s."
                          % (CASCADE_FILE, names[:10]))
  if z.getinfo(CASCADE_FILE).file_size > MAX_CASCADE_SPEC_BYTES:
    raise BadRequest(413, "Cascade upload's %s is over %d bytes." % (CASCADE_FILE,
                                                                      MAX_CASCADE_SPEC_BYTES))
  try:
    spec = json.loads(z.read(CASCADE_FILE).decode("utf-8"))
  except ValueError as e:  # UnicodeDecodeError too
    raise BadRequest(422, "Cascade upload's %s is not JSON: %s" % (CASCADE_FILE, e))
  stages = spec.get("stages") if isinstance(spec, dict) else None
  if not isinstance(stages, list) or not stages:
    raise BadRequest(422, "Cascade upload's %s lists no stages; expected a list of "
                          "{\"file\": ...}." % CASCADE_FILE)
  wanted = [CASCADE_FILE] + [str(s.get("file")) if isinstance(s, dict) else repr(s)
                             for s in stages]
  bad = [n for n in names if n not in wanted or not safe_member(n)]
  missing = sorted(set(wanted) - set(names))
  if bad or missing or len(set(names)) != len(names):
    raise BadRequest(422, "Cascade upload: expected exactly %s and the stage files it names, "
                          "once each; unexpected %s, missing %s." % (CASCADE_FILE, bad[:10],
                                                                     missing[:10]))
  return names


def unpack_cascade(zip_path: str, work_dir: str, max_bytes: int = 1 << 30) -> str:
  """Unpack a cascade zip into ``work_dir`` writing at most ``max_bytes``
  bytes, after the checks of the module doc; returns ``work_dir``. The
  stages and thresholds are checked by ``deploy.device.cascade_runner.load_spec`` after."""
  members, directory_bytes = _zip_end_record(zip_path, "Cascade upload",
                                             "%s and its stage models" % CASCADE_FILE)
  if not 2 <= members <= MAX_CASCADE_MEMBERS:
    raise BadRequest(422, "Cascade upload's end record declares %d members; expected %s and "
                          "1 to %d stage models." % (members, CASCADE_FILE,
                                                     MAX_CASCADE_MEMBERS - 1))
  if directory_bytes > members * (46 + 3 * 0xFFFF):
    raise BadRequest(422, "Cascade upload declares a central directory of %d bytes, more "
                          "than %d members can need." % (directory_bytes, members))
  try:
    with zipfile.ZipFile(zip_path) as z:
      names = _cascade_members(z)
      declared = sum(i.file_size for i in z.infolist())
      if declared > max_bytes:
        raise BadRequest(413, "Cascade upload unpacks to %d bytes; expected at most %d bytes "
                              "(--max_unpacked_mb)." % (declared, max_bytes))
      budget = max_bytes
      for name in names:
        path = os.path.join(work_dir, *name.replace("\\", "/").split("/"))
        if not os.path.isdir(os.path.dirname(path)):
          os.makedirs(os.path.dirname(path))
        with z.open(name) as src, open(path, "wb") as dst:
          budget -= copy_bounded(src, dst, budget, "Cascade upload")
  except _ZIP_ERRORS as e:
    raise BadRequest(422, "Cascade upload is not a valid zip: %s" % e)
  return work_dir
