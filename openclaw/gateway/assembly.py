"""Assembles the gateway's pieces into one Site: the only wiring module of the
gateway package (everything else receives its collaborators)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import LogEvent

from openclaw.agents.types import AgentRuntime
from openclaw.config.live import LiveConfig
from openclaw.config.model import Config
from openclaw.config.secret_values import configured_secrets
from openclaw.core.availability import ReportsAvailability
from openclaw.core.metrics import Metrics
from openclaw.core.relay import ProvidesAuthPeers
from openclaw.core.secret_values import SecretValues
from openclaw.core.textguard import scrub_text
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.conn_limits import AddressLimits
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.http.cors import BrowserOriginGuard, CorsPolicy
from openclaw.gateway.http.request import GatewaySite
from openclaw.gateway.hygiene import ConnectionLimits, PreAuthSocketLimit
from openclaw.gateway.lifecycle import Readiness
from openclaw.gateway.live import LiveGateway
from openclaw.gateway.observability import RequestObserver, RunMetrics
from openclaw.gateway.resource import GatewayRootResource
from openclaw.gateway.ui import build_control_ui
from openclaw.gateway.ws.logbuffer import LogBuffer, format_log_line
from openclaw.gateway.ws.server import WebSocketGateway, build_ws_gateway
from openclaw.sessions.interface import TranscriptStore

if TYPE_CHECKING:
    from openclaw.gateway.http.image_fetch import HTTPImageFetcher
    from openclaw.gateway.http.responses import ResponsesEndpoint


@frozen
class Gateway:
    """Everything the service needs to run and stop the gateway."""

    config: Config
    runtime: AgentRuntime
    auth: GatewayAuth
    readiness: Readiness
    #: The WebSocket side (Autobahn itself loads on the first upgrade).
    websocket: WebSocketGateway
    root: GatewayRootResource
    site: GatewaySite
    log_buffer: LogBuffer | None
    #: Where this gateway's metrics are made and wired (see :attr:`metrics`).
    metrics_slot: MetricsSlot
    #: The config new work starts with; a reload replaces it.
    live: LiveConfig | None = None

    @property
    def metrics(self) -> Metrics | None:
        """Every Prometheus metric of this gateway (its own registry), or None
        while nothing serves them (``endpoints.metrics`` off, no ``--metrics-listen``)."""
        return self.metrics_slot.current

    def enable_metrics(self) -> Metrics:
        """The gateway's metrics, counting from now on if they were not yet
        (``--metrics-listen`` serves them whatever the config says)."""
        return self.metrics_slot.get()


class RingMasking:
    """The ``logs.tail`` ring's formatter: no configured secret, no lone surrogate.

    It learns the secrets of every config a reload brings (a rotated-in token;
    a rotated-out one stays masked), so the ring does not depend on a
    :class:`~openclaw.core.logformat.SecretScrubber` in front of it having
    learnt them too (an embedder's gateway may have none).
    """

    def __init__(self, secrets: SecretValues) -> None:
        self._secrets = secrets

    def learn(self, config: Config) -> None:
        """Mask ``config``'s secrets from now on, as well as the earlier ones."""
        self._secrets = self._secrets.merged(configured_secrets(config))

    def format(self, event: LogEvent) -> str:
        """One ring line for ``event``, masked."""
        return scrub_text(self._secrets.redact(format_log_line(event)))


class MetricsSlot:
    """The gateway's :class:`Metrics`, made when something first serves them.

    Counting every request has no reader while ``/metrics`` is off, and
    ``prometheus_client`` (0.7 MB of an idle process, issue 16) then need not
    be imported at all. A reload that turns the endpoint on makes them then:
    counters start at that moment, which Prometheus reads as a counter reset.
    """

    def __init__(self, wire: Callable[[Metrics], None]) -> None:
        """:param wire: connects new metrics to the gateway (gauges, run
        events, the request observer)."""
        self._wire = wire
        self.current: Metrics | None = None

    def get(self) -> Metrics:
        """The metrics, made and wired now if they were not yet."""
        if self.current is None:
            self.current = Metrics()
            self._wire(self.current)
        return self.current


def build_gateway(
    config: Config,
    reactor: IReactorTime,
    *,
    runtime: AgentRuntime | None = None,
    log_buffer: LogBuffer | None = None,
    metrics: Metrics | None = None,
    live: LiveConfig | None = None,
) -> Gateway:
    """Build the runtime (unless given), the HTTP and WebSocket sides and the Site."""
    if runtime is None:
        from openclaw.agents.runtime import build_runtime

        runtime = build_runtime(config, reactor)
    if live is None:
        live = LiveConfig(config)
    if log_buffer is None:
        ring = RingMasking(configured_secrets(config))
        live.subscribe(ring.learn)
        log_buffer = LogBuffer(formatter=ring.format)
    http = config.gateway.http
    # A shared session store (Redis) shares the failed-auth budget between instances.
    store = runtime.sessions
    peers = store.auth_peers if isinstance(store, ProvidesAuthPeers) else None
    auth = GatewayAuth(config.gateway.auth, reactor, config.gateway.trusted_proxies, peers)
    readiness = Readiness()
    shared: object = store
    if isinstance(shared, ReportsAvailability):
        # /readyz turns 503 while the shared store (Redis) is unreachable.
        readiness.add_check(shared.unavailable_reason)

    def wire(new: Metrics) -> None:
        new.http_in_flight.set_function(lambda: len(site.in_flight))
        new.ws_connections.set_function(lambda: len(websocket.connections))
        RunMetrics(new, reactor).attach(runtime)
        # Requests already dispatched finish on the observer they started with.
        site.observer = request_observer(new)

    def request_observer(counting: Metrics | None) -> RequestObserver:
        return RequestObserver(
            clock=reactor,
            metrics=counting,
            client_address=auth.client_address,
            control_ui=root.claims_ui,
        )

    slot = MetricsSlot(wire)
    if metrics is None and config.gateway.http.metrics.enabled:
        metrics = Metrics()
    # Wired below, once the site exists.
    slot.current = metrics

    def http_resource(current: Config) -> Any:
        enabled = current.gateway.http.metrics.enabled
        app = build_http_app(
            current, runtime=runtime, auth=auth, readiness=readiness, reactor=reactor,
            metrics=slot.get() if enabled else slot.current,
        )  # fmt: skip
        return app.resource()

    websocket = build_ws_gateway(
        config=config,
        runtime=runtime,
        auth=auth,
        reactor=reactor,
        log_buffer=log_buffer,
        started_at_ms=int(reactor.seconds() * 1000),
    )
    preauth = PreAuthSocketLimit(
        max_per_address=config.gateway.ws.max_preauth_sockets_per_address,
        connections=lambda: websocket.connections,
        client_address=auth.client_address,
    )
    root = GatewayRootResource(
        http=http_resource(config),
        websocket=websocket.resource(),
        preauth_limit=preauth,
        control_ui=build_control_ui(config.gateway.control_ui),
    )
    site = GatewaySite(
        root,
        http_config=http,
        clock=reactor,
        reactor=reactor,
        limits=connection_limits(config),
        cors=CorsPolicy.from_origins(
            http.cors.allowed_origins, max_age_seconds=http.cors.max_age_seconds
        ),
        origin_guard=(
            # Mode none: a foreign web page must not be able to drive agents.
            BrowserOriginGuard.from_origins(
                config.gateway.control_ui.allowed_origins + http.cors.allowed_origins,
                auth.client_address,
            )
            if config.gateway.auth.mode == "none"
            else None
        ),
        address_limits=AddressLimits(
            max_per_address=http.max_connections_per_address,
            reserved=http.reserved_connections,
            light_threshold=http.light_address_connections,
        ),
        # Trusted proxies carry many clients; their budgets are per client.
        exempt_address=auth.is_trusted_proxy,
    )
    site.observer = request_observer(None)
    site.drain = readiness
    if metrics is not None:
        wire(metrics)
    live.subscribe(
        LiveGateway(
            auth=auth,
            root=root,
            site=site,
            runtime=runtime,
            http_resource=http_resource,
            ws_services=websocket.services,
            revoke_stale_auth=websocket.revoke_stale_auth,
        ).apply
    )
    site.body_auth = auth.check_request
    return Gateway(
        config=config,
        runtime=runtime,
        auth=auth,
        readiness=readiness,
        websocket=websocket,
        root=root,
        site=site,
        log_buffer=log_buffer,
        metrics_slot=slot,
        live=live,
    )


def build_http_app(
    config: Config,
    *,
    runtime: AgentRuntime,
    auth: GatewayAuth,
    readiness: Readiness,
    reactor: IReactorTime,
    metrics: Metrics | None,
) -> GatewayHttpApp:
    """The HTTP routes for ``config`` (built again on every reload); ``metrics``
    must be given when ``endpoints.metrics`` is on.

    Each endpoint's module is imported when the endpoint is on: an idle
    gateway does not hold the ones it does not serve (issue 16).
    """
    http = config.gateway.http
    chat = None
    models = None
    if config.gateway.http.chat_completions.enabled:
        from openclaw.gateway.http.chat_completions import ChatCompletionsEndpoint

        fetcher = (
            image_fetcher(reactor)
            if config.gateway.http.chat_completions.images.allow_url
            else None
        )
        chat = ChatCompletionsEndpoint(
            config=config, runtime=runtime, auth=auth, clock=reactor, image_fetcher=fetcher
        )
    responses = responses_endpoint(config, runtime, auth, reactor)
    embeddings = None
    if chat is not None or responses is not None:  # OpenClaw serves these with either
        from openclaw.gateway.http.embeddings import EmbeddingsEndpoint
        from openclaw.gateway.http.models import ModelsEndpoint

        models = ModelsEndpoint(runtime=runtime, auth=auth)
        embeddings = EmbeddingsEndpoint(runtime=runtime, auth=auth, clock=reactor)
    metrics_endpoint = None
    if http.metrics.enabled:
        assert metrics is not None, "endpoints.metrics is on: build_gateway makes the metrics"
        from openclaw.gateway.http.metrics_endpoint import MetricsEndpoint

        metrics_endpoint = MetricsEndpoint(metrics, None if http.metrics.auth == "none" else auth)
    return GatewayHttpApp(
        readiness=readiness,
        clock=reactor,
        chat_completions=chat,
        models=models,
        responses=responses,
        embeddings=embeddings,
        metrics=metrics_endpoint,
    )


def responses_endpoint(
    config: Config, runtime: AgentRuntime, auth: GatewayAuth, reactor: IReactorTime
) -> ResponsesEndpoint | None:
    """``POST /v1/responses`` when ``gateway.http.endpoints.responses.enabled``."""
    settings = config.gateway.http.responses
    if not settings.enabled:
        return None
    from openclaw.gateway.http.responses import ResponsesEndpoint

    return ResponsesEndpoint(
        settings=settings,
        runtime=runtime,
        auth=auth,
        clock=reactor,
        image_fetcher=image_fetcher(reactor) if settings.images.allow_url else None,
    )


def image_fetcher(reactor: IReactorTime) -> HTTPImageFetcher:
    """The fetcher of remote ``image_url`` images (``images.allowUrl``)."""
    from openclaw.gateway.http.image_fetch import HTTPImageFetcher

    return HTTPImageFetcher(reactor)


def connection_limits(config: Config) -> ConnectionLimits:
    """The HTTP connection limits of ``gateway.http.*`` and ``gateway.maxConnections``."""
    http = config.gateway.http
    return ConnectionLimits(
        max_header_bytes=http.max_header_bytes,
        max_headers=http.max_headers,
        headers_timeout_seconds=http.headers_timeout_seconds,
        keep_alive_timeout_seconds=http.keep_alive_timeout_seconds,
        max_connections=config.gateway.max_connections,
        unauthenticated_idle_seconds=http.unauthenticated_idle_timeout_seconds,
    )


def build_resource(
    config: Config, runtime: AgentRuntime, reactor: IReactorTime
) -> GatewayRootResource:
    """The root resource alone, to mount at a path of an embedder's own ``Site``.

    It reports ready at once (the embedder's site is already serving), and
    starts the session store's upkeep (archive retention, the disk budget)
    as a started gateway service does. The WebSocket side and the HTTP routes
    are served from wherever it is mounted; serve it from a
    :class:`GatewaySite` to get the body limits and headers. The runtime
    stays the caller's to shut down (which stops the upkeep).
    """
    gateway = build_gateway(config, reactor, runtime=runtime)
    gateway.readiness.mark_ready(reactor)
    start_session_upkeep(runtime)
    return gateway.root


def start_session_upkeep(runtime: AgentRuntime) -> None:
    """Start the session store's upkeep (archive retention, the disk budget)
    once the gateway serves; a store without upkeep is left alone."""
    sessions = runtime.sessions
    if isinstance(sessions, TranscriptStore):
        sessions.start_upkeep()
