"""Port/bind precedence and endpoint strings."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import GatewayConfig
from openclaw.listen import (
    ListenError,
    endpoint_is_loopback,
    listen_endpoints,
    resolve_host,
    resolve_port,
    tcp_endpoint,
)


class PortPrecedenceTests(SynchronousTestCase):
    def test_flag_beats_env_beats_config_beats_default(self) -> None:
        """--port > OPENCLAW_GATEWAY_PORT > gateway.port > 18789."""
        cfg = GatewayConfig(port=2000)
        env = {"OPENCLAW_GATEWAY_PORT": "3000"}
        self.assertEqual(resolve_port(1000, env, cfg), 1000)
        self.assertEqual(resolve_port(None, env, cfg), 3000)
        self.assertEqual(resolve_port(None, {}, cfg), 2000)
        self.assertEqual(resolve_port(None, {}, GatewayConfig()), 18789)

    def test_bad_env_port_is_an_error(self) -> None:
        """A non-numeric or out-of-range env port is refused with its value."""
        for raw in ("abc", "0", "70000"):
            with self.assertRaises(ListenError) as caught:
                resolve_port(None, {"OPENCLAW_GATEWAY_PORT": raw}, GatewayConfig())
            self.assertIn(raw, str(caught.exception))


class BindTests(SynchronousTestCase):
    def test_bind_names(self) -> None:
        """loopback, lan, custom and literal hosts map to interfaces."""
        self.assertEqual(resolve_host(None, GatewayConfig()), "127.0.0.1")
        self.assertEqual(resolve_host("lan", GatewayConfig()), "0.0.0.0")
        self.assertEqual(
            resolve_host(None, GatewayConfig(bind="custom", custom_bind_host="10.0.0.2")),
            "10.0.0.2",
        )
        self.assertEqual(resolve_host("::1", GatewayConfig()), "::1")
        with self.assertRaises(ListenError):
            resolve_host(None, GatewayConfig(bind="custom"))

    def test_endpoint_strings(self) -> None:
        """IPv6 interfaces are escaped for Twisted's endpoint parser."""
        self.assertEqual(tcp_endpoint(80, "127.0.0.1"), "tcp:80:interface=127.0.0.1")
        self.assertEqual(tcp_endpoint(80, "::1"), "tcp6:80:interface=\\:\\:1")

    def test_listen_overrides_port_and_bind(self) -> None:
        """--listen endpoints replace the port/bind endpoint."""
        endpoints = listen_endpoints(
            cli_listen=["unix:/tmp/x.sock", "tcp:1:interface=127.0.0.1"],
            cli_port=5,
            cli_bind="lan",
            env={},
            gateway=GatewayConfig(),
        )
        self.assertEqual(endpoints, ["unix:/tmp/x.sock", "tcp:1:interface=127.0.0.1"])
        self.assertEqual(
            listen_endpoints(
                cli_listen=[], cli_port=5, cli_bind=None, env={}, gateway=GatewayConfig()
            ),
            ["tcp:5:interface=127.0.0.1"],
        )

    def test_loopback_endpoint_detection(self) -> None:
        """Only loopback interfaces and UNIX sockets count as loopback."""
        self.assertTrue(endpoint_is_loopback("tcp:1:interface=127.0.0.1"))
        self.assertTrue(endpoint_is_loopback("tcp6:1:interface=\\:\\:1"))
        self.assertTrue(endpoint_is_loopback("unix:/run/x.sock"))
        self.assertFalse(endpoint_is_loopback("tcp:1"))
        self.assertFalse(endpoint_is_loopback("tcp:1:interface=0.0.0.0"))
        self.assertFalse(endpoint_is_loopback("tcp:1:interface=example.com"))
        # Twisted keeps the last repeated keyword: a loopback one first is no cover.
        self.assertFalse(endpoint_is_loopback("tcp:1:interface=127.0.0.1:interface=0.0.0.0"))
        self.assertTrue(endpoint_is_loopback("tcp:1:interface=127.0.0.1:interface=localhost"))
