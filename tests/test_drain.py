"""Draining on SIGTERM: /readyz says 503 and new work is refused while the
listener stays open for gateway.drainSeconds; running streams finish."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from openclaw.service import GatewayService
from openclaw.testing import Reply
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config
from tests.ws_fakes import WsClient, WsConnector

CHAT = {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]}


def draining_gateway(
    case: SynchronousTestCase, drain: float, grace: float = 10.0
) -> tuple[GatewayHarness, GatewayService]:
    base = case.mktemp()
    config = http_test_config(base)
    config = attrs.evolve(
        config,
        gateway=attrs.evolve(config.gateway, drain_seconds=drain, shutdown_grace_seconds=grace),
    )
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


class WebSocketGraceTests(SynchronousTestCase):
    """A WebSocket run gets the same grace period as an HTTP request: its
    client stays connected, gets the final answer, then ``shutdown`` and 1012."""

    def _client(self, h: GatewayHarness) -> WsClient:
        connector = WsConnector(h.gateway.websocket.factory(), h.clock)
        client, _ = connector.connect(token=TEST_TOKEN)
        return client

    def _stop_while_streaming(
        self, *, grace: float, delay: float, key: str
    ) -> tuple[GatewayHarness, WsClient, Deferred[None]]:
        """A WebSocket ``agent`` run streaming three chunks ``delay`` apart, and
        the service told to stop (SIGTERM) with ``grace`` seconds."""
        h, service = draining_gateway(self, 0.0, grace=grace)
        client = self._client(h)
        h.provider.add(Reply.text("one ", "two ", "three", delay=delay))
        client.request("agent", {"message": "hi", "idempotencyKey": key})
        h.run_due()
        return h, client, service.stopService()

    def assert_answered_then_closed(
        self,
        h: GatewayHarness,
        client: WsClient,
        frames: list[Any],
        final: dict[str, Any],
        stopping: Deferred[None],
    ) -> None:
        """The run's ``final`` came before ``shutdown``, then close 1012; once
        the client hangs up, the service has stopped."""
        texts = [f.json for f in frames if f.opcode == 1]
        shutdown = next(i for i, f in enumerate(texts) if f.get("event") == "shutdown")
        self.assertLess(texts.index(final), shutdown)
        self.assertEqual([f.close_code for f in frames if f.opcode == 8], [1012])
        client.lose()
        h.run_due()
        self.successResultOf(stopping)

    def test_a_run_that_ends_within_the_grace_answers_before_the_close(self) -> None:
        """SIGTERM while a WebSocket ``agent`` run streams: the run finishes, its
        final ``res`` says ok, a new run is refused meanwhile (UNAVAILABLE,
        retryable), and only then come ``shutdown`` and close 1012."""
        h, client, stopping = self._stop_while_streaming(grace=10.0, delay=1.0, key="grace-1")
        h.run_due()
        refused_id = client.request("agent", {"message": "again", "idempotencyKey": "grace-2"})
        h.run_due()
        for _ in range(4):
            h.advance(1.0)
        frames = client.frames()
        texts = [f.json for f in frames if f.opcode == 1]
        refused = next(f for f in texts if f.get("id") == refused_id)
        self.assertEqual(
            (refused["ok"], refused["error"]["code"], refused["error"]["retryable"]),
            (False, "UNAVAILABLE", True),
        )
        final = next(
            f
            for f in texts
            if f.get("type") == "res" and f.get("payload", {}).get("status") == "ok"
        )
        self.assertEqual(final["payload"]["result"]["payloads"][0]["text"], "one two three")
        self.assert_answered_then_closed(h, client, frames, final, stopping)

    def test_a_run_past_the_grace_is_aborted_and_told_so(self) -> None:
        """A run still going when the grace ends is aborted; its client gets the
        ``aborted`` final before ``shutdown`` and 1012."""
        h, client, stopping = self._stop_while_streaming(grace=2.0, delay=5.0, key="grace-3")
        h.advance(2.0)
        h.run_due()
        frames = client.frames()
        texts = [f.json for f in frames if f.opcode == 1]
        final = next(
            f
            for f in texts
            if f.get("type") == "res"
            and "status" in f["payload"]
            and f["payload"]["status"] != "accepted"
        )
        self.assertEqual((final["ok"], final["payload"]["status"]), (True, "aborted"))
        self.assert_answered_then_closed(h, client, frames, final, stopping)
