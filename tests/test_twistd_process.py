"""The real ``twistd openclaw`` process: one port for HTTP and WebSocket, clean
shutdown, clear start-up failures, no secrets in logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from tests.gateway_process import TOKEN, VENV_BIN, GatewayProcess, write_config


def raw_http(port: int, request: bytes) -> bytes:
    """Send one HTTP/1.1 request over a plain socket and read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class _RecordingFactory(WebSocketClientFactory):
    """Holds what the client saw."""

    def __init__(self, url: str, reactor: Any) -> None:
        super().__init__(url, reactor=reactor)
        self.protocol = _RecordingClient
        self.frames: list[dict[str, Any]] = []
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[int | None] = Deferred()


class _RecordingClient(WebSocketClientProtocol):
    """Records frames; answers the challenge with connect, then asks for health."""

    factory: _RecordingFactory

    def onOpen(self) -> None:
        self.factory.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame = json.loads(payload)
        self.factory.frames.append(frame)
        if frame.get("event") == "connect.challenge":
            self._send_frame(
                {
                    "type": "req",
                    "id": "c1",
                    "method": "connect",
                    "params": {
                        "minProtocol": 4,
                        "maxProtocol": 4,
                        "auth": {"token": TOKEN},
                        "client": {
                            "id": "cli",
                            "version": "test",
                            "platform": "linux",
                            "mode": "cli",
                        },
                        "role": "operator",
                        "scopes": ["operator.read"],
                    },
                }
            )
        elif frame.get("id") == "c1":
            self._send_frame({"type": "req", "id": "h1", "method": "health"})
        elif frame.get("id") == "h1":
            self.sendClose()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.closed.called:
            self.factory.closed.callback(code)

    def _send_frame(self, frame: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(frame).encode(), isBinary=False)


class TwistdProcessTests(TestCase):
    """These start a real process; each test stops it before returning."""

    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir(parents=True)

    def start(self, **kw: Any) -> GatewayProcess:
        config = write_config(self.dir)
        gateway = GatewayProcess(config, self.dir / "state", **kw)
        self.addCleanup(gateway.ensure_stopped)
        return gateway

    async def test_http_and_websocket_on_one_port_then_sigterm(self) -> None:
        """HTTP probes and a WebSocket session share the port; SIGTERM exits 0."""
        from twisted.internet import reactor

        gateway = self.start()
        health = raw_http(
            gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        head, _, body = health.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))
        self.assertIn(b"x-content-type-options: nosniff", head.lower())
        self.assertEqual(json.loads(body), {"ok": True, "status": "live"})
        ready = raw_http(
            gateway.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(ready.startswith(b"HTTP/1.1 200"))

        factory = _RecordingFactory(f"ws://127.0.0.1:{gateway.port}/", reactor)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port)
        await endpoint.connect(factory)
        await factory.closed
        frames = factory.frames
        self.assertEqual(frames[0]["event"], "connect.challenge")
        self.assertTrue(frames[0]["payload"]["nonce"])
        hello = next(f for f in frames if f.get("id") == "c1")
        self.assertEqual((hello["ok"], hello["payload"]["type"]), (True, "hello-ok"))
        health_res = next(f for f in frames if f.get("id") == "h1")
        self.assertTrue(health_res["ok"])

        self.assertEqual(gateway.stop(signal.SIGTERM), 0)
        self.assertIn("openclaw gateway stopped", gateway.text)
        self.assertNotIn(TOKEN, gateway.text)

    def _on_a_taken_port(
        self, *twistd_options: str
    ) -> tuple[subprocess.CompletedProcess[str], int]:
        """Run ``twistd [options] openclaw --port P`` with P already bound; the
        finished process and P."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [
                    str(VENV_BIN / "twistd"),
                    *twistd_options,
                    "openclaw",
                    "--config",
                    str(write_config(self.dir)),
                    "--port",
                    str(port),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={
                    "OPENCLAW_STATE_DIR": str(self.dir),
                    "HOME": str(self.dir),
                    "PATH": "/usr/bin:/bin",
                },
            )
        return result, port

    def test_port_in_use_exits_1_with_one_line(self) -> None:
        """A port already bound: exit status 1 and one line naming the problem."""
        result, port = self._on_a_taken_port("-n", "--pidfile=")
        self.assertEqual(result.returncode, 1)
        # twistd sends stderr to its log, so the line may arrive on either stream.
        output = result.stdout + result.stderr
        lines = [line for line in output.splitlines() if "cannot listen" in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn("Address already in use", lines[0])
        self.assertIn(str(port), lines[0])
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_port_in_use_as_a_daemon_exits_1(self) -> None:
        """Daemonized (no -n), a port in use reaches the launching twistd, which
        exits 1 naming it, instead of waiting on its status pipe forever."""
        result, _ = self._on_a_taken_port(
            f"--pidfile={self.dir / 'gw.pid'}", f"--logfile={self.dir / 'gw.log'}"
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot listen", result.stderr)
        self.assertIn("Address already in use", (self.dir / "gw.log").read_text())
        self.assertFalse((self.dir / "gw.pid").exists())

    def test_three_config_mistakes_three_lines(self) -> None:
        """A config with three mistakes: three lines naming the key paths, exit 1,
        no traceback."""
        config = self.dir / "bad.json5"
        config.write_text('{gateway: {port: "abc", auth: {mode: "bogus"}}, session: {fsync: 3}}')
        result = subprocess.run(
            [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "openclaw", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "OPENCLAW_STATE_DIR": str(self.dir),
                "HOME": str(self.dir),
                "PATH": "/usr/bin:/bin",
            },
        )
        self.assertEqual(result.returncode, 1)
        problems = [line for line in result.stderr.splitlines() if line.startswith("openclaw: ")]
        self.assertEqual(len(problems), 3, result.stderr)
        for key in ("gateway.port", "gateway.auth.mode", "session.fsync"):
            self.assertTrue(any(key in line for line in problems), key)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_twist_json_logs(self) -> None:
        """``twist --log-format=json openclaw`` writes JSON log lines, secrets absent."""
        config = write_config(self.dir)
        gateway = GatewayProcess(config, self.dir / "state", runner="twist --log-format=json")
        self.addCleanup(gateway.ensure_stopped)
        raw_http(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(gateway.stop(signal.SIGINT), 0)
        events = [json.loads(line.lstrip("\x1e")) for line in gateway.output if "{" in line]
        self.assertTrue(any("listening on" in json.dumps(e) for e in events))
        self.assertNotIn(TOKEN, gateway.text)
