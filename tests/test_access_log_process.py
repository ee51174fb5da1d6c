"""`openclaw gateway run --log-format json` in a real process: every line one
flat JSON object, access lines included, no Twisted internals, no secrets."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.gateway_process import TOKEN, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class JsonLogProcessTests(SynchronousTestCase):
    def test_gateway_run_writes_flat_json_lines(self) -> None:
        """Start-up, listening and access lines are flat JSON with time, level,
        logger and message; no key starts with log_; the token never appears."""
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        config = write_config(base)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env |= {"HOME": str(base), "OPENCLAW_STATE_DIR": str(base / "state")}
        env["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from openclaw.cli import main; sys.exit(main())",
             "gateway", "run", "--log-format", "json", "--config", str(config),
             "--port", str(port)],
            env=env, cwd=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.addCleanup(_stop, process)
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        lines: list[dict[str, Any]] = []
        pending = b""

        def read_until(predicate: Any, timeout: float = 30.0) -> None:
            nonlocal pending
            deadline = time.monotonic() + timeout
            while not any(predicate(line) for line in lines):
                remaining = deadline - time.monotonic()
                self.assertGreater(remaining, 0, lines)
                if not selector.select(remaining):
                    continue
                chunk = os.read(process.stdout.fileno(), 65536)  # type: ignore[union-attr]
                self.assertTrue(chunk, lines)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                lines.extend(json.loads(raw) for raw in complete if raw.strip())

        read_until(lambda line: "listening on" in line["message"])
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            self.assertEqual(answer.status, 200)
        read_until(lambda line: line.get("logger") == "openclaw.access")
        access = next(line for line in lines if line.get("logger") == "openclaw.access")
        self.assertEqual(access["path"], "/v1/models")
        self.assertEqual(access["status"], 200)
        self.assertEqual(access["level"], "info")
        for line in lines:
            self.assertLessEqual({"time", "level", "logger", "message"}, set(line))
            self.assertFalse([key for key in line if key.startswith("log_")], line)
        self.assertTrue(any("config file:" in line["message"] for line in lines))
        self.assertNotIn(TOKEN, json.dumps(lines))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
