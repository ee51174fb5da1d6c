"""The gateway's HTTP request class and site: limits and headers every response gets.

Twisted buffers a request body completely before any resource sees it, so the
body limit and the body timeout must live here, at the request level:

- a ``Content-Length`` over the limit is refused with 413 before one body byte
  is stored, and a chunked body is refused as soon as it grows past the limit;
- a body that takes longer than ``bodyTimeoutSeconds`` gets 408.

Both answers are written straight to the transport (the request has not been
dispatched yet) and the connection is closed. Limits on the connection itself
(headers, head deadline, idle keep-alive, the connection cap) are in
:mod:`openclaw.gateway.hygiene`; CORS in :mod:`openclaw.gateway.http.cors`.
Both are applied here, before a request reaches any resource.
"""

# mypy: allow-untyped-calls
# (this module overrides twisted.web's unannotated Request/Site hooks and calls
# their base versions; everything defined here is fully typed.)

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from openclaw.config.model import HttpConfig
from openclaw.gateway.auth import AuthDecision
from openclaw.gateway.conn_limits import AddressCounter, AddressLimits, RefusedAddress
from openclaw.gateway.http.auth_errors import RATE_LIMITED_MESSAGE
from openclaw.gateway.http.cors import BrowserOriginGuard, CorsPolicy
from openclaw.gateway.http.errors import (
    REASON_PHRASES,
    SECURITY_HEADERS,
    choose_request_id,
    raw_error_response,
    write_openai_error,
)
from openclaw.gateway.hygiene import (
    ConnectionCounter,
    ConnectionLimits,
    CountedConnection,
    GatewayChannel,
    RefusedConnection,
)
from openclaw.gateway.lifecycle import InFlight

log = Logger()

__all__ = [
    "SECURITY_HEADERS",
    "GatewayRequest",
    "GatewaySite",
    "choose_request_id",
    "is_websocket_upgrade",
]


#: Paths still answered while the gateway drains (probes and the scrape).
DRAIN_EXEMPT = frozenset(
    {b"/health", b"/healthz", b"/ready", b"/readyz", b"/startup", b"/startupz", b"/metrics"}
)


class RequestHook(TypingProtocol):
    """Sees every dispatched request (metrics, access log): see
    :class:`openclaw.gateway.observability.RequestObserver`."""

    def started(self, request: Request, *, upgrade: bool = False) -> None: ...

    def stream_started(self) -> Callable[[], None]: ...

    def refused(
        self, channel: object, status: int, sent: int, request: Request | None = None
    ) -> None: ...


class DrainState(TypingProtocol):
    """Whether new work is refused (``/readyz`` already says 503)."""

    @property
    def draining(self) -> bool: ...


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request asks to switch to the WebSocket protocol."""
    upgrade = request.getHeader(b"upgrade")
    return upgrade is not None and b"websocket" in upgrade.lower()


class GatewaySite(Site):
    """A ``Site`` that carries the limits, the CORS policy and the clock its
    connections and requests use."""

    # typing note: Twisted types this as its HTTP/1.1-or-HTTP/2 proxy factory;
    # the gateway speaks HTTP/1.1 only (see acceptableProtocols).
    protocol = GatewayChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        *,
        http_config: HttpConfig,
        clock: IReactorTime,
        limits: ConnectionLimits | None = None,
        cors: CorsPolicy | None = None,
        origin_guard: BrowserOriginGuard | None = None,
        address_limits: AddressLimits | None = None,
        exempt_address: Callable[[str], bool] = lambda address: False,
        **kwargs: Any,
    ) -> None:
        """
        :param http_config: body limit and timeout, CORS origins.
        :param clock: every timer of the site's connections and requests.
        :param limits: header limits and deadlines, idle keep-alive timeout,
            connection cap (default: :class:`ConnectionLimits` defaults).
        :param cors: default: from ``http_config.cors.allowedOrigins``.
        :param origin_guard: refuse requests from foreign browser origins
            (give one when ``gateway.auth.mode`` is ``none``).
        :param address_limits: per-address connection cap and reserved share
            (default: none beyond the global cap).
        :param exempt_address: addresses those rules skip (trusted proxies).
        :param kwargs: for ``Site`` (``reactor`` defaults to ``clock``).
        """
        self.limits = limits if limits is not None else ConnectionLimits()
        kwargs.setdefault("reactor", clock)
        kwargs.setdefault("timeout", self.limits.keep_alive_timeout_seconds)
        # The API takes JSON only: skip Twisted's MIME form parsing of every
        # POST (it runs the email package on the Content-Type, ~5% of a turn).
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, requestFactory=GatewayRequest, **kwargs)
        self.http_config = http_config
        self.clock = clock
        self.cors = (
            cors if cors is not None else CorsPolicy.from_origins(http_config.cors.allowed_origins)
        )
        self.origin_guard = origin_guard
        #: Requests being answered; graceful shutdown waits for it to drain.
        self.in_flight = InFlight()
        #: Open connections, HTTP and WebSocket.
        self.connections: ConnectionCounter = (
            AddressCounter(
                address_limits,
                max_connections=self.limits.max_connections,
                exempt=exempt_address,
            )
            if address_limits is not None
            else ConnectionCounter()
        )
        self._saturated = False
        #: Metrics and the access line (set by the assembly).
        self.observer: RequestHook | None = None
        #: While it says ``draining``, requests other than probes get 503.
        self.drain: DrainState | None = None
        #: Authentication decided before a body is refused for its size: an
        #: unauthenticated oversized request gets 401 (or 429), not 413, as
        #: OpenClaw answers it. The assembly sets ``GatewayAuth.check_request``.
        self.body_auth: Callable[[Request], AuthDecision] | None = None
        # Twisted's per-request access log line is noise next to our own

        # structured logs; turn it off.
        self.noisy = False

    # typing note: Twisted narrows the return type to its HTTP/2-capable proxy;
    # any IProtocol is what a listening port needs.
    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        """A counted :class:`GatewayChannel`, or a 503 refusal past the cap
        (the listener's, or the peer address's share of it)."""
        if len(self.connections) >= self.limits.max_connections:
            if not self._saturated:
                self._saturated = True
                log.warn(
                    "connection cap reached ({limit} open): refusing new connections",
                    limit=self.limits.max_connections,
                )
            refusal = RefusedConnection()
            refusal.factory = self
            return refusal
        if self._saturated:
            self._saturated = False
            log.info("below the connection cap again")
        if isinstance(self.connections, AddressCounter) and self.connections.refusal(addr):
            refused = RefusedAddress()
            refused.factory = self
            return refused
        channel = super().buildProtocol(addr)
        assert isinstance(channel, GatewayChannel)
        channel.configure(self.limits, self.clock)
        return CountedConnection(self.connections, channel)

    def log(self, request: http.Request) -> None:
        """Access logging is done by the endpoints with structured fields."""

    def acceptableProtocols(self) -> list[bytes]:
        """HTTP/1.1 only: Autobahn cannot upgrade an HTTP/2 stream to WebSocket."""
        return [b"http/1.1"]


class GatewayRequest(Request):
    """A request that enforces the body limits and stamps the common headers."""

    request_id: bytes = b""
    _rejected: bool = False
    _received: int = 0
    _body_timer: IDelayedCall | None = None
    _first_write = True

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        """Fill in the reason phrases Twisted lacks (429 and 431 said "Unknown Status")."""
        if message is None:
            message = REASON_PHRASES.get(code)
        super().setResponseCode(code, message)

    def write(self, data: bytes) -> None:
        """On the first write, tell the observer when the answer is a stream
        (the gauge of open SSE streams)."""
        if self._first_write:
            self._first_write = False
            site = self._site()
            kind = self.responseHeaders.getRawHeaders(b"content-type", [b""])[0]
            if (
                site is not None
                and site.observer is not None
                and kind.startswith(b"text/event-stream")
            ):
                ended = site.observer.stream_started()
                self.notifyFinish().addBoth(lambda _: ended())
        super().write(data)

    def _site(self) -> GatewaySite | None:
        site = getattr(self.channel, "site", None)
        return site if isinstance(site, GatewaySite) else None

    def gotLength(self, length: int | None) -> None:
        """Refuse an oversized declared body; start the body timer."""
        site = self._site()
        if site is not None:
            limit = site.http_config.max_body_bytes
            if length is not None and length > limit:
                super().gotLength(0)
                self._reject(413, "Payload too large")
                return
            # A body is coming when it is chunked (None) or has a length.
            if length is None or length > 0:
                if site.body_auth is not None and not site.body_auth(self).ok:
                    # Nobody reads (or spools to disk) a body its sender may not
                    # send: answered now, from the headers (OpenClaw decides
                    # authentication before the body, too).
                    super().gotLength(0)
                    self._reject(401, "Unauthorized")
                    return
                self._body_timer = site.clock.callLater(
                    site.http_config.body_timeout_seconds, self._body_timed_out
                )
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Store body bytes, refusing the request once it grows past the limit."""
        if self._rejected:
            return
        self._received += len(data)
        site = self._site()
        if site is not None and self._received > site.http_config.max_body_bytes:
            self._reject(413, "Payload too large")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Dispatch the request unless it was already refused."""
        self._cancel_body_timer()
        if self._rejected:
            return
        super().requestReceived(command, path, version)

    def process(self) -> None:
        """Stamp security, request-id and CORS headers, answer a CORS preflight,
        refuse a foreign browser origin (``none`` auth), else dispatch."""
        self.request_id = choose_request_id(self.getHeader(b"x-request-id"))
        for name, value in SECURITY_HEADERS:
            self.setHeader(name, value)
        self.setHeader(b"x-request-id", self.request_id)
        site = self._site()
        upgrade = is_websocket_upgrade(self)
        if site is not None and site.observer is not None:
            # First, so preflights and refusals are counted and logged too.
            site.observer.started(self, upgrade=upgrade)
        if site is not None and site.cors.apply(self):
            return
        if (
            site is not None
            and site.origin_guard is not None
            and not upgrade  # the WebSocket side checks its own
            and not site.origin_guard.allows(self)
        ):
            log.info(
                "refused request from foreign browser origin {origin}",
                origin=(self.getHeader(b"origin") or b"").decode("latin-1")[:200],
            )
            self.write(write_openai_error(self, 401, "Unauthorized", "unauthorized"))
            self.finish()
            return
        if site is not None and not upgrade:
            # An upgraded request never finishes: Autobahn takes the transport.
            site.in_flight.started()
            self.notifyFinish().addBoth(lambda _: site.in_flight.finished())
        if (
            site is not None
            and site.drain is not None
            and site.drain.draining
            and self.path not in DRAIN_EXEMPT
        ):
            self._refuse_while_draining()
            return
        super().process()

    def _refuse_while_draining(self) -> None:
        """503 + ``Retry-After``: the load balancer should already be moving away."""
        self.setHeader(b"retry-after", b"5")
        self.setHeader(b"connection", b"close")
        self.write(
            write_openai_error(
                self,
                503,
                "The gateway is shutting down; retry on another instance.",
                "api_error",
                code="draining",
            )
        )
        self.finish()

    def connectionLost(self, reason: object) -> None:
        """Stop the body timer when the client goes away mid-body."""
        self._cancel_body_timer()
        super().connectionLost(reason)

    def _cancel_body_timer(self) -> None:
        timer, self._body_timer = self._body_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        self._reject(408, "Request body timeout")

    def _refusal(self, status: int, message: str, request_id: bytes) -> tuple[int, str, bytes]:
        """The refusal of a body (status, message, bytes to send); for a
        too-large one, a failed authentication is answered instead (OpenClaw
        decides authentication first). The check is made once per request
        (``GatewayAuth.check_request``), so asking again counts no second failure."""
        site = self._site()
        decision = None
        if status in (401, 413) and site is not None and site.body_auth is not None:
            decision = site.body_auth(self)
        # Browser code from an allowed origin can read the refusal too.
        cors = site.cors.headers_for(self.getHeader(b"origin")) if site is not None else []
        if decision is not None:
            if decision.reason == "rate_limited":
                retry = str(decision.retry_after_seconds).encode("ascii")
                answer = raw_error_response(
                    429,
                    RATE_LIMITED_MESSAGE,
                    request_id=request_id,
                    error_type="rate_limited",
                    extra_headers=[(b"retry-after", retry), *cors],
                )
                return 429, RATE_LIMITED_MESSAGE, answer
            if not decision.ok:
                answer = raw_error_response(
                    401,
                    "Unauthorized",
                    request_id=request_id,
                    error_type="unauthorized",
                    extra_headers=cors,
                )
                return 401, "Unauthorized", answer
        answer = raw_error_response(status, message, request_id=request_id, extra_headers=cors)
        return status, message, answer

    def _reject(self, status: int, message: str) -> None:
        """Answer before dispatch, straight on the transport, and close."""
        if self._rejected:
            return
        self._rejected = True
        self._cancel_body_timer()
        channel = self.channel
        if channel is None or channel.transport is None:
            return
        # No "100 Continue" after this answer.
        self.requestHeaders.removeHeader(b"expect")
        request_id = choose_request_id(
            self.requestHeaders.getRawHeaders(b"x-request-id", [None])[0]
        )
        # Logged and counted with what the client is actually told.
        status, message, answer = self._refusal(status, message, request_id)
        log.info(
            "refused request body: {status} {message}",
            status=status,
            message=message,
            request_id=request_id.decode("ascii"),
        )
        channel.transport.write(answer)
        site = self._site()
        if site is not None and site.observer is not None:
            site.observer.refused(channel, status, len(answer), self)
        assert isinstance(channel, HTTPChannel)
        channel.loseConnection()
