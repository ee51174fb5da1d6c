"""The WebSocket factory: shared state of every connection, and its wiring.

The factory owns what outlives one connection: the run hub (event fan-out),
the idempotency cache (so a reconnecting CLI gets its cached result), the
global ``tick`` timer and the set of open connections (for ``shutdown``). All
timers, Autobahn's own included, run on the injected reactor so tests drive
them with a ``Clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from openclaw import __version__
from openclaw.agents.types import AgentRuntime, ApprovalEvent
from openclaw.config.model import Config
from openclaw.core.relay import ProvidesRunRelay, RunRelay
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.origins import origin_allowed, origin_key
from openclaw.gateway.ws.events import RunHub
from openclaw.gateway.ws.frames import PROTOCOL_VERSION
from openclaw.gateway.ws.handshake import has_scope
from openclaw.gateway.ws.idempotency import IdempotencyCache
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.gateway.ws.methods import METHODS, GatewayServices
from openclaw.gateway.ws.methods_loop import SCOPE_APPROVALS, approval_event
from openclaw.gateway.ws.outbound import OutboundEvent
from openclaw.gateway.ws.protocol import GatewayWebSocketProtocol
from openclaw.gateway.ws.relayed import RelayedRuns
from openclaw.gateway.ws.views import AgentsView, SessionsView
from openclaw.sessions.keys import main_session_key

log = Logger()
_Untyped = Callable[..., None]

#: Events this gateway may send (``hello-ok.features.events``).
EVENTS = ("connect.challenge", "agent", "chat", "tick", "shutdown", "error")
#: The OpenClaw release whose CLI this protocol implementation was verified with.
COMPATIBLE_OPENCLAW = "2026.9.6"


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
    """Builds :class:`GatewayWebSocketProtocol` connections sharing one gateway."""

    # typing note: Twisted types Factory.protocol against a generic protocol shape.
    protocol = GatewayWebSocketProtocol  # type: ignore[assignment]

    def __init__(
        self,
        *,
        config: Config,
        runtime: AgentRuntime,
        auth: GatewayAuth,
        reactor: IReactorTime,
        agents: AgentsView,
        sessions: SessionsView | None,
        log_buffer: LogBuffer | None,
        started_at_ms: int,
    ) -> None:
        # typing note: Autobahn leaves these two unannotated.
        cast(_Untyped, super().__init__)(reactor=reactor, server=None)
        self._batched_timer = _ReactorTimer(reactor)
        self.config = config
        self.auth = auth
        ws = config.gateway.ws
        cast(_Untyped, self.setProtocolOptions)(
            maxFramePayloadSize=ws.max_preauth_payload,
            maxMessagePayloadSize=ws.max_preauth_payload,
            autoPingInterval=ws.ping_interval_seconds,
            autoPingTimeout=ws.ping_timeout_seconds,
            failByDrop=False,
            perMessageCompressionAccept=lambda offers: None,
        )
        # A shared session store (Redis) relays runs between gateway instances.
        store = runtime.sessions
        relay: RunRelay | None = store.run_relay if isinstance(store, ProvidesRunRelay) else None
        self.hub = RunHub(runtime, reactor, relay)
        self.hub.start()
        if relay is not None:
            relay.attach(RelayedRuns(self.hub, runtime))
        # Exec approval requests go to every operator client allowed to answer.
        self._stop_approvals = runtime.approvals.observe(self._approval_event)
        self._connections: set[GatewayWebSocketProtocol] = set()
        self._ready: set[GatewayWebSocketProtocol] = set()
        self._tick_call: IDelayedCall | None = None
        self._operators = 0
        self.stopping = False
        self._allowed_origins = {origin_key(o) for o in config.gateway.control_ui.allowed_origins}
        self.services = GatewayServices(
            config=config,
            runtime=runtime,
            agents=agents,
            sessions=sessions,
            hub=self.hub,
            idempotency=IdempotencyCache(reactor),
            clock=reactor,
            log_buffer=log_buffer,
            started_at_ms=started_at_ms,
            version=__version__,
            connection_count=lambda: len(self._ready),
        )

    def now_ms(self) -> int:
        """The injected clock's time in epoch milliseconds."""
        return int(self.reactor.seconds() * 1000)

    # -- connections ---------------------------------------------------------------

    @property
    def connections(self) -> frozenset[GatewayWebSocketProtocol]:
        """Connections past the HTTP upgrade, authenticated or not."""
        return frozenset(self._connections)

    def connection_opening(self, conn: GatewayWebSocketProtocol) -> None:
        """A connection passed ``onConnect``."""
        self._connections.add(conn)

    def connection_ready(self, conn: GatewayWebSocketProtocol) -> None:
        """A connection completed ``connect``; ticks run while any is ready."""
        self._ready.add(conn)
        self._schedule_tick()
        self._count_operators()

    def connection_closed(self, conn: GatewayWebSocketProtocol) -> None:
        """A connection went away."""
        self._connections.discard(conn)
        self._ready.discard(conn)
        if not self._ready:
            self._cancel_tick()
        self._count_operators()

    def _count_operators(self) -> None:
        """Tell the broker how many clients here can answer approvals (instances
        sharing a store count each other's)."""
        count = sum(1 for c in self._ready if has_scope(c.scopes, SCOPE_APPROVALS))
        if count != self._operators:
            self._operators = count
            self.services.runtime.approvals.operators_connected(count)

    def origin_allowed(self, origin: str, host: str | None, client_address: str) -> bool:
        """Browser origins: the allow-list, the gateway's own origin, or loopback to loopback."""
        return origin_allowed(origin, host, client_address, self._allowed_origins)

    def _approval_event(self, event: ApprovalEvent) -> bool:
        """Send it to every ready operator client allowed to answer; whether any was."""
        name, payload = approval_event(event)
        outbound = OutboundEvent(name, payload, run_id="")
        reached = False
        for conn in list(self._ready):
            if has_scope(conn.scopes, SCOPE_APPROVALS):
                conn.deliver(outbound)
                reached = True
        return reached

    # -- tick ----------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        if self._tick_call is None and self._ready and not self.stopping:
            interval = self.config.gateway.ws.tick_interval_ms / 1000
            self._tick_call = self.reactor.callLater(interval, self._tick)

    def _cancel_tick(self) -> None:
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None

    def _tick(self) -> None:
        self._tick_call = None
        ts = self.now_ms()
        for conn in list(self._ready):
            conn.send_tick(ts)
        self._schedule_tick()

    # -- hello ----------------------------------------------------------------------------

    def hello_payload(self, conn: GatewayWebSocketProtocol) -> dict[str, Any]:
        """The ``hello-ok`` payload for a freshly authenticated connection."""
        ws = self.config.gateway.ws
        default = self.services.agents.default_agent_id
        auth: dict[str, Any] = {
            "method": self.auth.mode,
            "role": "operator",
            "scopes": list(conn.scopes),
        }
        if conn.device is not None:
            auth["deviceId"] = conn.device.id
        return {
            "type": "hello-ok",
            "protocol": PROTOCOL_VERSION,
            "server": {
                "name": "openclaw-twisted",
                "version": __version__,
                "compatibleWith": COMPATIBLE_OPENCLAW,
                "connId": conn.conn_id,
            },
            "features": {"methods": sorted(METHODS), "events": list(EVENTS), "capabilities": []},
            "snapshot": {
                "presence": [],
                "health": {"ok": True},
                "stateVersion": {"presence": 0, "health": 0},
                "uptimeMs": max(0, self.now_ms() - self.services.started_at_ms),
                "authMode": self.auth.mode,
                "sessionDefaults": {
                    "defaultAgentId": default,
                    "mainKey": "main",
                    "mainSessionKey": main_session_key(default),
                    "scope": "per-sender",
                },
            },
            "auth": auth,
            "policy": {
                "maxPayload": ws.max_payload,
                "maxBufferedBytes": ws.max_buffered_bytes,
                "tickIntervalMs": ws.tick_interval_ms,
            },
        }

    # -- shutdown ----------------------------------------------------------------------------

    def shutdown(self, reason: str = "gateway stopping") -> Deferred[None]:
        """Send every open connection a ``shutdown`` event, close them with 1012,
        fire when all closed. New upgrades are refused from now on."""
        self.stopping = True
        self._cancel_tick()
        self.hub.stop()
        self._stop_approvals()
        conns = list(self._connections)
        if not conns:
            return succeed(None)
        log.info(
            "closing {count} WebSocket connection(s): {reason}", count=len(conns), reason=reason
        )
        waits = [conn.when_closed() for conn in conns]
        for conn in conns:
            conn.shutdown(reason)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)


def build_ws_factory(
    *,
    config: Config,
    runtime: AgentRuntime,
    auth: GatewayAuth,
    reactor: IReactorTime,
    log_buffer: LogBuffer | None = None,
    started_at_ms: int,
    sessions: SessionsView | None = None,
    agents: AgentsView | None = None,
) -> GatewayWebSocketFactory:
    """The gateway's WebSocket factory, ready to wrap in a ``WebSocketResource``.

    ``sessions`` defaults to ``runtime.sessions`` and ``agents`` to the
    runtime itself (it lists its agents).
    """
    if sessions is None:
        sessions = runtime.sessions
    if agents is None:
        agents = runtime
    return GatewayWebSocketFactory(
        config=config,
        runtime=runtime,
        auth=auth,
        reactor=reactor,
        agents=agents,
        sessions=sessions,
        log_buffer=log_buffer,
        started_at_ms=started_at_ms,
    )
