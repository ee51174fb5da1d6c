"""Acceptance (issues 14 and 17): the ``--metrics-listen`` scrape port has no
auth, so it must not let one client hold connections (and the process's file
descriptors) forever, and its requests get the gateway's own access line."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.metrics import Metrics
from openclaw.gateway.http.metrics_endpoint import SCRAPE_MAX_CONNECTIONS, scrape_site


def _connect(site: IProtocolFactory) -> tuple[Any, StringTransport]:
    """One loopback connection to ``site``: its protocol (None: refused) and transport."""
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    if protocol is None:
        transport.loseConnection()
    else:
        protocol.makeConnection(transport)
    return protocol, transport


def _scrape_site(clock: MemoryReactorClock) -> IProtocolFactory:
    return scrape_site(Metrics(process=False), clock)


class ScrapePortTests(SynchronousTestCase):
    def test_half_sent_head_is_closed(self) -> None:
        """A connection that sends part of a head and stops is closed within
        seconds (Twisted's default would keep it for 12 hours)."""
        clock = MemoryReactorClock()
        protocol, transport = _connect(_scrape_site(clock))
        protocol.dataReceived(b"GET /metrics HTTP/1.1\r\n")
        clock.advance(31)
        self.assertTrue(transport.disconnecting)

    def test_connections_are_capped(self) -> None:
        """Past SCRAPE_MAX_CONNECTIONS open connections, new ones are refused."""
        site = _scrape_site(MemoryReactorClock())
        transports = [_connect(site)[1] for _ in range(SCRAPE_MAX_CONNECTIONS + 5)]
        open_ = [t for t in transports if not t.disconnecting]
        self.assertEqual(len(open_), SCRAPE_MAX_CONNECTIONS)

    def test_scrape_gets_an_openclaw_access_line(self) -> None:
        """A scrape is logged under openclaw.access with its fields, and not
        again by Twisted's legacy combined-format line."""
        events = self.enterContext(capturedLogs())
        protocol, transport = _connect(_scrape_site(MemoryReactorClock()))
        protocol.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200"))
        access = [e for e in events if e.get("log_namespace") == "openclaw.access"]
        self.assertEqual([(e["path"], e["status"]) for e in access], [("/metrics", 200)])
        legacy = [e for e in events if "GET /metrics HTTP/1.1" in str(e.get("message", ""))]
        self.assertEqual(legacy, [])


class ScrapeStartupLineTests(SynchronousTestCase):
    def test_the_metrics_listener_is_named_as_such_at_start(self) -> None:
        """The start-up lines tell the unauthenticated scrape port apart from
        the gateway's own listener (both said "openclaw gateway ... listening on")."""
        import re
        import urllib.request
        from pathlib import Path

        from tests.gateway_process import GatewayProcess, write_config

        base = Path(self.mktemp()).resolve()
        base.mkdir()
        gateway = GatewayProcess(
            write_config(base),
            base / "state",
            extra_args=("--metrics-listen", "tcp:0:interface=127.0.0.1"),
        )
        self.addCleanup(gateway.ensure_stopped)
        line = gateway.wait_for_output(r"metrics \(GET /metrics, no auth\) listening on", 15)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match is not None
        port = int(match.group(1))
        self.assertNotEqual(port, gateway.port)
        self.assertNotIn(f"openclaw gateway 0.1.0 listening on 127.0.0.1:{port}", gateway.text)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            self.assertEqual(answer.status, 200)
