"""The agent runtime: the one code path behind HTTP, WebSocket and the CLI.

``Runtime.start(request)`` validates the agent, creates a :class:`Run`, tells
the run observers, queues the run in its session lane and returns it at once.
The runtime keeps active runs, and recently finished ones for ``agent.wait``;
it exposes the agent registry and the session store for the read-only
WebSocket methods (``agents.list``, ``sessions.list``, ``chat.history``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from attrs import evolve
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.admission import GatedLanes, RunAdmission, default_max_concurrent
from openclaw.agents.approvals import ApprovalBroker
from openclaw.agents.compaction import CompactionResult
from openclaw.agents.embeddings import Embedder
from openclaw.agents.fallback import candidate_models
from openclaw.agents.history import DEFAULT_HISTORY_LIMIT, read_history
from openclaw.agents.loop import DEFAULT_MAX_STEPS
from openclaw.agents.model_health import ModelHealth
from openclaw.agents.model_override import resolve_override
from openclaw.agents.providers.pool import UpstreamPool
from openclaw.agents.registry import AgentRegistry, AgentSpec, ProviderCache
from openclaw.agents.run import ProviderLookup, Run, RunServices
from openclaw.agents.session_compaction import SessionCompactor
from openclaw.agents.toolbox import Toolbox, check_client_tools
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.catalog import CatalogReactor, ToolServices
from openclaw.agents.tools.exec_grants import APPROVALS_FILENAME, ExecGrants
from openclaw.agents.turn import PromptMaker
from openclaw.agents.types import (
    AgentRequest,
    AgentRun,
    AgentRuntime,
    CompactionReport,
    DuplicateRunError,
    EmbeddingRequest,
    EmbeddingResult,
    RuntimeClosedError,
)
from openclaw.config.model import Config
from openclaw.core.recent import RecentlyFinished
from openclaw.core.relay import ApprovalRelay, ProvidesApprovalRelay
from openclaw.sessions.disk_budget import DiskBudget
from openclaw.sessions.entry import agent_id_for_session
from openclaw.sessions.fileio import BlockingIO, InlineIO, blocking_io_for
from openclaw.sessions.interface import TranscriptStore
from openclaw.sessions.lanes import Release, SessionLanes
from openclaw.sessions.store import SessionStore

log = Logger()

#: Finished runs kept for ``agent.wait`` / ``get_run``: at most this many ...
KEEP_FINISHED_RUNS = 1000
#: ... and for at most this long (seconds).
KEEP_FINISHED_SECONDS = 600.0


class Runtime:
    """The :class:`~openclaw.agents.types.AgentRuntime` implementation."""

    def __init__(
        self,
        config: Config,
        *,
        clock: IReactorTime,
        providers: ProviderLookup,
        store: TranscriptStore | None = None,
        registry: AgentRegistry | None = None,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        keep_finished: int = KEEP_FINISHED_RUNS,
        keep_finished_seconds: float = KEEP_FINISHED_SECONDS,
        pool: UpstreamPool | None = None,
        tool_services: ToolServices | None = None,
        io: BlockingIO | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        approvals: ApprovalBroker | None = None,
        lanes: SessionLanes | None = None,
    ) -> None:
        """
        :param config: the gateway configuration (agents, models, session, state dir).
        :param clock: time for timeouts, timestamps and scheduling (the reactor).
        :param providers: ``provider id -> ModelProvider``, as a mapping or a
            callable raising KeyError for unknown ids (see :class:`ProviderCache`).
        :param store: the session store; default: a :class:`SessionStore` under
            ``config.state_dir`` with ``config.session.fsync``, working inline
            and writing the index once per reactor turn (what tests want;
            :func:`build_runtime` makes the gateway's, which coalesces writes
            and syncs on a thread pool).
        :param history_limit: stored messages sent to the model per turn, at most.
        :param pool: an HTTP connection pool the runtime owns: its cached
            connections are closed on shutdown.
        :param tool_services: what the built-in tools run on (reactor, process
            registry, sessions view, approver, secrets); None: agents have no
            built-in tools (:func:`build_runtime` always passes them).
        :param io: where workspace files are read (default inline).
        :param max_steps: model calls one turn may make at most.
        :param approvals: the exec approval broker the tools' approver is (so
            operator clients see and answer its requests); default a new one.
        """
        self.config = config
        self.clock = clock
        self.providers = providers
        self.registry = registry if registry is not None else AgentRegistry(config)
        self.store: TranscriptStore = (
            store
            if store is not None
            else SessionStore(
                config.state_dir, clock=clock, fsync=config.session.fsync, index_flush_delay=0.0
            )
        )
        # Load each configured agent's index now: sessions a crash left out of
        # it are recovered at start-up, not on some later request.
        for agent_id in self.registry.agent_ids:
            try:
                self.store.load_agent(agent_id)
            except OSError:
                log.failure("could not load the sessions of agent {agent_id}", agent_id=agent_id)
        # Session lanes (default in-process; the Redis backend's span processes),
        # whose holders also hold one of OpenClaw's global run slots
        # (agents.defaults.maxConcurrent), with a bounded queue behind them.
        self.admission = RunAdmission(
            max_concurrent=config.agents.defaults.max_concurrent or default_max_concurrent(),
            max_queued=config.gateway.max_queued_runs,
        )
        self.lanes: SessionLanes = GatedLanes(
            self.admission, lanes if lanes is not None else SessionLanes()
        )
        self._history_limit = history_limit
        self._active: dict[str, Run] = {}
        self._finished: RecentlyFinished[Run] = RecentlyFinished(
            clock, max_entries=keep_finished, ttl_seconds=keep_finished_seconds
        )
        self._observers: list[Callable[[AgentRun], None]] = []
        self._closed = False
        self._pool = pool
        self._embedder: Embedder | None = None
        self.toolbox = Toolbox(config, tool_services)
        self._approvals = (
            approvals
            if approvals is not None
            else ApprovalBroker(
                clock,
                expires_after_seconds=config.tools.exec.approval_timeout_seconds,
                relay=approval_relay(self.store),
                grants=ExecGrants(config.state_dir / APPROVALS_FILENAME),
            )
        )
        self._io = io
        self._prompt_io: BlockingIO = io if io is not None else InlineIO()
        health = ModelHealth(clock)
        self._services = RunServices(
            clock=clock,
            config=config,
            registry=self.registry,
            store=self.store,
            providers=providers,
            lanes=self.lanes,
            toolbox=self.toolbox,
            prompts=PromptMaker(config, clock=clock, io=self._prompt_io),
            compactor=SessionCompactor(
                config, clock=clock, store=self.store, providers=providers, health=health
            ),
            history_limit=history_limit,
            max_steps=max_steps,
            health=health,
        )

    # -- AgentRuntime ------------------------------------------------------------

    @property
    def default_agent_id(self) -> str:
        return self.registry.default_agent_id

    @property
    def agent_ids(self) -> Sequence[str]:
        return self.registry.agent_ids

    def start(self, request: AgentRequest) -> Run:
        """Queue a turn and return its run at once.

        Raises UnknownAgentError, DuplicateRunError (run id still active),
        ClientToolConflictError (a client tool named like a built-in one),
        RunQueueFullError (maxConcurrent runs plus a full queue) or
        RuntimeClosedError (after shutdown). Nothing reaches the provider
        before the next reactor turn, so the caller can subscribe first.
        """
        if self._closed:
            raise RuntimeClosedError("the agent runtime is shut down")
        self.lanes.check_available()  # SharedStateUnavailableError: shared store down
        spec = self.registry.get(request.agent_id)
        if request.model_override is not None:  # x-openclaw-model: UnknownModelError
            ref = resolve_override(self.config, self.registry, spec.id, request.model_override)
            request = evolve(request, model_override=str(ref))
        if request.run_id in self._active:
            raise DuplicateRunError(f"run {request.run_id!r} is already active")
        self.admission.check(len(self._active))
        tools = self.toolbox.for_agent(spec.id, spec.entry)
        check_client_tools(request.client_tools, tools)
        run = Run(
            request,
            spec=spec,
            storage_agent_id=agent_id_for_session(request.session_key, spec.id),
            services=self._services,
            tools=tools,
            on_settled=self._settled,
        )
        self._active[run.run_id] = run
        self._finished.forget(run.run_id)
        for observer in list(self._observers):
            try:
                observer(run)
            except Exception:
                log.failure("a run observer failed")
        if not run.done:
            run._queue()
        return run

    def embed(self, request: EmbeddingRequest) -> Deferred[EmbeddingResult]:
        """``/v1/embeddings``: the agent's embedding provider (see agents.embeddings)."""
        if self._embedder is None:
            self._embedder = Embedder(
                self.config, self.registry, reactor=self.clock, pool=self._pool
            )
        return self._embedder.embed(request)

    def get_run(self, run_id: str) -> Run | None:
        """An active run, or one finished within the retention window."""
        run = self._active.get(run_id)
        if run is not None:
            return run
        return self._finished.get(run_id)

    def active_runs(self, session_key: str | None = None) -> Sequence[Run]:
        """Queued or running runs, in start order; optionally of one session."""
        return [
            run
            for run in self._active.values()
            if session_key is None or run.session_key == session_key
        ]

    def observe_runs(self, listener: Callable[[AgentRun], None]) -> Callable[[], None]:
        """Call ``listener`` with each run as it is started, from any ingress."""
        self._observers.append(listener)

        def stop() -> None:
            if listener in self._observers:
                self._observers.remove(listener)

        return stop

    def reconfigure(self, config: Config) -> None:
        """Serve the runs started from now on with ``config`` (a reload): agents,
        models, providers, tool policy, compaction, prompts and embeddings. Running runs keep
        what they started with; the state directory and the session store stay."""
        registry = AgentRegistry(config)
        agents_changed = (config.agents, config.models) != (self.config.agents, self.config.models)
        providers = self.providers
        if isinstance(providers, ProviderCache):
            providers = providers.with_config(config)
        tool_services = self.toolbox.services
        if tool_services is not None:
            tool_services = evolve(tool_services, secrets=config_secrets(config))
        toolbox = Toolbox(config, tool_services)
        self.config, self.registry, self.providers, self.toolbox = (
            config,
            registry,
            providers,
            toolbox,
        )
        if self._embedder is not None:
            self._embedder.reconfigure(config, registry)
        self._services = evolve(
            self._services,
            config=config,
            registry=registry,
            providers=providers,
            toolbox=toolbox,
            prompts=PromptMaker(config, clock=self.clock, io=self._prompt_io),
            compactor=SessionCompactor(
                config,
                clock=self.clock,
                store=self.store,
                providers=providers,
                health=self._services.health,
            ),
        )
        if agents_changed:  # not on a reload that touched only, say, gateway.auth
            log.info("agents reconfigured: {agent_ids}", agent_ids=", ".join(registry.agent_ids))

    @property
    def approvals(self) -> ApprovalBroker:
        """Pending exec approvals (``exec.approval.*`` over the WebSocket)."""
        return self._approvals

    def compact_session(
        self, agent_id: str, session_key: str, *, focus: str | None = None
    ) -> Deferred[CompactionReport]:
        """Compact the session now, in its lane (after any run on it).

        Raises UnknownAgentError; fails with ProviderError (no model, or the
        summary call failed) or CompactionError.
        """
        spec = self.registry.get(agent_id)
        storage = agent_id_for_session(session_key, spec.id)
        candidates = candidate_models(self.config.agents.defaults, spec.entry)
        if not candidates:
            self.registry.model_ref(spec.id)  # raises model_not_configured
        waiting = self.lanes.acquire(session_key)

        def compact(release: Release) -> Deferred[CompactionReport]:
            def done(result: CompactionResult | None) -> CompactionReport:
                if result is None:
                    return CompactionReport(False, reason="nothing older to summarise")
                return CompactionReport(True, result.tokens_before, result.tokens_after)

            def released(outcome: CompactionResult | Failure | None) -> Any:
                release()
                return outcome

            entry = self.store.get_session(storage, session_key)
            if entry is None:
                release()
                return succeed(CompactionReport(False, reason="no such session"))
            history = read_history(self.store, storage, entry.session_id, self._history_limit)
            compacting = self._services.compactor.compact(
                storage,
                entry.session_id,
                history,
                model=candidates[0],
                fallbacks=candidates[1:],
                focus=focus,
            )
            return compacting.addBoth(released).addCallback(done)

        return waiting.addCallback(compact)

    def refuse_new_runs(self) -> None:
        """New runs raise RuntimeClosedError; those already started go on."""
        self._closed = True

    def shutdown(self) -> Deferred[None]:
        """Refuse new runs, abort active ones (recorded as aborted), then close
        the store (pending syncs finish, indexes are written, IO threads end)
        and the connection pool."""
        self._closed = True
        runs = list(self._active.values())
        for run in runs:
            run.cancel()
        # A cancelled run settles once its transcript is written, which with a
        # threaded store is a little later; wait for them all.
        unsettled = [run.result for run in runs if not run.done]
        waiting: Deferred[None] = DeferredList(unsettled, consumeErrors=True).addCallback(
            lambda _: None
        )
        if unsettled:
            # One more reactor turn, so what the runs' consumers wrote when they
            # settled (last SSE frames, [DONE]) leaves before anything closes.
            waiting.addCallback(lambda _: deferLater(self.clock, 0, lambda: None))
        waiting.addCallback(lambda _: self._stop_tools())
        waiting.addCallback(lambda _: self.store.close())

        def close_pool(_: object) -> Deferred[None]:
            pool, self._pool = self._pool, None
            if pool is None:
                return succeed(None)
            closed: Deferred[None] = pool.closeCachedConnections()
            return closed

        return waiting.addCallback(close_pool)

    @property
    def agents(self) -> Sequence[AgentSpec]:
        """The configured agents (from the registry)."""
        return self.registry.agents

    @property
    def sessions(self) -> TranscriptStore:
        """The session store (``sessions.list``, ``chat.history`` read it)."""
        return self.store

    def _stop_tools(self) -> Deferred[None]:
        """Terminate background commands (``exec`` with ``background``) and
        release the tools' IO threads."""
        services = self.toolbox.services
        ended: list[Deferred[object]] = []
        if services is not None:
            ended = [d.addCallback(lambda _: None) for d in services.registry.stop_all()]
        if self._io is not None:
            self._io.stop()
        return DeferredList(ended, consumeErrors=True).addCallback(lambda _: None)

    # -- bookkeeping ---------------------------------------------------------------

    def _settled(self, run: Run) -> None:
        if self._active.get(run.run_id) is run:
            del self._active[run.run_id]
        self._finished.remember(run.run_id, run)
        if run.status != "ok":
            # Successes are logged once by the ingress (the HTTP access line).
            log.info(
                "run {run_id} {status}{error}",
                run_id=run.run_id,
                status=run.status,
                error=f": {run.error}" if run.error else "",
            )


def default_providers(
    config: Config, reactor: IReactorTime, pool: UpstreamPool | None = None
) -> ProviderCache:
    """Providers built from ``models.providers`` on first use (``demo`` always exists).

    ``reactor`` provides time and TCP; ``pool`` holds the upstream connections
    every provider shares.
    """
    from openclaw.agents.providers.factory import build_provider

    return ProviderCache(config, lambda provider: build_provider(provider, reactor, pool))


def build_runtime(
    config: Config,
    reactor: IReactorTime,
    *,
    pool: UpstreamPool | None = None,
    providers: ProviderLookup | None = None,
    store: TranscriptStore | None = None,
) -> Runtime:
    """The runtime as the gateway and ``openclaw agent --local`` use it.

    Without ``pool`` the runtime makes (and on shutdown closes) a persistent
    pool shared by every provider. Without ``store`` it makes the on-disk
    store, whose transcript writes, fsyncs and index writes run on a thread
    pool of its own (inline when ``reactor`` has no threads); shutdown stops
    that pool.
    """
    owned: UpstreamPool | None = None
    if providers is None:
        if pool is None:
            from openclaw.agents.providers.http import make_pool

            pool = owned = make_pool(reactor)
        providers = default_providers(config, reactor, pool)
    lanes: SessionLanes | None = None
    if store is None and config.session.store == "redis":
        from openclaw.sessions.redis.backend import build_redis_backend

        backend = build_redis_backend(config, reactor)
        store, lanes = backend.store, backend.lanes
    if store is None:
        maintenance = config.session.maintenance
        budget = None
        if maintenance.max_disk_bytes is not None and maintenance.high_water_bytes is not None:
            budget = DiskBudget(maintenance.max_disk_bytes, maintenance.high_water_bytes)
        store = SessionStore(
            config.state_dir,
            clock=reactor,
            fsync=config.session.fsync,
            io=blocking_io_for(reactor),
            index_flush_delay=config.session.index_flush_ms / 1000,
            max_entries=maintenance.max_entries,
            maintenance=maintenance.mode,
            archive_retention_seconds=maintenance.archive_retention_seconds,
            disk_budget=budget,
        )
    io = blocking_io_for(reactor)
    approvals = ApprovalBroker(
        reactor,
        expires_after_seconds=config.tools.exec.approval_timeout_seconds,
        relay=approval_relay(store),
        grants=ExecGrants(config.state_dir / APPROVALS_FILENAME),
    )
    tools = default_tool_services(config, reactor, store, io, approvals)
    return Runtime(
        config,
        clock=reactor,
        providers=providers,
        store=store,
        pool=owned,
        tool_services=tools,
        io=io,
        approvals=approvals,
        lanes=lanes,
    )


def approval_relay(store: object) -> ApprovalRelay | None:
    """The instances' shared exec approvals when the store has them (Redis)."""
    return store.approval_relay if isinstance(store, ProvidesApprovalRelay) else None


def config_secrets(config: Config) -> frozenset[str]:
    """Values a tool's environment and output must never carry: the gateway's
    token and password, provider API keys and header values."""
    values: set[str] = set()
    auth = config.gateway.auth
    for value in (auth.token, auth.password):
        if value:
            values.add(value)
    for provider in config.models.providers.values():
        if provider.api_key:
            values.add(provider.api_key)
        values.update(v for v in provider.headers.values() if v)
    return frozenset(values)


def default_tool_services(
    config: Config,
    reactor: IReactorTime,
    store: TranscriptStore,
    io: BlockingIO,
    approvals: ApprovalBroker | None = None,
) -> ToolServices:
    """The built-in tools' dependencies on the gateway's reactor.

    ``reactor`` is the real reactor (it also spawns processes and resolves
    names); a test ``Clock`` gets tools whose file operations work and whose
    ``exec`` / ``web_fetch`` fail when called.
    """
    return ToolServices(
        reactor=cast(CatalogReactor, reactor),
        registry=ProcessRegistry(reactor),
        run_blocking=lambda work: io.run(work),
        sessions=store,
        approver=approvals,
        secrets=config_secrets(config),
    )


if TYPE_CHECKING:

    def _conforms(runtime: Runtime, run: Run) -> tuple[AgentRuntime, AgentRun]:
        """Static proof that Runtime and Run implement the contract."""
        return runtime, run
