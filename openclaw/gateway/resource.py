"""The root resource of the shared port: WebSocket upgrades vs HTTP routes.

Any request carrying ``Upgrade: websocket`` (whatever its path) goes to
Autobahn's ``WebSocketResource``; everything else goes to the Klein app. The
root is a leaf, so it can be mounted at any path of an embedder's own ``Site``.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

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
        if self._websocket is not None and is_websocket_upgrade(request):
            return self._websocket.render(request)
        return self._http.render(request)
