"""The idle gateway does not import what only a first use needs (issue 16, S6).

A child process builds the service exactly as ``twistd openclaw`` does
(``Options`` then ``makeService``), starts it on the real reactor, asks
``/readyz`` over a real socket and reports which of the lazily loaded
modules are in ``sys.modules``. Other children check that the first use
loads them and works: a WebSocket upgrade, a config written in JSON5. (The
tools are built at an agent's first run: tests/test_tools_catalog.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

#: Loaded on the first WebSocket upgrade (Autobahn with WAMP, CBOR, NVX: ~6 MB)
#: and with it the method table and the connect checks.
WEBSOCKET_MODULES = (
    "autobahn",
    "txaio",
    "cbor2",
    "openclaw.gateway.ws.factory",
    "openclaw.gateway.ws.protocol",
    "openclaw.gateway.ws.methods",
    "openclaw.gateway.ws.handshake",
)
#: Loaded when an agent's tools are first built (its first run).
TOOL_MODULES = (
    "openclaw.agents.tools.apply_patch",
    "openclaw.agents.tools.exec",
    "openclaw.agents.tools.files",
    "openclaw.agents.tools.memory",
    "openclaw.agents.tools.process",
    "openclaw.agents.tools.sessions",
    "openclaw.agents.tools.web_fetch",
)
#: The JSON5 parser: only for a config that is not plain JSON.
CONFIG_MODULES = ("json5",)
#: Endpoints that are off (here /v1/responses) are not imported; nor is Klein
#: (with werkzeug, 3.7 MB) while only probes and the POST endpoints are asked.
KLEIN_MODULES = ("klein", "werkzeug", "openclaw.gateway.http.klein_routes")
HTTP_MODULES = ("openclaw.gateway.http.responses", "twisted.web.client", *KLEIN_MODULES)
#: Metrics exist only while /metrics or --metrics-listen serves them; zoneinfo
#: only for a configured time zone.
METRICS_MODULES = ("prometheus_client", "zoneinfo")
LAZY_MODULES = WEBSOCKET_MODULES + TOOL_MODULES + CONFIG_MODULES + HTTP_MODULES + METRICS_MODULES

#: Run in the child: start the service, GET /readyz, optionally upgrade to a
#: WebSocket, print what was asked and the lazy modules present.
_CHILD = r"""
import gc, json, socket, sys, threading

from twisted.internet import reactor

from openclaw.service import Options, makeService

config, mode, watched = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
upgrade = mode == "upgrade"
options = Options()
options.parseOptions(["--config", config, "--listen", "tcp:0:interface=127.0.0.1"])
service = makeService(options)
service.privilegedStartService()
service.startService()
result = {}


def ask(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536).split(b"\r\n", 1)[0].decode("latin-1")


def client(port):
    result["readyz"] = ask(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if mode == "models":
        result["models"] = ask(
            port,
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer lazy-test-token\r\n"
            b"Connection: close\r\n\r\n",
        )
    if upgrade:
        result["upgrade"] = ask(
            port,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
    reactor.callFromThread(done)


def done():
    result["loaded"] = sorted(name for name in watched if name in sys.modules)
    result["server_loaded"] = "openclaw.gateway.ws.server" in sys.modules
    result["gc"] = [gc.get_freeze_count() > 1000, gc.get_threshold()[0]]
    print(json.dumps(result))
    reactor.stop()


service.listening().addCallback(
    lambda addresses: threading.Thread(target=client, args=(addresses[0].port,)).start()
)
reactor.run()
"""


def _config(directory: Path, json5: bool) -> Path:
    """The benchmark's shape: token auth, chat completions, an OpenAI-style
    upstream that is never called, two agents."""
    config = {
        "gateway": {
            "bind": "loopback",
            "auth": {"mode": "token", "token": "lazy-test-token"},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {
            "providers": {
                "fake": {
                    "api": "openai-completions",
                    "baseUrl": "http://127.0.0.1:9/v1",
                    "models": [{"id": "s1"}, {"id": "s2"}],
                }
            }
        },
        "agents": {
            "list": [
                {"id": "s1", "default": True, "model": "fake/s1"},
                {"id": "s2", "model": "fake/s2"},
            ]
        },
    }
    path = directory / "openclaw.json"
    text = json.dumps(config, indent=1)
    # A comment makes it JSON5 that the standard JSON parser refuses.
    path.write_text("// the benchmark's gateway\n" + text if json5 else text)
    return path


class IdleImportsTests(SynchronousTestCase):
    def _start(self, mode: str, json5: bool = False) -> dict[str, Any]:
        directory = Path(self.mktemp())
        state = directory / "state"
        state.mkdir(parents=True)
        env = dict(os.environ, OPENCLAW_STATE_DIR=str(state), HOME=str(state))
        env.pop("OPENCLAW_GATEWAY_TOKEN", None)
        config = _config(directory, json5)
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(config), mode, json.dumps(LAZY_MODULES)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def test_idle_gateway_leaves_first_use_modules_unloaded(self) -> None:
        """A started gateway that answered /readyz has none of the lazy modules
        loaded (its WebSocket state is there, only Autobahn is not)."""
        result = self._start("idle")
        self.assertEqual(result["readyz"], "HTTP/1.1 200 OK")
        self.assertTrue(result["server_loaded"])
        self.assertEqual(result["loaded"], [])

    def test_started_gateway_tunes_the_cycle_collector(self) -> None:
        """Once running, the process froze its start-up objects and raised the
        young-generation threshold (openclaw.core.gc_tuning)."""
        result = self._start("idle")
        self.assertEqual(result["gc"], [True, 3000])

    def test_first_upgrade_loads_the_websocket_stack(self) -> None:
        """The first upgrade request loads Autobahn and gets its 101 answer."""
        result = self._start("upgrade")
        self.assertEqual(result["upgrade"], "HTTP/1.1 101 Switching Protocols")
        for name in WEBSOCKET_MODULES:
            self.assertIn(name, result["loaded"])

    def test_first_request_beyond_the_direct_routes_loads_klein(self) -> None:
        """GET /v1/models (a Klein route) builds the Klein app on first use and
        is answered; the probes before it did not need it."""
        result = self._start("models")
        self.assertEqual(result["models"], "HTTP/1.1 200 OK")
        self.assertEqual(sorted(result["loaded"]), sorted(KLEIN_MODULES))

    def test_json5_config_loads_the_json5_parser(self) -> None:
        """A config with JSON5 syntax (a comment) is parsed by json5 and the
        gateway starts; plain JSON never needed it (the idle test above)."""
        result = self._start("idle", json5=True)
        self.assertEqual(result["readyz"], "HTTP/1.1 200 OK")
        self.assertEqual(result["loaded"], ["json5"])
