"""`openclaw gateway reload` and `openclaw status` in this process, against a
gateway service listening on 127.0.0.1 (the real reactor)."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.cli.reload_command import request_reload, run_reload
from openclaw.cli.status import format_uptime, report_status, summary_lines
from openclaw.cli.ws_client import Target, call_gateway
from openclaw.config import load_config
from openclaw.config.live import LiveConfig
from openclaw.gateway.assembly import build_gateway
from openclaw.service import GatewayService
from openclaw.testing import ScriptedProvider, make_runtime
from tests.test_reload import NEW_TOKEN, OLD_TOKEN, write_config


class ReloadOverWebSocketTests(TestCase):
    def setUp(self) -> Any:  # a Deferred: trial waits for the listener
        from twisted.internet import reactor

        self.reactor: Any = reactor
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        self.path = base / "openclaw.json"
        write_config(self.path)
        env = {"OPENCLAW_STATE_DIR": str(base / "state"), "HOME": str(base)}
        config = load_config(str(self.path), env=env).config
        runtime = make_runtime(
            config, clock=reactor, providers={"scripted": ScriptedProvider(clock=reactor)}
        )
        live = LiveConfig(config, path=str(self.path), env=env)
        gateway = build_gateway(config, reactor, runtime=runtime, live=live)
        self.service = GatewayService(
            config=config,
            gateway=gateway,
            reactor=reactor,
            endpoints=["tcp:0:interface=127.0.0.1"],
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

        def bound(addresses: list[Any]) -> None:
            (address,) = addresses
            assert isinstance(address, IPv4Address)
            self.url = f"ws://127.0.0.1:{address.port}"

        return self.service.listening().addCallback(bound)

    async def _reload(self, token: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await request_reload(self.reactor, Target(self.url, token=token), 10, out, err)
        return code, out.getvalue(), err.getvalue()

    def test_reload_applies_and_reports_what_changed(self) -> Deferred[None]:
        """The method re-reads the file: the answer names gateway.auth, the new
        token works for the next connection, the old one is refused."""

        async def go() -> None:
            write_config(self.path, token=NEW_TOKEN)
            code, out, err = await self._reload(OLD_TOKEN)
            self.assertEqual((code, err), (0, ""))
            self.assertEqual(out, f"reloaded {self.path}: gateway.auth\n")
            refused = await self._reload(OLD_TOKEN)
            self.assertEqual(refused[0], 1)
            self.assertIn("unauthorized", refused[2].lower())
            self.assertIn("pass the old one (--token/--password) or send SIGHUP", refused[2])
            self.assertEqual((await self._reload(NEW_TOKEN))[0], 0)

        return ensureDeferred(go())

    def test_invalid_file_is_refused_with_its_problems(self) -> Deferred[None]:
        """A broken file: exit 1, the problem named, and the old config kept."""

        async def go() -> None:
            self.path.write_text('{gateway: {port: "x"}}')
            code, _, err = await self._reload(OLD_TOKEN)
            self.assertEqual(code, 1)
            self.assertIn("config reload refused", err)
            self.assertIn("gateway.port", err)
            self.assertEqual(self.service.config.gateway.auth.token, OLD_TOKEN)

        return ensureDeferred(go())

    def test_reload_needs_the_admin_scope(self) -> Deferred[None]:
        """A client that asked only for read/write scopes is refused the method."""

        async def go() -> None:
            frame = await call_gateway(
                self.reactor, Target(self.url, token=OLD_TOKEN), "gateway.reload", {}
            )
            self.assertFalse(frame["ok"])
            self.assertEqual(frame["error"]["details"]["missingScope"], "operator.admin")

        return ensureDeferred(go())

    def test_status_report(self) -> Deferred[None]:
        """`openclaw status` prints version, uptime, sessions, runs and agents;
        --json prints both payloads."""

        async def go() -> None:
            out, err = io.StringIO(), io.StringIO()
            target = Target(self.url, token=OLD_TOKEN)
            self.assertEqual(await report_status(self.reactor, target, 10, False, out, err), 0)
            text = out.getvalue()
            self.assertIn(f"gateway:     {self.url} (openclaw-twisted ", text)
            self.assertIn("active runs: 0", text)
            self.assertIn("  - main (default)", text)
            out = io.StringIO()
            self.assertEqual(await report_status(self.reactor, target, 10, True, out, err), 0)
            report = json.loads(out.getvalue())
            self.assertEqual(report["agents"]["defaultId"], "main")
            self.assertIn("uptimeMs", report["status"])
            bad = Target(self.url, token="wrong-token-wrong-token")
            self.assertEqual(await report_status(self.reactor, bad, 10, False, out, err), 1)
            self.assertTrue(err.getvalue().startswith("openclaw status: "))

        return ensureDeferred(go())


class EmbeddedGatewayTests(TestCase):
    def test_embedded_gateway_cannot_reload(self) -> Deferred[None]:
        """Without a service (an embedder's gateway) the method says it is unavailable."""
        from twisted.internet import reactor

        real: Any = reactor
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        path = base / "openclaw.json"
        write_config(path)
        config = load_config(str(path), env={"OPENCLAW_STATE_DIR": str(base)}).config
        runtime = make_runtime(
            config, clock=real, providers={"scripted": ScriptedProvider(clock=real)}
        )
        gateway = build_gateway(config, real, runtime=runtime)
        gateway.readiness.mark_ready(real)
        port = real.listenTCP(0, gateway.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(runtime.shutdown)
        url = f"ws://127.0.0.1:{port.getHost().port}"

        async def go() -> None:
            out, err = io.StringIO(), io.StringIO()
            code = await request_reload(real, Target(url, token=OLD_TOKEN), 10, out, err)
            self.assertEqual(code, 1)
            self.assertIn("cannot reload", err.getvalue())

        return ensureDeferred(go())


class SummaryTests(SynchronousTestCase):
    def test_uptime_and_summary_lines(self) -> None:
        """Uptime reads largest unit first; runs and agents are listed."""
        self.assertEqual(format_uptime(0), "0s")
        self.assertEqual(format_uptime(90_061_000), "1d 1h 1m 1s")
        lines = summary_lines(
            {
                "version": "9",
                "pid": 7,
                "uptimeMs": 61_000,
                "connections": 2,
                "sessions": {"count": 3},
                "activeRuns": [{"runId": "r1", "agentId": "main"}],
            },
            {"defaultId": "main", "agents": [{"id": "main"}, {"id": "ops", "name": "Ops"}]},
            "ws://x",
        )
        self.assertEqual(lines[1], "uptime:      1m 1s")
        self.assertIn("  - r1 (agent main)", lines)
        self.assertIn("  - ops 'Ops'", lines)


class UnreadableConfigTests(SynchronousTestCase):
    def test_an_invalid_file_says_nothing_was_asked(self) -> None:
        """The CLI finds the gateway through the config: when the file does not
        load, it says so and that the gateway was not asked."""
        path = Path(self.mktemp())
        path.write_text("{gateway: {maxConnections: 'many'}}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        self.patch(os, "environ", env)
        err = io.StringIO()
        args = argparse.Namespace(config=str(path), url=None, token=None, password=None, timeout=5)
        self.assertEqual(run_reload(args, io.StringIO(), err), 1)
        lines = err.getvalue().splitlines()
        self.assertIn("maxConnections", lines[0])
        self.assertIn("nothing was asked of the gateway", lines[1])
