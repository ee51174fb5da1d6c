"""twistd Options and the makeService tree, inspected without binding a port."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

import openclaw.service as service_module
from openclaw.config import parse_config_text
from openclaw.config.model import Config
from openclaw.gateway.http.request import GatewaySite
from openclaw.service import GatewayService, Options, build_service, makeService


def _options(
    tmp: Path, argv: list[str], config: dict[str, Any] | None = None, **env: str
) -> Options:
    path = tmp / "openclaw.json"
    path.write_text(
        json.dumps(config or {"gateway": {"auth": {"mode": "token", "token": "t0ken-value"}}})
    )
    options = Options(env={"HOME": str(tmp), "OPENCLAW_STATE_DIR": str(tmp), **env})
    options.parseOptions(["--config", str(path), *argv])
    return options


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()

    def test_default_endpoint_is_loopback_18789(self) -> None:
        """No flags: the config's port/bind, i.e. 127.0.0.1:18789."""
        self.assertEqual(_options(self.tmp, []).endpoints, ["tcp:18789:interface=127.0.0.1"])

    def test_port_precedence(self) -> None:
        """--port beats OPENCLAW_GATEWAY_PORT, which beats gateway.port."""
        config = {"gateway": {"port": 2000, "auth": {"mode": "token", "token": "t0ken-value"}}}
        self.assertEqual(
            _options(self.tmp, [], config).endpoints[0], "tcp:2000:interface=127.0.0.1"
        )
        env = {"OPENCLAW_GATEWAY_PORT": "3000"}
        self.assertEqual(
            _options(self.tmp, [], config, **env).endpoints[0], "tcp:3000:interface=127.0.0.1"
        )
        self.assertEqual(
            _options(self.tmp, ["--port", "4000"], config, **env).endpoints[0],
            "tcp:4000:interface=127.0.0.1",
        )

    def test_repeatable_listen_overrides(self) -> None:
        """--listen may repeat and replaces port/bind."""
        options = _options(
            self.tmp, ["--listen", "tcp:1234:interface=127.0.0.1", "--listen", "unix:/tmp/oc.sock"]
        )
        self.assertEqual(options.endpoints, ["tcp:1234:interface=127.0.0.1", "unix:/tmp/oc.sock"])

    def test_bad_port_is_a_usage_error(self) -> None:
        """--port outside 1..65535 is a usage error."""
        with self.assertRaises(usage.UsageError):
            _options(self.tmp, ["--port", "70000"])

    def _exit_lines(self, argv: list[str], config: dict[str, Any]) -> list[str]:
        err = StringIO()
        with mock.patch("sys.stderr", err), self.assertRaises(SystemExit) as caught:
            _options(self.tmp, argv, config)
        self.assertEqual(caught.exception.code, 1)
        return err.getvalue().splitlines()

    def _make_service_lines(self, options: Options) -> list[str]:
        err = StringIO()
        with mock.patch("sys.stderr", err), self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertEqual(caught.exception.code, 1)
        return err.getvalue().splitlines()

    def test_unusable_listen_strings_are_one_line_each(self) -> None:
        """An unknown endpoint type, a bad port or a missing TLS key: one line
        naming the --listen value, exit 1, before anything starts."""
        lines = self._make_service_lines(
            _options(
                self.tmp,
                [
                    "--listen", "bogus:1234",
                    "--listen", "tcp:notaport",
                    "--listen", "ssl:0:privateKey=/nope.pem:certKey=/nope.crt",
                ],
            )
        )  # fmt: skip
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].startswith("openclaw: --listen bogus:1234: "), lines)
        self.assertIn("tcp:notaport", lines[1])
        self.assertIn("/nope.", lines[2])

    def test_unusable_state_directory_is_one_line(self) -> None:
        """A file where the state directory should be: one line, exit 1."""
        blocker = self.tmp / "statefile"
        blocker.write_text("x")
        for state in (blocker, blocker / "sub"):
            options = _options(self.tmp, [], OPENCLAW_STATE_DIR=str(state))
            (line,) = self._make_service_lines(options)
            self.assertTrue(line.startswith(f"openclaw: state directory {state}: "), line)

    def test_token_mode_without_token_refuses_to_start(self) -> None:
        """Token mode and no token anywhere: one clear line, exit 1."""
        lines = self._exit_lines([], {"gateway": {"auth": {"mode": "token"}}})
        self.assertEqual(len(lines), 1)
        self.assertIn("no token was configured", lines[0])

    def test_mode_none_beyond_loopback_refuses_to_start(self) -> None:
        """--bind lan with auth mode none is refused; loopback is fine."""
        config = {"gateway": {"auth": {"mode": "none"}}}
        lines = self._exit_lines(["--bind", "lan"], config)
        self.assertIn("beyond loopback", lines[0])
        self.assertEqual(
            _options(self.tmp, ["--bind", "loopback"], config).endpoints,
            ["tcp:18789:interface=127.0.0.1"],
        )

    def test_config_errors_exit_1(self) -> None:
        """Config problems are printed one per line with exit status 1."""
        lines = self._exit_lines([], {"gateway": {"port": "x", "bind": 7}})
        self.assertEqual(len(lines), 2)


class MakeServiceTests(SynchronousTestCase):
    def test_service_tree(self) -> None:
        """makeService builds one listener per endpoint around the gateway's Site."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        options = _options(
            tmp, ["--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0:interface=127.0.0.1"]
        )
        tuned: list[object] = []
        # The collector settings are process-wide: recorded here, not applied to the suite.
        self.patch(service_module, "tune_collector_when_running", tuned.append)
        service = makeService(options)
        self.assertIsInstance(service, GatewayService)
        assert isinstance(service, GatewayService)
        self.assertEqual(len(tuned), 1)
        listeners = list(service)
        self.assertEqual(len(listeners), 2)
        for listener in listeners:
            self.assertIsInstance(listener, StreamServerEndpointService)
            assert isinstance(listener, StreamServerEndpointService)
            self.assertIsInstance(listener.factory, GatewaySite)
            self.assertIs(listener.factory, service.gateway.site)
        self.assertFalse(service.gateway.site.displayTracebacks)

    def _token_config(self) -> tuple[Path, Config]:
        """A temp state dir and a token-auth config on it."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        loaded = parse_config_text(
            '{gateway: {auth: {mode: "token", token: "t0ken-value"}}}',
            source="test",
            env={},
            state_dir=tmp,
        )
        return tmp, loaded.config

    def test_unix_listener_is_logged_by_its_path(self) -> None:
        """The start-up line names a UNIX socket by its path, not a bytes repr."""
        from twisted.logger import globalLogPublisher

        tmp, config = self._token_config()
        lines: list[str] = []

        @implementer(ILogObserver)
        def observer(event: LogEvent) -> None:
            lines.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service = build_service(config, MemoryReactorClock(), endpoints=[f"unix:{tmp}/oc.sock"])
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        (line,) = [line for line in lines if "listening on" in line]
        self.assertTrue(line.endswith(f"listening on {tmp}/oc.sock"), line)

    def test_build_service_with_a_memory_reactor(self) -> None:
        """build_service runs on an injected reactor: start listens there, stop drains."""
        _, config = self._token_config()
        reactor = MemoryReactorClock()
        service = build_service(config, reactor, endpoints=["tcp:9999:interface=127.0.0.1"])
        service.privilegedStartService()
        service.startService()
        self.assertEqual(service.gateway.readiness.state, "ready")
        self.assertEqual([p[0] for p in reactor.tcpServers], [9999])
        stopped = service.stopService()
        self.successResultOf(stopped)
        self.assertEqual(service.gateway.readiness.state, "stopping")
