"""Building the Redis backend from the configuration (``session.store: "redis"``).

:func:`build_redis_backend` makes the client, the store and the lanes that
share it; :func:`probe` is the start-up check (blocking, run once before the
reactor starts) so a gateway whose Redis is unreachable exits at once with
one line instead of serving errors.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from openclaw.config.model import Config
from openclaw.core.ids import short_id
from openclaw.sessions.redis.approvals import RedisApprovalRelay
from openclaw.sessions.redis.client import (
    RedisUnavailableError,
    TxRedisClient,
    open_client,
    open_subscriber,
)
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.lanes import LeaseBook, RedisLanes
from openclaw.sessions.redis.relay import RedisRunRelay
from openclaw.sessions.redis.store import RedisSessionStore
from openclaw.sessions.redis.url import RedisUrl, RedisUrlError, parse_redis_url


class RedisConfigError(ValueError):
    """``session.store: "redis"`` without a usable ``gateway.redis.url``."""


@frozen
class RedisBackend:
    """What one process shares through Redis."""

    url: RedisUrl
    client: TxRedisClient
    store: RedisSessionStore
    lanes: RedisLanes
    owner: str


def redis_url(config: Config, env: Mapping[str, str] | None = None) -> RedisUrl:
    """The configured URL, parsed; RedisConfigError names what is wrong."""
    raw = config.gateway.redis.url
    if not raw:
        raise RedisConfigError('session.store is "redis" but gateway.redis.url is not set')
    try:
        return parse_redis_url(raw, os.environ if env is None else env)
    except RedisUrlError as e:
        raise RedisConfigError(str(e)) from None


def instance_id() -> str:
    """This process' id in lock values and the run registry: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{short_id()}"


def build_redis_backend(config: Config, reactor: IReactorTime) -> RedisBackend:
    """Client, store and lanes on ``gateway.redis``; connecting starts when the
    reactor runs (commands before the first connection wait for it)."""
    url = redis_url(config)
    settings = config.gateway.redis
    client = open_client(reactor, url)
    schema = KeySchema(settings.key_prefix)
    leases = LeaseBook()
    store = RedisSessionStore(
        client,
        clock=reactor,
        state_dir=config.state_dir,
        schema=schema,
        leases=leases,
        owns_client=True,
        max_stateless=config.session.maintenance.max_entries,
        archive_retention_seconds=config.session.maintenance.archive_retention_seconds,
    )
    owner = instance_id()
    channel = schema.bus(url.db)
    store.run_relay = store.auth_peers = bus = RedisRunRelay(
        client,
        reactor,
        owner=owner,
        channel=channel,
        schema=schema,
        subscribe=lambda on_message, on_subscribed: open_subscriber(
            reactor, url, channel, on_message, on_subscribed
        ),
    )
    store.approval_relay = RedisApprovalRelay(
        client, bus=bus, owner=owner, channel=channel, schema=schema
    )
    lanes = RedisLanes(
        client,
        reactor,
        owner=owner,
        schema=schema,
        leases=leases,
        ttl_seconds=settings.lock_ttl_seconds,
        on_granted=store.refresh_session,
        read_plan=store.read_plan,
        hold=store.hold,
    )
    return RedisBackend(url=url, client=client, store=store, lanes=lanes, owner=owner)


def probe(url: RedisUrl, timeout: float = 3.0) -> None:
    """Connect, authenticate, select the database and ``PING`` (blocking: for
    start-up, before the reactor runs). Raises RedisUnavailableError with a
    one-line reason that names no secret."""
    where = url.redacted()
    try:
        if url.path is not None:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(url.path)
        else:
            assert url.host is not None
            sock = socket.create_connection((url.host, url.port), timeout=timeout)
            if url.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.host)
    except OSError as e:
        raise RedisUnavailableError(f"cannot reach Redis at {where}: {e.strerror or e}") from None
    with sock:
        commands: list[tuple[str, ...]] = []
        if url.password is not None:
            commands.append(
                ("AUTH", url.username, url.password) if url.username else ("AUTH", url.password)
            )
        if url.db:
            commands.append(("SELECT", str(url.db)))
        commands.append(("PING",))
        try:
            sock.sendall(b"".join(_resp(*c) for c in commands))
            replies = _read_replies(sock, len(commands))
        except OSError as e:
            raise RedisUnavailableError(f"Redis at {where} did not answer: {e}") from None
    for reply in replies:
        if reply.startswith("-"):
            reason = (
                reply[1:].split(" ", 1)[0]
                if "NOAUTH" in reply or "WRONGPASS" in reply
                else reply[1:]
            )
            raise RedisUnavailableError(f"Redis at {where} refused the connection: {reason}")


def _resp(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_replies(sock: socket.socket, count: int) -> list[str]:
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return [line.decode("utf-8", "replace") for line in data.split(b"\r\n")[:count]]


__all__ = [
    "RedisBackend",
    "RedisConfigError",
    "build_redis_backend",
    "probe",
    "redis_url",
]
