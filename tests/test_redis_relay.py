"""Runs across instances (:class:`RedisRunRelay`) on a real ``redis-server``.

Two relays (each with its own connections and owner id) stand for two gateway
instances. Heartbeats run on a ``Clock`` the test advances; an instance
killed with SIGKILL is one whose heartbeat key is gone (as when its TTL runs
out). Redis traffic runs on the real reactor; waits are bounded polls or
Deferreds, never sleeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from openclaw.sessions.redis.client import TxRedisClient, open_client, open_subscriber
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.relay import RedisRunRelay
from openclaw.sessions.redis.url import parse_redis_url
from tests.redis_support import SharedRedisServer, until

KEY = "agent:main:relayed"
CHANNEL = "openclaw:0:bus"


class Sink:
    """A RelaySink that records the runs other instances ended."""

    def __init__(self) -> None:
        self.finished: dict[str, Mapping[str, Any]] = {}

    def remote_events(self, session_key: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Not used here."""

    def remote_finished(self, run_id: str, outcome: Mapping[str, Any]) -> None:
        self.finished[run_id] = outcome

    def remote_abort(self, session_key: str | None, run_id: str | None) -> Sequence[str]:
        return ()


class RelayTests(SharedRedisServer, TestCase):
    """Instances A and B on one Redis."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server.command("FLUSHALL")
        self.clients: list[TxRedisClient] = []
        self.clock_a, self.clock_b = Clock(), Clock()
        self.a, self.sink_a = self.relay("A", self.clock_a)
        self.b, self.sink_b = self.relay("B", self.clock_b)
        return ensureDeferred(self._connected())

    async def _connected(self) -> None:
        for client in self.clients:
            await client.wait_connected(5)
        await until(self.heartbeats_set, "both heartbeats")

    def heartbeats_set(self) -> bool:
        schema = KeySchema()
        return all(
            self.server.command("EXISTS", schema.instance(owner)) == b":1\r\n"
            for owner in ("A", "B")
        )

    def relay(self, owner: str, clock: Clock) -> tuple[RedisRunRelay, Sink]:
        url = parse_redis_url(self.server.url)
        client = open_client(reactor, url)
        self.clients.append(client)
        self.addCleanup(client.close)
        relay = RedisRunRelay(
            client,
            clock,
            owner=owner,
            channel=CHANNEL,
            subscribe=lambda on_message, on_subscribed: open_subscriber(
                reactor, url, CHANNEL, on_message, on_subscribed
            ),
        )
        sink = Sink()
        relay.attach(sink)
        self.addCleanup(relay.detach)
        return relay, sink

    def kill_b(self) -> None:
        """B dies without a word: its heartbeat key is gone (its TTL ran out)."""
        self.server.command("DEL", KeySchema().instance("B"))

    async def run_on_b(self, run_id: str) -> None:
        """B claims an idempotency key and starts its run on KEY."""
        self.assertTrue(await self.b.claim(run_id))
        self.b.run_started(run_id, KEY)
        await until(
            lambda: self.server.command("HEXISTS", KeySchema().runs(), run_id) == b":1\r\n",
            "B's run registered",
        )

    async def test_a_killed_instances_claim_is_taken_over(self) -> None:
        """A key claimed by a live instance is not A's; once that instance is
        gone (heartbeat expired) before its run ended, A takes the claim and
        runs the turn itself instead of answering in_flight."""
        await self.run_on_b("k1")
        self.assertFalse(await self.a.claim("k1"))
        self.kill_b()
        self.assertTrue(await self.a.claim("k1"))
        self.assertTrue(await self.a.claim("k1"))  # A's now
        self.assertFalse(await self.b.claim("k1"))

    async def test_a_finished_run_of_a_stopped_instance_is_not_run_again(self) -> None:
        """A key whose run ended (its outcome kept) is not run again after its
        instance stopped: the resend reports that run."""
        await self.run_on_b("k2")
        self.b.run_finished("k2", KEY, {"run_id": "k2", "status": "ok"})
        await until(lambda: self.server.command("HLEN", KeySchema().runs()) == b":0\r\n", "ended")
        self.kill_b()
        self.assertFalse(await self.a.claim("k2"))
        self.assertEqual((await self.a.outcome("k2") or {}).get("status"), "ok")

    async def test_agent_wait_on_a_killed_instances_run_ends_with_an_error(self) -> None:
        """The outcome of a run whose instance is gone is an error at once
        (not "still running" until agent.wait times out); the next heartbeat
        of a live instance also announces it, so waits already pending end."""
        await self.run_on_b("k3")
        self.assertIsNone(await self.a.outcome("k3"))
        self.kill_b()
        self.clock_a.advance(5.0)  # A's heartbeat ends B's runs
        await until(lambda: "k3" in self.sink_a.finished, "A told that k3 ended")
        ended = self.sink_a.finished["k3"]
        self.assertEqual(
            (ended["status"], ended["session_key"], ended["agent_id"]), ("error", KEY, "main")
        )
        self.assertIn("stopped", ended["error"])
        self.assertEqual(await self.a.outcome("k3"), ended)
        self.assertEqual(self.server.command("HLEN", KeySchema().runs()), b":0\r\n")
        # Resent after that: A runs the turn, and the lost run's outcome goes.
        self.assertTrue(await self.a.claim("k3"))
        self.assertIsNone(await self.a.outcome("k3"))

    async def test_outcome_asked_before_any_heartbeat_ends_the_run(self) -> None:
        """agent.wait asked after the instance died, before any reaping: the
        outcome read itself ends the run (an error)."""
        await self.run_on_b("k4")
        self.kill_b()
        ended = await self.a.outcome("k4")
        assert ended is not None
        self.assertEqual(ended["status"], "error")

    async def test_a_killed_instances_run_stops_keeping_its_session_busy_with_its_lock(
        self,
    ) -> None:
        """sessions.reset elsewhere is refused while B's run holds the session's
        lock; once the lock expired (lockTtlSeconds) the session is free, even
        though B's heartbeat (15 s) has not expired yet."""
        await self.run_on_b("k5")
        lock = KeySchema().lock(KEY)
        self.server.command("SET", lock, "1:B")
        self.assertTrue(await self.a.busy_elsewhere(KEY))
        self.assertFalse(await self.b.busy_elsewhere(KEY))  # its own run
        self.server.command("DEL", lock)  # expired: B was killed
        self.assertFalse(await self.a.busy_elsewhere(KEY))
