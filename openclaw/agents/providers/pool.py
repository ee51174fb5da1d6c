# -*- test-case-name: tests.test_wire -*-
"""Persistent upstream connections, per (scheme, host, port), for model calls.

:class:`UpstreamPool` hands each request an idle
:class:`~openclaw.agents.providers.wire.UpstreamConnection` (the most
recently used, so warm ones are reused) or connects a new one: plain TCP for
``http``, TLS with certificate and host name verification
(``optionsForClientTLS``) for ``https``. No proxy is ever used.

A connection returns to the pool only after a complete, keep-alive response;
one that saw an error or was aborted is closed. Up to ``max_idle_per_host``
idle connections are kept per upstream, each for at most ``idle_timeout``
seconds (below common servers' keep-alive, so a request rarely meets a
connection the server is closing). When it does, the request is retried once
on a new connection, but only if the reused connection returned nothing at
all: the server closed it before reading the request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.providers.wire import (
    Exchange,
    ResponseHandler,
    Target,
    UpstreamConnection,
)

log = Logger()

#: Idle connections kept per upstream: enough for 64 concurrent turns and then some.
DEFAULT_MAX_IDLE_PER_HOST = 128
#: Seconds an idle connection is kept (servers commonly keep 60 s or more).
DEFAULT_IDLE_TIMEOUT = 30.0

_Key = tuple[str, str, int]
#: ``host -> IOpenSSLClientConnectionCreator``; the default verifies against the system roots.
TLSCreator = Callable[[str], Any]


def _default_tls(host: str) -> Any:
    from twisted.internet.ssl import optionsForClientTLS  # TLS is loaded only when used

    return optionsForClientTLS(host)


class _Relay:
    """Sits between a connection and the caller's handler for one exchange:
    ends the exchange, and retries once when a reused connection was stale."""

    def __init__(
        self,
        pool: UpstreamPool,
        target: Target,
        body: bytes,
        handler: ResponseHandler,
        exchange: Exchange,
    ) -> None:
        self.pool = pool
        self.target = target
        self.body = body
        self.handler = handler
        self.exchange = exchange
        self.retried = False
        # Bound once: the per-read path is one call, no lookup through the relay.
        self.body_data = handler.body_data

    def response_started(self, status: int, headers: dict[str, str]) -> None:
        self.body = b""  # no retry once answered; let the request body go
        self.handler.response_started(status, headers)

    def body_end(self, reason: BaseException | None) -> None:
        self._end()
        self.handler.body_end(reason)

    def request_failed(self, reason: BaseException) -> None:
        connection = self.exchange.connection
        stale = (
            connection is not None
            and connection.served > 0
            and not connection.received_any
            and not self.retried
            and not self.exchange.stopped
        )
        if stale:
            self.retried = True
            self.exchange.connection = None
            log.debug("upstream connection was closed while idle; retrying on a new one")
            self.pool._connect(self)
            return
        self._end()
        self.handler.request_failed(reason)

    def _end(self) -> None:
        exchange = self.exchange
        exchange.ended = True
        exchange.connection = None
        exchange.cancel_connect = None


class UpstreamPool:
    """Keeps upstream connections and runs requests on them.

    ``reactor`` provides time, TCP and name resolution (what
    :class:`~twisted.internet.endpoints.HostnameEndpoint` needs); ``tls``
    builds the client TLS options for a host (tests pass one that trusts a
    test certificate).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        max_idle_per_host: int = DEFAULT_MAX_IDLE_PER_HOST,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        tls: TLSCreator | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._tls = tls or _default_tls
        self._idle: dict[_Key, list[UpstreamConnection]] = {}
        self._timers: dict[UpstreamConnection, IDelayedCall] = {}
        self._endpoints: dict[_Key, IStreamClientEndpoint] = {}
        self._open: set[UpstreamConnection] = set()
        self._closing: list[Deferred[None]] = []
        #: Connections made (tests and the benchmark read it).
        self.connections_made = 0

    def idle_count(self, target: Target) -> int:
        """Idle connections kept for ``target``'s upstream."""
        return len(self._idle.get(target.key, ()))

    def request(self, target: Target, body: bytes, handler: ResponseHandler) -> Exchange:
        """Send ``body`` to ``target``; the response goes to ``handler``."""
        exchange = Exchange()
        relay = _Relay(self, target, body, handler, exchange)
        idle = self._idle.get(target.key)
        if idle:
            connection = idle.pop()
            timer = self._timers.pop(connection, None)
            if timer is not None and timer.active():
                timer.cancel()
            self._start(relay, connection)
        else:
            self._connect(relay)
        return exchange

    def closeCachedConnections(self) -> Deferred[None]:
        """Close the idle connections; fires when they are closed (shutdown)."""
        waits: list[Deferred[Any]] = []
        for connections in self._idle.values():
            for connection in connections:
                d: Deferred[None] = Deferred()
                self._closing.append(d)
                waits.append(d)
                connection.on_idle = None
                if connection.transport is not None:
                    connection.transport.loseConnection()
        self._idle.clear()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        done: Deferred[None] = DeferredList(waits).addCallback(lambda _: None)
        return done

    # -- internals -------------------------------------------------------

    def _endpoint(self, target: Target) -> IStreamClientEndpoint:
        endpoint = self._endpoints.get(target.key)
        if endpoint is None:
            tcp = HostnameEndpoint(self._reactor, target.host, target.port)
            if target.scheme == "https":
                endpoint = wrapClientTLS(self._tls(target.host), tcp)
            else:
                endpoint = tcp
            self._endpoints[target.key] = endpoint
        return endpoint

    def _connect(self, relay: _Relay) -> None:
        exchange = relay.exchange
        try:
            endpoint = self._endpoint(relay.target)
            d = endpoint.connect(Factory.forProtocol(UpstreamConnection))
        except Exception as exc:
            relay._end()
            relay.handler.request_failed(exc)
            return
        exchange.cancel_connect = d.cancel

        def connected(connection: UpstreamConnection) -> None:
            self.connections_made += 1
            if exchange.stopped:
                connection.abort()
                return
            self._start(relay, connection)

        def failed(reason: Failure) -> None:
            if exchange.stopped:
                return
            relay._end()
            value = reason.value if reason.value is not None else Exception("connect failed")
            relay.handler.request_failed(value)

        d.addCallbacks(connected, failed)

    def _start(self, relay: _Relay, connection: UpstreamConnection) -> None:
        key = relay.target.key
        self._open.add(connection)
        connection.on_idle = lambda c: self._release(key, c)
        connection.on_lost = self._lost
        relay.exchange.attach(connection)
        connection.send(relay.target, relay.body, relay)

    def _release(self, key: _Key, connection: UpstreamConnection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle_per_host:
            connection.on_idle = None
            connection.abort()
            return
        idle.append(connection)
        if self.idle_timeout > 0:
            self._timers[connection] = self._clock.callLater(
                self.idle_timeout, self._expire, key, connection
            )

    def _expire(self, key: _Key, connection: UpstreamConnection) -> None:
        self._timers.pop(connection, None)
        self._forget(key, connection)
        if connection.transport is not None:
            connection.transport.loseConnection()

    def _forget(self, key: _Key, connection: UpstreamConnection) -> None:
        idle = self._idle.get(key)
        if idle is not None and connection in idle:
            idle.remove(connection)

    def _lost(self, connection: UpstreamConnection, reason: BaseException) -> None:
        self._open.discard(connection)
        timer = self._timers.pop(connection, None)
        if timer is not None and timer.active():
            timer.cancel()
        for key, idle in self._idle.items():
            if connection in idle:
                self._forget(key, connection)
                break
        if self._closing and not any(c.idle for c in self._open):
            closing, self._closing = self._closing, []
            for d in closing:
                d.callback(None)
