"""Every ``python -m`` entry point starts: ``--help`` of each in a subprocess.

Also pins that importing the entry points defines no absl flag (each defines
its flags in ``define_flags()``, called only when run as a program), so two of
them can be imported together, and that device, runtime and power source
choices are the device registry's (``deploy/device/devices.py``).

absl's ``--help`` prints the main module's flags and exits with status 1
(``absl.app.HelpFlag``); argparse's exits with 0. Each case says which.
"""

import functools
import json
import os
import pathlib
import re
import subprocess
import sys

import tensorflow as tf
from absl import flags
from absl.testing import parameterized

from deploy.device import devices
from search import flags as search_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("tea_keras", "search", "deploy")
ABSL, ARGPARSE = "absl", "argparse"
HELP_EXIT = {ABSL: 1, ARGPARSE: 0}
HELP_MARK = {ABSL: "Try --helpfull to get a list of all flags.", ARGPARSE: "usage: "}

# (module, one of its own flags, CLI library)
ENTRY_POINTS = (
    ("search.run", "results_dir", ABSL),
    ("search.reports", "pesmo_dir", ABSL),
    ("search.reports.cross_device", "source_dir", ABSL),
    ("search.cascades.build", "max_stages", ABSL),
    ("search.dnas", "size_targets", ABSL),
    ("search.dnas.analysis", "results_dir", ABSL),
    ("search.dnas.widths", "size_targets", ABSL),
    ("search.benchmarks.benchmark", "problem", ABSL),
    ("search.benchmarks.anchors", "strategy", ABSL),
    ("search.benchmarks.decoupled_timing", "hardware", ABSL),
    ("search.benchmarks.weight_independence", "int8_cells", ABSL),
    ("deploy.export", "model_dir", ABSL),
    ("deploy.formats", "formats", ABSL),
    ("deploy.measure", "model", ABSL),
    ("deploy.bench_repeatability", "measurements", ABSL),
    ("deploy.device.run_cascade", "max_energy_per_image_j", ARGPARSE),
    ("deploy.selfcheck", "device_url", ARGPARSE),
    ("deploy.device.selfcheck", "flagfile", ARGPARSE),
    ("deploy.device.agent", "token_file", ARGPARSE),
    ("deploy.device.tensorrt_build", "onnx", ARGPARSE),
    ("deploy.device.cpu.measure", "model", ARGPARSE),
    ("deploy.device.gpu.measure", "model", ARGPARSE),
    ("deploy.device.jetson.measure", "model", ARGPARSE),
    ("deploy.device.myriad.measure", "model", ARGPARSE),
    ("tea_keras.train", "genotype", ABSL),
    ("tea_keras.profile", "num_cells", ABSL),
    ("tea_keras.benchmarks.train_throughput", "modes", ABSL),
)
# absl entry points whose import must define no flag (each defines them in
# define_flags(), called only when run as a program).
IMPORT_CLEAN = tuple(m for m, _, kind in ENTRY_POINTS if kind == ABSL)

REMOTE_DEVICES = list(devices.DEVICES) + [devices.REMOTE]
RUNTIMES = list(devices.RUNTIMES)
POWER_SOURCES = [devices.AUTO] + list(devices.POWER_SOURCES)


def _python(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable] + list(args), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120, check=False)


@functools.lru_cache(maxsize=None)
def _help(module):
  """``python -m module --help``, run once per module."""
  return _python("-m", module, "--help")


def _lists_flag(text, name):
  """Whether ``--name`` starts a line of the flag listing (not prose or usage)."""
  return re.search(r"(?m)^\s+--(\[no\])?%s\b" % re.escape(name), text) is not None


class EntryPointsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters((m.replace(".", "_"), m, f, k) for m, f, k in ENTRY_POINTS)
  def test_help_lists_own_flags(self, module, flag, kind):
    proc = _help(module)
    self.assertNotIn("Traceback", proc.stderr, "%s --help:\n%s" % (module, proc.stderr))
    self.assertEqual(proc.returncode, HELP_EXIT[kind],
                     "%s --help exited %d:\n%s" % (module, proc.returncode, proc.stderr))
    self.assertIn(HELP_MARK[kind], proc.stdout)
    self.assertTrue(_lists_flag(proc.stdout, flag),
                    "%s --help does not list --%s:\n%s" % (module, flag, proc.stdout))

  def test_entry_points_lists_every_main_module(self):
    found = set()
    for package in PACKAGES:
      for path in (ROOT / package).rglob("*.py"):
        if re.search(r"(?m)^if __name__ == .__main__.:", path.read_text()):
          parts = path.relative_to(ROOT).with_suffix("").parts
          found.add(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    self.assertEqual(found, {m for m, _, _ in ENTRY_POINTS})

  def test_import_report_with_cross_device_succeeds(self):
    proc = _python("-c", "import search.reports.__main__, search.reports.cross_device")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)

  def test_import_entry_points_defines_no_flags(self):
    code = ("import importlib, json, sys\nfrom absl import app, flags, logging\n"
            "before = set(flags.FLAGS)\n"
            "for m in sys.argv[1:]:\n  importlib.import_module(m)\n"
            "print(json.dumps(sorted(set(flags.FLAGS) - before)))\n")
    proc = _python("-c", code, *IMPORT_CLEAN)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(json.loads(proc.stdout), [])

  @parameterized.named_parameters(
      ("search_run_device", "search.run", "device", REMOTE_DEVICES),
      ("search_run_runtime", "search.run", "runtime", RUNTIMES),
      ("search_run_power_source", "search.run", "power_source", POWER_SOURCES),
      ("search_report_device", "search.reports", "device", REMOTE_DEVICES),
      ("search_report_runtime", "search.reports", "runtime", RUNTIMES),
      ("search_report_power_source", "search.reports", "power_source", POWER_SOURCES),
      ("deploy_measure_device", "deploy.measure", "device", list(devices.DEVICES)),
      ("deploy_measure_runtime", "deploy.measure", "runtime", RUNTIMES),
      ("deploy_measure_power_source", "deploy.measure", "power_source", POWER_SOURCES),
  )
  def test_help_choices_come_from_device_registry(self, module, flag, choices):
    self.assertIn("--%s: <%s>:" % (flag, "|".join(choices)), _help(module).stdout)

  def test_search_flags_define_flags_twice_is_noop(self):
    fv = flags.FlagValues()
    search_flags.define_flags(fv)
    names = sorted(fv)
    search_flags.define_flags(fv)
    self.assertEqual(sorted(fv), names)
    self.assertContainsSubset(("results_dir", "device", "epochs"), names)

  def test_search_flags_config_from_flags_reads_given_flags(self):
    fv = flags.FlagValues()
    search_flags.define_flags(fv)
    fv(["search.run", "--results_dir=/tmp/r", "--device=remote", "--epochs=3"])
    config = search_flags.config_from_flags(fv)
    self.assertEqual(config.results_dir, "/tmp/r")
    self.assertEqual(config.device, devices.REMOTE)
    self.assertEqual(config.power_source, devices.AUTO)
    self.assertEqual(config.recipe, {"epochs": 3})

  def test_search_flags_config_from_flags_requires_results_dir(self):
    fv = flags.FlagValues()
    search_flags.define_flags(fv)
    fv(["search.run"])
    with self.assertRaisesRegex(ValueError, "--results_dir is required"):
      search_flags.config_from_flags(fv)


if __name__ == "__main__":
  tf.test.main()
