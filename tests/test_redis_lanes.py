"""Session lanes and fenced transcript writes on a real ``redis-server``.

Two :class:`RedisLanes` (each with its own connection and owner id) stand for
two gateway processes. Lock renewal runs on a ``Clock`` the test advances;
Redis traffic runs on the real reactor. Waits are bounded polls of a
condition or Deferreds, never sleeps.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.core.types import Usage
from openclaw.core.unavailable import TurnNotSavedError
from openclaw.sessions.lanes import Release
from openclaw.sessions.redis.client import (
    RedisCommandError,
    RedisUnavailableError,
    TxRedisClient,
    open_client,
)
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.lanes import LaneLostError, RedisLanes
from openclaw.sessions.redis.store import RedisSessionStore
from openclaw.sessions.redis.url import RedisUrlError, parse_redis_url
from tests.redis_support import SharedRedisServer, until
from tests.test_access_log import Collector

KEY = "agent:main:main"


def user_line(
    store: RedisSessionStore, session_id: str, run_id: str, text: str, timestamp: int
) -> Deferred[None]:
    """Append one user message to a session of agent main (a turn's first line)."""
    return store.append_messages(
        "main",
        session_id,
        run_id=run_id,
        messages=[{"role": "user", "content": text}],
        timestamp=timestamp,
    )


class RedisUrlTests(SynchronousTestCase):
    """``gateway.redis.url`` forms."""

    def test_tcp_tls_and_db(self) -> None:
        """redis:// and rediss:// give host, port, db and TLS."""
        url = parse_redis_url("rediss://user:pw@cache.internal:6380/3")
        self.assertEqual(
            (url.host, url.port, url.db, url.tls, url.username, url.password),
            ("cache.internal", 6380, 3, True, "user", "pw"),
        )
        plain = parse_redis_url("redis://127.0.0.1")
        self.assertEqual((plain.port, plain.db, plain.tls), (6379, 0, False))

    def test_unix_socket_forms(self) -> None:
        """unix:// and redis+unix:// take a path, ?db= and ?password=."""
        url = parse_redis_url("unix:///run/redis.sock?db=2")
        self.assertEqual((url.path, url.db, url.is_unix), ("/run/redis.sock", 2, True))
        other = parse_redis_url("redis+unix:///tmp/r.sock?db=1&password=x")
        self.assertEqual((other.path, other.db, other.password), ("/tmp/r.sock", 1, "x"))

    def test_password_from_env_is_never_shown(self) -> None:
        """${VAR} is expanded; redacted() and repr() hide the password."""
        url = parse_redis_url("redis://:${REDIS_PW}@h:1/0", {"REDIS_PW": "hunter2"})
        self.assertEqual(url.password, "hunter2")
        self.assertNotIn("hunter2", url.redacted())
        self.assertNotIn("hunter2", repr(url))

    def test_bad_urls(self) -> None:
        """Unknown schemes, unset variables and relative socket paths are refused."""
        for text in ("http://h", "redis://:${NOPE}@h", "unix://relative.sock", "redis:///0"):
            self.assertRaises(RedisUrlError, parse_redis_url, text, {})


class RedisLaneTests(SharedRedisServer, TestCase):
    """Lanes across two 'processes' on one Redis."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server.command("FLUSHALL")
        self.clients: list[TxRedisClient] = []
        self.a = self.client()
        self.b = self.client()
        return ensureDeferred(self._connected())

    async def _connected(self) -> None:
        for client in self.clients:
            await client.wait_connected(5)

    def client(self) -> TxRedisClient:
        client = open_client(reactor, parse_redis_url(self.server.url))
        self.clients.append(client)
        self.addCleanup(client.close)
        return client

    def lanes(self, client: TxRedisClient, owner: str, **kw: Any) -> RedisLanes:
        kw.setdefault("ttl_seconds", 5.0)
        return RedisLanes(client, kw.pop("clock", reactor), owner=owner, poll_seconds=0.005, **kw)

    async def test_one_holder_at_a_time_fifo(self) -> None:
        """A second process waits while the first holds the lane; waiters are
        served in the order they asked, across processes."""
        la, lb = self.lanes(self.a, "A"), self.lanes(self.b, "B")
        order: list[str] = []
        release_a = await la.acquire(KEY)
        wait_b = lb.acquire(KEY)
        await until(
            lambda: self.server.command("ZCARD", KeySchema().queue(KEY)) == b":1\r\n", "B queued"
        )
        wait_a2 = la.acquire(KEY)

        def note(release: Release, who: str) -> Release:
            order.append(who)
            return release

        wait_b.addCallback(note, "B")
        wait_a2.addCallback(note, "A2")
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(order, [])
        release_a()
        release_b = await wait_b
        self.assertEqual(order, ["B"])
        release_b()
        (await wait_a2)()
        self.assertEqual(order, ["B", "A2"])

    async def test_fencing_refuses_a_stalled_holder(self) -> None:
        """A holder whose lock expired (no renewal: its clock never ran) cannot
        write once another process holds the lane; the new holder's lines are
        the only ones after the takeover."""
        stalled = Clock()
        la = self.lanes(self.a, "A", clock=stalled, ttl_seconds=0.2)
        lb = self.lanes(self.b, "B")
        sa = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"), leases=la.leases)
        sb = RedisSessionStore(self.b, clock=reactor, state_dir=Path("/x"), leases=lb.leases)
        for store in (sa, sb):
            store.load_agent("main")
        await la.acquire(KEY)
        entry = sa.ensure_session("main", KEY)
        await user_line(sa, entry.session_id, "r1", "one", 1)
        release_b = await lb.acquire(KEY)  # granted once A's lock expired
        await sb.refresh_session(KEY)
        with self.assertRaises(LaneLostError):
            await user_line(sa, entry.session_id, "r1", "late", 2)
        entry_b = sb.ensure_session("main", KEY)
        self.assertEqual(entry_b.session_id, entry.session_id)
        await user_line(sb, entry.session_id, "r2", "two", 3)
        release_b()
        lines = self.transcript(entry.session_id)
        texts = [line["message"]["content"] for line in lines if line["type"] == "message"]
        self.assertEqual(texts, ["one", "two"])

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        raw = self.server.command("LRANGE", KeySchema().transcript("main", session_id), "0", "-1")
        return [json.loads(part) for part in raw.split(b"\r\n")[2::2] if part.startswith(b"{")]

    async def test_renewal_keeps_the_lock_and_stops_on_release(self) -> None:
        """Advancing the injected clock renews the lock's TTL while held; after
        release nothing renews it (the key is gone)."""
        clock = Clock()
        la = self.lanes(self.a, "A", clock=clock, ttl_seconds=3.0)
        lock = KeySchema().lock(KEY)
        release = await la.acquire(KEY)
        self.server.command("PEXPIRE", lock, "100")  # as if time had passed
        clock.advance(1.0)  # ttl/3: a renewal
        await until(lambda: int(self.server.command("PTTL", lock)[1:-2]) > 1000, "renewed TTL")
        release()
        await until(lambda: self.server.command("EXISTS", lock) == b":0\r\n", "lock released")
        clock.advance(1.0)
        await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.server.command("EXISTS", lock), b":0\r\n")

    async def test_a_lost_lane_stays_fenced_and_stops_its_holder(self) -> None:
        """When renewal finds the lock taken (the holder stalled past its TTL),
        the lease is marked lost, not forgotten: the holder's watcher is told
        once, renewal stops, and its later writes are refused (LaneLostError,
        a turn-not-saved error) instead of landing unfenced in the new
        holder's turn."""
        clock = Clock()
        la = self.lanes(self.a, "A", clock=clock)
        sa = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"), leases=la.leases)
        sa.load_agent("main")
        release = await la.acquire(KEY)
        self.addCleanup(release)
        entry = sa.ensure_session("main", KEY)
        await user_line(sa, entry.session_id, "r1", "one", 1)
        told: list[Exception] = []
        sa.watch_lane(KEY, told.append)
        warned = self.warnings()
        lock = KeySchema().lock(KEY)
        self.server.command("SET", lock, "999:someone-else")  # B's turn, after A's expired
        clock.advance(5.0 / 3)
        await until(lambda: told, "the holder told")
        self.assertIsInstance(told[0], LaneLostError)
        self.assertIsInstance(told[0], TurnNotSavedError)
        self.assertIsNotNone(la.leases.token(KEY))  # kept: writes stay fenced
        with self.assertRaises(LaneLostError):
            await sa.finish_turn(
                "main",
                KEY,
                entry.session_id,
                run_id="r1",
                text="late answer",
                timestamp=2,
                usage=Usage(),
                stop_reason="stop",
            )
        calls = self.a.commands
        for _ in range(5):
            clock.advance(5.0 / 3)
        await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.a.commands, calls)  # renewal stopped
        self.assertEqual(len(told), 1)
        self.assertEqual(len(warned.having("lost the lane")), 1, warned.lines())
        lines_of = self.transcript(entry.session_id)
        texts = [line["message"]["content"] for line in lines_of if line["type"] == "message"]
        self.assertEqual(texts, ["one"])
        self.assertEqual(self.server.command("GET", lock), b"$16\r\n999:someone-else\r\n")

    async def test_a_write_sent_before_the_loss_is_noticed_is_fenced(self) -> None:
        """A write that reaches Redis after the lock changed hands, before the
        renewal noticed, is refused by the script (FENCED) and reported as the
        lane's loss (LaneLostError)."""
        la = self.lanes(self.a, "A", clock=Clock())
        sa = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"), leases=la.leases)
        sa.load_agent("main")
        self.addCleanup(await la.acquire(KEY))
        entry = sa.ensure_session("main", KEY)
        await user_line(sa, entry.session_id, "r1", "one", 1)
        self.server.command("SET", KeySchema().lock(KEY), "999:someone-else")
        with self.assertRaises(LaneLostError):
            await user_line(sa, entry.session_id, "r1", "late", 2)

    def warnings(self) -> Collector:
        """The warnings logged from now on."""
        return Collector(levels=(LogLevel.warn,)).attach(self)

    async def test_killed_holder_frees_the_lane_within_ttl(self) -> None:
        """A holder whose connection dies without releasing (SIGKILL) blocks the
        lane only until its lock's TTL runs out."""
        la = self.lanes(self.a, "A", clock=Clock(), ttl_seconds=0.3)
        lb = self.lanes(self.b, "B")
        await la.acquire(KEY)
        await self.a.close()
        release = await lb.acquire(KEY)
        release()

    async def test_lane_given_up_during_an_outage_is_released_once_back(self) -> None:
        """A lane released while the connection is down is released in Redis as
        soon as it is back, not left to block the session until its TTL."""
        clock = Clock()
        la = self.lanes(self.a, "A", clock=clock, ttl_seconds=30.0)
        lock = KeySchema().lock(KEY)
        release = await la.acquire(KEY)
        self.server.command("CLIENT", "KILL", "TYPE", "normal")
        await until(lambda: not self.a.connected, "A disconnected")
        release()
        clock.advance(0.25)  # still away: kept for later
        await until(lambda: self.a.connected, "A reconnected", timeout=10.0)
        self.assertEqual(self.server.command("EXISTS", lock), b":1\r\n")
        clock.advance(0.25)
        await until(lambda: self.server.command("EXISTS", lock) == b":0\r\n", "lock released")

    async def test_outage_is_logged_once_when_lost_and_once_when_back(self) -> None:
        """One warning per connection names the Redis (no password) when the
        connection goes, one when it is back."""
        warned = self.warnings()
        self.server.command("CLIENT", "KILL", "TYPE", "normal")
        await until(lambda: not self.a.connected, "A disconnected")
        await until(lambda: all(c.connected for c in self.clients), "reconnected", timeout=10.0)
        # One of each per client (this test has two connections).
        mine = warned.having("Redis at unix://")
        lost = [m for m in mine if "lost the connection" in m]
        back = [m for m in mine if "reachable again" in m]
        self.assertEqual(
            (len(lost), len(back)), (len(self.clients), len(self.clients)), warned.lines()
        )

    async def test_cancelled_waiter_leaves_the_queue(self) -> None:
        """Cancelling a waiting acquisition removes its ticket: the next waiter
        gets the lane when the holder releases."""
        la, lb = self.lanes(self.a, "A"), self.lanes(self.b, "B")
        lc = self.lanes(self.client(), "C")
        await self.clients[-1].wait_connected(5)
        release = await la.acquire(KEY)
        gone = lb.acquire(KEY)
        gone.addErrback(lambda f: None)
        await until(
            lambda: self.server.command("ZCARD", KeySchema().queue(KEY)) == b":1\r\n", "B queued"
        )
        nxt = lc.acquire(KEY)
        gone.cancel()
        release()
        (await nxt)()

    async def test_unavailable_redis_fails_at_once(self) -> None:
        """With the connection gone for good, acquiring fails with
        RedisUnavailableError instead of waiting."""
        la = self.lanes(self.a, "A")
        await self.a.close()
        with self.assertRaises(RedisUnavailableError):
            await la.acquire(KEY)
        self.assertEqual(len(la), 0)

    async def test_history_continues_across_processes(self) -> None:
        """A turn finished by one process is what the next process reads when
        its lane is granted, then both turns are in order in Redis."""
        la, lb = self.lanes(self.a, "A"), self.lanes(self.b, "B")
        sa = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"), leases=la.leases)
        sb = RedisSessionStore(self.b, clock=reactor, state_dir=Path("/x"), leases=lb.leases)
        la._on_granted = sa.refresh_session
        lb._on_granted = sb.refresh_session
        for store in (sa, sb):
            store.load_agent("main")
        for n, (lanes, store) in enumerate([(la, sa), (lb, sb), (la, sa)]):
            release = await lanes.acquire(KEY)
            entry = store.ensure_session("main", KEY)
            seen = [
                m["content"]
                for _, m in store.recent_messages("main", entry.session_id)
                if m["role"] == "user"
            ]
            self.assertEqual(seen, [f"q{i}" for i in reversed(range(n))])
            store.append_user("main", entry.session_id, run_id=f"r{n}", text=f"q{n}", timestamp=n)
            await store.finish_turn(
                "main",
                KEY,
                entry.session_id,
                run_id=f"r{n}",
                text=f"a{n}",
                timestamp=n,
                usage=Usage(input=1, output=2, total=3),
                stop_reason="stop",
            )
            release()
        await sa.refresh_agent("main")
        [listed] = sa.list_sessions("main")
        self.assertEqual(listed.extra.get("totalTokens"), 1)
        self.assertEqual(sa.message_count("main", KEY), 6)

    async def test_reset_elsewhere_makes_late_writes_stale(self) -> None:
        """After another process resets the session, a write to the old
        sessionId is refused (STALE) and the old transcript is archived."""
        la = self.lanes(self.a, "A")
        sa = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"), leases=la.leases)
        sb = RedisSessionStore(self.b, clock=reactor, state_dir=Path("/x"))
        for store in (sa, sb):
            store.load_agent("main")
        la._on_granted = sa.refresh_session
        self.addCleanup(await la.acquire(KEY))
        old = sa.ensure_session("main", KEY)
        await user_line(sa, old.session_id, "r", "x", 1)
        await sb.refresh_session(KEY)
        fresh = sb.reset("main", KEY)
        await sb.when_idle()
        self.assertNotEqual(fresh.session_id, old.session_id)
        with self.assertRaises(RedisCommandError) as caught:
            await user_line(sa, old.session_id, "r", "y", 2)
        self.assertIn("STALE", str(caught.exception))
        keys = self.server.command("KEYS", "openclaw:arch:*")
        self.assertIn(f"{old.session_id}.jsonl.reset.".encode(), keys)

    def entry_in_redis(self, key: str) -> dict[str, Any] | None:
        raw = self.server.command("HGET", KeySchema().index("main"), key)
        return None if raw.startswith(b"$-1") else json.loads(raw.split(b"\r\n")[1])

    def archives(self) -> list[str]:
        raw = self.server.command("KEYS", "openclaw:arch:*").decode()
        return sorted(line for line in raw.split("\r\n") if line.startswith("openclaw:arch:"))

    async def stores_and_a_session_made_on_b(
        self, key: str
    ) -> tuple[RedisSessionStore, RedisSessionStore, str]:
        """Stores A and B with their indexes read at start-up, then a session
        made and answered on B only (A's copy does not know it)."""
        sa = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"))
        sb = RedisSessionStore(self.b, clock=reactor, state_dir=Path("/x"))
        for store in (sa, sb):
            store.load_agent("main")
            await store.refresh_agent("main")
        entry = sb.ensure_session("main", key)
        sb.append_user("main", entry.session_id, run_id="r", text="q", timestamp=1)
        await sb.finish_turn(
            "main",
            key,
            entry.session_id,
            run_id="r",
            text="a",
            timestamp=2,
            usage=Usage(input=1, output=2, total=3),
            stop_reason="stop",
            model="echo",
        )
        return sa, sb, entry.session_id

    async def test_delete_acts_on_what_redis_holds(self) -> None:
        """sessions.delete on an instance whose copy of the index predates the
        session (made on another instance) removes the entry from Redis and
        archives its transcript."""
        key = "agent:main:made-on-b"
        sa, _, session_id = await self.stores_and_a_session_made_on_b(key)
        sa.delete("main", key)
        await sa.when_idle()
        self.assertIsNone(self.entry_in_redis(key))
        schema = KeySchema()
        self.assertEqual(
            self.server.command("EXISTS", schema.transcript("main", session_id)), b":0\r\n"
        )
        [archive] = self.archives()
        self.assertIn(f"{session_id}.jsonl.deleted.", archive)

    async def test_reset_acts_on_what_redis_holds(self) -> None:
        """sessions.reset on an instance that never served the session archives
        the transcript Redis' entry names and keeps that entry's fields (not
        its token counts) under the new sessionId, in Redis and in its copy."""
        key = "agent:main:reset-on-a"
        sa, _, session_id = await self.stores_and_a_session_made_on_b(key)
        fresh = sa.reset("main", key)
        await sa.when_idle()
        entry = self.entry_in_redis(key)
        assert entry is not None
        self.assertEqual(entry["sessionId"], fresh.session_id)
        self.assertNotEqual(fresh.session_id, session_id)
        self.assertEqual(entry.get("model"), "echo")
        self.assertNotIn("totalTokens", entry)
        [archive] = self.archives()
        self.assertIn(f"{session_id}.jsonl.reset.", archive)
        got = sa.get_session("main", key)
        assert got is not None
        self.assertEqual(got.extra.get("model"), "echo")

    async def test_delete_after_a_reset_and_turns_elsewhere_archives_the_live_transcript(
        self,
    ) -> None:
        """A reset on A, more turns on B (under the new sessionId), then a delete
        on A: the transcript archived is B's live one, not the one A knew."""
        key = "agent:main:moved-on"
        sa, sb, first = await self.stores_and_a_session_made_on_b(key)
        await sa.refresh_agent("main")
        sa.reset("main", key)
        await sa.when_idle()
        sb.reset("main", key)  # B resets again: a sessionId A never saw
        await sb.when_idle()
        await sb.refresh_session(key)
        live = sb.ensure_session("main", key)
        await user_line(sb, live.session_id, "r2", "again", 3)
        sa.delete("main", key)
        await sa.when_idle()
        self.assertIsNone(self.entry_in_redis(key))
        archived = self.archives()
        self.assertEqual(len(archived), 2, archived)
        self.assertTrue(any(f"{first}.jsonl.reset." in a for a in archived), archived)
        self.assertTrue(any(f"{live.session_id}.jsonl.deleted." in a for a in archived), archived)

    async def test_archive_retention_is_a_ttl(self) -> None:
        """resetArchiveRetention: a reset's archived transcript expires in Redis
        after that long; without it the archive is kept."""
        kept = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"))
        ttl = RedisSessionStore(
            self.b, clock=reactor, state_dir=Path("/x"), archive_retention_seconds=3600
        )
        for store, key in ((kept, "agent:main:kept"), (ttl, "agent:main:ttl")):
            store.load_agent("main")
            entry = store.ensure_session("main", key)
            await user_line(store, entry.session_id, "r", "x", 1)
            store.reset("main", key)
            await store.when_idle()

        archives = self.server.command("KEYS", "openclaw:arch:*").decode()
        names = [line for line in archives.split("\r\n") if line.startswith("openclaw:arch:")]
        self.assertEqual(len(names), 2, archives)
        ttls = sorted(int(self.server.command("PTTL", n)[1:].strip()) for n in names)
        self.assertEqual(ttls[0], -1)  # kept
        self.assertTrue(3_500_000 < ttls[1] <= 3_600_000, ttls)

    async def test_stateless_sessions_are_capped(self) -> None:
        """One-off chat-completion sessions past the cap (plus a tenth, at least
        one) are dropped oldest first, entry and transcript, in Redis and in the
        process' mirror; named sessions are never dropped."""
        store = RedisSessionStore(self.a, clock=reactor, state_dir=Path("/x"), max_stateless=3)
        store.load_agent("main")
        named = store.ensure_session("main", KEY)
        await user_line(store, named.session_id, "n", "keep", 1)
        ids = []
        for n in range(6):
            key = f"agent:main:openai:{uuid.UUID(int=n)}"
            entry = store.ensure_session("main", key)
            ids.append(entry.session_id)
            await user_line(store, entry.session_id, f"r{n}", str(n), 10 + n)
        schema = KeySchema()
        # Cuts come in batches: the 5th session (over 3 + 1) dropped the 2 oldest.
        self.assertEqual(self.server.command("HLEN", schema.index("main")), b":5\r\n")
        for dropped in ids[:2]:
            self.assertEqual(
                self.server.command("EXISTS", schema.transcript("main", dropped)), b":0\r\n"
            )
        self.assertEqual(
            self.server.command("EXISTS", schema.transcript("main", named.session_id)), b":1\r\n"
        )
        self.assertEqual(store.count_sessions("main"), 4)  # the named one and the newest 3
        self.assertEqual(
            self.server.command("EXISTS", schema.transcript("main", ids[2])), b":1\r\n"
        )
