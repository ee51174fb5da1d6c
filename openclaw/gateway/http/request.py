"""The gateway's HTTP request class and site: limits and headers every response gets.

Twisted buffers a request body completely before any resource sees it, so the
body limit and the body timeout must live here, at the request level:

- a ``Content-Length`` over the limit is refused with 413 before one body byte
  is stored, and a chunked body is refused as soon as it grows past the limit;
- a body that takes longer than ``bodyTimeoutSeconds`` gets 408.

Both answers are written straight to the transport (the request has not been
dispatched yet) and the connection is closed.
"""

# mypy: allow-untyped-calls
# (this module overrides twisted.web's unannotated Request/Site hooks and calls
# their base versions; everything defined here is fully typed.)

from __future__ import annotations

import re
import uuid
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from openclaw.config.model import HttpConfig
from openclaw.gateway.http.errors import JSON_CONTENT_TYPE, json_bytes, openai_error
from openclaw.gateway.lifecycle import InFlight

log = Logger()

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request asks to switch to the WebSocket protocol."""
    upgrade = request.getHeader(b"upgrade")
    return upgrade is not None and b"websocket" in upgrade.lower()


def choose_request_id(supplied: bytes | None) -> bytes:
    """Echo a well-formed client ``x-request-id``; otherwise make a fresh one."""
    if supplied is not None and _SANE_REQUEST_ID.match(supplied):
        return supplied
    return b"req_" + uuid.uuid4().hex.encode("ascii")


class GatewaySite(Site):
    """A ``Site`` that carries the body limits and the clock its requests use."""

    def __init__(
        self,
        resource: IResource,
        *,
        http_config: HttpConfig,
        clock: IReactorTime,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, requestFactory=GatewayRequest, **kwargs)
        self.http_config = http_config
        self.clock = clock
        #: Requests being answered; graceful shutdown waits for it to drain.
        self.in_flight = InFlight()
        # Twisted's per-request access log line is noise next to our own
        # structured logs; turn it off.
        self.noisy = False

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
        """Stamp security headers and the request id, then dispatch."""
        self.request_id = choose_request_id(self.getHeader(b"x-request-id"))
        for name, value in SECURITY_HEADERS:
            self.setHeader(name, value)
        self.setHeader(b"x-request-id", self.request_id)
        site = self._site()
        if site is not None and not is_websocket_upgrade(self):
            # An upgraded request never finishes: Autobahn takes the transport.
            site.in_flight.started()
            self.notifyFinish().addBoth(lambda _: site.in_flight.finished())
        super().process()

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
        body = json_bytes(openai_error(message, "invalid_request_error"))
        reason = {408: b"Request Timeout", 413: b"Payload Too Large"}[status]
        request_id = choose_request_id(
            self.requestHeaders.getRawHeaders(b"x-request-id", [None])[0]
        )
        head = [b"HTTP/1.1 %d %s" % (status, reason)]
        head += [name + b": " + value for name, value in SECURITY_HEADERS]
        head += [
            b"x-request-id: " + request_id,
            b"content-type: " + JSON_CONTENT_TYPE,
            b"content-length: %d" % len(body),
            b"connection: close",
        ]
        log.info(
            "refused request body: {status} {message}",
            status=status,
            message=message,
            request_id=request_id.decode("ascii"),
        )
        channel.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        assert isinstance(channel, HTTPChannel)
        channel.loseConnection()
