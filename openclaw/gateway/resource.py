"""The root resource of the shared port: WebSocket upgrades vs HTTP routes.

Any request carrying ``Upgrade: websocket`` (whatever its path) goes to
Autobahn's ``WebSocketResource``; everything else goes to the Klein app. The
root is a leaf, so it can be mounted at any path of an embedder's own ``Site``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from openclaw.gateway.http.errors import write_openai_error
from openclaw.gateway.http.request import is_websocket_upgrade


class GatewayRootResource(Resource):
    """Dispatches each request to the WebSocket or the HTTP side."""

    isLeaf = True

    def __init__(self, *, http: IResource, websocket: IResource | None) -> None:
        Resource.__init__(self)
        self._http = http
        self._websocket = websocket

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
            return self._websocket.render(request)
        return self._http.render(request)
