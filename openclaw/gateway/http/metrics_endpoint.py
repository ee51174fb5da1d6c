"""``GET /metrics``: the gateway's :class:`~openclaw.core.metrics.Metrics` in
Prometheus' text format.

Behind the gateway's own auth (``Authorization: Bearer <token or password>``)
unless ``gateway.http.endpoints.metrics.auth`` is ``"none"``, for a scrape
network that cannot hold a secret; or served on a listener of its own
(``--metrics-listen``), where the operator decides who can reach it.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from openclaw.core.metrics import CONTENT_TYPE, Metrics
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.auth_errors import auth_failure_response


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

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        Resource.__init__(self)
        self._endpoint = endpoint

    def render_GET(self, request: Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: try /metrics\n"
        return self._endpoint.handle(request)

    render_HEAD = render_GET


def scrape_site(metrics: Metrics, reactor: IReactorTime) -> Site:
    """A Site serving only ``GET /metrics``, without auth (``--metrics-listen``:
    whoever can reach that address may scrape)."""
    site = Site(_ScrapeResource(MetricsEndpoint(metrics, None)), reactor=reactor)
    site.noisy = False
    return site


__all__ = ["MetricsEndpoint", "scrape_site"]
