"""The state-directory lock: one owner per state dir, stale locks taken over,
and the real processes (a second gateway, ``openclaw agent --local``) that stop
with one line instead of corrupting the session index."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.statelock import (
    StateDirLockedError,
    StateLock,
    lock_path,
    pid_alive,
    read_owner,
)
from tests.gateway_process import VENV_BIN, GatewayProcess, write_config

T = TypeVar("T")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class StateLockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = Path(self.mktemp())
        self.state.mkdir()

    def test_lock_records_owner(self) -> None:
        """The lock file sits under tmp/openclaw-<uid>/ and names this pid and role."""
        lock = StateLock.acquire(self.state, "gateway")
        self.addCleanup(lock.release)
        path = lock_path(self.state)
        self.assertEqual(path.parent.name, f"openclaw-{os.getuid()}")
        self.assertEqual(path.parent.parent, self.state.absolute() / "tmp")
        owner = read_owner(path)
        assert owner is not None
        self.assertEqual((owner.pid, owner.role), (os.getpid(), "gateway"))

    def test_second_owner_refused(self) -> None:
        """A second acquire (another open file, as another process has) fails at once,
        naming the live owner."""
        lock = StateLock.acquire(self.state, "gateway")
        self.addCleanup(lock.release)
        error = self.assertRaises(
            StateDirLockedError, StateLock.acquire, self.state, "openclaw agent --local"
        )
        self.assertIsNotNone(error.owner)
        self.assertIn(f"running gateway (pid {os.getpid()})", str(error))
        self.assertIn(str(self.state.absolute()), str(error))

    def test_release_frees_and_removes(self) -> None:
        """Release removes the lock file and lets the next owner in; it is idempotent."""
        lock = StateLock.acquire(self.state, "gateway")
        lock.release()
        lock.release()
        self.assertFalse(lock.held)
        self.assertFalse(lock_path(self.state).exists())
        again = StateLock.acquire(self.state, "gateway")
        self.addCleanup(again.release)
        self.assertTrue(again.held)

    def test_stale_lock_taken_over(self) -> None:
        """A lock file left by a dead process (no flock held) is taken over and logged."""
        pid = dead_pid()
        self.assertFalse(pid_alive(pid))
        path = lock_path(self.state)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"pid": pid, "role": "gateway", "createdAt": 1}))
        with capturedLogs() as events:
            lock = StateLock.acquire(self.state, "gateway")
        self.addCleanup(lock.release)
        owner = read_owner(path)
        assert owner is not None
        self.assertEqual(owner.pid, os.getpid())
        took = [e for e in events if "stale" in e.get("log_format", "")]
        self.assertEqual(len(took), 1)
        self.assertEqual((took[0]["pid"], took[0]["alive"]), (pid, "exited"))

    def test_garbage_lock_file(self) -> None:
        """An unreadable lock file does not stop a start-up: it is rewritten."""
        path = lock_path(self.state)
        path.parent.mkdir(parents=True)
        path.write_text("not json")
        lock = StateLock.acquire(self.state, "gateway")
        self.addCleanup(lock.release)
        owner = read_owner(path)
        assert owner is not None
        self.assertEqual(owner.pid, os.getpid())


class StateLockProcessTests(SynchronousTestCase):
    """Real processes on one state directory."""

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp())
        self.state = self.tmp / "state"
        self.state.mkdir(parents=True)
        self.config = write_config(self.tmp)
        self.env = {
            **os.environ,
            "OPENCLAW_STATE_DIR": str(self.state),
            "HOME": str(self.state),
        }
        self.env.pop("OPENCLAW_GATEWAY_TOKEN", None)

    def _gateway(self) -> GatewayProcess:
        gateway = GatewayProcess(self.config, self.state)
        self.addCleanup(gateway.ensure_stopped)
        return gateway

    def _command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def test_agent_local_refused_while_gateway_runs(self) -> None:
        """``openclaw agent --local`` on a running gateway's state dir exits 1 with one
        line naming the gateway's pid, and writes no session."""
        gateway = self._gateway()
        result = self._command(
            str(VENV_BIN / "openclaw"), "agent", "--local", "-c", str(self.config), "-m", "hi"
        )
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(f"running gateway (pid {gateway.process.pid})", lines[0])
        self.assertIn("without --local", lines[0])
        self.assertEqual(result.stdout, "")
        self.assertEqual(gateway.stop(), 0)
        # Once the gateway is gone the same command runs.
        ok = self._command(
            str(VENV_BIN / "openclaw"), "agent", "--local", "-c", str(self.config), "-m", "hi"
        )
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("hi", ok.stdout)

    def test_second_gateway_refused(self) -> None:
        """A second ``twistd openclaw`` on the same state dir exits 1 with one line."""
        first = self._gateway()
        result = self._command(
            str(VENV_BIN / "twistd"),
            "--nodaemon",
            "--pidfile=",
            "openclaw",
            "--config",
            str(self.config),
            "--listen",
            "tcp:0:interface=127.0.0.1",
        )
        self.assertEqual(result.returncode, 1)
        problems = [line for line in result.stderr.splitlines() if line.startswith("openclaw:")]
        self.assertEqual(len(problems), 1, result.stderr)
        self.assertIn(f"in use by a running gateway (pid {first.process.pid})", problems[0])
        self.assertEqual(first.stop(), 0)

    def test_killed_gateway_lock_taken_over(self) -> None:
        """After a gateway is SIGKILLed its lock file stays behind; the next gateway
        takes it over (and says so) instead of refusing to start."""
        first = self._gateway()
        first.stop(signal.SIGKILL)
        owner = read_owner(lock_path(self.state))
        assert owner is not None
        self.assertEqual(owner.pid, first.process.pid)
        second = self._gateway()
        second.wait_for_output(rf"took over the stale state lock of gateway pid {owner.pid}")
        self.assertEqual(second.stop(), 0)
        self.assertFalse(lock_path(self.state).exists())

    def test_daemonized_gateway_records_its_own_pid(self) -> None:
        """Run as a daemon (twistd without -n), the gateway's lock names the daemon's
        pid, not the pid of the process that forked it."""
        pidfile = self.tmp / "twistd.pid"
        logfile = self.tmp / "twistd.log"
        result = self._command(
            str(VENV_BIN / "twistd"),
            f"--pidfile={pidfile}",
            f"--logfile={logfile}",
            "openclaw",
            "--config",
            str(self.config),
            "--listen",
            "tcp:0:interface=127.0.0.1",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        daemon = int(_wait_for(lambda: pidfile.read_text().strip() or None))
        self.addCleanup(_terminate, daemon)

        def owner_is_daemon() -> bool | None:
            owner = read_owner(lock_path(self.state))
            return True if owner is not None and owner.pid == daemon else None

        _wait_for(owner_is_daemon)
        _terminate(daemon)
        _wait_for(lambda: None if pid_alive(daemon) else True)
        self.assertFalse(lock_path(self.state).exists())


def _wait_for(check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except OSError:
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
