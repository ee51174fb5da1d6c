"""The gateway's HTTP routes: what each path answers.

Probes are answered here; the OpenAI-compatible endpoints are delegated to
their own objects and exist only while their endpoint is enabled.

The probes and the OpenAI POST endpoints are looked up by exact path
(:mod:`openclaw.gateway.http.direct`); every other request goes to the Klein
app of :mod:`openclaw.gateway.http.klein_routes`, built (and Klein with
werkzeug imported, 3.7 MB) on the first such request, so an idle gateway
that only answers probes and completions never loads it (issue 16). Klein
refuses a wrong method (405 with ``Allow``, before authentication, as
OpenClaw does) and writes that refusal and every :class:`ChatRequestError`
in OpenAI's error shape.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from openclaw import __version__
from openclaw.gateway.http.direct import DirectRoutes
from openclaw.gateway.http.errors import (
    ChatRequestError,
    disabled_not_found,
    method_not_allowed,
    not_found,
    write_json,
    write_refusal,
)
from openclaw.gateway.lifecycle import Readiness

#: The methods a probe answers (werkzeug adds HEAD to every GET rule anyway).
PROBE_METHODS = ["GET", "HEAD"]
_CHAT_PATH = b"/v1/chat/completions"
_MODELS_PATH = b"/v1/models"
_RESPONSES_PATH = b"/v1/responses"
_EMBEDDINGS_PATH = b"/v1/embeddings"


class RequestHandler(Protocol):
    """An endpoint object that answers a whole request."""

    def handle(self, request: Request) -> bytes | Deferred[bytes]: ...


class GatewayHttpApp:
    """Routes of the shared port that are not WebSocket upgrades."""

    def __init__(
        self,
        *,
        readiness: Readiness,
        clock: IReactorTime,
        chat_completions: RequestHandler | None = None,
        models: RequestHandler | None = None,
        responses: RequestHandler | None = None,
        embeddings: RequestHandler | None = None,
        metrics: RequestHandler | None = None,
    ) -> None:
        self._readiness = readiness
        self._clock = clock
        self._chat_completions = chat_completions
        self._models = models
        self._responses = responses
        self._embeddings = embeddings
        self._metrics = metrics

    def resource(self) -> Any:
        """The resource for these routes: the OpenAI POST endpoints by exact
        path (see :mod:`openclaw.gateway.http.direct`), the rest through Klein."""
        posts = {
            _CHAT_PATH: self.chat_completions,
            _RESPONSES_PATH: self.responses,
            _EMBEDDINGS_PATH: self.embeddings,
        }
        probes = {
            b"/health": self.health,
            b"/healthz": self.health,
            b"/ready": self.ready,
            b"/readyz": self.ready,
            b"/startup": self.startupz,
            b"/startupz": self.startupz,
        }
        return DirectRoutes(
            {path.lstrip(b"/"): route for path, route in posts.items()},
            self._klein_resource,
            gets={path.lstrip(b"/"): route for path, route in probes.items()},
        )

    def _klein_resource(self) -> Any:
        from openclaw.gateway.http.klein_routes import klein_resource

        return klein_resource(self)

    def health(self, request: Request) -> bytes:
        """Liveness: the process is up and serving."""
        request.setHeader(b"cache-control", b"no-store")
        return write_json(request, 200, {"ok": True, "status": "live"})

    def ready(self, request: Request) -> bytes:
        """Readiness: 503 until the gateway has started, while it stops and while
        a dependency it needs (the shared session store) is unavailable."""
        request.setHeader(b"cache-control", b"no-store")
        state = self._readiness.state
        reason = self._readiness.unready_reason() if state == "ready" else None
        if reason is not None:
            body = {"ready": False, "status": "unavailable", "reason": reason}
            return write_json(request, 503, body)
        ready = state == "ready"
        return write_json(request, 200 if ready else 503, {"ready": ready, "status": state})

    def startupz(self, request: Request) -> bytes:
        """Start-up probe the OpenClaw CLI's ``health`` command asks first:
        503 ``starting``, 503 ``draining`` while the gateway stops, else 200."""
        request.setHeader(b"cache-control", b"no-store")
        state = self._readiness.state
        if state == "starting":
            return write_json(request, 503, {"ok": False, "status": "starting"})
        if state == "stopping":
            return write_json(request, 503, {"ok": False, "status": "draining"})
        uptime_ms = self._readiness.uptime_ms(self._clock)
        return write_json(
            request,
            200,
            {"ok": True, "status": "started", "version": __version__, "uptimeMs": uptime_ms},
        )

    def metrics(self, request: Request) -> bytes | Deferred[bytes]:
        """``GET /metrics`` (404 unless ``endpoints.metrics.enabled``)."""
        if self._metrics is None:
            return not_found(request)
        return self._metrics.handle(request)

    def chat_completions(self, request: Request) -> bytes | Deferred[bytes]:
        """``POST /v1/chat/completions`` (404 while the endpoint is disabled)."""
        if self._chat_completions is None:
            return disabled_not_found(request)
        return self._chat_completions.handle(request)

    def responses(self, request: Request) -> bytes | Deferred[bytes]:
        """``POST /v1/responses`` (``gateway.http.endpoints.responses.enabled``)."""
        if self._responses is None:
            return disabled_not_found(request)
        return self._responses.handle(request)

    def embeddings(self, request: Request) -> bytes | Deferred[bytes]:
        """``POST /v1/embeddings`` (served with chat completions or responses)."""
        if self._embeddings is None:
            return disabled_not_found(request)
        return self._embeddings.handle(request)

    def models(self, request: Request, model_id: str | None = None) -> bytes | Deferred[bytes]:
        """``GET /v1/models`` and ``/v1/models/{id}`` (served with chat completions)."""
        if self._models is None:
            return disabled_not_found(request)
        return self._models.handle(request)

    def answer_not_found(self, request: IRequest, failure: Failure) -> bytes:
        """No route for the path: OpenAI's 404 shape."""
        return not_found(cast(Request, request))

    def answer_method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        """405 with the route's methods in ``Allow`` (HEAD goes without saying
        where GET is served: werkzeug adds it to every GET rule)."""
        req = cast(Request, request)
        if self._disabled(req.path):
            return disabled_not_found(req)
        valid = getattr(failure.value, "valid_methods", None) or PROBE_METHODS
        allowed = [m for m in valid if m != "HEAD" or "GET" not in valid] or valid
        return method_not_allowed(req, ", ".join(allowed).encode("ascii"))

    def answer_refused(self, request: IRequest, failure: Failure) -> bytes:
        """A request an endpoint refused (bad body, unknown agent, bad image)."""
        error = failure.value
        assert isinstance(error, ChatRequestError)
        return write_refusal(cast(Request, request), error)

    def _disabled(self, path: bytes) -> bool:
        """Whether ``path`` belongs to an endpoint that is switched off (404)."""
        if path == _CHAT_PATH:
            return self._chat_completions is None
        if path == _MODELS_PATH or path.startswith(_MODELS_PATH + b"/"):
            return self._models is None
        if path == _RESPONSES_PATH:
            return self._responses is None
        if path == _EMBEDDINGS_PATH:
            return self._embeddings is None
        if path == b"/metrics":
            return self._metrics is None
        return False
