"""Connection hygiene: what one client (or many) may cost the gateway before
it has been authenticated.

- :class:`GatewayChannel` is Twisted's ``HTTPChannel`` with configurable
  header limits answered ``431`` (``414`` for an over-long request line)
  instead of a bare ``400``, and a deadline for receiving the request head
  (slowloris): from the connection, or from the first byte of a later
  request on a kept-alive connection, until the blank line that ends the
  headers. The body has its own deadline (the request's body timeout) and an
  idle kept-alive connection the Site's ``timeout``.
- :class:`ConnectionCounter` counts every open connection, WebSocket ones
  included (the count lives in a protocol wrapper that stays on the transport
  when Autobahn takes it over), so the Site can refuse connections beyond the
  cap with an immediate ``503``.
- :class:`PreAuthSocketLimit` caps the WebSocket connections one client
  address may hold before they authenticate (OpenClaw's
  ``503 Too many unauthenticated sockets``).
- A kept-alive connection that never carried an authenticated request gets a
  shorter idle timeout (:func:`mark_authenticated`); per-address connection
  budgets are in :mod:`openclaw.gateway.conn_limits`.

Every timer runs on the clock the Site was given.
"""

# mypy: allow-untyped-calls
# (HTTPChannel's and ProtocolWrapper's methods are unannotated in Twisted;
# everything defined here is fully typed.)

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTime,
    ISSLTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from zope.interface import directlyProvides, providedBy

from openclaw.core.drain import Drain
from openclaw.gateway.http.errors import raw_error_response

log = Logger()

PREAUTH_REFUSAL = "Too many unauthenticated sockets"


@frozen
class ConnectionLimits:
    """Limits of one HTTP connection and of the whole listener."""

    #: Request line plus header lines (bytes, line ends not counted).
    max_header_bytes: int = 32 * 1024
    #: Header fields in one request.
    max_headers: int = 100
    #: From the connection (or a kept-alive request's first byte) to the end
    #: of the request head.
    headers_timeout_seconds: float = 10.0
    #: An idle kept-alive connection is closed after this long.
    keep_alive_timeout_seconds: float = 60.0
    #: Open connections (HTTP and WebSocket); more are answered 503 and closed.
    max_connections: int = 1024
    #: An idle kept-alive connection that never carried an authenticated
    #: request is closed after this long (None: the keep-alive timeout).
    unauthenticated_idle_seconds: float | None = None


#: The attribute a request carries once it passed authentication.
AUTHENTICATED_ATTRIBUTE = "openclaw_authenticated"


def mark_authenticated(request: object) -> None:
    """Record that ``request`` passed authentication: its connection then keeps
    the normal keep-alive timeout instead of the unauthenticated one."""
    with contextlib.suppress(AttributeError):  # a request that takes no attributes
        setattr(request, AUTHENTICATED_ATTRIBUTE, True)


def was_authenticated(request: object) -> bool:
    """True once :func:`mark_authenticated` was called for ``request``."""
    return getattr(request, AUTHENTICATED_ATTRIBUTE, False) is True


class GatewayChannel(HTTPChannel):
    """``HTTPChannel`` with the gateway's header limits and head deadline.

    The Site calls :meth:`configure` before the connection is made.
    """

    limits: ConnectionLimits = ConnectionLimits()
    clock: IReactorTime | None = None

    _awaiting_head = True
    _head_started = False
    _head_timer: IDelayedCall | None = None
    _abort_call: IDelayedCall | None = None
    _head_bytes = 0
    _head_lines = 0
    _head_fields = 0
    _refused = False
    _authenticated = False

    _host: IAddress | None = None

    def getHost(self) -> IAddress:
        """The local address, asked of the socket once per connection (Twisted's
        ``Request`` asks on every request: a ``getsockname`` each)."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def configure(self, limits: ConnectionLimits, clock: IReactorTime) -> None:
        """Apply ``limits`` (Twisted's own checks get the same numbers, as a backstop)."""
        self.limits = limits
        self.clock = clock
        self.maxHeaders = limits.max_headers
        self.totalHeadersSize = limits.max_header_bytes
        self.MAX_LENGTH = limits.max_header_bytes

    # -- the head deadline -----------------------------------------------------

    def connectionMade(self) -> None:
        """Start the clock for the first request head at once."""
        super().connectionMade()
        self._start_head_timer()

    def dataReceived(self, data: bytes) -> None:
        """Bytes of a new request start its head deadline."""
        if self._refused:
            return
        if self._awaiting_head and data:
            self._head_started = True
            self._start_head_timer()
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        """The head is complete: stop its clock; the body has its own."""
        self._cancel_head_timer()
        self._awaiting_head = False
        self._head_started = False
        self._head_bytes = self._head_lines = self._head_fields = 0
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        """Between requests only the idle timeout applies, until the next byte;
        it is the short one until some request on the connection authenticated."""
        self._awaiting_head = True
        self._head_started = False
        if was_authenticated(request):
            self._authenticated = True
        super().requestDone(request)
        short = self.limits.unauthenticated_idle_seconds
        if (
            short is not None
            and not self._authenticated
            and self.persistent
            and self.timeOut is not None
            and short < self.timeOut
        ):
            self.setTimeout(short)
        pending = bool(self.requests) or _has_unparsed_bytes(self)
        transport = self.transport
        if (
            self._awaiting_head
            and pending
            and transport is not None
            and not getattr(transport, "disconnecting", False)
        ):
            # A pipelined request is already partly here.
            self._head_started = True
            self._start_head_timer()

    def isSecure(self) -> bool:
        """True over TLS (seen through the counting wrapper)."""
        transport: object = self.transport
        if isinstance(transport, CountedConnection):
            transport = transport.transport
        return ISSLTransport(transport, None) is not None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No timer outlives the connection."""
        self._cancel_head_timer()
        abort, self._abort_call = self._abort_call, None
        if abort is not None and abort.active():
            abort.cancel()
        super().connectionLost(reason)

    def _start_head_timer(self) -> None:
        if self._head_timer is None and self.clock is not None:
            self._head_timer = self.clock.callLater(
                self.limits.headers_timeout_seconds, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        timer, self._head_timer = self._head_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_started:
            self._refuse(408, "Request header timeout", "headers_timeout")
        else:
            # Nothing was asked: close quietly, as for an idle connection.
            self._refused = True
            self._close()

    # -- header limits -----------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        """Count the head's bytes; past the limit answer 431 (414 for the request line)."""
        if self._refused:
            return
        if line or self._head_lines:
            self._head_lines += 1
        self._head_bytes += len(line)
        if self._head_bytes > self.limits.max_header_bytes:
            self._too_large(first_line=self._head_lines <= 1)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """One line longer than the whole head may be (no newline needed to tell)."""
        self._too_large(first_line=self._head_lines == 0)

    def headerReceived(self, line: bytes) -> bool:
        """Count header fields; past the limit answer 431."""
        if self._refused:
            return False
        self._head_fields += 1
        if self._head_fields > self.limits.max_headers:
            self._refuse(431, "Too many request headers", "headers_too_many")
            return False
        return bool(super().headerReceived(line))

    def _too_large(self, *, first_line: bool) -> None:
        if first_line:
            self._refuse(414, "Request line too long", "uri_too_long")
        else:
            self._refuse(431, "Request headers too large", "headers_too_large")

    # -- refusing ----------------------------------------------------------------

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer before any request is dispatched, then close."""
        if self._refused:
            return
        self._refused = True
        transport = self.transport
        if transport is None:
            return
        peer = transport.getPeer()
        log.info(
            "refused request from {peer}: {status} {message}",
            peer=str(getattr(peer, "host", peer)),
            status=status,
            message=message,
        )
        answer = raw_error_response(status, message, code=code)
        transport.write(answer)
        self._report_refusal(status, len(answer))
        self._close()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """A head Twisted cannot parse (a NUL in a header, a bad chunk size, a
        duplicated Content-Length...): the same JSON 400, with the request id
        and security headers, as every other refusal (Twisted's own is a bare
        status line), logged and counted."""
        self._refuse(400, "Malformed HTTP request", "malformed_request")

    def _report_refusal(self, status: int, sent: int) -> None:
        """Give a request refused before dispatch its access line and count."""
        observer = getattr(getattr(self, "site", None), "observer", None)
        refused = getattr(observer, "refused", None)
        if refused is not None:
            refused(self, status, sent, self.requests[-1] if self.requests else None)

    def _close(self) -> None:
        """Close (after pending output), and abort if the peer does not let go."""
        self._cancel_head_timer()
        self.setTimeout(None)
        if self.transport is None:
            return
        self.loseConnection()
        if self.abortTimeout is not None and self._abort_call is None:
            # Our own timer (HTTPChannel keeps its own for its idle timeout).
            self._abort_call = self.callLater(self.abortTimeout, self.forceAbortClient)


def _has_unparsed_bytes(channel: HTTPChannel) -> bool:
    """Whether the channel holds bytes of a request it has not parsed yet.

    The one read of a private attribute: ``LineReceiver`` keeps unparsed
    input in ``_buffer`` and offers no accessor that does not clear it
    (``clearLineBuffer``). Checked against Twisted 26.10.
    """
    return bool(getattr(channel, "_buffer", b""))


class ConnectionCounter:
    """The open connections of a listener (what :class:`CountedConnection` reports)."""

    def __init__(self) -> None:
        self._open: set[ProtocolWrapper] = set()
        self._drain = Drain()

    def __len__(self) -> int:
        return len(self._open)

    def registerProtocol(self, protocol: ProtocolWrapper) -> None:
        """A connection was made (ProtocolWrapper's factory hook)."""
        if protocol not in self._open:
            self._open.add(protocol)
            self._drain.add()

    def unregisterProtocol(self, protocol: ProtocolWrapper) -> None:
        """A connection was lost (ProtocolWrapper's factory hook)."""
        if protocol in self._open:
            self._open.discard(protocol)
            self._drain.done()

    def when_empty(self) -> Deferred[None]:
        """Fires once no connection is open (at once if none is)."""
        return self._drain.drained()

    def close_all(self, clock: IReactorTime, timeout: float) -> Deferred[None]:
        """Close every connection, letting each flush what it has buffered (the
        last SSE frames, a WebSocket close); abort those still open after
        ``timeout`` seconds. Fires once all are closed."""
        for protocol in list(self._open):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        done = self.when_empty()
        if done.called:
            return done

        def abort_stragglers() -> None:
            for protocol in list(self._open):
                transport = protocol.transport
                if transport is not None and hasattr(transport, "abortConnection"):
                    transport.abortConnection()

        def aborted(result: object, timeout: float) -> Deferred[None]:
            # On time: abort what is left, then wait for those to go.
            abort_stragglers()
            return self.when_empty()

        # typing note: onTimeoutCancel may return a Deferred (it is chained).
        return done.addTimeout(timeout, clock, onTimeoutCancel=aborted)  # type: ignore[arg-type]


class CountedConnection(ProtocolWrapper):
    """Counts one connection for its whole life.

    It is a ``ProtocolWrapper`` so that Autobahn, taking the transport over on
    a WebSocket upgrade, swaps its own protocol in *under* this wrapper: the
    count then follows the WebSocket connection until it closes.
    """

    def __init__(self, counter: ConnectionCounter, wrapped: TwistedProtocol) -> None:
        # typing note: ProtocolWrapper only calls registerProtocol and
        # unregisterProtocol on its factory, which the counter provides.
        super().__init__(cast("WrappingFactory[Any]", counter), wrapped)
        self._lost_callbacks: list[Callable[[], None]] = []

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the connection is gone (a WebSocket's
        closing access line: the upgraded request itself never finishes)."""
        self._lost_callbacks.append(callback)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Run the :meth:`on_lost` callbacks after the wrapped protocol's own."""
        super().connectionLost(reason)
        callbacks, self._lost_callbacks = self._lost_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.failure("a connection-lost callback failed")

    def makeConnection(self, transport: ITransport) -> None:
        """Look like the transport, except for ``ISSLTransport``.

        Autobahn reads TLS details only from a real ``TLSMemoryBIOProtocol``
        and fails on anything else claiming ``ISSLTransport``; the channel
        looks through this wrapper for :meth:`GatewayChannel.isSecure`.
        """
        directlyProvides(
            self, *[i for i in providedBy(transport) if not i.isOrExtends(ISSLTransport)]
        )
        TwistedProtocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        # typing note: a ProtocolWrapper is its wrapped protocol's transport.
        self.wrappedProtocol.makeConnection(cast(ITransport, self))


class RefusedConnection(TwistedProtocol):
    """Over the connection cap: one 503, then close; nothing is read."""

    def connectionMade(self) -> None:
        """Answer and hang up at once."""
        transport = cast(ITransport, self.transport)
        transport.write(
            raw_error_response(
                503,
                "Too many connections",
                error_type="api_error",
                code="too_many_connections",
                extra_headers=[(b"retry-after", b"1")],
            )
        )
        transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """The request is not read."""


class _WebSocketConnection(Protocol):
    """What the pre-auth limit needs to know about an open WebSocket connection."""

    @property
    def phase(self) -> str: ...

    @property
    def client_address(self) -> str: ...


#: Addresses remembered as already warned about (bounded: many addresses only
#: cost a repeated warning).
_MAX_WARNED = 4096


class PreAuthSocketLimit:
    """At most ``max_per_address`` unauthenticated WebSocket connections per client.

    Checked at upgrade time, against the connections that passed the upgrade
    and have not completed ``connect`` yet.
    """

    def __init__(
        self,
        *,
        max_per_address: int,
        connections: Callable[[], Iterable[_WebSocketConnection]],
        client_address: Callable[[IRequest], str],
    ) -> None:
        """
        :param connections: the open WebSocket connections (the factory's).
        :param client_address: the client a request comes from (the auth's,
            which honours ``X-Forwarded-For`` from trusted proxies only).
        """
        self.max_per_address = max_per_address
        self._connections = connections
        self._client_address = client_address
        #: Addresses warned about since they last got in (one line per episode).
        self._warned: set[str] = set()

    def unauthenticated(self, address: str) -> int:
        """Open connections from ``address`` that have not authenticated."""
        return sum(
            1
            for conn in self._connections()
            if conn.client_address == address and conn.phase in ("connecting", "challenged")
        )

    def exceeded(self, request: IRequest) -> bool:
        """True when one more unauthenticated socket from this client is too many."""
        address = self._client_address(request)
        if self.unauthenticated(address) < self.max_per_address:
            self._warned.discard(address)
            return False
        if address not in self._warned:
            # Each refusal has its access line; the warning is once per episode.
            if len(self._warned) >= _MAX_WARNED:
                self._warned.clear()
            self._warned.add(address)
            log.warn(
                "refused WebSocket upgrade from {address}: too many unauthenticated sockets"
                " (further refusals are in the access log)",
                address=address,
            )
        return True
