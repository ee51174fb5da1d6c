"""CORS for browser clients of the HTTP API: off unless origins are listed.

``gateway.http.cors.allowedOrigins`` is an allow-list of exact origins (or
``"*"``). For an allowed origin the gateway

- answers a preflight (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) itself with 204, before routing and
  before authentication (browsers never send credentials on a preflight);
- stamps ``Access-Control-Allow-Origin`` (the origin itself), ``Vary: Origin``
  and ``Access-Control-Expose-Headers`` on every other response *before* it is
  dispatched, so JSON answers, errors and SSE streams all carry them (headers
  set after the first write of a stream would be lost).

Other origins get no CORS headers at all, so the browser blocks them; with no
origins configured nothing changes (``OPTIONS`` is routed like any method and
``/v1/chat/completions`` answers it 405, as OpenClaw does). Credentials
(cookies) are never allowed: the API authenticates with a bearer header.

CORS only decides whether page scripts may *read* answers. A browser still
*sends* "simple" requests (``POST`` with a ``text/plain`` body needs no
preflight), so a gateway without authentication needs
:class:`BrowserOriginGuard` too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from attrs import frozen
from twisted.web.iweb import IRequest

from openclaw.gateway.origins import origin_allowed, origin_key

ALLOWED_METHODS = b"GET, POST, OPTIONS"
#: Always allowed request headers: what OpenAI SDKs and OpenClaw clients send.
BASE_ALLOWED_HEADERS: tuple[str, ...] = (
    "authorization",
    "content-type",
    "x-request-id",
    "x-openclaw-agent-id",
    "x-openclaw-agent",
    "x-openclaw-session-key",
    "x-openclaw-message-channel",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
    "openai-organization",
    "openai-project",
)
#: Response headers browser code may read.
EXPOSED_HEADERS = b"x-request-id, retry-after, x-should-retry"
DEFAULT_MAX_AGE_SECONDS = 600
#: Requested header names echoed back: tokens only, a bounded number.
_TOKEN = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_MAX_ECHOED_HEADERS = 64


@frozen
class CorsPolicy:
    """Which browser origins may call the HTTP API, and how long preflights are cached."""

    allowed_origins: frozenset[str] = frozenset()
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS

    @classmethod
    def from_origins(
        cls, origins: Iterable[str], *, max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    ) -> CorsPolicy:
        """A policy for ``gateway.http.cors.allowedOrigins`` (exact origins or ``*``)."""
        keys = frozenset(origin_key(o) for o in origins if o.strip())
        return cls(allowed_origins=keys, max_age_seconds=max_age_seconds)

    @property
    def enabled(self) -> bool:
        """False when no origin is configured: the gateway sends no CORS headers."""
        return bool(self.allowed_origins)

    def allows(self, origin: str) -> bool:
        """True for a listed origin (or any origin with ``*``); never for ``null``."""
        key = origin_key(origin)
        if not key or key == "null":
            return False
        return "*" in self.allowed_origins or key in self.allowed_origins

    def headers_for(self, raw_origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an ordinary (not preflight) answer to ``raw_origin``,
        for answers written straight to the transport (a refusal before dispatch)."""
        if not self.enabled:
            return []
        headers = [(b"vary", b"Origin")]
        if raw_origin is not None and self.allows(raw_origin.decode("latin-1")):
            headers += [
                (b"access-control-allow-origin", raw_origin.strip()),
                (b"access-control-expose-headers", EXPOSED_HEADERS),
            ]
        return headers

    def apply(self, request: IRequest) -> bool:
        """Stamp the CORS headers on ``request``'s response; True when the
        request was a preflight that has now been answered (204)."""
        if not self.enabled:
            return False
        request.setHeader(b"vary", b"Origin")
        raw_origin = request.getHeader(b"origin")
        if raw_origin is None:
            return False
        origin = raw_origin.decode("latin-1")
        if not self.allows(origin):
            return False
        request.setHeader(b"access-control-allow-origin", raw_origin.strip())
        preflight = (
            request.method == b"OPTIONS"
            and request.getHeader(b"access-control-request-method") is not None
        )
        if not preflight:
            request.setHeader(b"access-control-expose-headers", EXPOSED_HEADERS)
            return False
        requested = request.getHeader(b"access-control-request-headers")
        request.setHeader(b"access-control-allow-methods", ALLOWED_METHODS)
        request.setHeader(b"access-control-allow-headers", allowed_headers(requested))
        request.setHeader(b"access-control-max-age", b"%d" % self.max_age_seconds)
        request.setResponseCode(204)
        request.finish()
        return True


def allowed_headers(requested: bytes | None) -> bytes:
    """The base list plus every well-formed header name the browser asked for."""
    names = list(BASE_ALLOWED_HEADERS)
    if requested:
        for item in requested.decode("latin-1").split(",")[:_MAX_ECHOED_HEADERS]:
            name = item.strip().lower()
            if _TOKEN.match(name) and name not in names:
                names.append(name)
    return ", ".join(names).encode("ascii")


@frozen
class BrowserOriginGuard:
    """For ``gateway.auth.mode: "none"``: requests from foreign browser origins are refused.

    With no credential to check, any web page the user visits could make the
    browser send a request the gateway would run. As in OpenClaw, a request
    carrying an ``Origin`` must come from a listed origin
    (``gateway.controlUi.allowedOrigins`` and the CORS list, ``*`` for any),
    from the gateway's own origin (the ``Host`` it was called by), or from a
    loopback origin on a loopback connection; anything else, ``null``
    included, is answered 401. Requests without ``Origin`` (SDKs, curl) pass.
    """

    allowed_origins: frozenset[str]
    #: The caller's address (the auth's, which trusts only configured proxies).
    client_address: Callable[[IRequest], str]

    @classmethod
    def from_origins(
        cls, origins: Iterable[str], client_address: Callable[[IRequest], str]
    ) -> BrowserOriginGuard:
        """A guard allowing ``origins`` (exact origins or ``*``) besides the same-origin rules."""
        keys = frozenset(origin_key(o) for o in origins if o.strip())
        return cls(allowed_origins=keys, client_address=client_address)

    def allows(self, request: IRequest) -> bool:
        """True when the request has no ``Origin`` or an acceptable one."""
        raw = request.getHeader(b"origin")
        if raw is None:
            return True
        host = request.getHeader(b"host")
        return origin_allowed(
            raw.decode("latin-1"),
            host.decode("latin-1") if host is not None else None,
            self.client_address(request),
            self.allowed_origins,
        )
