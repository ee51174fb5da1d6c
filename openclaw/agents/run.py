"""One agent turn: queued in its session lane, run as an agent loop, recorded.

A :class:`Run` is created by the runtime and returned at once. On the next
reactor turn (so the caller can subscribe first) it waits for its session
lane, then: emits lifecycle ``start``; resolves the session and its history;
appends the user message; loads the agent's workspace and renders its
system prompt; runs the :class:`~openclaw.agents.loop.TurnLoop` (model calls
and built-in tools until the model answers); and finally records the
assistant outcome (complete, failed or aborted) and waits until the store
reports it durable before it emits lifecycle ``end``/``error`` and fires
``result``. Whatever happens, it settles exactly once, and it releases its
lane after the transcript is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

from attrs import evolve
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.broadcast import RunBroadcast
from openclaw.agents.history import History, read_history
from openclaw.agents.loop import LoopDeps, TurnLoop, TurnOutcome
from openclaw.agents.model_step import new_tool_call_id, with_total
from openclaw.agents.registry import (
    AgentSpec,
    ModelRef,
)
from openclaw.agents.session_compaction import ProviderLookup, lookup_provider
from openclaw.agents.toolbox import AgentTools
from openclaw.agents.turn import RunServices, plan_turn
from openclaw.agents.types import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AssistantEvent,
    LifecycleEvent,
    ProviderError,
    ReplyText,
    RunAbortedError,
    RunTimeoutError,
    StopReason,
    ToolCall,
    Usage,
)
from openclaw.agents.workspace import WorkspaceContext
from openclaw.core.unavailable import SharedStateUnavailableError, TurnNotSavedError
from openclaw.sessions.lanes import Release
from openclaw.sessions.reset_policy import resolve_policy

__all__ = [
    "ProviderLookup",
    "Run",
    "RunServices",
    "lookup_provider",
    "new_tool_call_id",
    "with_total",
]

log = Logger()


@runtime_checkable
class WatchesLanes(Protocol):
    """A store whose session lanes can be lost while held (the Redis store: a
    process that stalled past the lock's TTL): the run is told, and stops."""

    def watch_lane(self, session_key: str, lost: Callable[[Exception], None]) -> Callable[[], None]:
        """Call ``lost`` with the error to end the run with; returns the unwatch."""
        ...


RunState = Literal["queued", "running", "done"]
RunStatus = Literal["ok", "error", "aborted", "timeout"]


class Run:
    """The runtime's :class:`~openclaw.agents.types.AgentRun`."""

    def __init__(
        self,
        request: AgentRequest,
        *,
        spec: AgentSpec,
        storage_agent_id: str,
        services: RunServices,
        tools: AgentTools,
        on_settled: Callable[[Run], None],
    ) -> None:
        self.request = request
        self._spec = spec
        self._storage_agent = storage_agent_id
        self._services = services
        self._clock = services.clock
        self._store = services.store
        self._tools = tools
        self._on_settled = on_settled

        self.state: RunState = "queued"
        #: How the run ended: ``ok``, ``error``, ``aborted`` or ``timeout``.
        self.status: RunStatus | None = None
        self.session_id: str | None = None
        self.model_ref: ModelRef | None = None
        self.queued_at = self._now()
        self.started_at: int | None = None
        self.ended_at: int | None = None
        #: The error message of a failed or timed-out run.
        self.error: str | None = None
        self._reply = ReplyText()
        self.usage = Usage()

        self._outcome = RunBroadcast(request.run_id)
        self._paused = False
        self._loop: TurnLoop | None = None
        self._preparing: Deferred[WorkspaceContext] | None = None
        self._history: History | None = None
        #: The session entry's memory flush state, for the loop.
        self._flush_row: object = None
        self._user_recorded = False
        self._release: Release | None = None
        self._exec_call: IDelayedCall | None = None
        self._timeout_call: IDelayedCall | None = None
        self._lane_wait: Deferred[Release] | None = None
        self._unwatch_lane: Callable[[], None] | None = None
        #: Set as soon as any ending begins, so re-entrant calls are no-ops.
        self._ended = False

    # -- AgentRun ----------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def agent_id(self) -> str:
        return self._spec.id

    @property
    def session_key(self) -> str:
        return self.request.session_key

    @property
    def text(self) -> str:
        """The assistant text so far (of every step of the turn)."""
        return str(self._reply)

    @property
    def done(self) -> bool:
        """True once the run has settled (result known, transcript written)."""
        return self.state == "done"

    @property
    def result(self) -> Deferred[AgentResult]:
        """A new Deferred per access; cancelling it detaches only that caller."""
        return self._outcome.result()

    def subscribe(self, listener: Callable[[AgentEvent], None]) -> Callable[[], None]:
        """Deliver later events to ``listener``; the returned callable detaches it."""
        return self._outcome.subscribe(listener)

    def cancel(self) -> None:
        """Abort: the model stream and any running tool are stopped, the turn
        recorded as aborted."""
        if not self._ended:
            self._abort(RunAbortedError("run aborted"), status="aborted")

    def pauseProducing(self) -> None:
        """Hold the model stream and the next model call (or start paused)."""
        if self._ended or self._paused:
            return
        self._paused = True
        if self._loop is not None:
            self._loop.pause()

    def resumeProducing(self) -> None:
        if self._ended or not self._paused:
            return
        self._paused = False
        if self._loop is not None:
            self._loop.resume()

    @property
    def paused(self) -> bool:
        """True while a consumer holds the run paused."""
        return self._paused

    # -- scheduling ------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _queue(self) -> None:
        """Join the session lane (FIFO); runs once, from the runtime."""
        lanes = self._services.lanes
        release = lanes.try_acquire(self.request.session_key)
        if release is not None:
            self._granted(release)
            return
        wait = lanes.acquire(self.request.session_key)
        self._lane_wait = wait
        wait.addCallbacks(self._granted, self._lane_failed)

    def _granted(self, release: Release) -> None:
        self._lane_wait = None
        if self._ended:  # pragma: no cover - cancel removes a queued waiter
            release()
            return
        self._release = release
        # Begin on a later reactor turn: the caller of start() subscribes first.
        self._exec_call = self._clock.callLater(0, self._execute)
        if isinstance(self._store, WatchesLanes):
            self._unwatch_lane = self._store.watch_lane(self.request.session_key, self._lane_lost)

    def _lane_lost(self, error: Exception) -> None:
        """Another process holds the session now: stop the turn, end it failed
        (its reply is not written: the store refuses it)."""
        if not self._ended:
            self._abort(error, status="error")

    def _lane_failed(self, failure: Failure) -> None:
        self._lane_wait = None
        if isinstance(failure.value, CancelledError) or self._ended:
            return
        # Shared lanes can fail (their store is unreachable): the run ends failed.
        self._fail(failure)

    def _execute(self) -> None:
        self._exec_call = None
        if self._ended:  # pragma: no cover - cancel clears the call
            return
        self.state = "running"
        self.started_at = self._now()
        timeout = self._run_timeout()
        if timeout > 0:
            self._timeout_call = self._clock.callLater(timeout, self._timed_out, timeout)
        self._emit(
            LifecycleEvent(
                run_id=self.run_id, phase="start", ts=self.started_at, started_at=self.started_at
            )
        )
        if self._has_ended():
            return
        try:
            self._begin_turn()
        except Exception as e:
            log.failure("run {run_id} could not start", run_id=self.run_id)
            self._fail(_failure(e))
            return
        preparing = self._preparing = self._services.prompts.workspace(
            self._spec, self.request.session_key
        )
        preparing.addCallbacks(self._prepared, self._prepare_failed)

    def _begin_turn(self) -> None:
        """Resolve the session, read its history and record the user message."""
        request = self.request
        entry = self._store.ensure_session(
            self._storage_agent,
            request.session_key,
            cwd=str(self._spec.workspace),
            reset=resolve_policy(
                self._services.config.session, request.session_key, request.channel
            ),
        )
        self.session_id = entry.session_id
        self._flush_row = entry.extra.get("memoryFlush")
        self._history = read_history(
            self._store, self._storage_agent, entry.session_id, self._services.history_limit
        )
        self._store.append_user(
            self._storage_agent,
            entry.session_id,
            run_id=self.run_id,
            text=request.message,
            images=request.images,
            timestamp=self.started_at or self._now(),
        )
        self._user_recorded = True

    def _prepare_failed(self, failure: Failure) -> None:
        self._preparing = None
        if self._ended or isinstance(failure.value, CancelledError):
            return
        log.failure("run {run_id}: the workspace could not be loaded", failure, run_id=self.run_id)
        self._fail(failure)

    def _prepared(self, context: WorkspaceContext) -> None:
        """Render the prompt, then run the loop."""
        self._preparing = None
        if self._ended:
            return
        services = self._services
        try:
            plan = plan_turn(services, self._spec, self.request, self._tools, context)
        except ProviderError as e:
            self._fail(_failure(e))
            return
        except Exception as e:
            log.failure("run {run_id} could not start", run_id=self.run_id)
            self._fail(_failure(e))
            return
        self.model_ref = plan.primary
        assert self.session_id is not None and self._history is not None
        loop = self._loop = TurnLoop(
            self.request,
            LoopDeps(
                clock=self._clock,
                config=services.config,
                registry=services.registry,
                store=self._store,
                providers=services.providers,
                storage_agent=self._storage_agent,
                session_id=self.session_id,
                workspace=context.workspace,
                compactor=services.compactor,
                max_steps=services.max_steps,
                memory_flush_row=self._flush_row,
                run_timeout=self._run_timeout(),
            ),
            system_prompt=plan.system_prompt,
            tools=self._tools,
            history=self._history,
            chain=plan.chain,
            on_text=self._on_text,
            emit=self._emit,
        )
        self._history = None
        if self._paused:
            loop.pause()
        loop.start().addCallbacks(self._turn_ended, self._turn_failed)

    # -- the loop's output -----------------------------------------------------------

    def _on_text(self, delta: str) -> None:
        if self._ended or self.state != "running" or not delta:
            return
        reply = self._reply
        reply.append(delta)
        self._emit(AssistantEvent(self.run_id, delta, reply, self._now(), length=len(reply)))

    # -- endings -------------------------------------------------------------------

    def _turn_ended(self, outcome: TurnOutcome) -> None:
        if self._ended:
            return
        self._ended = True
        loop, self._loop = self._loop, None
        ref = self._loop_model_of(loop)
        self.usage = usage = outcome.usage
        now = self._now()
        recorded = self._record(
            outcome.stop_reason,
            message_usage=loop.message_usage if loop is not None else usage,
            text=outcome.text,
            tool_calls=outcome.tool_calls,
            results=tuple(r.transcript_message(now) for r in outcome.results),
            session_fields=loop.session_fields if loop is not None else None,
        )
        result = AgentResult(
            run_id=self.run_id,
            agent_id=self._spec.id,
            session_key=self.request.session_key,
            session_id=self.session_id or "",
            text=self.text,
            usage=usage,
            stop_reason=outcome.stop_reason,
            pending_tool_calls=outcome.pending,
            started_at=self.started_at or now,
            ended_at=now,
            provider=ref.provider if ref else None,
            model=ref.model if ref else None,
        )
        self._settle_after(
            recorded,
            result,
            LifecycleEvent(
                run_id=self.run_id,
                phase="end",
                ts=now,
                started_at=self.started_at,
                ended_at=now,
                stop_reason=outcome.stop_reason,
                provider=ref.provider if ref else None,
                model=ref.model if ref else None,
            ),
            status="ok",
        )

    def _turn_failed(self, failure: Failure) -> None:
        if self._ended:
            return
        if isinstance(failure.value, CancelledError):
            self._abort(RunAbortedError("model stream was cancelled"), status="aborted")
            return
        self._fail(failure)

    def _fail(self, failure: Failure) -> None:
        self._ended = True
        error = failure.value
        message = (
            error.message
            if isinstance(error, ProviderError)
            else (str(error) or type(error).__name__)
        )
        loop, self._loop = self._loop, None
        ref = self._loop_model_of(loop)
        if loop is not None:
            self.usage = loop.usage
        recorded = self._record(
            "error",
            message_usage=loop.message_usage if loop is not None else Usage(),
            text=loop.step_text if loop else "",
            error=message,
            session_fields=loop.session_fields if loop is not None else None,
        )
        now = self._now()
        self._settle_after(
            recorded,
            failure,
            LifecycleEvent(
                run_id=self.run_id,
                phase="error",
                ts=now,
                started_at=self.started_at,
                ended_at=now,
                error=message,
                stop_reason="error",
                provider=ref.provider if ref else None,
                model=ref.model if ref else None,
            ),
            status="error",
            error=message,
        )

    def _loop_model_of(self, loop: TurnLoop | None) -> ModelRef | None:
        if loop is not None and loop.model_ref is not None:
            self.model_ref = loop.model_ref
        return self.model_ref

    def _run_timeout(self) -> float:
        """The run's time limit in seconds (0: none)."""
        timeout = self.request.timeout_seconds
        return self._spec.timeout_seconds if timeout is None else timeout

    def _timed_out(self, seconds: float) -> None:
        self._timeout_call = None
        if not self._ended:
            self._abort(RunTimeoutError(f"run timed out after {seconds:g}s"), status="timeout")

    def _abort(self, error: Exception, *, status: RunStatus) -> None:
        self._ended = True
        if self._lane_wait is not None:
            wait, self._lane_wait = self._lane_wait, None
            wait.cancel()
        if self._exec_call is not None and self._exec_call.active():
            self._exec_call.cancel()
        self._exec_call = None
        preparing, self._preparing = self._preparing, None
        if preparing is not None:
            preparing.cancel()
        loop, self._loop = self._loop, None
        step_text = ""
        message_usage = Usage()
        if loop is not None:
            # Cancelled first: a tool batch it stops records its calls' results
            # (and a step not recorded yet, with its usage) before the aborted
            # message below, which then carries only what is left.
            loop.cancel()
            step_text = loop.step_text
            message_usage = loop.message_usage
            self.usage = loop.usage
            self._loop_model_of(loop)
        message = str(error)
        stop: StopReason = "error" if status == "error" else "aborted"
        recorded = self._record(
            stop,
            message_usage=message_usage,
            text=step_text,
            error=message,
            session_fields=loop.session_fields if loop is not None else None,
        )
        now = self._now()
        failed = status != "aborted"  # timed out, or the session's lane was lost
        self._settle_after(
            recorded,
            _failure(error),
            LifecycleEvent(
                run_id=self.run_id,
                phase="error" if failed else "end",
                ts=now,
                started_at=self.started_at,
                ended_at=now,
                error=message if failed else None,
                aborted=stop == "aborted",
                stop_reason=stop,
                provider=self.model_ref.provider if self.model_ref else None,
                model=self.model_ref.model if self.model_ref else None,
            ),
            status=status,
            error=message if failed else None,
        )

    def _record(
        self,
        stop: StopReason,
        *,
        message_usage: Usage,
        text: str,
        tool_calls: tuple[ToolCall, ...] = (),
        results: tuple[dict[str, object], ...] = (),
        error: str | None = None,
        session_fields: dict[str, object] | None = None,
    ) -> Deferred[SharedStateUnavailableError | None]:
        """Append the assistant outcome to the transcript (only if the turn began).

        Fires once the store reports the lines durable (never fails: a store
        error is logged and the run settles all the same; with the shared store
        unreachable it fires with that error, and the run settles as failed).
        """
        if not self._user_recorded or self.session_id is None:
            return succeed(None)
        self._user_recorded = False
        ref = self.model_ref
        try:
            written = self._store.finish_turn(
                self._storage_agent,
                self.request.session_key,
                self.session_id,
                run_id=self.run_id,
                text=text,
                timestamp=self._now(),
                usage=self.usage,
                message_usage=message_usage,
                stop_reason=stop,
                tool_calls=tool_calls,
                error=error,
                provider=ref.provider if ref else None,
                model=ref.model if ref else None,
                api=self._services.registry.provider_api(ref.provider) if ref else None,
                channel=self.request.channel,
                results=results,
                session_fields=session_fields,
            )
        except Exception:
            log.failure("run {run_id}: could not record the turn", run_id=self.run_id)
            return succeed(None)

        def unsynced(failure: Failure) -> SharedStateUnavailableError | None:
            error = failure.value
            if isinstance(error, SharedStateUnavailableError):
                # The shared store went away: the answer is not saved, so the
                # run must not end as a success (see _settle_after).
                log.warn("run {run_id}: turn not saved: {why}", run_id=self.run_id, why=error)
                return error
            if isinstance(error, OSError):
                # A full disk or an I/O error: the same promise ("answered only
                # once it is on disk") fails the same way.
                why = f"{error.strerror or error}"
                log.error(
                    "run {run_id}: could not write the turn to disk: {why}",
                    run_id=self.run_id,
                    why=why,
                )
                return TurnNotSavedError(f"the turn could not be written: {why}")
            log.failure(
                "run {run_id}: could not write the turn to disk", failure, run_id=self.run_id
            )
            return None

        stored: Deferred[SharedStateUnavailableError | None] = written.addCallback(lambda _: None)
        return stored.addErrback(unsynced)

    def _settle_after(
        self,
        recorded: Deferred[SharedStateUnavailableError | None],
        outcome: AgentResult | Failure,
        event: LifecycleEvent,
        *,
        status: RunStatus,
        error: str | None = None,
    ) -> None:
        """Settle once the transcript is written (at once when it already is), so
        nobody is told of a turn the disk does not hold yet."""

        def settle(stored: object) -> None:
            if isinstance(stored, SharedStateUnavailableError) and status == "ok":
                message = (
                    str(stored)
                    if isinstance(stored, TurnNotSavedError)
                    else "the turn could not be saved: the session store is unavailable"
                )
                failed = evolve(event, phase="error", error=message, stop_reason="error")
                self._settle(_failure(stored), failed, status="error", error=message)
                return
            self._settle(outcome, event, status=status, error=error)

        def bug(failure: Failure) -> None:
            log.failure("run {run_id}: settling failed", failure, run_id=self.run_id)

        recorded.addCallback(settle).addErrback(bug)

    def _settle(
        self,
        outcome: AgentResult | Failure,
        event: LifecycleEvent,
        *,
        status: RunStatus,
        error: str | None = None,
    ) -> None:
        self.state = "done"
        self.status = status
        self.error = error
        self.ended_at = event.ts
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self._emit(event)
        self._outcome.settle(outcome)
        # Kept for agent.wait: drop what can be large (base64 images, history).
        if self.request.images:
            self.request = evolve(self.request, images=())
        self._history = None
        unwatch, self._unwatch_lane = self._unwatch_lane, None
        if unwatch is not None:
            unwatch()
        release, self._release = self._release, None
        if release is not None:
            release()
        self._on_settled(self)

    def _has_ended(self) -> bool:
        """Whether an ending began (a method, so checks after callbacks are not
        narrowed away by the type checker)."""
        return self._ended

    def _emit(self, event: AgentEvent) -> None:
        self._outcome.emit(event)


def _failure(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
