"""The root resource of the shared port: WebSocket upgrades vs HTTP routes.

Any request carrying ``Upgrade: websocket`` (whatever its path) goes to
Autobahn's ``WebSocketResource``; everything else goes to the Klein app. The
root is a leaf, so it can be mounted at any path of an embedder's own ``Site``.

Before an upgrade is handed over, the per-client budget of unauthenticated
WebSocket sockets is checked (503 ``Too many unauthenticated sockets``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from openclaw.gateway.http.errors import write_openai_error
from openclaw.gateway.http.request import is_websocket_upgrade
from openclaw.gateway.hygiene import PREAUTH_REFUSAL, PreAuthSocketLimit
from openclaw.gateway.ui import ControlUi


class GatewayRootResource(Resource):
    """Dispatches each request to the WebSocket or the HTTP side."""

    isLeaf = True

    def __init__(
        self,
        *,
        http: IResource,
        websocket: IResource | None,
        preauth_limit: PreAuthSocketLimit | None = None,
        control_ui: ControlUi | None = None,
    ) -> None:
        Resource.__init__(self)
        self._http = http
        self._websocket = websocket
        self._preauth_limit = preauth_limit
        self._control_ui = control_ui

    def replace_http(self, http: IResource, control_ui: ControlUi | None) -> None:
        """Route new requests to these (a config reload); requests already
        dispatched finish on the resources they started with."""
        self._http = http
        self._control_ui = control_ui

    def claims_ui(self, path: bytes) -> bool:
        """Whether ``path`` is the Control UI's (for the route label)."""
        return self._control_ui is not None and self._control_ui.claims(path)

    def render(self, request: Request) -> Any:
        """Hand the request to the side that serves it."""
        try:
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            # Klein would answer a plain-text 400 and log a traceback.
            return write_openai_error(
                request, 400, "Invalid request path encoding.", "invalid_request_error"
            )
        if self._websocket is not None and is_websocket_upgrade(request):
            if self._preauth_limit is not None and self._preauth_limit.exceeded(request):
                return _refuse_upgrade(request)
            return self._websocket.render(request)
        if self._control_ui is not None and self._control_ui.claims(request.path):
            return self._control_ui.render(request)
        return self._http.render(request)


def _refuse_upgrade(request: Request) -> bytes:
    """503 in plain text (what OpenClaw sends), and the connection is closed."""
    request.setResponseCode(503)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"connection", b"close")
    body = PREAUTH_REFUSAL.encode("ascii")
    request.setHeader(b"content-length", b"%d" % len(body))
    channel = request.channel
    if isinstance(channel, HTTPChannel):
        channel.persistent = False
    return body
