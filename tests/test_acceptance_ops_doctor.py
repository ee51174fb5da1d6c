"""Acceptance (issue 14): `openclaw doctor` as a new user meets it with no
config file, a missing --config file, and a relative --config path."""

from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.cli.doctor import offline_checks


class DoctorConfigLineTests(SynchronousTestCase):
    def _state(self) -> dict[str, str]:
        home = Path(self.mktemp()).resolve()
        state = home / "state"
        state.mkdir(parents=True, mode=0o700)
        return {"HOME": str(home), "OPENCLAW_STATE_DIR": str(state)}

    def test_no_config_file_is_not_called_valid_next_to_a_failure(self) -> None:
        """No file and defaults that cannot start (token mode, no token): no
        "ok ... is valid" line contradicts the FAIL; the missing file is a
        warning whose fix is to create it with `openclaw setup`."""
        env = self._state()
        checks, _config = offline_checks(None, env, [])
        config_lines = [c for c in checks if c.name == "config"]
        self.assertFalse([c.line() for c in config_lines if c.status == "ok"])
        self.assertTrue(any(c.status == "FAIL" for c in config_lines))
        missing = [c for c in config_lines if "no file at" in c.detail]
        self.assertEqual(len(missing), 1, [c.line() for c in config_lines])
        self.assertEqual(missing[0].status, "warn")
        self.assertIn("openclaw setup", missing[0].fix or "")

    def test_missing_named_file_says_create_not_edit(self) -> None:
        """--config naming a file that does not exist: FAIL whose fix creates it."""
        env = self._state()
        path = Path(env["HOME"]) / "absent.json5"
        checks, config = offline_checks(str(path), env, [])
        self.assertIsNone(config)
        (check,) = [c for c in checks if c.name == "config"]
        self.assertEqual(check.status, "FAIL")
        self.assertIn("openclaw setup", check.fix or "")
        self.assertNotIn("edit", check.fix or "")

    def test_config_line_names_the_absolute_path(self) -> None:
        """A relative --config is reported as the absolute path doctor read."""
        env = self._state()
        home = Path(env["HOME"])
        path = home / "openclaw.json"
        token = "3f9c0a7be41d2c6855aa90f1b7c3de24"
        path.write_text(json.dumps({"gateway": {"auth": {"token": token}, "port": 1}}))
        cwd = os.getcwd()
        os.chdir(home)
        self.addCleanup(os.chdir, cwd)
        checks, config = offline_checks("openclaw.json", env, [])
        self.assertIsNotNone(config)
        (ok,) = [c for c in checks if c.name == "config" and c.status == "ok"]
        self.assertIn(str(path), ok.detail)
