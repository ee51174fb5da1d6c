"""The Klein app for the routes not looked up by exact path.

Built on the first request :class:`~openclaw.gateway.http.direct.DirectRoutes`
does not answer itself (a model listing, ``/metrics``, a wrong method, an
unknown path): Klein and werkzeug are imported then, not at start (issue 16).
Each route calls the :class:`~openclaw.gateway.http.app.GatewayHttpApp`
method of the same name, so both ways of reaching a route answer alike.
"""

from __future__ import annotations

from klein import Klein
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from openclaw.gateway.http.app import PROBE_METHODS, GatewayHttpApp
from openclaw.gateway.http.errors import ChatRequestError

#: path, methods, the app's method answering it.
_ROUTES = (
    ("/health", PROBE_METHODS, "health"),
    ("/healthz", PROBE_METHODS, "health"),
    ("/ready", PROBE_METHODS, "ready"),
    ("/readyz", PROBE_METHODS, "ready"),
    ("/startup", PROBE_METHODS, "startupz"),
    ("/startupz", PROBE_METHODS, "startupz"),
    ("/metrics", PROBE_METHODS, "metrics"),
    ("/v1/chat/completions", ["POST"], "chat_completions"),
    ("/v1/responses", ["POST"], "responses"),
    ("/v1/embeddings", ["POST"], "embeddings"),
    ("/v1/models", ["GET"], "models"),
    ("/v1/models/", ["GET"], "models"),
    ("/v1/models/<path:model_id>", ["GET"], "models"),
)


def klein_resource(app: GatewayHttpApp) -> IResource:
    """A Klein resource serving every route of ``app``."""
    klein = Klein()
    for path, methods, name in _ROUTES:
        # endpoint: werkzeug needs one name per rule, even for a shared handler.
        klein.route(path, methods=methods, endpoint=f"{name}:{path}")(getattr(app, name))

    klein.handle_errors(NotFound)(app.answer_not_found)
    klein.handle_errors(MethodNotAllowed)(app.answer_method_not_allowed)
    klein.handle_errors(ChatRequestError)(app.answer_refused)
    resource: IResource = klein.resource()
    return resource
