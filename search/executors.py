"""Where trials run: local worker processes, or Ray tasks on a cluster.

Both executors run ``search.trial.evaluate_trial`` on plain-dict specs and
give back its result dicts, so the loop does not know which one it drives.

* ``LocalExecutor``: a pool of ``max_parallel`` worker processes started with
  ``spawn`` (TensorFlow is not fork-safe). Workers live for the whole search,
  so TensorFlow is imported once per worker, and a trial that crashes its
  worker (segfault, out of memory) fails that trial only.
* ``RayExecutor``: one Ray task per trial on an existing cluster
  (``ray_address``) or a local Ray instance; each task asks for one CPU, so
  ``max_parallel`` trials run at once at most, and ``gpus_per_trial`` GPUs
  (a GPU search: ``1 / max_parallel``, so that Ray makes the GPU visible to
  the trials and packs ``max_parallel`` of them on one GPU). A search that
  measures on a local device needs its trials on this machine
  (``single_node``): a cluster of several nodes is refused, since each node
  would measure on its own hardware (use ``--device=remote``).

Local workers die with the search: a ``kill -9`` of the driver must not leave
a worker finishing its trial while the re-run trains the same trial in the
same directory. Each worker (``_worker_init``) asks Linux to SIGKILL it when
its parent dies (``prctl(PR_SET_PDEATHSIG)``; the signal follows the thread
that started the worker, which is the one driving the search) and runs a
watchdog thread that exits the worker within ``WATCHDOG_SECONDS`` once its
parent PID changes (re-parented: the driver is gone), on any platform.
"""

import abc
import concurrent.futures
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time

from search import trial as trial_lib


class Executor(abc.ABC):
  """Submit trial specs, collect results."""

  @abc.abstractmethod
  def submit(self, spec):
    """Start evaluating ``spec`` (a dict, see ``search.trial``)."""

  @abc.abstractmethod
  def wait(self, timeout=None):
    """Block until at least one trial finishes; return the finished results."""

  @property
  @abc.abstractmethod
  def in_flight(self):
    """Number of trials submitted and not yet returned."""

  def shutdown(self):
    """Release workers."""


WATCHDOG_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _worker_init(parent_pid):
  """Initializer of every local worker: die with the driver ``parent_pid``."""
  if sys.platform.startswith("linux"):
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
  if os.getppid() != parent_pid:  # the driver died before prctl took effect
    os._exit(1)  # pylint: disable=protected-access
  threading.Thread(target=watch_parent, args=(parent_pid,), name="parent-watchdog",
                   daemon=True).start()


def watch_parent(parent_pid, interval_s=WATCHDOG_SECONDS, exit_fn=None):
  """Poll ``os.getppid()`` every ``interval_s``; once it is not ``parent_pid``
  call ``exit_fn`` (default: ``os._exit(1)``, no cleanup, no waiting on the
  trial) and return."""
  while os.getppid() == parent_pid:
    time.sleep(interval_s)
  (exit_fn or (lambda: os._exit(1)))()  # pylint: disable=protected-access


def _crash_result(spec, error):
  return {"trial_id": spec["trial_id"], "status": "failed", "metrics": {}, "artifacts": {},
          "error": "worker crashed: %s" % error, "retryable": False}


class LocalExecutor(Executor):
  """``max_parallel`` spawned worker processes on this machine."""

  def __init__(self, max_parallel):
    self._max_parallel = max_parallel
    self._pool = self._new_pool()
    self._futures = {}

  def _new_pool(self):
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=self._max_parallel, mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init, initargs=(os.getpid(),))

  def submit(self, spec):
    self._futures[self._pool.submit(trial_lib.evaluate_trial, spec)] = spec

  def wait(self, timeout=None):
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
        results.append(_crash_result(spec, "pool broken by another trial's worker"))
      self._futures.clear()
      self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = self._new_pool()
    return results

  @property
  def in_flight(self):
    return len(self._futures)

  def shutdown(self):
    self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
  """Trials as Ray tasks (``ray.init(address=ray_address)``)."""

  def __init__(self, max_parallel, ray_address=None, gpus_per_trial=0.0, single_node=False):
    try:
      import ray  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("--executor=ray needs Ray: pip install 'tea-keras[distributed]'") from e
    self._ray = ray
    if not ray.is_initialized():
      if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
      else:
        ray.init(num_cpus=max(2, max_parallel), log_to_driver=False, include_dashboard=False)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if single_node and len(nodes) > 1:
      raise ValueError("The Ray cluster at %s has %d nodes, and a local --device measures each "
                       "trial on whichever node trained it. Measure on one target: run `python "
                       "-m deploy.agent` there and use --device=remote." % (ray_address,
                                                                           len(nodes)))
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_trial and gpus < gpus_per_trial:
      raise ValueError("A GPU search asks Ray for %.2g GPU per trial, but the Ray cluster has "
                       "%s GPUs (is CUDA visible to Ray here?)." % (gpus_per_trial, gpus))
    self._remote = ray.remote(num_cpus=1, num_gpus=gpus_per_trial,
                              max_retries=0)(trial_lib.evaluate_trial)
    self.gpus_per_trial = gpus_per_trial
    self._refs = {}

  def submit(self, spec):
    self._refs[self._remote.remote(spec)] = spec

  def wait(self, timeout=None):
    ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
    results = []
    for ref in ready:
      spec = self._refs.pop(ref)
      try:
        results.append(self._ray.get(ref))
      except self._ray.exceptions.RayError as e:
        results.append(_crash_result(spec, e))
    return results

  @property
  def in_flight(self):
    return len(self._refs)

  def shutdown(self):
    for ref in self._refs:
      self._ray.cancel(ref, force=True)
    self._refs.clear()


def make_executor(name, max_parallel, ray_address=None, gpus_per_trial=0.0, single_node=False):
  if name == "local":
    return LocalExecutor(max_parallel)
  if name == "ray":
    return RayExecutor(max_parallel, ray_address, gpus_per_trial, single_node)
  raise ValueError("Invalid value for argument `executor`. Expected local or ray. "
                   "Received executor=%r" % (name,))
