"""Connection-level behaviour: slow consumers, ticks, pings, closing and shutdown."""

from __future__ import annotations

import struct
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.ws_fakes import WsClient, WsHarness, make_config


def closes(client: WsClient) -> list[tuple[int | None, str]]:
    """Close frames received since the last read."""
    return [(f.close_code, f.close_reason) for f in client.frames() if f.opcode == 8]


class FlowTestCase(SynchronousTestCase):
    config: Any = None

    def setUp(self) -> None:
        self.h = WsHarness(self.config)
        self.addCleanup(self.h.cleanup)


class SlowConsumerTests(FlowTestCase):
    config = make_config(max_buffered_bytes=3000)

    def test_deltas_coalesce_while_the_socket_is_full(self) -> None:
        """Past maxBufferedBytes deltas are skipped; the next one carries their text."""
        client, _ = self.h.connect()
        client.request("agent", {"message": "hi", "idempotencyKey": "k"})
        client.messages()
        run = self.h.runtime.runs["k"]
        watcher = client.protocol.watcher
        client.transport_full()
        chunk = "x" * 200
        for _ in range(12):
            run.say(chunk)
            self.h.clock.advance(0.2)  # past the chat-delta throttle: one per text
        frames = client.messages()
        sent_agent = [m for m in frames if m["payload"].get("stream") == "assistant"]
        sent_chat = [m for m in frames if m["payload"].get("state") == "delta"]
        self.assertLess(len(sent_agent), 12)
        self.assertLess(len(sent_chat), 12)
        self.assertEqual(client.protocol.coalesced, 24 - len(sent_agent) - len(sent_chat))
        self.assertLessEqual(watcher.buffered, 2 * 3000)
        client.transport_drained()
        run.say("tail")
        frames = client.messages()
        (agent,) = [m["payload"] for m in frames if m["payload"].get("stream") == "assistant"]
        self.assertEqual(agent["data"]["delta"], chunk * (12 - len(sent_agent)) + "tail")
        (chat,) = [m["payload"] for m in frames if m["payload"].get("state") == "delta"]
        self.assertEqual(chat["deltaText"], chunk * (12 - len(sent_chat)) + "tail")
        self.assertEqual(chat["message"]["content"][0]["text"], chunk * 12 + "tail")
        run.finish()
        final = next(m for m in client.messages() if m["type"] == "res")
        self.assertEqual(final["payload"]["result"]["payloads"][0]["text"], chunk * 12 + "tail")

    def test_final_supersedes_skipped_deltas(self) -> None:
        """A run that ends while the client is slow still delivers its final message."""
        client, _ = self.h.connect()
        client.request("agent", {"message": "hi", "idempotencyKey": "k"})
        client.messages()
        run = self.h.runtime.runs["k"]
        client.transport_full()
        for _ in range(12):
            run.say("y" * 200)
        run.finish()
        frames = client.messages()
        final_chat = next(f for f in frames if f["payload"].get("state") == "final")
        self.assertEqual(final_chat["payload"]["message"]["content"][0]["text"], "y" * 2400)
        self.assertEqual(client.protocol._skipped, {})

    def test_hard_limit_closes_1008(self) -> None:
        """Past twice maxBufferedBytes the connection is closed as a slow consumer."""
        client, _ = self.h.connect()
        client.transport_full()
        seen: list[tuple[int | None, str]] = []
        for _ in range(50):
            client.request("health")
            seen += closes(client)
            if seen:
                break
        self.assertEqual(seen, [(1008, "slow consumer")])
        self.assertGreater(client.protocol.watcher.buffered, 2 * 3000)
        client.close()
        self.assertTrue(client.lost)

    def test_ticks_are_skipped_while_slow(self) -> None:
        """Keepalive ticks are droppable too."""
        client, _ = self.h.connect()
        client.transport_full()
        while client.protocol.watcher.buffered <= 3000:
            client.request("health")
        client.messages()
        self.h.clock.advance(30)
        self.assertEqual(client.messages(), [])


class TickTests(FlowTestCase):
    config = make_config(tick_interval_ms=1000)

    def test_one_global_tick(self) -> None:
        """Authenticated clients get a tick every tickIntervalMs; the timer stops with them."""
        first, _ = self.h.connect()
        pending = self.h.open()
        pending.challenge()
        self.h.clock.advance(0.5)
        second, _ = self.h.connect()
        self.h.clock.advance(0.5)
        (tick,) = first.messages()
        self.assertEqual(
            tick,
            {"type": "event", "event": "tick", "payload": {"ts": tick["payload"]["ts"]}, "seq": 1},
        )
        self.assertEqual(tick["payload"]["ts"], int(self.h.clock.seconds() * 1000))
        self.assertEqual(second.messages()[0]["event"], "tick")
        self.assertEqual(pending.messages(), [])
        self.h.clock.advance(1)
        self.assertEqual(first.messages()[0]["seq"], 2)
        first.lose()
        second.lose()
        pending.lose()
        self.assertEqual(
            [
                c
                for c in self.h.clock.getDelayedCalls()
                if c.active() and c.getTime() > self.h.clock.seconds() + 2
            ],
            [],
        )


class PingTests(FlowTestCase):
    config = make_config(ping_interval_seconds=25, ping_timeout_seconds=25)

    def test_ping_every_25s_with_a_pong_deadline(self) -> None:
        """A WebSocket ping every 25 s; a client that never pongs is dropped."""
        client, _ = self.h.connect()
        self.h.clock.advance(24)
        self.assertEqual(client.frames(), [])
        self.h.clock.advance(1)
        (ping,) = client.frames()
        self.assertEqual(ping.opcode, 9)
        client.send_raw(10, ping.payload)
        self.h.clock.advance(25)
        (ping2,) = [f for f in client.frames() if f.opcode == 9]
        self.h.clock.advance(25)
        client.frames()
        self.assertTrue(client.lost)
        self.assertNotEqual(ping.payload, ping2.payload)


class CloseTests(FlowTestCase):
    def test_close_without_status_code(self) -> None:
        """The CLI's empty close frame is answered with a close, then the TCP drops."""
        client, _ = self.h.connect()
        client.close()
        (reply,) = client.frames()
        self.assertEqual(reply.opcode, 8)
        self.assertEqual(reply.close_code, 1000)
        self.assertTrue(client.lost)
        self.assertEqual(self.h.factory.connections, frozenset())

    def test_close_with_code(self) -> None:
        """A normal close is answered normally."""
        client, _ = self.h.connect()
        client.send_raw(8, struct.pack("!H", 1000) + b"bye")
        self.assertEqual(closes(client), [(1000, "")])


class ShutdownTests(FlowTestCase):
    def test_shutdown_event_then_1012(self) -> None:
        """Every open connection gets `shutdown`, then close 1012; fires when all closed."""
        one, _ = self.h.connect()
        two, _ = self.h.connect()
        pending = self.h.open()
        pending.challenge()
        done = self.h.factory.shutdown("gateway stopping")
        self.assertNoResult(done)
        for client in (one, two):
            frames = client.frames()
            self.assertEqual(frames[0].json["event"], "shutdown")
            self.assertEqual(
                frames[0].json["payload"], {"reason": "gateway stopping", "restartExpectedMs": None}
            )
            self.assertEqual(
                (frames[1].close_code, frames[1].close_reason), (1012, "gateway stopping")
            )
        self.assertEqual(closes(pending), [(1012, "gateway stopping")])
        one.close()
        two.close()
        self.assertNoResult(done)
        self.h.clock.advance(1)  # the silent client's close handshake times out
        pending.frames()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.h.runtime.observer_count, 0)

    def test_shutdown_without_connections(self) -> None:
        """Nothing open: the Deferred fires at once."""
        self.assertIsNone(self.successResultOf(self.h.factory.shutdown()))
