"""The measurement plan of an experiment, decided before any training.

``plan_measurement(...)`` asks the target what it has (``deploy.device.capabilities``:
run here for a local device, the agent's ``/v1/health`` for a remote one),
adopts the ``auto`` values from the answer (runtime, power source), picks
the artifact the host will send (format and ONNX opset, ``deploy.device.devices``)
and refuses with one ``TargetError`` naming the missing piece and how to get
it when the experiment cannot be measured there. A search calls it once
before its first trial; the reports and the cross-device evaluation call it
before they re-measure anything.

What it checks, before any training:

* the runtime exists and works there, and reads a format the host can send;
* the power source (and energy among the objectives);
* every precision asked for is one the runtime deploys *on that device*
  (``capabilities``' ``precisions``: TensorRT without fast INT8 on a TX2,
  MYRIAD computing in FP16 only);
* a static-batch device (``deploy.device.devices.STATIC_BATCH``) measures whole
  batches: ``measure_images`` a multiple of ``batch_size``;
* a remote agent holds at least ``measure_images`` images, and they are the
  search's own validation images (the sha256 of their float32 bytes, as the
  agent's health reports it, against the host's first images), and, for
  TensorRT int8, calibration images.
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

from deploy import agent_client
from deploy.device import capabilities as capabilities_lib
from deploy.device import devices
from deploy.device import image_files

Plan = collections.namedtuple(
    "Plan", "device_kind runtime power_source power_readable artifact_format onnx_opset "
            "threshold_w capabilities notices")


class TargetError(ValueError):
  """The target cannot measure this experiment (the message says why and what to do)."""


def remote_capabilities(device_url: str, token: str, timeout_s: float = 30.0,
                        ca_file: str | None = None) -> dict[str, Any]:
  """The agent's capability answer (``/v1/health``); ca_file: a PEM that
  verifies an ``https://`` agent instead of the system's CAs."""
  client = agent_client.AgentClient(device_url, token, timeout_s=timeout_s, retries=1,
                                    ca_file=ca_file)
  try:
    health = client.health()
  except agent_client.AgentTLSError as e:
    raise TargetError("The agent's certificate could not be verified: %s Pass the agent's "
                      "certificate, or the CA that signed it, as a PEM file: ca_file=PEM, or "
                      "add it to this host's trust store. An agent serving plain HTTP takes "
                      "an http:// URL." % e)
  except agent_client.DeviceUnreachableError as e:
    raise TargetError(str(e))
  except agent_client.AgentError as e:
    raise TargetError("The agent at %s refused the capability check: %s" % (device_url, e))
  if "capabilities" not in health:
    raise TargetError("The agent at %s answers no capabilities (an older deploy/ copy?); "
                      "update the deploy package on the device." % device_url)
  capabilities = dict(health["capabilities"])
  capabilities["agent_data"] = dict((k, health.get(k)) for k in
                                    ("images", "data_sha256", "calibration_images"))
  return capabilities


def host_versions() -> dict[str, Any]:
  """Versions of the converters on this host that decide what it can send."""
  out = {}
  try:
    out["openvino"] = capabilities_lib._openvino_core()[1]  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except  (no OpenVINO here: no IR to send)
    pass
  return out


def plan_measurement(device: str, runtime: str | None = None, power_source: str = devices.AUTO,
                     objectives: Sequence[str] = (), optional_energy: bool = False,
                     threshold_w: float | None = None, capabilities: dict[str, Any] | None = None,
                     device_url: str | None = None, token: str | None = None,
                     power_options: dict[str, Any] | None = None,
                     host: dict[str, Any] | None = None, ca_file: str | None = None,
                     precisions: Sequence[str] = ("fp32",), measure_images: int | None = None,
                     batch_size: int | None = None, validation_images: Any = None,
                     data_hint: str | None = None) -> Plan:
  """The ``Plan`` for measuring ``objectives`` on ``device`` (see module doc).

  capabilities: a probe answer to use instead of probing (tests, callers
  that already hold one). host: ``host_versions()`` (computed when None).
  ca_file: a PEM that verifies an ``https://`` agent (``remote_capabilities``).
  precisions: those each model is deployed at. measure_images / batch_size:
  the images run per measurement and the batch. validation_images: the
  search's normalized validation images (float32 NHWC, at least the agent's
  count when it has them), checked against a remote agent's; data_hint: the
  ``deploy.measure`` flags that write them (``--dataset=...``), for the message.
  """
  notices = []
  where = "the agent at %s" % device_url if device == devices.REMOTE else "this machine"
  if capabilities is None:
    if device == devices.REMOTE:
      capabilities = remote_capabilities(device_url, token, ca_file=ca_file)  # type: ignore[arg-type]
    else:
      wanted = runtime or devices.default_runtime(device)
      capabilities = capabilities_lib.probe(device, power_source, power_options, [wanted])
  kind = capabilities["device"]
  if device != devices.REMOTE and kind != device:
    raise TargetError("Probed device %s, expected %s." % (kind, device))
  runtime = runtime or devices.default_runtime(kind)
  try:
    devices.check_runtime(kind, runtime)
  except ValueError as e:
    raise TargetError("%s measures a %s: %s" % (where, kind, e))
  answer = capabilities["runtimes"].get(runtime) or {}
  if not answer.get("available"):
    raise TargetError("%s (device %s) cannot measure with runtime=%s: %s"
                      % (where, kind, runtime, answer.get("error") or
                         "the device does not list it"))
  host = host_versions() if host is None else host
  versions = {devices.runtime(runtime).package: answer.get("version")}
  try:
    fmt = devices.choose_format(runtime, answer.get("reads", ()), versions, host)
  except ValueError as e:
    raise TargetError("%s: %s" % (where, e))
  if fmt == "onnx" and "openvino" in devices.runtime(runtime).formats:
    notices.append("sending ONNX (opset %d) to OpenVINO %s on %s: IR written by this host's "
                   "OpenVINO %s would be too new for it"
                   % (devices.onnx_opset(runtime, answer.get("max_onnx_opset")),
                      answer.get("version"), kind, host.get("openvino", "(none)")))
  power = capabilities["power"]
  if device == devices.REMOTE:
    if power_source not in (devices.AUTO, power["name"]):
      raise TargetError("%s measures with power source %s; the experiment asks for %s. Start "
                        "the agent with --power_source=%s, or use --power_source=auto."
                        % (where, power["name"], power_source, power_source))
  else:
    try:
      devices.check_power_source(kind, power_source)
    except ValueError as e:
      raise TargetError(str(e))
  source = power["name"] if power["readable"] else "none"
  if power_source not in (devices.AUTO, "none") and not power["readable"]:
    raise TargetError("power_source=%s cannot be read on %s: %s"
                      % (power_source, where, power.get("error")))
  if "energy" in objectives and source == "none" and not optional_energy:
    tried = "; ".join("%s: %s" % kv for kv in sorted(power.get("tried", {}).items()))
    raise TargetError("The objectives include energy but %s reads no power source for a %s "
                      "(%s). Name a readable power source, drop energy from --objectives, or "
                      "pass --optional_energy." % (where, kind, tried or "none configured"))
  _check_precisions(where, kind, runtime, answer, precisions)
  _check_batches(kind, measure_images, batch_size)
  if device == devices.REMOTE:
    _check_agent_data(where, capabilities.get("agent_data"), measure_images, validation_images,
                      data_hint, runtime, precisions)
  if threshold_w is None:
    threshold_w = devices.paper_threshold_w(kind)
  return Plan(kind, runtime, source, bool(power["readable"]) and source != "none", fmt,
              devices.onnx_opset(runtime, answer.get("max_onnx_opset")), threshold_w,
              capabilities, notices)


def _check_precisions(where: str, kind: str, runtime: str, answer: dict[str, Any],
                      precisions: Sequence[str]) -> None:
  """Every precision asked for is one the runtime deploys there."""
  if "precisions" not in answer:  # an agent older than the precision probe
    return
  missing = [p for p in precisions if p not in answer["precisions"]]
  if not missing:
    return
  why = ""
  fast = answer.get("fast") or {}
  if runtime == "tensorrt":
    why = "; ".join("TensorRT %s on %s has no fast %s (platform_has_fast_%s is False)"
                    % (answer.get("version"), answer.get("gpu") or "this GPU", p.upper(), p)
                    for p in missing if p in fast and not fast[p])
  elif answer.get("optimization_capabilities") is not None:
    why = "its OPTIMIZATION_CAPABILITIES are %s" % answer["optimization_capabilities"]
  raise TargetError("%s (device %s) cannot deploy precision %s with runtime=%s%s; it deploys "
                    "%s. Drop %s from --precisions." % (
                        where, kind, ", ".join(missing), runtime, ": " + why if why else "",
                        ", ".join(answer["precisions"]) or "none", ",".join(missing)))


def _check_batches(kind: str, measure_images: int | None, batch_size: int | None) -> None:
  """A static-batch device runs whole batches only."""
  if kind not in devices.STATIC_BATCH or not measure_images or not batch_size:
    return
  if measure_images % batch_size:
    raise TargetError("device %s compiles one static batch (--measure_batch_size=%d), so "
                      "--measure_images=%d would end with a batch padded with %d blank images, "
                      "timed and predicted as if they were images. Use a multiple of %d."
                      % (kind, batch_size, measure_images,
                         batch_size - measure_images % batch_size, batch_size))


def _check_agent_data(where: str, agent_data: dict[str, Any] | None, measure_images: int | None,
                      validation_images: Any, data_hint: str | None, runtime: str,
                      precisions: Sequence[str]) -> None:
  """The agent holds enough images, the search's own, and calibration
  images for TensorRT int8."""
  if not agent_data or agent_data.get("images") is None:
    return
  count = int(agent_data["images"])
  write = ("python -m deploy.measure %s--num_images=%d --write_data=images.npy, copy it to "
           "the device and restart the agent with --data=images.npy"
           % (data_hint + " " if data_hint else "", measure_images or count))
  if measure_images and count < measure_images:
    raise TargetError("%s holds %d images; each measurement runs --measure_images=%d. Write "
                      "them on this host: %s." % (where, count, measure_images, write))
  if validation_images is not None and agent_data.get("data_sha256"):
    ours = validation_images[:count]
    if len(ours) != count or image_files.images_sha256(ours) != agent_data["data_sha256"]:
      raise TargetError("%s holds %d images that are not this search's validation images "
                        "(the sha256 of their float32 bytes differs from this host's first "
                        "%d%s): its measurements would time other images and its predictions "
                        "could not give the deployed error. Write them on this host: %s."
                        % (where, count, len(ours), " (%s)" % data_hint if data_hint else "",
                           write))
  if runtime == "tensorrt" and "int8" in precisions and not agent_data.get("calibration_images"):
    raise TargetError(
        "%s holds no calibration images, and precision int8 on runtime=tensorrt calibrates "
        "its engine on the board. Write the TRAINING images on this host (python -m "
        "deploy.measure %s--write_calibration=calibration.npy), copy the file to the board "
        "and restart the agent with --calibration=calibration.npy."
        % (where, data_hint + " " if data_hint else ""))
