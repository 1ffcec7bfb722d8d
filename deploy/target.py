"""The measurement plan of an experiment, decided before any training.

``plan_measurement(...)`` asks the target what it has (``deploy.capabilities``:
run here for a local device, the agent's ``/v1/health`` for a remote one),
adopts the ``auto`` values from the answer (runtime, power source), picks
the artifact the host will send (format and ONNX opset, ``deploy.devices``)
and refuses with one ``TargetError`` naming the missing piece and how to get
it when the experiment cannot be measured there. A search calls it once
before its first trial; the reports and the cross-device evaluation call it
before they re-measure anything.
"""

import collections

from deploy import devices

Plan = collections.namedtuple(
    "Plan", "device_kind runtime power_source power_readable artifact_format onnx_opset "
            "threshold_w capabilities notices")


class TargetError(ValueError):
  """The target cannot measure this experiment (the message says why and what to do)."""


def remote_capabilities(device_url, token, timeout_s=30.0, ca_file=None):
  """The agent's capability answer (``/v1/health``); ca_file: a PEM that
  verifies an ``https://`` agent instead of the system's CAs."""
  from deploy import agent_client
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
  return health["capabilities"]


def host_versions():
  """Versions of the converters on this host that decide what it can send."""
  out = {}
  try:
    from deploy import capabilities
    out["openvino"] = capabilities._openvino_core()[1]  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except  (no OpenVINO here: no IR to send)
    pass
  return out


def plan_measurement(device, runtime=None, power_source=devices.AUTO, objectives=(),
                     optional_energy=False, threshold_w=None, capabilities=None,
                     device_url=None, token=None, power_options=None, host=None,
                     ca_file=None):
  """The ``Plan`` for measuring ``objectives`` on ``device`` (see module doc).

  capabilities: a probe answer to use instead of probing (tests, callers
  that already hold one). host: ``host_versions()`` (computed when None).
  ca_file: a PEM that verifies an ``https://`` agent (``remote_capabilities``).
  """
  notices = []
  where = "the agent at %s" % device_url if device == devices.REMOTE else "this machine"
  if capabilities is None:
    if device == devices.REMOTE:
      capabilities = remote_capabilities(device_url, token, ca_file=ca_file)
    else:
      from deploy import capabilities as capabilities_lib
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
  if threshold_w is None:
    threshold_w = devices.paper_threshold_w(kind)
  return Plan(kind, runtime, source, bool(power["readable"]) and source != "none", fmt,
              devices.onnx_opset(runtime, answer.get("max_onnx_opset")), threshold_w,
              capabilities, notices)
