"""Tests of tea_keras/files.py: atomic writes."""

import json
import os
import tempfile
import unittest

from tea_keras import files


class FilesTest(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()

  def test_temporary_names_keep_globs_clean_or_keep_the_extensions(self):
    self.assertEqual(files.temporary_path("a/c.json"), "a/c.json.tmp")
    self.assertEqual(files.temporary_path("a/model.keras", keep_suffix=True), "a/model.tmp.keras")
    self.assertEqual(files.temporary_path("a/x.weights.h5", keep_suffix=True),
                     "a/x.tmp.weights.h5")
    self.assertEqual(files.temporary_path("a/.nonce", keep_suffix=True), "a/.tmp.nonce")

  def test_write_json_replaces_the_file_and_leaves_no_temporary(self):
    path = os.path.join(self.dir, "c.json")
    files.write_json(path, {"a": 1})
    files.write_json(path, {"a": 2}, indent=1)
    with open(path) as f:
      self.assertEqual(json.load(f), {"a": 2})
    self.assertEqual(os.listdir(self.dir), ["c.json"])

  def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(self):
    path = os.path.join(self.dir, "c.txt")
    files.write_text(path, "old")
    with self.assertRaises(RuntimeError):
      with files.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
          f.write("half")
        raise RuntimeError("killed mid-write")
    with open(path) as f:
      self.assertEqual(f.read(), "old")
    self.assertEqual(os.listdir(self.dir), ["c.txt"])


if __name__ == "__main__":
  unittest.main()
