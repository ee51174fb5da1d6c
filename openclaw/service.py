"""twistd wiring: ``Options`` + ``makeService``, and ``build_service`` for embedders.

``twistd -n openclaw`` (or ``twist openclaw``) parses :class:`Options`, loads the
JSON5 config and calls :func:`makeService`, which returns the
:class:`GatewayService` tree. Embedders call :func:`build_service` with a
loaded config and their reactor, and attach the result to their application.
"""

# mypy: allow-untyped-calls
# (MultiService's methods are unannotated and are called through super() here.)

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    fail,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorFromThreads,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from openclaw import __version__
from openclaw.agents.types import AgentRuntime
from openclaw.config import ConfigError, load_config, startup_problems
from openclaw.config.live import ReloadResult
from openclaw.config.model import Config
from openclaw.config.secret_values import configured_secrets
from openclaw.core.fd_limit import descriptors_needed, ensure_fd_limit
from openclaw.core.gc_tuning import tune_collector_when_running
from openclaw.core.logformat import SecretScrubber
from openclaw.gateway.assembly import Gateway, build_gateway, start_session_upkeep
from openclaw.gateway.startup_report import log_startup
from openclaw.listen import (
    ListenError,
    StartupFailedError,
    endpoint_is_loopback,
    listen_endpoints,
)
from openclaw.sessions.statelock import StateDirLockedError, StateLock
from openclaw.workers.plan import WorkersError, resolve_worker_count, workers_problems

log = Logger()

#: On stop, how long closing connections may take to flush their last bytes.
CONNECTION_FLUSH_SECONDS = 5.0


class BindFailedError(Exception):
    """A listening endpoint could not be bound (port in use, bad interface)."""


class GatewayService(MultiService):
    """The gateway: its listeners, runtime and WebSocket clients, started and
    stopped in the right order.

    Stopping: readiness turns to "stopping" (``drainSeconds`` with the listener
    still open), listeners stop accepting, new runs are refused, and in-flight
    HTTP requests and runs (WebSocket ones too) get ``shutdownGraceSeconds`` to
    finish; the runs still active are then cancelled (streams end with an error
    frame and ``[DONE]``, WebSocket callers get their ``aborted`` final) and
    settle on disk; last, WebSocket clients get a ``shutdown`` event and close
    1012.
    """

    def __init__(
        self,
        *,
        config: Config,
        gateway: Gateway,
        reactor: IReactorCore,
        endpoints: Sequence[str],
        standalone: bool = False,
        metrics_endpoints: Sequence[str] = (),
        scrubber: SecretScrubber | None = None,
        served_endpoints: Sequence[str] = (),
    ) -> None:
        """
        :param metrics_endpoints: listeners serving only ``GET /metrics``
            (``--metrics-listen``), without the gateway's auth.
        :param served_endpoints: endpoints bound elsewhere whose connections this
            service serves (a worker: the supervisor's); a reload judges them as
            its own (auth ``none`` beyond loopback is refused).
        :param scrubber: the log observer masking secrets; a reload adds the
            new config's secrets to it.
        """
        super().__init__()
        self.config = config
        self.gateway = gateway
        self.endpoints = tuple(endpoints)
        self._served_endpoints = tuple(served_endpoints)
        self._scrubber = scrubber
        # ``gateway.reload`` over the WebSocket does what SIGHUP does.
        gateway.websocket.services.reload = self.reload

        self._reactor = reactor
        #: The same reactor's timers (drain grace, connection flush, readiness).
        self._clock = IReactorTime(reactor)
        #: Run by twistd/twist: own the process (signals, exit status).
        self._standalone = standalone
        self._stopping_by_signal = False
        self.listeners: list[IService] = []
        self._bound: list[_RecordingEndpoint] = []
        for index, description in enumerate(self.endpoints):
            listener = strports.service(description, gateway.site, reactor=reactor)
            # Keep the Deferred of its listen() call (the service keeps it privately).
            recording = listener.endpoint = _RecordingEndpoint(listener.endpoint)
            self._bound.append(recording)
            listener.setName(f"listen[{index}]:{description}")
            listener.setServiceParent(self)
            self.listeners.append(listener)
        #: Listeners from this index on serve only the metrics (logged as such).
        self._scrape_from = len(self._bound)
        for index, description in enumerate(metrics_endpoints):
            scrape = strports.service(description, metrics_site(gateway, reactor), reactor=reactor)
            recording = scrape.endpoint = _RecordingEndpoint(scrape.endpoint)
            self._bound.append(recording)
            scrape.setName(f"metrics[{index}]:{description}")
            scrape.setServiceParent(self)
            self.listeners.append(scrape)

    def privilegedStartService(self) -> None:
        """Bind every endpoint now, so a bind failure stops start-up."""
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            self._bind_failed(e)

    def startService(self) -> None:
        """Start listening (when not done already), then report ready."""
        try:
            super().startService()
        except CannotListenError as e:
            self._bind_failed(e)
        if self.gateway.log_buffer is not None:
            globalLogPublisher.addObserver(self.gateway.log_buffer)
        log_startup(self.config, self.gateway.runtime.agents)
        start_session_upkeep(self.gateway.runtime)
        self.gateway.readiness.mark_ready(self._clock)

        if self._standalone:
            # "listening on" is the ready line scripts wait for: only say it
            # once SIGTERM is ours, or an early SIGTERM would kill us with 143.
            self._reactor.callWhenRunning(self._install_signal_handlers)
        else:
            self.listening().addCallback(self._log_listening)

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the reactor *without* re-raising the signal.

        The reactor's own handlers make twistd exit with the signal's status
        (143); a gateway asked to stop that drains cleanly exits 0.
        """

        def stop(signum: int, frame: object) -> None:
            if self._stopping_by_signal:
                return
            self._stopping_by_signal = True
            log.info("received signal {signum}, stopping", signum=signum)
            IReactorFromThreads(self._reactor).callFromThread(self._reactor.stop)

        def hangup(signum: int, frame: object) -> None:
            log.info("received SIGHUP, reloading the config")
            IReactorFromThreads(self._reactor).callFromThread(self.reload)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        signal.signal(signal.SIGHUP, hangup)
        self.listening().addCallback(self._log_listening)

    def reload(self) -> ReloadResult:
        """Re-read the config file and apply it to new work (SIGHUP,
        ``openclaw gateway reload``); an invalid file is refused and logged."""
        live = self.gateway.live
        if live is None:
            return ReloadResult(ok=False, problems=("this gateway has no live config",))
        result = live.reload(check=self._reload_problems)
        if result.ok:
            self.config = live.current
            if self._scrubber is not None:
                self._scrubber.add(configured_secrets(live.current))
        if self.gateway.metrics is not None:
            self.gateway.metrics.config_reloads.labels("ok" if result.ok else "refused").inc()
        return result

    def _reload_problems(self, config: Config) -> list[str]:
        """What the listeners already bound make unacceptable in a new config."""
        if config.gateway.auth.mode == "none" and not all(
            endpoint_is_loopback(e) for e in (*self.endpoints, *self._served_endpoints)
        ):
            return [
                "gateway.auth.mode none is refused while listening beyond loopback "
                "(set a token or password, or bind to loopback)"
            ]
        return []

    def listening(self) -> Deferred[list[IAddress]]:
        """The bound addresses, once every listener is up (port 0 resolved)."""
        waits = [bound.listening or fail(RuntimeError("not listening")) for bound in self._bound]
        # Each waiter is chained through a fresh Deferred so callers never
        # consume the listener's own result.
        chained = [_observe(w).addCallback(lambda port: port.getHost()) for w in waits]
        return gatherResults(chained)

    def _log_listening(self, addresses: list[IAddress]) -> None:
        for index, address in enumerate(addresses):
            host = getattr(address, "host", None)
            port = getattr(address, "port", None)
            where = f"{host}:{port}" if host is not None else _socket_name(address)
            if index >= self._scrape_from:
                log.info("metrics (GET /metrics, no auth) listening on {address}", address=where)
                continue
            log.info(
                "openclaw gateway {version} listening on {address}",
                version=__version__,
                address=where,
            )

    def _bind_failed(self, error: CannotListenError) -> None:
        message = (
            f"openclaw: cannot listen on {error.interface or '*'}:{error.port}: {error.socketError}"
        )
        if self._standalone:
            raise StartupFailedError(message)
        raise BindFailedError(message) from error

    @inlineCallbacks
    def stopService(self) -> Any:
        """Drain and stop, in the order the class docstring gives."""
        gateway = self.gateway
        gateway.readiness.mark_stopping()
        drain = self.config.gateway.drain_seconds
        if drain > 0 and self.running:
            # /readyz says 503 and new requests are refused while the
            # listener stays open, so load balancers notice and move away.
            log.info(
                "draining for {seconds}s: /readyz answers 503, new requests get 503",
                seconds=drain,
            )
            yield deferLater(self._clock, drain, lambda: None)
        grace = self.config.gateway.shutdown_grace_seconds
        log.info("openclaw gateway stopping (grace {grace}s)", grace=grace)

        yield DeferredList([maybeDeferred(s.stopService) for s in self.listeners])
        self.running = False
        runtime = gateway.runtime
        runtime.refuse_new_runs()
        # WebSocket clients stay connected through the grace period so their
        # runs can finish and answer; they are closed after the runtime stops.
        try:
            yield _all_settled(gateway.site.in_flight.drained(), runtime).addTimeout(
                grace, self._clock
            )
        except DeferredTimeoutError:
            log.warn(
                "{requests} HTTP requests and {runs} runs still running after the grace"
                " period; cancelling",
                requests=len(gateway.site.in_flight),
                runs=len(runtime.active_runs()),
            )
        yield runtime.shutdown()
        yield gateway.websocket.shutdown("gateway stopping")
        # Cancelled streams have written their error frame and [DONE]; close
        # every connection gracefully so those bytes reach the clients before
        # the reactor stops (it would drop unflushed buffers).
        yield gateway.site.connections.close_all(self._clock, CONNECTION_FLUSH_SECONDS)
        if gateway.log_buffer is not None:
            globalLogPublisher.removeObserver(gateway.log_buffer)
        log.info("openclaw gateway stopped")


@implementer(IStreamServerEndpoint)
class _RecordingEndpoint:
    """An endpoint that keeps the Deferred of its ``listen`` call public.

    ``StreamServerEndpointService`` holds that Deferred only in a private
    attribute; wrapping its public ``endpoint`` is how :meth:`listening`
    learns the bound port without reading it.
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        #: The pending or bound port, once the service started listening.
        self.listening: Deferred[IListeningPort] | None = None

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.listening = self._endpoint.listen(protocolFactory)
        return self.listening


def metrics_site(gateway: Gateway, reactor: IReactorCore) -> IProtocolFactory:
    """The ``--metrics-listen`` site: the gateway's metrics, nothing else (they
    count from start-up whatever ``endpoints.metrics`` says)."""
    from openclaw.gateway.http.metrics_endpoint import scrape_site

    return scrape_site(gateway.enable_metrics(), IReactorTime(reactor))


def _observe(source: Deferred[IListeningPort]) -> Deferred[IListeningPort]:
    """A Deferred with ``source``'s result that leaves ``source`` untouched."""
    result: Deferred[IListeningPort] = Deferred()

    def relay(value: object) -> object:
        if isinstance(value, Failure):
            result.errback(value)
        else:
            result.callback(value)  # type: ignore[arg-type]
        return value

    source.addBoth(relay)
    return result


def build_service(
    config: Config,
    reactor: IReactorCore,
    *,
    endpoints: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> GatewayService:
    """The gateway as a ``MultiService`` to attach to an existing application.

    ``endpoints`` are Twisted server endpoint strings; by default the config's
    ``gateway.port`` / ``gateway.bind`` (after ``$OPENCLAW_GATEWAY_PORT``).
    """
    if endpoints is None:
        endpoints = listen_endpoints(
            cli_listen=(),
            cli_port=None,
            cli_bind=None,
            env=os.environ if env is None else env,
            gateway=config.gateway,
        )
    gateway = build_gateway(config, IReactorTime(reactor))
    return GatewayService(config=config, gateway=gateway, reactor=reactor, endpoints=endpoints)


class Options(usage.Options):
    """Command-line options of ``twistd openclaw`` and ``openclaw gateway run``."""

    synopsis = "[--config PATH] [--port N] [--bind loopback|lan|HOST] [--listen ENDPOINT ...]"
    longdesc = (
        "Run the OpenClaw-compatible gateway: OpenAI chat completions over HTTP and the "
        "OpenClaw WebSocket protocol, on one port."
    )
    optParameters = [
        [
            "config",
            "c",
            None,
            "JSON5 config file (default: $OPENCLAW_CONFIG_PATH, "
            "$OPENCLAW_STATE_DIR/openclaw.json, ~/.openclaw/openclaw.json).",
        ],
        ["port", "p", None, "TCP port (beats $OPENCLAW_GATEWAY_PORT and gateway.port).", int],
        ["bind", "b", None, "loopback, lan or a host/IP to bind (default: gateway.bind)."],
        [
            "workers",
            "w",
            None,
            "Worker processes sharing the port: N or auto (default: gateway.workers, 1).",
        ],
    ]

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self["listen"] = []
        self["metrics-listen"] = []
        self._env = os.environ if env is None else env

        self.config: Config | None = None
        #: The config file's text ``config`` was loaded from (None: no file); with
        #: ``--workers`` the workers are handed it, not the path.
        self.config_text: str | None = None
        self.endpoints: list[str] = []
        #: Worker processes (1: this process serves, as always).
        self.workers = 1

    def opt_listen(self, description: str) -> None:
        """Listen on this Twisted endpoint (e.g. tcp:18789:interface=127.0.0.1,
        tcp6:18789:interface=\\:\\:1, unix:/run/openclaw.sock); repeatable; overrides
        --port and --bind."""
        self["listen"].append(description)

    def opt_metrics_listen(self, description: str) -> None:
        """Serve GET /metrics (no auth) on this Twisted endpoint too, e.g.
        tcp:9464:interface=127.0.0.1; repeatable."""
        self["metrics-listen"].append(description)

    def postOptions(self) -> None:
        """Load the config and decide the endpoints; config problems exit 1."""
        port = self["port"]
        if port is not None and not 0 < port < 65536:
            raise usage.UsageError(f"--port must be 1..65535, got {port}")
        try:
            loaded = load_config(self["config"], env=self._env)
        except ConfigError as e:
            # A near-miss key ("did you mean") often explains the problem.
            _exit_with_problems([*e.problems, *(f"warning: {w}" for w in e.warnings)])

        for warning in loaded.warnings:
            log.warn("config: {warning}", warning=warning)
        config = loaded.config
        # The bind check is made below on the endpoints actually used (--bind and
        # --listen override gateway.bind), so startup_problems sees loopback.
        problems = list(
            startup_problems(
                attrs.evolve(config, gateway=attrs.evolve(config.gateway, bind="loopback"))
            )
        )
        try:
            self.endpoints = listen_endpoints(
                cli_listen=self["listen"],
                cli_port=port,
                cli_bind=self["bind"],
                env=self._env,
                gateway=config.gateway,
            )
        except ListenError as e:
            problems.append(str(e))
        if config.gateway.auth.mode == "none" and not all(
            endpoint_is_loopback(e) for e in self.endpoints
        ):
            problems.append(
                "refusing to listen beyond loopback with gateway.auth.mode none "
                "(set a token or password, or bind to loopback)"
            )
        try:
            self.workers = resolve_worker_count(self["workers"], config.gateway.workers)
        except WorkersError as e:
            problems.append(str(e))
        else:
            problems += workers_problems(config, self.workers, self.endpoints, self._env)
        if problems:
            _exit_with_problems(dict.fromkeys(problems))
        self.config = config
        self.config_text = loaded.text


def _exit_with_problems(problems: Any) -> Any:
    """One line per problem on stderr, exit status 1, no traceback."""
    for problem in problems:
        sys.stderr.write(f"openclaw: {problem}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _check_endpoints(reactor: Any, descriptions: Sequence[str]) -> None:
    """Every ``--listen`` / ``--metrics-listen`` string must parse (an unknown
    type, a bad port, a missing TLS key file), or exit 1 with one line each."""
    problems = []
    for description in descriptions:
        try:
            serverFromString(reactor, description)
        except (ValueError, OSError, KeyError) as e:
            detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
            where = getattr(e, "filename", None)
            problems.append(f"--listen {description}: {detail}" + (f": {where}" if where else ""))
    if problems:
        _exit_with_problems(problems)


def _check_redis(config: Config) -> None:
    """``session.store: "redis"``: Redis must answer now, or exit 1 with one line."""
    from openclaw.sessions.redis.backend import RedisConfigError, probe, redis_url

    try:
        probe(redis_url(config))
    except (RedisConfigError, ConnectionError) as e:
        _exit_with_problems([str(e)])


def makeService(options: Options) -> IService:
    """twistd entry point: the service tree for the parsed options.

    The process takes the state-directory lock first (a second gateway or
    ``openclaw agent --local`` on the same directory stops with one line);
    with ``--workers N`` > 1 it becomes the workers' supervisor.
    """
    from twisted.internet import reactor

    assert options.config is not None
    _check_endpoints(reactor, [*options.endpoints, *options["metrics-listen"]])
    try:
        lock = StateLock.acquire(options.config.state_dir, "gateway")
    except StateDirLockedError as e:
        _exit_with_problems([f"{e}; stop it or use another OPENCLAW_STATE_DIR"])
    except OSError as e:
        # A file where the directory should be, a path under /proc, no permission.
        where = e.filename or options.config.state_dir
        _exit_with_problems(
            [f"state directory {options.config.state_dir}: cannot use {where}: {e.strerror or e}"]
        )
    if options.config.session.store == "redis":
        _check_redis(options.config)
    reactor.callWhenRunning(lock.record_owner)  # the pid after twistd's daemonizing fork
    tune_collector_when_running(reactor)
    # Descriptors for every allowed connection: raised to the hard limit if need be.
    _, short = ensure_fd_limit(descriptors_needed(options.config.gateway.max_connections))
    if short is not None:
        log.warn("{problem}", problem=short)
    reactor.addSystemEventTrigger("after", "shutdown", lock.release)
    # First observer of the global publisher: every later one (the log file,
    # logs.tail) sees events with the configured secrets masked.
    scrubber = SecretScrubber(configured_secrets(options.config))
    globalLogPublisher.addObserver(scrubber)
    if options.workers > 1:
        from openclaw.workers.supervisor import build_supervisor

        return build_supervisor(
            options.config,
            options.config_text,
            reactor,
            options.endpoints,
            options.workers,
            scrubber=scrubber,
        )
    gateway = build_gateway(options.config, reactor)
    return GatewayService(
        config=options.config,
        gateway=gateway,
        reactor=reactor,
        endpoints=options.endpoints,
        standalone=True,
        metrics_endpoints=options["metrics-listen"],
        scrubber=scrubber,
    )


def _all_settled(requests: Deferred[None], runtime: AgentRuntime) -> Deferred[None]:
    """Fires once the in-flight HTTP requests are done and every active run
    has settled (runs are refused meanwhile, so the set only shrinks)."""
    runs = [run.result for run in runtime.active_runs()]
    waits: list[Deferred[Any]] = [requests, *runs]
    return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)


def _socket_name(address: IAddress) -> str:
    """A UNIX socket's path as text (Twisted keeps it as bytes)."""
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        return os.fsdecode(name)
    return str(name if name is not None else address)


__all__ = [
    "BindFailedError",
    "GatewayService",
    "Options",
    "build_service",
    "makeService",
]
