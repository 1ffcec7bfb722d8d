"""Where trials run: local worker processes, or Ray tasks on a cluster.

Both executors run ``search.trial.evaluate_trial`` on plain-dict specs and
give back its result dicts, so the loop does not know which one it drives.

* ``LocalExecutor``: a pool of ``max_parallel`` worker processes started with
  ``spawn`` (TensorFlow is not fork-safe). Workers live for the whole search,
  so TensorFlow is imported once per worker, and a trial that crashes its
  worker (segfault, out of memory) fails that trial only.
* ``RayExecutor``: one Ray task per trial on an existing cluster
  (``ray_address``) or a new local Ray instance; each task asks for one CPU,
  so ``max_parallel`` trials run at once at most, and ``gpus_per_trial`` GPUs
  (a GPU search: ``1 / max_parallel``, so that Ray makes the GPU visible to
  the trials and packs ``max_parallel`` of them on one GPU).

The preflight of a Ray search (``check_cluster``, before anything is
written) connects to the cluster, explaining a refusal by Ray's token
authentication (``connect``), and refuses with a ``ClusterError``: a local
device on several nodes (``single_node``: each node would measure on its own
hardware; use ``--device=remote``), a GPU search on a cluster without GPUs,
and a results directory that some node does not see (``check_storage``: the
trials write into it; nothing is shipped back through Ray).

A trial's attempt lost with its node or worker (``infrastructure_reason``:
Ray's NodeDiedError, WorkerCrashedError, ObjectLostError, ...) comes back as
a failed result marked ``retryable`` with its ``retry_reason``; Ray itself
retries nothing (``max_retries=0``), so that the loop records each retry and
its reason and bounds them (``search.loop``). A trial's own failure is not
retried. Locally, trials whose pool was broken by another trial's crashed
worker are retried; the trial whose worker crashed is not.

Local workers die with the search: a ``kill -9`` of the driver must not leave
a worker finishing its trial while the re-run trains the same trial in the
same directory. Each worker (``_worker_init``) asks Linux to SIGKILL it when
its parent dies (``prctl(PR_SET_PDEATHSIG)``; the signal follows the thread
that started the worker, which is the one driving the search) and runs a
watchdog thread that exits the worker within ``WATCHDOG_SECONDS`` once its
parent PID changes (re-parented: the driver is gone), on any platform.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from search import trial as trial_lib
from tea_keras import errors


class Executor(abc.ABC):
  """Submit trial specs, collect results."""

  @abc.abstractmethod
  def submit(self, spec: dict[str, Any]) -> None:
    """Start evaluating ``spec`` (a dict, see ``search.trial``)."""

  @abc.abstractmethod
  def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
    """Block until at least one trial finishes; return the finished results."""

  @property
  @abc.abstractmethod
  def in_flight(self) -> int:
    """Number of trials submitted and not yet returned."""

  def shutdown(self) -> None:
    """Release workers."""


WATCHDOG_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _worker_init(parent_pid: int) -> None:
  """Initializer of every local worker: die with the driver ``parent_pid``."""
  if sys.platform.startswith("linux"):
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
  if os.getppid() != parent_pid:  # the driver died before prctl took effect
    os._exit(1)  # pylint: disable=protected-access
  threading.Thread(target=watch_parent, args=(parent_pid,), name="parent-watchdog",
                   daemon=True).start()


def watch_parent(parent_pid: int, interval_s: float = WATCHDOG_SECONDS,
                 exit_fn: Callable[[], object] | None = None) -> None:
  """Poll ``os.getppid()`` every ``interval_s``; once it is not ``parent_pid``
  call ``exit_fn`` (default: ``os._exit(1)``, no cleanup, no waiting on the
  trial) and return."""
  while os.getppid() == parent_pid:
    time.sleep(interval_s)
  (exit_fn or (lambda: os._exit(1)))()  # pylint: disable=protected-access


def _crash_result(spec: dict[str, Any], error: BaseException | str | None,
                  retry_reason: str | None = None) -> dict[str, Any]:
  """A failed result for a trial whose worker returned nothing; with a
  ``retry_reason`` (the attempt was lost, not the trial's fault) retryable."""
  return {"trial_id": spec["trial_id"], "status": "failed", "metrics": {}, "artifacts": {},
          "error": ("attempt lost: %s" % retry_reason if retry_reason
                    else "worker crashed: %s" % error),
          "retryable": bool(retry_reason), "retry_reason": retry_reason}


class LocalExecutor(Executor):
  """``max_parallel`` spawned worker processes on this machine."""

  def __init__(self, max_parallel: int) -> None:
    self._max_parallel = max_parallel
    self._pool = self._new_pool()
    self._futures: dict[concurrent.futures.Future, dict[str, Any]] = {}

  def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=self._max_parallel, mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init, initargs=(os.getpid(),))

  def submit(self, spec: dict[str, Any]) -> None:
    self._futures[self._pool.submit(trial_lib.evaluate_trial, spec)] = spec

  def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
    done, _ = concurrent.futures.wait(self._futures, timeout=timeout,
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    results, broken = [], False
    for future in done:
      spec = self._futures.pop(future)
      try:
        results.append(future.result())
      except concurrent.futures.process.BrokenProcessPool as e:
        results.append(_crash_result(spec, e))
        broken = True
    if broken:  # a dead worker breaks the whole pool: fail its trials, start a new one
      for future, spec in list(self._futures.items()):
        results.append(_crash_result(spec, None, "its worker pool was broken by another "
                                                 "trial's crashed worker"))
      self._futures.clear()
      self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = self._new_pool()
    return results

  @property
  def in_flight(self) -> int:
    return len(self._futures)

  def shutdown(self) -> None:
    self._pool.shutdown(wait=True, cancel_futures=True)


class ClusterError(ValueError):
  """The Ray cluster cannot run this search as configured (or cannot be
  reached); the message, one line, says why and what to do."""


# Ray's errors for an attempt lost with its node, worker or objects (not
# the trial's own doing: evaluate_trial returns its own failures): retried.
_INFRASTRUCTURE_ERRORS = ("NodeDiedError", "WorkerCrashedError", "LocalRayletDiedError",
                          "ObjectLostError", "RaySystemError", "OutOfMemoryError",
                          "ActorDiedError", "ActorUnavailableError")
_NODE_ID = re.compile(r"node ID: ([0-9a-f]{8})[0-9a-f]*", re.IGNORECASE)


def infrastructure_reason(error: BaseException) -> str | None:
  """A one-line reason when the Ray ``error`` of a trial's task means the
  attempt was lost with its node or worker (``_INFRASTRUCTURE_ERRORS``), so
  that the trial is retried; None for any other error (a cancelled task,
  an exception raised by the trial)."""
  # Ray: optional (the distributed extra), imported only with --executor=ray.
  import ray  # pylint: disable=g-import-not-at-top
  kinds = tuple(c for c in (getattr(ray.exceptions, n, None) for n in _INFRASTRUCTURE_ERRORS)
                if c is not None)
  if not isinstance(error, kinds):
    return None
  text = str(error).strip()
  node = _NODE_ID.search(text)
  first = text.split(". ")[0].splitlines()[0] if text else "no message"
  return "%s: %s%s" % (type(error).__name__, first, " (node %s)" % node.group(1) if node else "")


def run_trial_on_ray(spec: dict[str, Any]) -> dict[str, Any]:
  """A trial's Ray task: ``evaluate_trial`` told which node runs it."""
  # Ray: optional (the distributed extra), imported only with --executor=ray.
  import ray  # pylint: disable=g-import-not-at-top
  node = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
          "ip": ray.util.get_node_ip_address()}
  return trial_lib.evaluate_trial(dict(spec, node=node))


def _auth_help(address: str | None) -> str:
  where = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
  mode = os.environ.get("RAY_AUTH_MODE")
  if (mode or "").lower() == "token":
    what = ("RAY_AUTH_MODE=token here, but this search's token (%s) is missing or is not the "
            "cluster's. Give it the cluster's token" % where)
  else:
    what = ("RAY_AUTH_MODE is %s here. Export RAY_AUTH_MODE=token with the cluster's token "
            "(%s)" % (mode or "unset (disabled)", where))
  return ("the Ray cluster at %s refused this search's connection: it uses token "
          "authentication (which current Ray turns on by default) and %s, the same on every "
          "node (RAY_AUTH_MODE=token ray start --address=...), then run again"
          % (address, what))


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Callable[[], str]]:
  """Send fd 2 to a temporary file meanwhile (Ray's C++ core logs each
  failed attempt to connect there); yields a function that reads it."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as f:
    os.dup2(f.fileno(), 2)
    try:
      yield lambda: (f.seek(0), f.read().decode("utf-8", "replace"))[1]
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


_AUTH_WORDS = re.compile(r"AuthenticationError|Unauthenticated|InvalidAuthToken|"
                         r"[Aa]uthentication token")


def _chain_text(error: BaseException | None) -> str:
  """The messages of ``error`` and of the exceptions it was raised from."""
  texts, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    texts.append("%s: %s" % (type(error).__name__, error))
    error = error.__cause__ or error.__context__
  return "\n".join(texts)


def connect(ray_address: str | None = None, max_parallel: int = 1) -> Any:
  """``ray`` connected to the cluster at ``ray_address`` (None: a new local
  instance of ``max(2, max_parallel)`` CPUs, never a cluster found running on
  this machine), once per process. A refused connection raises
  ``ClusterError`` in one line: token authentication explained
  (``_auth_help``: Ray says so in the exception's chain or in the lines its
  core logs meanwhile, which are kept off the console), any other cause
  with Ray's own first line."""
  try:
    # Ray: optional (the distributed extra), imported only with --executor=ray.
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("--executor=ray needs Ray: pip install 'tea-keras[distributed]'") from e
  if ray.is_initialized():
    return ray
  if not ray_address:
    ray.init(address="local", num_cpus=max(2, max_parallel), log_to_driver=False,
             include_dashboard=False)
    return ray
  with _stderr_captured() as captured:
    try:
      ray.init(address=ray_address, log_to_driver=False)
      return ray
    except (ray.exceptions.AuthenticationError, ConnectionError, RuntimeError, ValueError,
            TimeoutError) as e:
      first = (str(e).strip() or type(e).__name__).splitlines()[0]
      said = _chain_text(e) + "\n" + captured()
  ray.shutdown()
  if _AUTH_WORDS.search(said):
    raise ClusterError(_auth_help(ray_address) + ".")
  raise ClusterError("could not connect to the Ray cluster at --ray_address=%s: %s. Is it up "
                     "(`ray status --address=%s`) and reachable from here?"
                     % (ray_address, first, ray_address))


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
  return [n for n in ray.nodes() if n.get("Alive")]


def describe_node(node: dict[str, Any]) -> str:
  """``host (node 1a2b3c4d, 10.0.0.2)`` of a ``ray.nodes()`` entry."""
  return "%s (node %s, %s)" % (node.get("NodeManagerHostname"), node["NodeID"][:8],
                               node.get("NodeManagerAddress"))


def check_nodes(ray: Any, nodes: Sequence[dict[str, Any]], ray_address: str | None,
                single_node: bool = False, gpus_per_trial: float = 0.0) -> None:
  """Refuse (``ClusterError``) a local device on several nodes and a GPU
  search on a cluster without the GPUs it asks for."""
  if single_node and len(nodes) > 1:
    raise ClusterError("The Ray cluster at %s has %d nodes, and a local --device measures each "
                       "trial on whichever node trained it. Measure on one target: run `python "
                       "-m deploy.device.agent` there and use --device=remote." % (ray_address,
                                                                           len(nodes)))
  gpus = ray.cluster_resources().get("GPU", 0)
  if gpus_per_trial and gpus < gpus_per_trial:
    raise ClusterError("A GPU search asks Ray for %.2g GPU per trial, but the Ray cluster has "
                       "%s GPUs (is CUDA visible to Ray here?)." % (gpus_per_trial, gpus))


def storage_probe(path: str) -> str | None:
  """(On a node) the first bytes of ``path``, None where it cannot be read."""
  try:
    with open(path) as f:
      return f.read(64)
  except OSError:
    return None


_CHECKED: set[Any] = set()


def check_cluster(ray_address: str | None, results_dir: str, max_parallel: int = 1,
                  single_node: bool = False, gpus_per_trial: float = 0.0,
                  log: Callable[[str], object] = print,
                  timeout_s: float = 60.0) -> list[dict[str, Any]]:
  """The preflight of a Ray search, before anything is written: connect
  (``connect``), ``check_nodes``, and with a ``ray_address`` check that
  every node sees ``results_dir`` (``check_storage``). Raises
  ``ClusterError``; returns the alive nodes. Checked once per process."""
  ray = connect(ray_address, max_parallel)
  nodes = alive_nodes(ray)
  key = (ray_address, os.path.abspath(results_dir), single_node, gpus_per_trial, len(nodes))
  if key in _CHECKED:
    return nodes
  check_nodes(ray, nodes, ray_address, single_node, gpus_per_trial)
  if ray_address:
    check_storage(ray, nodes, results_dir, log, timeout_s)
  log("ray: %d node(s) at %s: %s%s" % (len(nodes), ray_address or "a local instance",
                                        ", ".join(describe_node(n) for n in nodes),
                                        "; each sees the results directory" if ray_address
                                        else ""))
  _CHECKED.add(key)
  return nodes


def check_storage(ray: Any, nodes: Sequence[dict[str, Any]], results_dir: str,
                  log: Callable[[str], object] = print, timeout_s: float = 60.0) -> None:
  """Refuse (``ClusterError``) a ``results_dir`` that some node does not
  see: a probe file written next to it (in it, or in its nearest existing
  parent; removed after) must read the same from a task on every node.
  Trials write their models, exports, checkpoints and traces there and
  nothing is shipped back through Ray. A node that does not answer within
  ``timeout_s`` is named in a warning (its trials check for themselves,
  ``search.trial``)."""
  # Ray: optional (the distributed extra), imported only with --executor=ray.
  from ray.util import scheduling_strategies  # pylint: disable=g-import-not-at-top
  folder = os.path.abspath(results_dir)
  while not os.path.isdir(folder):
    folder = os.path.dirname(folder)
  nonce = os.urandom(8).hex()
  path = os.path.join(folder, ".tea-keras-storage-probe-" + nonce)
  try:
    with open(path, "w") as f:
      f.write(nonce)
  except OSError as e:
    raise ClusterError("cannot write %s to check that the Ray nodes share --results_dir=%s: %s"
                       % (path, results_dir, e))
  probe = ray.remote(num_cpus=0, max_retries=0)(storage_probe)
  try:
    refs = {probe.options(scheduling_strategy=scheduling_strategies.NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(path): n for n in nodes}
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    blind = []
    for ref in ready:
      try:
        seen = ray.get(ref)
      except ray.exceptions.RayError:
        seen = None
      if seen != nonce:
        blind.append(describe_node(refs[ref]))
    for ref in late:
      ray.cancel(ref, force=True)
  finally:
    os.remove(path)
  if late:
    log("warning: Ray node(s) %s did not answer the shared-storage check within %.0f s; their "
        "trials check it themselves." % (", ".join(describe_node(refs[r]) for r in late),
                                         timeout_s))
  if blind:
    raise ClusterError("--results_dir=%s is not shared with the Ray node(s) %s (a file written "
                       "in %s is not there): the trials write their models, exports, checkpoints "
                       "and traces into the results directory, so it must be on storage every "
                       "node mounts at the same path (NFS, a cluster file system). Nothing is "
                       "shipped back through Ray." % (os.path.abspath(results_dir),
                                                     ", ".join(blind), folder))


class RayExecutor(Executor):
  """Trials as Ray tasks (``connect(ray_address)``); see the module doc."""

  def __init__(self, max_parallel: int, ray_address: str | None = None, gpus_per_trial: float = 0.0,
               single_node: bool = False) -> None:
    ray = connect(ray_address, max_parallel)
    self._ray = ray
    check_nodes(ray, alive_nodes(ray), ray_address, single_node, gpus_per_trial)
    # No retries by Ray: a lost attempt comes back as an error that the loop
    # retries itself (``infrastructure_reason``), recording why.
    self._remote = ray.remote(num_cpus=1, num_gpus=gpus_per_trial,
                              max_retries=0)(run_trial_on_ray)
    self.gpus_per_trial = gpus_per_trial
    self._refs: dict[Any, dict[str, Any]] = {}

  def submit(self, spec: dict[str, Any]) -> None:
    self._refs[self._remote.remote(spec)] = spec

  def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
    ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
    results = []
    for ref in ready:
      spec = self._refs.pop(ref)
      try:
        results.append(self._ray.get(ref))
      except self._ray.exceptions.RayError as e:
        reason = infrastructure_reason(e)
        results.append(_crash_result(spec, e, reason) if reason else _crash_result(spec, e))
    return results

  @property
  def in_flight(self) -> int:
    return len(self._refs)

  def shutdown(self) -> None:
    for ref in self._refs:
      self._ray.cancel(ref, force=True)
    self._refs.clear()


def make_executor(name: str, max_parallel: int, ray_address: str | None = None,
                  gpus_per_trial: float = 0.0, single_node: bool = False) -> Executor:
  if name == "local":
    return LocalExecutor(max_parallel)
  if name == "ray":
    return RayExecutor(max_parallel, ray_address, gpus_per_trial, single_node)
  raise errors.invalid_value("executor", "local or ray", name)
