"""pytest configuration shared by every test.

Measurements on a local device hold a machine-wide lock (``search.device_lock``,
``$TEA_LOCK_DIR`` or ``<tmp>/tea-keras-locks``). A test session gets a lock
directory of its own, so that it neither waits for nor delays another test
session (or a user's search) on the same machine; the processes a session
starts inherit it, and measure one at a time among themselves as a search
would.
"""

import os
import tempfile

os.environ.setdefault("TEA_LOCK_DIR", tempfile.mkdtemp(prefix="tea-test-locks-"))


def _is_tensorflow_placeholder(item):
  """``tf.test.TestCase.test_session``: a deprecated context manager that
  pytest collects as a test and that only skips ("Not a test.")."""
  function = getattr(item, "function", None)
  return item.name == "test_session" and getattr(function, "__module__", "").startswith(
      "tensorflow")


def pytest_collection_modifyitems(config, items):
  """Deselect TensorFlow's placeholder, so that the skips a run reports are
  the project's own (each with its reason)."""
  placeholders = [item for item in items if _is_tensorflow_placeholder(item)]
  if placeholders:
    config.hook.pytest_deselected(items=placeholders)
    items[:] = [item for item in items if not _is_tensorflow_placeholder(item)]
