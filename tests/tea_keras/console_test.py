"""Tests of tea_keras/console.py: native log lines dropped, the rest kept."""

import os
import subprocess
import sys

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


if __name__ == "__main__":
  tf.test.main()
