"""Reload, status and metrics against a real `twistd -n openclaw`: SIGHUP
rotates the token, `openclaw gateway reload` and `openclaw status` talk to it
over the WebSocket, the startup lines say what it serves, and a second
`--metrics-listen` port is scraped without a token."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.workers import UNSAFE_FILE_STORE_ENV
from tests.gateway_process import TOKEN, GatewayProcess, write_config
from tests.ws_sync_client import SyncWsClient

NEW_TOKEN = "rotated-token-0123456789abcdef012345"
CLI = [sys.executable, "-c", "import sys; from openclaw.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class RunningGatewayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir()
        self.metrics_port = free_port()
        self.config = write_config(
            self.base, http={"endpoints": {"chatCompletions": {"enabled": True}}}
        )
        self.gateway = GatewayProcess(
            self.config,
            self.base / "state",
            extra_args=("--metrics-listen", f"tcp:{self.metrics_port}:interface=127.0.0.1"),
        )
        self.addCleanup(self.gateway.ensure_stopped)

    def cli(self, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env["HOME"] = str(self.base)
        return subprocess.run(
            [*CLI, *args, "--url", f"ws://127.0.0.1:{self.gateway.port}", "--token", token],
            env=env,
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_sighup_rotates_the_token(self) -> None:
        """SIGHUP after the file changed: the old token is refused, the new one
        accepted; the log says what changed."""
        models = f"{self.gateway.base_url}/v1/models"
        self.assertEqual(get(models, TOKEN)[0], 200)
        document = json.loads(self.config.read_text())
        document["gateway"]["auth"]["token"] = NEW_TOKEN
        self.config.write_text(json.dumps(document))
        self.gateway.process.send_signal(signal.SIGHUP)
        self.gateway.wait_for_output("config reloaded from")
        self.assertEqual(get(models, TOKEN)[0], 401)
        self.assertEqual(get(models, NEW_TOKEN)[0], 200)
        self.assertNotIn(NEW_TOKEN, self.gateway.text)

    def test_cli_reload_status_and_a_refused_reload(self) -> None:
        """`openclaw gateway reload` applies a change and says what changed; a
        broken file is refused (exit 1) and the gateway keeps serving;
        `openclaw status` reports version, uptime, agents and runs."""
        document = json.loads(self.config.read_text())
        document["gateway"]["http"]["endpoints"]["chatCompletions"]["enabled"] = False
        self.config.write_text(json.dumps(document))
        reloaded = self.cli("gateway", "reload")
        self.assertEqual(reloaded.returncode, 0, reloaded.stderr)
        self.assertIn("gateway.http", reloaded.stdout)
        self.assertEqual(get(f"{self.gateway.base_url}/v1/models", TOKEN)[0], 404)

        self.config.write_text("{gateway: ")
        refused = self.cli("gateway", "reload")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("refused", refused.stderr)
        self.assertIn("invalid JSON5", refused.stderr)
        self.assertEqual(get(f"{self.gateway.base_url}/healthz")[0], 200)

        status = self.cli("status")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertIn("openclaw-twisted", status.stdout)
        self.assertIn("uptime:", status.stdout)
        self.assertIn("active runs: 0", status.stdout)
        self.assertIn("- main (default)", status.stdout)

    def test_startup_lines_and_the_separate_metrics_port(self) -> None:
        """The log names the config file, the agent and the endpoints; the
        --metrics-listen port answers /metrics without a token."""
        text = self.gateway.text
        self.assertIn(f"config file: {self.config}", text)
        self.assertIn("agent main (default): model demo/echo", text)
        self.assertIn("endpoints: /healthz, /readyz, /v1/chat/completions", text)
        get(f"{self.gateway.base_url}/healthz")
        status, body = get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b'openclaw_http_requests_total{method="GET",route="/healthz"', body)
        self.assertIn(b"process_cpu_seconds_total", body)


class WorkersReloadTests(SynchronousTestCase):
    def two_workers(self) -> tuple[GatewayProcess, Path]:
        """A gateway with --workers 2 (the file store allowed), ready; its config file."""
        os.environ[UNSAFE_FILE_STORE_ENV] = "1"
        self.addCleanup(os.environ.pop, UNSAFE_FILE_STORE_ENV, None)
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        config = write_config(base)
        gateway = GatewayProcess(config, base / "state", extra_args=("--workers", "2"))
        self.addCleanup(gateway.ensure_stopped)
        gateway.wait_for_output("with 2 workers")
        return gateway, config

    def test_sighup_to_the_supervisor_reloads_every_worker(self) -> None:
        """With --workers 2, SIGHUP to the parent is forwarded: both workers
        reload, and no connection (whichever worker takes it) accepts the old
        token any more."""
        gateway, config = self.two_workers()
        document = json.loads(config.read_text())
        document["gateway"]["auth"]["token"] = NEW_TOKEN
        config.write_text(json.dumps(document))
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while gateway.text.count("config reloaded from") < 2:
            # typing note: the helper's line reader, to count lines (not just find one).
            self.assertIsNotNone(gateway._read_line(deadline), gateway.text)
        models = f"{gateway.base_url}/v1/models"
        for _ in range(6):
            self.assertEqual(get(models, TOKEN)[0], 401)
            self.assertEqual(get(models, NEW_TOKEN)[0], 200)

    def test_gateway_reload_over_the_websocket_reloads_every_worker(self) -> None:
        """gateway.reload reaches one worker; that worker answers, and the parent
        has the other worker reload too: no connection accepts the old token."""
        gateway, config = self.two_workers()
        client = SyncWsClient(gateway.port)
        self.addCleanup(client.close)
        document = json.loads(config.read_text())
        document["gateway"]["auth"]["token"] = NEW_TOKEN
        config.write_text(json.dumps(document))
        answer = client.request("gateway.reload")
        self.assertTrue(answer["ok"], answer)
        deadline = time.monotonic() + 30
        while gateway.text.count("config reloaded from") < 2:
            # typing note: the helper's line reader, to count lines (not just find one).
            self.assertIsNotNone(gateway._read_line(deadline), gateway.text)
        self.assertIn("reloading the others", gateway.text)
        models = f"{gateway.base_url}/v1/models"
        for _ in range(6):
            self.assertEqual(get(models, TOKEN)[0], 401)
            self.assertEqual(get(models, NEW_TOKEN)[0], 200)
