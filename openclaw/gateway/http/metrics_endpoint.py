"""``GET /metrics``: the gateway's :class:`~openclaw.core.metrics.Metrics` in
Prometheus' text format.

Behind the gateway's own auth (``Authorization: Bearer <token or password>``)
unless ``gateway.http.endpoints.metrics.auth`` is ``"none"``, for a scrape
network that cannot hold a secret; or served on a listener of its own
(``--metrics-listen``), where the operator decides who can reach it.
"""

from __future__ import annotations

from typing import Final

from twisted.internet.interfaces import IAddress, IProtocolFactory, IReactorTime
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.http import Request as HTTPRequest
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from openclaw.core.metrics import CONTENT_TYPE, Metrics
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.observability import RequestObserver

#: Open connections the scrape port accepts (a scraper needs one or two).
SCRAPE_MAX_CONNECTIONS: Final = 32
#: Seconds a scrape connection may sit idle or half-sent before it is closed.
SCRAPE_IDLE_TIMEOUT: Final = 30


class MetricsEndpoint:
    """Answers a scrape (authenticated unless ``auth`` is None)."""

    def __init__(self, metrics: Metrics, auth: GatewayAuth | None) -> None:
        self._metrics = metrics
        self._auth = auth

    def handle(self, request: Request) -> bytes:
        """The exposition, or the auth refusal."""
        if self._auth is not None:
            decision = self._auth.check_request(request)
            if not decision.ok:
                return auth_failure_response(request, decision)
        body = self._metrics.render()
        request.setHeader(b"content-type", CONTENT_TYPE.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body


class _ScrapeResource(Resource):
    """``/metrics`` and nothing else, for a listener of its own."""

    isLeaf = True

    def __init__(self, endpoint: MetricsEndpoint, observer: RequestObserver) -> None:
        Resource.__init__(self)
        self._endpoint = endpoint
        self._observer = observer

    def render_GET(self, request: Request) -> bytes:
        self._observer.started(request)
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: try /metrics\n"
        return self._endpoint.handle(request)

    render_HEAD = render_GET


class _ScrapeSite(Site):
    """A Site whose requests are logged by the gateway's access line only."""

    def log(self, request: HTTPRequest) -> None:
        """Twisted's combined-format line is replaced by ``openclaw.access``."""


class _Capped(WrappingFactory):
    """At most :data:`SCRAPE_MAX_CONNECTIONS` open connections; more are closed at once."""

    noisy = False

    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper | None:  # type: ignore[override]  # None refuses, as Factory allows
        if len(self.protocols) >= SCRAPE_MAX_CONNECTIONS:
            return None
        return super().buildProtocol(addr)


def _peer(request: IRequest) -> str:
    return str(getattr(request.getClientAddress(), "host", None) or "unix")


def scrape_site(metrics: Metrics, reactor: IReactorTime) -> IProtocolFactory:
    """A Site serving only ``GET /metrics``, without auth (``--metrics-listen``:
    whoever can reach that address may scrape). Being unauthenticated, it
    caps its connections and closes idle or half-sent ones quickly: the
    process's file descriptors are shared with the gateway."""
    observer = RequestObserver(clock=reactor, metrics=None, client_address=_peer)
    resource = _ScrapeResource(MetricsEndpoint(metrics, None), observer)
    site = _ScrapeSite(resource, reactor=reactor, timeout=SCRAPE_IDLE_TIMEOUT)  # type: ignore[no-untyped-call]  # Twisted
    site.noisy = False
    return _Capped(site)  # type: ignore[no-untyped-call]  # Twisted


__all__ = ["SCRAPE_IDLE_TIMEOUT", "SCRAPE_MAX_CONNECTIONS", "MetricsEndpoint", "scrape_site"]
