"""Start the real ``twistd openclaw`` process for integration tests.

The gateway listens on ``tcp:0`` (a free port chosen by the kernel) and logs
``listening on 127.0.0.1:<port>``; we read that line from its output to learn
the port, so there is no port race and no sleeping.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
TOKEN = "integration-test-token"


def write_config(directory: Path, extra: dict[str, Any] | None = None, **gateway: Any) -> Path:
    """A JSON config with token auth and chat completions enabled, merged with ``extra``."""
    config: dict[str, Any] = {
        "gateway": {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            **gateway,
        },
        "models": {"providers": {"demo": {"api": "demo", "delayMs": 0}}},
        "agents": {"list": [{"id": "main", "default": True, "model": "demo/echo"}]},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = directory / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


def _readable(line: str) -> str:
    """The text of a log line, formatting JSON log events (``twist --log-format=json``)
    and taking the ``message`` of our flat JSON lines (``json_logger``)."""
    line = line.lstrip("\x1e")  # jsonFileLogObserver's record separator
    if line.startswith("{"):
        from twisted.logger import eventFromJSON, formatEvent

        try:
            event = eventFromJSON(line)
        except ValueError:
            return line
        if "log_format" not in event and isinstance(event.get("message"), str):
            return str(event["message"])
        return formatEvent(event)
    return line


class GatewayProcess:
    """A running ``twistd -n openclaw`` with its own state dir."""

    def __init__(
        self,
        config_path: Path,
        state_dir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        runner: str = "twistd",
        startup_timeout: float = 30.0,
        file_size_limit: int | None = None,
    ) -> None:
        """:param file_size_limit: ``RLIMIT_FSIZE`` for the gateway, in bytes: a
        write past it fails with EFBIG, as a full disk fails one with ENOSPC
        (Python ignores SIGXFSZ); ``resource.prlimit`` lifts it later."""
        env = {
            **os.environ,
            "OPENCLAW_STATE_DIR": str(state_dir),
            "HOME": str(state_dir),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("OPENCLAW_GATEWAY_TOKEN", None)
        env.pop("OPENCLAW_GATEWAY_PORT", None)
        if runner == "twistd":
            argv = [str(VENV_BIN / "twistd"), "--nodaemon", "--pidfile="]
        else:
            name, *runner_args = runner.split()
            argv = [str(VENV_BIN / name), *runner_args]
        argv += ["openclaw", "--config", str(config_path), *extra_args]
        if not any(a.startswith("--listen") for a in extra_args):
            argv += ["--listen", "tcp:0:interface=127.0.0.1"]
        if file_size_limit is not None:
            limit = (
                "import os, resource, sys; "
                "n = int(sys.argv[1]); "
                "resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.RLIM_INFINITY)); "
                "os.execv(sys.argv[2], sys.argv[2:])"
            )
            argv = [sys.executable, "-c", limit, str(file_size_limit), *argv]
        self.output: list[str] = []
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
        )
        self._pending = b""
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            self.port = self._wait_for_port(startup_timeout)
        except BaseException:
            # No caller holds this object yet to stop it: a gateway that never
            # logged its port would otherwise outlive the test run.
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._selector.close()
            self.process.stdout.close()
            raise

    def _read_line(self, deadline: float) -> str | None:
        """The next output line, or None at EOF; raises at the deadline.

        Reads the pipe unbuffered: a buffered reader would swallow lines the
        selector then never reports.
        """
        assert self.process.stdout is not None
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise TimeoutError("gateway output:\n" + "".join(self.output))
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                if not self._pending:
                    return None
                self._pending += b"\n"
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n", 1)
        line = raw.decode("utf-8", "replace") + "\n"
        self.output.append(line)
        return line

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            line = self._read_line(deadline)
            if line is None:
                self.process.wait()
                raise RuntimeError(
                    f"gateway exited {self.process.returncode}:\n" + "".join(self.output)
                )
            match = _LISTENING.search(_readable(line))
            if match:
                return int(match.group(1))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_output(self, pattern: str, timeout: float = 30.0) -> str:
        """Read output until a line matches ``pattern``; returns that line."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        for seen in self.output:
            if compiled.search(seen):
                return seen
        while True:
            line = self._read_line(deadline)
            if line is None:
                raise RuntimeError(f"gateway exited before {pattern!r}:\n" + "".join(self.output))
            if compiled.search(line):
                return line

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, drain the output, return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        deadline = time.monotonic() + timeout
        try:
            while self._read_line(deadline) is not None:
                pass
        except TimeoutError:
            self.process.kill()
        self._selector.close()
        return self.process.wait(timeout=timeout)

    def ensure_stopped(self) -> None:
        """Cleanup: kill the process if a test left it running."""
        if self.process.poll() is None:
            self.kill()

    def kill(self) -> None:
        """SIGKILL (crash) and reap."""
        self.process.kill()
        self.process.wait()
        self._selector.close()

    @property
    def text(self) -> str:
        return "".join(self.output)
