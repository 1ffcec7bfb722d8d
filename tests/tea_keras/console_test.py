"""Tests of tea_keras/console.py: native log lines dropped, the rest kept."""

import os
import re
import subprocess
import sys
import textwrap

import tensorflow as tf

from tea_keras import console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = r"""
import os, sys
from tea_keras import console
console.quiet_native_logs()
os.write(2, b"I0000 00:00:1796144076.520852   21522 port.cc:153] oneDNN custom operations are on.\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"E0000 00:00:1796144081.598191   21522 cuda_executor.cc:1228] failed call to cuInit\n")
sys.stderr.write("error: a message of ours\n")
print("stdout line", flush=True)
import subprocess
subprocess.run([sys.executable, "-c", "import os; os.write(2, b'W0000 00:00:1.5   7 x.cc:1] child native\\nchild line\\n')"])
raise SystemExit("error: exit message")
"""

# Installed as sitecustomize.py in the CLIs' subprocesses: right after the real
# quiet_native_logs() returns, one absl and one named-logger warning are raised.
PROBE_SITECUSTOMIZE = textwrap.dedent("""\
    import logging
    import os
    from tea_keras import console
    _real = console.quiet_native_logs

    def _probed(*args, **kwargs):
      result = _real(*args, **kwargs)
      from absl import logging as absl_logging
      module = os.environ["TEA_PROBE_MODULE"]
      absl_logging.warning("probe-absl-%s", module)
      logging.getLogger("tea_probe").warning("probe-logger-%s", module)
      return result

    console.quiet_native_logs = _probed
    """)
# Arguments that bring a CLI to its main() and let it fail (or finish) fast;
# a CLI not named here is run without arguments.
# Arguments that make a CLI stop right after quieting the console (refused
# before any work), where running it bare would start real work.
CLI_ARGS = {"search.benchmarks.weight_independence": ["--runtimes=no_such_runtime"]}
# CLIs known to quiet the console: the scan below must find at least these.
KNOWN_QUIET_CLIS = ("search.run", "search.reports", "search.cascades.build", "search.reports.cross_device",
                    "deploy.formats")


def quiet_clis():
  """The ``python -m`` modules of the project that call quiet_native_logs()."""
  found = []
  for package in ("tea_keras", "search", "deploy"):
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if not name.endswith(".py"):
          continue
        with open(os.path.join(folder, name)) as f:
          text = f.read()
        if re.search(r"\bquiet_native_logs\(\)", text) and "__main__" in text \
            and not text.lstrip().startswith('"""Keep TensorFlow'):
          rel = os.path.relpath(os.path.join(folder, name[:-3]), ROOT).replace(os.sep, ".")
          found.append(rel[:-len(".__main__")] if rel.endswith(".__main__") else rel)
  return sorted(found)


class ConsoleTest(tf.test.TestCase):

  def _run(self, **env):
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT, **env))

  def test_console_drops_native_lines_and_keeps_ours(self):
    out = self._run(TEA_TF_LOGS="0")
    self.assertEqual(out.returncode, 1)
    self.assertEqual(out.stderr.splitlines(), ["error: a message of ours", "child line",
                                               "error: exit message"])
    self.assertEqual(out.stdout, "stdout line\n")

  def test_console_shows_everything_when_asked(self):
    out = self._run(TEA_TF_LOGS="1")
    self.assertIn("port.cc:153] oneDNN", out.stderr)
    self.assertIn("child native", out.stderr)

  def test_is_native_log_matches_only_the_prefix_format(self):
    self.assertTrue(console.is_native_log(
        "I0000 00:00:1796141204.058694    6330 port.cc:153] oneDNN custom operations"))
    self.assertTrue(console.is_native_log(
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags."))
    self.assertFalse(console.is_native_log("E0000: not a log line"))
    self.assertFalse(console.is_native_log("Traceback (most recent call last):"))

  def test_is_native_log_drops_cpp_lines_and_keeps_python_log_lines(self):
    native = [
        "I0000 00:00:1733531234.123456   12345 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1796144081.598191   21522 cuda_executor.cc:1228] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "W0000 00:00:1733531234.123456   12345 gpu_device.cc:2344] Cannot dlopen some GPU "
        "libraries.",
        "I0000 00:00:1733531234.123456   12345 cpu_feature_guard.cc:210] This TensorFlow binary "
        "is optimized to use available CPU instructions in performance-critical operations.",
        "W0000 00:00:1733531234.123456   12345 op_kernel.h:1840] a header's warning",
        "E1207 00:41:51.123456  140234 onnxruntime_cpp.cpp:88] a .cpp file's error",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    ]
    python = [
        "W1207 00:41:51.123456 140234 cascade.py:123] a warning of search.cascades.build",
        "E1207 00:41:51.123456 140234 report.py:9] an error of search.reports",
        "W1207 00:41:51.123456 140234 <stdin>:1] a warning typed at the prompt",
        "I1207 00:41:51.123456 140234 warnings.py:110] UserWarning: ...",
        "probe-logger-search.cascades.build",
    ]
    self.assertEqual([l for l in native if not console.is_native_log(l)], [],
                     msg="native lines expected to be dropped")
    self.assertEqual([l for l in python if console.is_native_log(l)], [],
                     msg="Python log lines expected to be kept")

  def test_quiet_clis_pass_python_warnings_to_the_console(self):
    clis = quiet_clis()
    self.assertContainsSubset(KNOWN_QUIET_CLIS, clis)
    site = self.get_temp_dir()
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
      f.write(PROBE_SITECUSTOMIZE)
    missing = {}
    for module in clis:
      env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, ROOT]), TEA_TF_LOGS="0",
                 TEA_PROBE_MODULE=module)
      out = subprocess.run([sys.executable, "-m", module] + CLI_ARGS.get(module, []),
                           capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
      lost = [p % module for p in ("probe-absl-%s", "probe-logger-%s")
              if p % module not in out.stderr]
      if lost:
        missing[module] = (lost, out.stderr[-600:])
    self.assertEqual(missing, {}, msg="warnings expected on each CLI's stderr, missing")


if __name__ == "__main__":
  tf.test.main()
