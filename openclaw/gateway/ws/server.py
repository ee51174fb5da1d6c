"""The WebSocket side's shared state, and its resource, without Autobahn.

:class:`WebSocketGateway` owns what outlives one connection: the run hub
(event fan-out), the idempotency cache (so a reconnecting CLI gets its cached
result), the global ``tick`` timer and the set of open connections (for
``shutdown``). It starts with the gateway, because runs started over HTTP
are tracked for a later ``agent.wait`` and approvals need an observer.

Autobahn (with its WAMP, CBOR and NVX modules, about 6 MB of an idle
process) is imported only when the first upgrade request arrives:
:meth:`WebSocketGateway.resource` is a stand-in that builds the Autobahn
factory (:mod:`openclaw.gateway.ws.factory`) on first use. The method table
and the ``connect`` checks (``methods``, ``handshake``) load with the first
connection too; what runs without one (the hub, approvals with nobody to
ask) does not need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.resource import IResource
from zope.interface import implementer

from openclaw import __version__
from openclaw.agents.types import AgentRuntime, ApprovalEvent
from openclaw.config.model import Config
from openclaw.core.relay import ProvidesRunRelay, RunRelay
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.origins import origin_allowed, origin_key
from openclaw.gateway.ws.calls import GatewayServices
from openclaw.gateway.ws.events import RunHub
from openclaw.gateway.ws.frames import PROTOCOL_VERSION
from openclaw.gateway.ws.idempotency import IdempotencyCache
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.gateway.ws.outbound import OutboundEvent
from openclaw.gateway.ws.relayed import RelayedRuns
from openclaw.gateway.ws.views import AgentsView, SessionsView
from openclaw.sessions.keys import main_session_key

if TYPE_CHECKING:
    from twisted.web.server import Request

    from openclaw.gateway.ws.factory import GatewayWebSocketFactory
    from openclaw.gateway.ws.protocol import GatewayWebSocketProtocol

log = Logger()

#: Events this gateway may send (``hello-ok.features.events``).
EVENTS = (
    "connect.challenge",
    "agent",
    "chat",
    "tick",
    "shutdown",
    "error",
    "exec.approval.requested",
    "exec.approval.resolved",
)
#: OpenClaw server capabilities this gateway honours (``hello-ok.features.capabilities``):
#: ``published-model-catalog``: ``models.list`` takes ``view``, ``provider``, ``agentId``
#: and ``includeDetails`` (``openclaw models list`` refuses a gateway without it).
CAPABILITIES = ("published-model-catalog",)
#: The OpenClaw release whose CLI this protocol implementation was verified with.
COMPATIBLE_OPENCLAW = "2026.9.6"
#: OpenClaw's close code for a client whose shared credentials a reload replaced.
CLOSE_AUTH_CHANGED = 4001


class WebSocketGateway:
    """Every connection's shared gateway: hub, methods' services, ticks, shutdown."""

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
        self.config = config
        self.auth = auth
        self.reactor = reactor
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
        self._factory: GatewayWebSocketFactory | None = None
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

    # -- the Autobahn side, built on first use --------------------------------------

    def factory(self) -> GatewayWebSocketFactory:
        """The Autobahn factory of this gateway (Autobahn is imported now)."""
        if self._factory is None:
            from openclaw.gateway.ws.factory import GatewayWebSocketFactory

            self._factory = GatewayWebSocketFactory(self)
        return self._factory

    def resource(self) -> IResource:
        """The resource upgrade requests go to; Autobahn loads on the first one."""
        return _UpgradeResource(self)

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

    def revoke_stale_auth(self) -> int:
        """Close (4001, as OpenClaw does) every connection that authenticated
        under a shared secret or mode a reload has since replaced: rotating the
        token must lock out a client that holds the old one, open socket or not.
        Returns how many were closed."""
        generation = self.auth.generation
        stale = [c for c in self._ready if c.auth_generation != generation]
        for conn in stale:
            # On the next reactor turn: the client that asked for this reload
            # (``gateway.reload`` with the old token) gets its answer first.
            self.reactor.callLater(0, conn.close, CLOSE_AUTH_CHANGED, "gateway auth changed")
        if stale:
            log.info(
                "gateway auth changed: closed {count} WebSocket connection(s) "
                "authenticated with the old credentials",
                count=len(stale),
            )
        return len(stale)

    def _count_operators(self) -> None:
        """Tell the broker how many clients here can answer approvals (instances
        sharing a store count each other's)."""
        from openclaw.gateway.ws.handshake import has_scope
        from openclaw.gateway.ws.methods_loop import SCOPE_APPROVALS

        count = sum(1 for c in self._ready if has_scope(c.scopes, SCOPE_APPROVALS))
        if count != self._operators:
            self._operators = count
            self.services.runtime.approvals.operators_connected(count)

    def origin_allowed(self, origin: str, host: str | None, client_address: str) -> bool:
        """Browser origins: the allow-list, the gateway's own origin, or loopback to loopback."""
        return origin_allowed(origin, host, client_address, self._allowed_origins)

    def _approval_event(self, event: ApprovalEvent) -> bool:
        """Send it to every ready operator client allowed to answer; whether any was."""
        if not self._ready:
            return False
        from openclaw.gateway.ws.handshake import has_scope
        from openclaw.gateway.ws.methods_loop import SCOPE_APPROVALS, approval_event

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
        from openclaw.gateway.ws.methods import METHODS

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
            "features": {
                "methods": sorted(METHODS),
                "events": list(EVENTS),
                "capabilities": list(CAPABILITIES),
            },
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


@implementer(IResource)
class _UpgradeResource:
    """Stands for Autobahn's ``WebSocketResource`` until the first upgrade."""

    isLeaf = True

    def __init__(self, gateway: WebSocketGateway) -> None:
        self._gateway = gateway
        self._resource: IResource | None = None

    def render(self, request: Request) -> Any:
        """Hand the upgrade to Autobahn (built now if this is the first)."""
        if self._resource is None:
            from autobahn.twisted.resource import WebSocketResource

            # typing note: Autobahn leaves its constructor unannotated.
            built: IResource = WebSocketResource(self._gateway.factory())  # type: ignore[no-untyped-call]
            self._resource = built
        return self._resource.render(request)

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        """A leaf: never asked for children (``isLeaf``)."""
        raise NotImplementedError("the WebSocket resource is a leaf")

    def putChild(self, path: bytes, child: IResource) -> None:
        """A leaf has no children."""
        raise NotImplementedError("the WebSocket resource is a leaf")


def build_ws_gateway(
    *,
    config: Config,
    runtime: AgentRuntime,
    auth: GatewayAuth,
    reactor: IReactorTime,
    log_buffer: LogBuffer | None = None,
    started_at_ms: int,
    sessions: SessionsView | None = None,
    agents: AgentsView | None = None,
) -> WebSocketGateway:
    """The gateway's WebSocket side (Autobahn not loaded yet).

    ``sessions`` defaults to ``runtime.sessions`` and ``agents`` to the
    runtime itself (it lists its agents).
    """
    return WebSocketGateway(
        config=config,
        runtime=runtime,
        auth=auth,
        reactor=reactor,
        agents=runtime if agents is None else agents,
        sessions=runtime.sessions if sessions is None else sessions,
        log_buffer=log_buffer,
        started_at_ms=started_at_ms,
    )
