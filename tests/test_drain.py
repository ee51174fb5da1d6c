"""Draining on SIGTERM: /readyz says 503 and new work is refused while the
listener stays open for gateway.drainSeconds; running streams finish."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.service import GatewayService
from openclaw.testing import Reply
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config

CHAT = {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]}


def draining_gateway(
    case: SynchronousTestCase, drain: float
) -> tuple[GatewayHarness, GatewayService]:
    base = case.mktemp()
    config = http_test_config(base)
    config = attrs.evolve(config, gateway=attrs.evolve(config.gateway, drain_seconds=drain))
    h = GatewayHarness.create(base, config)
    service = GatewayService(
        config=config,
        gateway=h.gateway,
        reactor=h.clock,
        endpoints=["tcp:18999:interface=127.0.0.1"],
    )
    service.privilegedStartService()
    service.startService()
    return h, service


class DrainTests(SynchronousTestCase):
    def test_drain_window_refuses_new_work_and_lets_streams_finish(self) -> None:
        """During drainSeconds: /readyz 503 (draining), /healthz 200, a new
        completion 503 with Retry-After, the listener still open, and a stream
        that started before keeps flowing to [DONE]; then the service stops."""
        h, service = draining_gateway(self, 5.0)
        h.provider.add(Reply.text("a ", "b ", "c ", "d", delay=1.0))
        stream = h.request(
            b"POST", b"/v1/chat/completions", body={**CHAT, "stream": True}, token=TEST_TOKEN
        )
        h.run_due()
        stopping = service.stopService()
        self.assertNoResult(stopping)

        ready = h.request(b"GET", b"/readyz")
        self.assertEqual(ready.response()[0], 503)
        self.assertEqual(ready.json()["status"], "stopping")
        healthz = h.request(b"GET", b"/healthz")
        self.assertEqual(healthz.response()[0], 200)
        refused = h.request(b"POST", b"/v1/chat/completions", body=CHAT, token=TEST_TOKEN)
        status, headers, _ = refused.response()
        self.assertEqual(status, 503)
        self.assertEqual(headers["retry-after"], "5")
        self.assertEqual(refused.json()["error"]["code"], "draining")
        upgrade = h.request(b"GET", b"/", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        self.assertEqual(upgrade.response()[0], 503)
        self.assertTrue(all(listener.running for listener in service.listeners))

        for _ in range(4):
            h.advance(1.0)
        self.assertIn(b'"content":"b "', stream.raw())
        self.assertTrue(all(listener.running for listener in service.listeners))
        h.advance(1.5)
        self.assertFalse(any(listener.running for listener in service.listeners))
        for _ in range(4):
            h.advance(1.0)
        self.assertTrue(stream.response()[2].rstrip().endswith(b"data: [DONE]"))
        # In-memory transports do not hang up by themselves: the clients do.
        for exchange in (stream, ready, healthz, refused, upgrade):
            exchange.close()
        h.run_due()
        self.successResultOf(stopping)

    def test_no_drain_by_default(self) -> None:
        """drainSeconds 0 (the default): listeners stop at once, as before."""
        h, service = draining_gateway(self, 0.0)
        stopping = service.stopService()
        self.assertFalse(any(listener.running for listener in service.listeners))
        h.run_due()
        self.successResultOf(stopping)

    def test_drain_seconds_is_read_from_the_config(self) -> None:
        """gateway.drainSeconds parses (zero allowed, negative refused)."""
        from pathlib import Path

        from openclaw.config import ConfigError
        from openclaw.config.loader import parse_config_text

        state = Path(self.mktemp())
        loaded = parse_config_text(
            "{gateway: {drainSeconds: 15}}", source="t", env={}, state_dir=state
        )
        self.assertEqual(loaded.config.gateway.drain_seconds, 15.0)
        with self.assertRaises(ConfigError):
            parse_config_text("{gateway: {drainSeconds: -1}}", source="t", env={}, state_dir=state)
