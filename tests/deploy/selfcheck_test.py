"""Tests of deploy/selfcheck.py (host side): --device_url goes through the
host's agent client; the board's self-check refuses it with the reason.
The self-check itself: tests/deploy/device/selfcheck_test.py."""

import contextlib
import io
import unittest
from unittest import mock

from deploy import selfcheck as host_selfcheck
from deploy.device import selfcheck as device_selfcheck


class HostSelfcheckTest(unittest.TestCase):

  def test_board_selfcheck_refuses_device_url_and_names_the_host_command(self):
    err = io.StringIO()
    with self.assertRaises(SystemExit) as ctx, contextlib.redirect_stderr(err):
      device_selfcheck.main(["--device_url=http://127.0.0.1:1", "--token_file=t"])
    self.assertEqual(ctx.exception.code, 2)
    self.assertIn("python -m deploy.selfcheck", err.getvalue())

  def test_host_selfcheck_passes_its_agent_check(self):
    with mock.patch.object(device_selfcheck, "main", return_value=0) as main:
      self.assertEqual(host_selfcheck.main(["--device_url=u"]), 0)
    main.assert_called_once_with(["--device_url=u"], check_agent=host_selfcheck.check_agent)


if __name__ == "__main__":
  unittest.main()
