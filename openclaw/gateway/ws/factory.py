"""The Autobahn side of the WebSocket gateway, imported on the first upgrade.

:class:`GatewayWebSocketFactory` is what Autobahn's ``WebSocketResource``
needs: protocol options and a factory building
:class:`GatewayWebSocketProtocol` connections. Everything connections share
lives in :class:`~openclaw.gateway.ws.server.WebSocketGateway`, which starts
with the gateway; this module (and Autobahn with it) loads when
:meth:`WebSocketGateway.factory` is first called. All timers, Autobahn's own
included, run on the injected reactor so tests drive them with a ``Clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from openclaw.gateway.ws.methods import GatewayServices
from openclaw.gateway.ws.protocol import GatewayWebSocketProtocol
from openclaw.gateway.ws.server import WebSocketGateway

_Untyped = Callable[..., None]


class _ReactorTimer:
    """Autobahn's batched-timer interface on the injected reactor.

    Autobahn schedules its handshake, close and ping timers through txaio's
    global event loop; this keeps them on the reactor the gateway was given.
    The one write to a private Autobahn attribute (``_batched_timer``, set in
    ``WebSocketServerFactory.__init__``): Autobahn offers no per-factory
    setting, and txaio's only alternative is its process-global loop.
    Checked against Autobahn 26.10.2.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return _TolerantCall(self._reactor.callLater(delay, func, *args, **kwargs))


class _TolerantCall:
    """A delayed call whose cancel is a no-op once it ran (as Autobahn expects)."""

    def __init__(self, call: IDelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class GatewayWebSocketFactory(WebSocketServerFactory):
    """Builds :class:`GatewayWebSocketProtocol` connections sharing one
    :class:`WebSocketGateway` (what every connection uses lives there)."""

    # typing note: Twisted types Factory.protocol against a generic protocol shape.
    protocol = GatewayWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, gateway: WebSocketGateway) -> None:
        reactor = gateway.reactor
        # typing note: Autobahn leaves these two unannotated.
        cast(_Untyped, super().__init__)(reactor=reactor, server=None)
        self._batched_timer = _ReactorTimer(reactor)
        self.gateway = gateway
        ws = gateway.config.gateway.ws
        cast(_Untyped, self.setProtocolOptions)(
            maxFramePayloadSize=ws.max_preauth_payload,
            maxMessagePayloadSize=ws.max_preauth_payload,
            autoPingInterval=ws.ping_interval_seconds,
            autoPingTimeout=ws.ping_timeout_seconds,
            failByDrop=False,
            perMessageCompressionAccept=lambda offers: None,
        )

    @property
    def services(self) -> GatewayServices:
        """The gateway's method services."""
        return self.gateway.services

    @property
    def connections(self) -> frozenset[GatewayWebSocketProtocol]:
        """Connections past the HTTP upgrade, authenticated or not."""
        return self.gateway.connections

    def shutdown(self, reason: str = "gateway stopping") -> Deferred[None]:
        """:meth:`WebSocketGateway.shutdown`."""
        return self.gateway.shutdown(reason)
