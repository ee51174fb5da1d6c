"""The Redis client against a real ``redis-server``: what it does when Redis
refuses a reconnect's handshake or answers a command with an error.

Redis traffic runs on the real reactor; waits are bounded polls of a
condition through the reactor (:func:`until`), never sleeps.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from openclaw.sessions.redis.client import TxRedisClient, open_client, open_subscriber
from openclaw.sessions.redis.url import parse_redis_url
from tests.redis_support import RedisServer, _resp

#: A script that keeps Redis busy (answering nobody) for 1.2 s.
BUSY_FOR_1200_MS = (
    "local s = redis.call('TIME') repeat local n = redis.call('TIME') "
    "until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 1200000 return 1"
)


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    """Yield to the reactor until ``check()`` is true (bounded)."""
    waited = 0.0
    while not check():
        if waited > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


def info_count(server: RedisServer, section: str, pattern: str) -> int:
    """A counter from ``INFO section`` (0 while Redis does not list it)."""
    text = server.command("INFO", section).decode()
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


class LogLines:
    """The warning-or-worse lines logged while a test runs."""

    def __init__(self, test: TestCase) -> None:
        self.lines: list[str] = []

        @implementer(ILogObserver)
        def keep(event: LogEvent) -> None:
            if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
                self.lines.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(keep)
        test.addCleanup(globalLogPublisher.removeObserver, keep)

    def having(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


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
        log = LogLines(self)
        client = self.client(server)
        await client.wait_connected(5)
        await client.execute("SET", "k", "v")
        server.command("CONFIG", "SET", "requirepass", "second-secret")
        server.password = "second-secret"
        server.command("CLIENT", "KILL", "TYPE", "normal")
        await until(
            lambda: info_count(server, "errorstats", r"errorstat_WRONGPASS:count=(\d+)") >= 3,
            "three refused reconnects",
        )
        self.assertFalse(client.connected)
        server.command("CONFIG", "SET", "requirepass", "first-secret")
        server.password = "first-secret"
        await until(lambda: client.connected, "the client to reconnect")
        self.assertEqual(await client.execute("GET", "k"), "v")
        refused = log.having("did not complete the connection handshake")
        self.assertEqual(len(refused), 1, log.lines)
        self.assertIn("WRONGPASS", refused[0])
        self.assertEqual(len(log.having("is reachable again")), 1, log.lines)
        self.assertFalse([line for line in log.lines if "secret" in line], log.lines)

    async def test_select_refused_without_a_password(self) -> None:
        """A client without a password whose ``SELECT`` meets a Redis that
        suddenly requires one (NOAUTH) recovers once the requirement is gone."""
        server = self.start(None)
        client = self.client(server)
        await client.wait_connected(5)
        server.command("CONFIG", "SET", "requirepass", "temporary")
        server.password = "temporary"
        server.command("CLIENT", "KILL", "TYPE", "normal")
        await until(
            lambda: info_count(server, "errorstats", r"errorstat_NOAUTH:count=(\d+)") >= 2,
            "two refused SELECTs",
        )
        server.command("CONFIG", "SET", "requirepass", "")
        server.password = None
        await until(lambda: client.connected, "the client to reconnect")
        self.assertEqual(await client.execute("PING"), "PONG")

    async def test_handshake_without_an_answer_then_back(self) -> None:
        """Connections killed just before Redis blocks (a long script): the
        reconnect's AUTH gets no reply in time, and the client connects again
        once Redis answers."""
        server = self.start("first-secret")
        log = LogLines(self)
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
        server.command("CONFIG", "SET", "requirepass", "second-secret")
        server.password = "second-secret"
        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(
            lambda: info_count(server, "errorstats", r"errorstat_WRONGPASS:count=(\d+)") >= 2,
            "two refused reconnects",
        )
        server.command("CONFIG", "SET", "requirepass", "first-secret")
        server.password = "first-secret"
        await until(lambda: len(subscribed) == 2, "the subscription to come back")
        server.command("PUBLISH", "chan", "hello")
        await until(lambda: messages, "the message")
        self.assertEqual(messages, ["hello"])
