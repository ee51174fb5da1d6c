"""Automatic session resets on the Redis store (a real ``redis-server``).

Two stores stand for two gateway processes; their time is a ``Clock`` the test
sets, Redis traffic runs on the real reactor. The rows in Redis keep
``sessionStartedAt`` and ``lastInteractionAt``, so an instance that did not
serve the last message judges the session by what the other one recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from openclaw.sessions.redis.client import TxRedisClient, open_client
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.store import RedisSessionStore
from openclaw.sessions.redis.url import parse_redis_url
from openclaw.sessions.reset_policy import ResetPolicy
from tests.redis_support import SharedRedisServer

KEY = "agent:main:alice"
START = 1_700_000_000
IDLE = ResetPolicy(mode="idle", idle_minutes=30)


class RedisResetTests(SharedRedisServer, TestCase):
    """Idle expiry across two instances sharing one Redis."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server.command("FLUSHALL")
        self.clock = Clock()
        self.clock.advance(START)
        self.clients: list[TxRedisClient] = []
        self.a = self.store()
        self.b = self.store()
        return ensureDeferred(self._connected())

    async def _connected(self) -> None:
        for client in self.clients:
            await client.wait_connected(5)

    def store(self) -> RedisSessionStore:
        client = open_client(reactor, parse_redis_url(self.server.url))
        self.clients.append(client)
        self.addCleanup(client.close)
        return RedisSessionStore(client, clock=self.clock, state_dir=Path("/x"))

    def row(self) -> dict[str, Any]:
        raw = self.server.command("HGET", KeySchema().index("main"), KEY)
        body = raw.split(b"\r\n")[1]
        return dict(json.loads(body))

    async def message(self, store: RedisSessionStore, text: str) -> str:
        """A user's message as a turn starts it: the session (policy applied)
        and its first line; returns the sessionId it went to."""
        await store.refresh_session(KEY)
        entry = store.ensure_session("main", KEY, reset=IDLE)
        now = int(self.clock.seconds() * 1000)
        store.append_user("main", entry.session_id, run_id=text, text=text, timestamp=now)
        await store.when_idle()
        return entry.session_id

    async def test_idle_expiry_across_instances(self) -> None:
        """A's message stamps the row in Redis; B, 20 minutes later, continues
        the session; 31 minutes after B's message A starts a new sessionId and
        the old transcript is archived ``.reset.<time>``."""
        self.a.load_agent("main")
        self.b.load_agent("main")
        first = await self.message(self.a, "one")
        self.assertEqual(self.row()["sessionStartedAt"], START * 1000)
        self.assertEqual(self.row()["lastInteractionAt"], START * 1000)
        self.clock.advance(20 * 60)
        self.assertEqual(await self.message(self.b, "two"), first)
        self.assertEqual(self.row()["lastInteractionAt"], (START + 20 * 60) * 1000)
        self.clock.advance(31 * 60)
        second = await self.message(self.a, "three")
        self.assertNotEqual(second, first)
        row = self.row()
        self.assertEqual(row["sessionId"], second)
        self.assertEqual(row["sessionStartedAt"], (START + 51 * 60) * 1000)
        archived = self.server.command("KEYS", f"*{first}.jsonl.reset.*")
        self.assertIn(first.encode(), archived)
        transcript = self.server.command(
            "LRANGE", KeySchema().transcript("main", second), "0", "-1"
        )
        self.assertIn(b"three", transcript)
        self.assertNotIn(b"two", transcript)

    async def test_no_policy_keeps_the_session(self) -> None:
        """Without a policy (background work) nothing is reset or stamped."""
        self.a.load_agent("main")
        first = await self.message(self.a, "one")
        self.clock.advance(10 * 3600)
        await self.a.refresh_session(KEY)
        entry = self.a.ensure_session("main", KEY)
        self.assertEqual(entry.session_id, first)
        self.assertEqual(self.row()["lastInteractionAt"], START * 1000)
