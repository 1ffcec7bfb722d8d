"""Tests for search/flags.py's flagfile expansion (nested flagfiles)."""

import os
import subprocess
import sys

import tensorflow as tf
from absl import flags as absl_flags

from search import flags as search_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ExpandFlagfilesTest(tf.test.TestCase):

  def _write(self, path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write(text)
    return path

  def test_expand_flagfiles_resolves_includes_next_to_the_including_file(self):
    d = os.path.join(self.get_temp_dir(), "cfgs")
    self._write(os.path.join(d, "base.cfg"), "# base\n--a=1\n\n--b=2\n// note\n")
    top = self._write(os.path.join(d, "top.cfg"), "--flagfile=flags/base.cfg\n--b=3\n")
    argv = search_flags.expand_flagfiles(["--x=0", "--flagfile=" + top, "--a=9"])
    # absl's order: included lines in place, later ones win.
    self.assertEqual(argv, ["--x=0", "--a=1", "--b=2", "--b=3", "--a=9"])

  def test_expand_flagfiles_names_a_missing_file_and_its_includer(self):
    top = self._write(os.path.join(self.get_temp_dir(), "m", "top.cfg"), "--flagfile=gone.cfg\n")
    with self.assertRaisesRegex(ValueError, r"--flagfile=gone.cfg: no such file \(included by"):
      search_flags.expand_flagfiles(["--flagfile=" + top])

  def test_expand_flagfiles_refuses_a_cycle(self):
    d = os.path.join(self.get_temp_dir(), "cyc")
    self._write(os.path.join(d, "a.cfg"), "--flagfile=b.cfg\n")
    self._write(os.path.join(d, "b.cfg"), "--flagfile=a.cfg\n")
    with self.assertRaisesRegex(ValueError, "includes itself"):
      search_flags.expand_flagfiles(["--flagfile=" + os.path.join(d, "a.cfg")])

  def test_absl_alone_does_not_find_an_include_next_to_the_including_file(self):
    # Why expand_flagfiles exists: absl opens nested flagfiles against the
    # working directory, which is not the including file's.
    d = os.path.join(self.get_temp_dir(), "absl_alone")
    self._write(os.path.join(d, "base.cfg"), "--a=1\n")
    top = self._write(os.path.join(d, "top.cfg"), "--flagfile=flags/base.cfg\n")
    values = absl_flags.FlagValues()
    absl_flags.DEFINE_integer("a", 0, "A flag.", flag_values=values)
    with self.assertRaises(absl_flags.CantOpenFlagFileError):
      values(["prog", "--flagfile=" + top])
    values(["prog"] + search_flags.expand_flagfiles(["--flagfile=" + top]))
    self.assertEqual(values.a, 1)

  def test_constrained_flagfile_is_its_baseline_plus_the_budget(self):
    def parsed(name):
      out = {}
      for arg in search_flags.expand_flagfiles(["--flagfile=" + os.path.join(ROOT, "flags",
                                                                             name)]):
        key, _, value = arg.partition("=")
        out[key] = value
      return out
    constrained, baseline = parsed("constrained.cfg"), parsed("constrained_baseline.cfg")
    self.assertEqual(constrained.pop("--max_params"), "304642")
    self.assertEqual((constrained.pop("--results_dir"), baseline.pop("--results_dir")),
                     ("runs/constrained", "runs/constrained_baseline"))
    self.assertEqual(constrained, baseline)
    self.assertNotIn("--max_params", baseline)

  def test_search_run_reads_nested_flagfiles_from_another_directory(self):
    env = dict(os.environ, PYTHONPATH=ROOT)
    # A budget no cell meets is refused at once, naming the network of the
    # baseline flagfile (N=1, F=8): the nested file was read from elsewhere.
    proc = subprocess.run([sys.executable, "-m", "search.run", "--flagfile=" + os.path.join(
        ROOT, "flags", "constrained.cfg"), "--max_params=1000", "--results_dir=" + os.path.join(
            self.get_temp_dir(), "r")], capture_output=True, text=True,
                          cwd=self.get_temp_dir(), env=env, timeout=300)
    self.assertEqual(proc.returncode, 1, msg=proc.stderr[-2000:])
    self.assertIn("--num_cells=1 --filters=8", proc.stderr)
    missing = subprocess.run([sys.executable, "-m", "search.run", "--flagfile=nope.cfg"],
                             capture_output=True, text=True, cwd=self.get_temp_dir(), env=env,
                             timeout=300)
    self.assertEqual(missing.returncode, 1)
    self.assertIn("error: --flagfile=nope.cfg: no such file.", missing.stderr)


if __name__ == "__main__":
  tf.test.main()
