"""The Redis client against a real ``redis-server``: what it does when Redis
refuses a reconnect's handshake or answers a command with an error (and a
real gateway process on a Redis that refuses writes).

Redis traffic runs on the real reactor; waits are bounded polls of a
condition through the reactor (:func:`until`), never sleeps.
"""

from __future__ import annotations

import json
import re

from twisted.internet import reactor
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.sessions.redis.client import (
    LuaScript,
    RedisCommandError,
    RedisKeyTypeError,
    RedisRefusedError,
    TxRedisClient,
    open_client,
    open_subscriber,
)
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.url import parse_redis_url
from tests.gateway_process import GatewayProcess
from tests.redis_support import RedisServer, SharedRedisServer, _resp, free_port, until
from tests.test_access_log import Collector
from tests.test_redis_faults import chat, poll
from tests.test_redis_gateway import gateway_config
from tests.ws_sync_client import SyncWsClient

#: A script that keeps Redis busy (answering nobody) for 1.2 s.
BUSY_FOR_1200_MS = (
    "local s = redis.call('TIME') repeat local n = redis.call('TIME') "
    "until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 1200000 return 1"
)


def info_count(server: RedisServer, section: str, pattern: str) -> int:
    """A counter from ``INFO section`` (0 while Redis does not list it)."""
    text = server.command("INFO", section).decode()
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


#: The levels the refusal tests watch: warnings and worse.
WARNINGS = (LogLevel.warn, LogLevel.error, LogLevel.critical)


def warnings_of(test: TestCase) -> Collector:
    """The warning-or-worse lines logged from now on in ``test``."""
    return Collector(levels=WARNINGS).attach(test)


class RefusedReconnectTests(TestCase):
    """A reconnect whose ``AUTH`` or ``SELECT`` Redis refuses is retried
    (txredisapi alone gave up for good after one)."""

    def start(self, password: str | None) -> RedisServer:
        server = RedisServer(password=password)
        server.start()
        self.addCleanup(server.cleanup)
        return server

    def client(self, server: RedisServer) -> TxRedisClient:
        client = open_client(reactor, parse_redis_url(server.url))
        self.addCleanup(client.close)
        return client

    async def test_wrong_password_for_a_while_then_back(self) -> None:
        """Connections killed while ``requirepass`` is another one: the client
        keeps retrying (more than one refused AUTH), says so once, and serves
        again by itself once the password is back; no password in the log."""
        server = self.start("first-secret")
        log = warnings_of(self)
        client = self.client(server)
        await client.wait_connected(5)
        await client.execute("SET", "k", "v")
        server.set_password("second-secret")
        server.command("CLIENT", "KILL", "TYPE", "normal")
        await until(
            lambda: info_count(server, "errorstats", r"errorstat_WRONGPASS:count=(\d+)") >= 3,
            "three refused reconnects",
        )
        self.assertFalse(client.connected)
        server.set_password("first-secret")
        await until(lambda: client.connected, "the client to reconnect")
        self.assertEqual(await client.execute("GET", "k"), "v")
        refused = log.having("did not complete the connection handshake")
        self.assertEqual(len(refused), 1, log.lines())
        self.assertIn("WRONGPASS", refused[0])
        self.assertEqual(len(log.having("is reachable again")), 1, log.lines())
        self.assertFalse([line for line in log.lines() if "secret" in line], log.lines())

    async def test_select_refused_without_a_password(self) -> None:
        """A client without a password whose ``SELECT`` meets a Redis that
        suddenly requires one (NOAUTH) recovers once the requirement is gone."""
        server = self.start(None)
        client = self.client(server)
        await client.wait_connected(5)
        server.set_password("temporary")
        server.command("CLIENT", "KILL", "TYPE", "normal")
        await until(
            lambda: info_count(server, "errorstats", r"errorstat_NOAUTH:count=(\d+)") >= 2,
            "two refused SELECTs",
        )
        server.set_password(None)
        await until(lambda: client.connected, "the client to reconnect")
        self.assertEqual(await client.execute("PING"), "PONG")

    async def test_handshake_without_an_answer_then_back(self) -> None:
        """Connections killed just before Redis blocks (a long script): the
        reconnect's AUTH gets no reply in time, and the client connects again
        once Redis answers."""
        server = self.start("first-secret")
        log = warnings_of(self)
        client = open_client(reactor, parse_redis_url(server.url), reply_timeout=0.2)
        self.addCleanup(client.close)
        await client.wait_connected(5)
        blocker = server._connect()
        self.addCleanup(blocker.close)
        # One pipeline: Redis kills the others, then is busy for 1.2 s (a
        # script short of busy-reply-threshold: nothing is answered meanwhile,
        # as with DEBUG SLEEP, which this redis-server does not allow).
        blocker.sendall(
            _resp("AUTH", "first-secret")
            + _resp("CLIENT", "KILL", "TYPE", "normal")
            + _resp("EVAL", BUSY_FOR_1200_MS, "0")
        )
        await until(lambda: log.having("Not received Redis response"), "a handshake timeout")
        await until(lambda: client.connected, "the client to reconnect")
        self.assertEqual(await client.execute("PING"), "PONG")

    async def test_the_subscriber_subscribes_again(self) -> None:
        """The pub/sub connection, refused the same way, subscribes again and
        receives messages once Redis accepts it."""
        server = self.start("first-secret")
        messages: list[str] = []
        subscribed: list[None] = []
        subscription = open_subscriber(
            reactor,
            parse_redis_url(server.url),
            "chan",
            messages.append,
            lambda: subscribed.append(None),
        )
        self.addCleanup(subscription.close)
        await until(lambda: subscribed, "the first subscription")
        server.set_password("second-secret")
        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(
            lambda: info_count(server, "errorstats", r"errorstat_WRONGPASS:count=(\d+)") >= 2,
            "two refused reconnects",
        )
        server.set_password("first-secret")
        await until(lambda: len(subscribed) == 2, "the subscription to come back")
        server.command("PUBLISH", "chan", "hello")
        await until(lambda: messages, "the message")
        self.assertEqual(messages, ["hello"])


class ErrorReplyTests(SharedRedisServer, TestCase):
    """Error replies that mean "not now" or "bad data", not "bad command"."""

    def setUp(self) -> None:
        self.server.command("FLUSHALL")
        self.log = warnings_of(self)

    async def client(self, url: str | None = None) -> TxRedisClient:
        client = open_client(reactor, parse_redis_url(url or self.server.url))
        self.addCleanup(client.close)
        await client.wait_connected(5)
        return client

    async def test_wrong_type_names_the_key_once(self) -> None:
        """WRONGTYPE is a shared-state error (503) naming the key, logged once
        at error level however often it is met."""
        client = await self.client()
        self.server.command("SET", "openclaw:tx:main:s1", "not a list")
        script = LuaScript("read", "return redis.call('LRANGE', KEYS[1], 0, -1)")
        for _ in range(3):
            with self.assertRaises(RedisKeyTypeError) as caught:
                await client.run_script(script, ["openclaw:tx:main:s1"], [])
            self.assertIsInstance(caught.exception, SharedStateUnavailableError)
            self.assertEqual(caught.exception.keys, ("openclaw:tx:main:s1",))
        with self.assertRaises(RedisKeyTypeError):
            await client.execute("LRANGE", "openclaw:tx:main:s1", 0, -1)
        logged = self.log.having("holds the wrong type")
        self.assertEqual(len(logged), 1, self.log.lines())
        self.assertIn("openclaw:tx:main:s1", logged[0])

    async def test_noperm_and_oom_are_refusals_logged_once(self) -> None:
        """An ACL user kept off the keys gets NOPERM, a full Redis OOM: both
        RedisRefusedError (503), one warning each for many refusals; other
        error replies stay RedisCommandError."""
        self.server.command("ACL", "SETUSER", "limited", "on", ">pw", "~other:*", "+@all")
        self.addCleanup(self.server.command, "ACL", "DELUSER", "limited")
        limited = await self.client(f"unix://limited:pw@{self.server.socket_path}?db=0")
        script = LuaScript("read", "return redis.call('GET', KEYS[1])")
        for _ in range(3):
            with self.assertRaises(RedisRefusedError) as refused:
                await limited.run_script(script, ["openclaw:idx:main"], [])
            self.assertEqual(refused.exception.code, "NOPERM")
        with self.assertRaises(RedisRefusedError):
            await limited.execute("GET", "openclaw:idx:main")
        self.assertEqual(len(self.log.having("refuses commands: NOPERM")), 1, self.log.lines())
        client = await self.client()
        self.server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.server.command("CONFIG", "SET", "maxmemory", "1")
        self.addCleanup(self.server.command, "CONFIG", "SET", "maxmemory", "0")
        for _ in range(3):
            with self.assertRaises(RedisRefusedError) as caught:
                await client.execute("SET", "k", "v")
            self.assertEqual(caught.exception.code, "OOM")
        self.assertEqual(len(self.log.having("refuses commands: OOM")), 1, self.log.lines())
        with self.assertRaises(RedisCommandError) as wrong:
            await client.execute("NOSUCHCOMMAND")
        self.assertNotIsInstance(wrong.exception, SharedStateUnavailableError)

    async def test_a_command_a_script_may_not_run_is_noperm(self) -> None:
        """Inside a script Redis answers an ACL refusal ``ERR The user executing
        the script can't ...`` (a write, a PUBLISH to a channel not granted):
        a NOPERM refusal (503), one warning per client, not a RedisCommandError
        (a 500 with tracebacks)."""
        rules = {"nowrite": ["~*", "&*", "+@all", "-@write"], "nochan": ["~*", "+@all"]}
        for user, rule in rules.items():
            self.server.command("ACL", "SETUSER", user, "reset", "on", ">pw", *rule)
            self.addCleanup(self.server.command, "ACL", "DELUSER", user)
        writes = LuaScript("write", "return redis.call('SET', KEYS[1], 'v')")
        publishes = LuaScript("publish", "return redis.call('PUBLISH', ARGV[1], 'x')")
        cases = [("nowrite", writes, ["openclaw:k"], []), ("nochan", publishes, [], ["chan"])]
        for user, script, keys, args in cases:
            client = await self.client(f"unix://{user}:pw@{self.server.socket_path}?db=0")
            for _ in range(3):
                with self.assertRaises(RedisRefusedError) as refused:
                    await client.run_script(script, keys, args)
                self.assertEqual(refused.exception.code, "NOPERM")
        self.assertEqual(len(self.log.having("can't run this command")), 1, self.log.lines())
        self.assertEqual(len(self.log.having("can't publish to the channel")), 1, self.log.lines())

    async def test_a_refused_subscription_is_one_warning_naming_the_channel(self) -> None:
        """A user without SUBSCRIBE: one warning that says what is refused and
        what it costs (other instances' runs do not reach this one)."""
        self.server.command("ACL", "SETUSER", "nosub", "on", ">pw", "~*", "&*", "+@all")
        self.server.command("ACL", "SETUSER", "nosub", "-subscribe")
        self.addCleanup(self.server.command, "ACL", "DELUSER", "nosub")
        url = parse_redis_url(f"unix://nosub:pw@{self.server.socket_path}?db=0")
        subscription = open_subscriber(reactor, url, "oc:0:bus", lambda _: None, lambda: None)
        self.addCleanup(subscription.close)
        await until(lambda: self.log.having("SUBSCRIBE"), "the refusal")
        (line,) = self.log.having("SUBSCRIBE")
        self.assertIn("refuses to SUBSCRIBE to oc:0:bus: NOPERM", line)
        self.assertIn("other instances do not reach this one", line)


class RefusingRedisGatewayTests(SynchronousTestCase):
    """A real gateway on a Redis that is up but refuses writes: full under
    ``noeviction`` (OOM) or turned into a replica (READONLY)."""

    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        root = self.server.directory / "gw"
        state = root / "state"
        state.mkdir(parents=True)
        self.gateway = GatewayProcess(gateway_config(root, self.server.url), state)
        self.addCleanup(self.gateway.ensure_stopped)

    def assertRefused(self, key: str) -> None:
        status, headers, body = chat(self.gateway.port, key, "hello")
        self.assertEqual(status, 503, body)
        self.assertEqual(headers.get("retry-after"), "1")
        # Refused at the session lane: nothing ran, so an SDK may retry it.
        self.assertNotIn("x-should-retry", headers)
        self.assertIn("session_store_unavailable", body)

    def test_oom_and_readonly_answer_503_and_log_once(self) -> None:
        """Every request while Redis refuses gets 503 + Retry-After (not a 500
        with tracebacks); each refusal is one warning naming Redis' reply, and
        the gateway serves again once Redis accepts writes."""
        port = self.gateway.port
        self.assertEqual(chat(port, "known", "first")[0], 200)
        self.server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.server.command("CONFIG", "SET", "maxmemory", "1")
        for key in ("known", "fresh", "known"):
            self.assertRefused(key)
        self.server.command("CONFIG", "SET", "maxmemory", "0")
        self.assertEqual(chat(port, "known", "again")[0], 200)
        primary = RedisServer(tcp=True)
        primary.start()
        self.addCleanup(primary.cleanup)
        self.server.command("REPLICAOF", "127.0.0.1", str(primary.port))
        poll(
            lambda: True if b"master_link_status:up" in self.server.command("INFO") else None,
            what="the replica to sync",
        )
        for key in ("known", "other"):
            self.assertRefused(key)
        self.server.command("REPLICAOF", "NO", "ONE")
        self.assertEqual(chat(port, "after", "hello")[0], 200)
        self.assertEqual(self.gateway.stop(), 0)
        log = self.gateway.text
        self.assertEqual(log.count("refuses commands: OOM"), 1, log)
        self.assertEqual(log.count("refuses commands: READONLY"), 1, log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("internal error", log)

    def test_refused_reset_and_delete_answer_unavailable_and_change_nothing(self) -> None:
        """``sessions.reset`` and ``sessions.delete`` while Redis refuses writes
        (a replica: READONLY) answer UNAVAILABLE with retryAfterMs, never ok:
        the session is as it was (listed, same sessionId) and its next turn
        continues its history."""
        port = self.gateway.port
        self.assertEqual(chat(port, "kept", "first turn")[0], 200)
        ws = SyncWsClient(port)
        self.addCleanup(ws.close)
        session_id = ws.request("chat.history", {"sessionKey": "kept"})["payload"]["sessionId"]
        self.assertTrue(session_id)
        # A replica of a primary nobody runs: it keeps its data (no sync ever
        # happens) and refuses every write.
        self.server.command("REPLICAOF", "127.0.0.1", str(free_port()))
        self.addCleanup(self.server.command, "REPLICAOF", "NO", "ONE")
        for method in ("sessions.reset", "sessions.delete"):
            answer = ws.request(method, {"key": "kept"})
            self.assertFalse(answer["ok"], answer)
            self.assertEqual(answer["error"]["code"], "UNAVAILABLE", answer)
            self.assertGreater(answer["error"]["retryAfterMs"], 0, answer)
        self.server.command("REPLICAOF", "NO", "ONE")
        listed = ws.request("sessions.list", {})["payload"]["sessions"]
        (row,) = [row for row in listed if row["key"] == "agent:main:kept"]
        self.assertEqual(row["sessionId"], session_id)
        self.assertEqual(chat(port, "kept", "second turn")[0], 200)
        history = ws.request("chat.history", {"sessionKey": "kept"})["payload"]
        self.assertEqual(history["sessionId"], session_id)
        said = json.dumps(history["messages"])
        self.assertIn("first turn", said)
        self.assertIn("second turn", said)
        self.assertEqual(self.gateway.stop(), 0)
        self.assertNotIn("Traceback", self.gateway.text)

    def test_an_acl_refusing_the_scripts_writes_answers_503(self) -> None:
        """An ACL that lets the user in but refuses the writes of the gateway's
        scripts (``-@write``: Redis answers ``ERR The user executing the script
        can't ...``) is a refusal like the others: 503 with Retry-After, one
        warning, no 500 with tracebacks."""
        port = self.gateway.port
        self.assertEqual(chat(port, "known", "first")[0], 200)
        self.server.command("ACL", "SETUSER", "default", "-@write")
        self.addCleanup(self.server.command, "ACL", "SETUSER", "default", "+@all")
        for key in ("known", "fresh"):
            self.assertRefused(key)
        self.server.command("ACL", "SETUSER", "default", "+@all")
        self.assertEqual(chat(port, "after", "hello")[0], 200)
        self.assertEqual(self.gateway.stop(), 0)
        log = self.gateway.text
        self.assertEqual(log.count("refuses commands: "), 1, log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("internal error", log)

    def test_a_transcript_key_of_another_type_is_named_and_locks_nothing(self) -> None:
        """A session whose transcript key holds another type (something else
        wrote it): its turn and ``chat.history`` are refused (503 /
        UNAVAILABLE), the log names that key, once, not the keys the script was
        given, and no lane lock or ticket is left behind, so the next turn
        after the key is deleted runs at once (it waited lockTtlSeconds)."""
        port = self.gateway.port
        self.assertEqual(chat(port, "s1", "first")[0], 200)
        ws = SyncWsClient(port)
        self.addCleanup(ws.close)
        session_id = ws.request("chat.history", {"sessionKey": "s1"})["payload"]["sessionId"]
        schema = KeySchema()
        transcript = schema.transcript("main", session_id)
        self.server.command("DEL", transcript)
        self.server.command("SET", transcript, "junk")
        self.assertRefused("s1")
        history = ws.request("chat.history", {"sessionKey": "s1"})
        self.assertFalse(history["ok"], history)
        self.assertEqual(history["error"]["code"], "UNAVAILABLE", history)
        lane = [schema.lock("agent:main:s1"), schema.queue("agent:main:s1")]
        self.assertEqual(self.server.command("EXISTS", *lane), b":0\r\n")
        self.server.command("DEL", transcript)
        self.assertEqual(chat(port, "s1", "again")[0], 200)
        self.assertEqual(self.gateway.stop(), 0)
        log = self.gateway.text
        self.assertEqual(log.count("holds the wrong type; requests"), 1, log)
        self.assertIn(f"the key {transcript} holds the wrong type; requests", log)
        self.assertNotIn("one of:", log)
        self.assertNotIn("Traceback", log)
