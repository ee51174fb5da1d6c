"""One agent turn: queued in its session lane, streamed from a provider, recorded.

A :class:`Run` is created by the runtime and returned at once. On the next
reactor turn (so the caller can subscribe first) it waits for its session
lane, then: emits lifecycle ``start``; resolves the session and its history;
appends the user message; streams the model call; and finally records the
assistant outcome (complete, failed or aborted) and waits until the store
reports it durable before it emits lifecycle ``end``/``error`` and fires
``result``. Whatever happens, it settles exactly once, and it releases its
lane after the transcript is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Literal

from attrs import define, evolve, field
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.broadcast import RunBroadcast
from openclaw.agents.history import load_history
from openclaw.agents.providers.base import (
    ModelCall,
    ModelMessage,
    ModelProvider,
    ModelStream,
    StreamOutcome,
)
from openclaw.agents.registry import AgentRegistry, AgentSpec, ModelRef, ModelResolutionError
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
    ToolEvent,
    Usage,
)
from openclaw.sessions.interface import TranscriptStore
from openclaw.sessions.lanes import Release, SessionLanes

log = Logger()

RunState = Literal["queued", "running", "done"]
RunStatus = Literal["ok", "error", "aborted", "timeout"]
ProviderLookup = Mapping[str, ModelProvider] | Callable[[str], ModelProvider]


def with_total(usage: Usage) -> Usage:
    """Fill ``total`` when the provider left it at 0."""
    if usage.total:
        return usage
    total = usage.input + usage.output + usage.cache_read + usage.cache_write
    return Usage(
        input=usage.input,
        output=usage.output,
        cache_read=usage.cache_read,
        cache_write=usage.cache_write,
        total=total,
    )


def new_tool_call_id() -> str:
    """The id of a tool call the model streamed without one (OpenAI's shape)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def lookup_provider(providers: ProviderLookup, ref: ModelRef) -> ModelProvider:
    """The provider for ``ref``; a ModelResolutionError names the missing id."""
    try:
        if callable(providers):
            return providers(ref.provider)
        return providers[ref.provider]
    except KeyError:
        raise ModelResolutionError(
            f"unknown model provider {ref.provider!r} (model {ref}); add it to models.providers",
            code="unknown_provider",
        ) from None


@define
class _ToolBuilder:
    """A tool call assembled from streamed pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(factory=list)
    started: bool = False


class _Sink:
    """The :class:`StreamSink` handed to the provider; forwards into the run."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def on_text(self, delta: str) -> None:
        self._run._on_text(delta)

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        self._run._on_tool_call(index, call_id, name, arguments_delta)

    def on_usage(self, usage: Usage) -> None:
        self._run._on_usage(usage)


class Run:
    """The runtime's :class:`~openclaw.agents.types.AgentRun`."""

    def __init__(
        self,
        request: AgentRequest,
        *,
        spec: AgentSpec,
        storage_agent_id: str,
        clock: IReactorTime,
        registry: AgentRegistry,
        store: TranscriptStore,
        providers: ProviderLookup,
        lanes: SessionLanes,
        history_limit: int,
        on_settled: Callable[[Run], None],
    ) -> None:
        self.request = request
        self._spec = spec
        self._storage_agent = storage_agent_id
        self._clock = clock
        self._registry = registry
        self._store = store
        self._providers = providers
        self._lanes = lanes
        self._history_limit = history_limit
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
        self._stream: ModelStream | None = None
        self._tools: dict[int, _ToolBuilder] = {}
        self._user_recorded = False
        self._release: Release | None = None
        self._exec_call: IDelayedCall | None = None
        self._timeout_call: IDelayedCall | None = None
        self._lane_wait: Deferred[Release] | None = None
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
        """The assistant text so far."""
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
        """Abort: the provider stream is stopped and the turn recorded as aborted."""
        if not self._ended:
            self._abort(RunAbortedError("run aborted"), status="aborted")

    def pauseProducing(self) -> None:
        """Stop the upstream (or start it paused, if it has not started yet)."""
        if self._ended or self._paused:
            return
        self._paused = True
        if self._stream is not None:
            self._stream.pauseProducing()

    def resumeProducing(self) -> None:
        if self._ended or not self._paused:
            return
        self._paused = False
        if self._stream is not None:
            self._stream.resumeProducing()

    @property
    def paused(self) -> bool:
        """True while a consumer holds the run paused."""
        return self._paused

    # -- scheduling ------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _queue(self) -> None:
        """Join the session lane (FIFO); runs once, from the runtime."""
        release = self._lanes.try_acquire(self.request.session_key)
        if release is not None:
            self._granted(release)
            return
        wait = self._lanes.acquire(self.request.session_key)
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

    def _lane_failed(self, failure: Failure) -> Failure | None:
        self._lane_wait = None
        return None if isinstance(failure.value, CancelledError) else failure

    def _execute(self) -> None:
        self._exec_call = None
        if self._ended:  # pragma: no cover - cancel clears the call
            return
        self.state = "running"
        self.started_at = self._now()
        timeout = self.request.timeout_seconds
        if timeout is None:
            timeout = self._spec.timeout_seconds
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
            stream = self._start_stream()
        except ProviderError as e:
            self._fail(_failure(e))
            return
        except Exception as e:
            log.failure("run {run_id} could not start", run_id=self.run_id)
            self._fail(_failure(e))
            return
        if self._has_ended():
            # A listener cancelled the run while the provider was starting.
            stream.done.addErrback(lambda _: None)
            _stop_quietly(stream)
            return
        self._stream = stream
        if self._paused:
            stream.pauseProducing()
        stream.done.addCallbacks(self._stream_ended, self._stream_failed)

    def _start_stream(self) -> ModelStream:
        """Begin the turn, then make its (first) model call."""
        return self._call_model(self._begin_turn())

    def _begin_turn(self) -> tuple[ModelMessage, ...]:
        """Resolve the session, read its history and record the user message;
        the conversation the model is asked to continue."""
        request = self.request
        entry = self._store.ensure_session(
            self._storage_agent, request.session_key, cwd=str(self._spec.workspace)
        )
        self.session_id = entry.session_id
        history = load_history(
            self._store, self._storage_agent, entry.session_id, self._history_limit
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
        return (
            *history,
            ModelMessage(role="user", content=request.message, images=request.images),
        )

    def _call_model(self, messages: tuple[ModelMessage, ...]) -> ModelStream:
        """One model call over ``messages``, streaming into this run's sink.

        The run's lifecycle (lane, timeout, recording, settling) is separate
        from this step, so a loop of model calls can repeat it.
        """
        request = self.request
        ref = self.model_ref = self._registry.model_ref(self._spec.id)
        provider = lookup_provider(self._providers, ref)
        call = ModelCall(
            model=ref.model,
            messages=messages,
            system_prompt=self._registry.system_prompt(self._spec.id, request.extra_system_prompt),
            tools=request.client_tools,
            stream_params=request.stream_params,
        )
        return provider.stream(call, _Sink(self))

    # -- sink --------------------------------------------------------------------

    def _on_text(self, delta: str) -> None:
        if self._ended or self.state != "running" or not delta:
            return
        reply = self._reply
        reply.append(delta)
        self._emit(AssistantEvent(self.run_id, delta, reply, self._now(), length=len(reply)))

    def _on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        if self._ended or self.state != "running":
            return
        builder = self._tools.get(index)
        if builder is None:
            builder = self._tools[index] = _ToolBuilder(index=index)
        if call_id and builder.id is None:
            builder.id = call_id
        if name and builder.name is None:
            builder.name = name
        if arguments_delta:
            builder.arguments.append(arguments_delta)
        if builder.name is None:
            return
        if builder.id is None:
            builder.id = new_tool_call_id()
        phase: Literal["start", "update"] = "update" if builder.started else "start"
        if phase == "update" and not arguments_delta:
            return
        builder.started = True
        self._emit(
            ToolEvent(
                run_id=self.run_id,
                phase=phase,
                name=builder.name,
                tool_call_id=builder.id,
                ts=self._now(),
                arguments="".join(builder.arguments),
            )
        )

    def _on_usage(self, usage: Usage) -> None:
        if not self._ended and self.state == "running":
            self.usage = usage

    # -- endings -------------------------------------------------------------------

    def _stream_ended(self, outcome: StreamOutcome) -> None:
        if self._ended:
            return
        self._ended = True
        self._stream = None
        usage = with_total(outcome.usage if outcome.usage != Usage() else self.usage)
        self.usage = usage
        # A builder has an id as soon as it has a name (see _on_tool_call).
        calls = tuple(
            ToolCall(id=b.id or new_tool_call_id(), name=b.name, arguments="".join(b.arguments))
            for _, b in sorted(self._tools.items())
            if b.name
        )
        stop: StopReason = outcome.stop_reason
        if calls and stop == "stop":
            stop = "tool_calls"
        now = self._now()
        for call in calls:
            self._emit(
                ToolEvent(
                    run_id=self.run_id,
                    phase="end",
                    name=call.name,
                    tool_call_id=call.id,
                    ts=now,
                    arguments=call.arguments,
                )
            )
        recorded = self._record(stop, tool_calls=calls)
        result = AgentResult(
            run_id=self.run_id,
            agent_id=self._spec.id,
            session_key=self.request.session_key,
            session_id=self.session_id or "",
            text=self.text,
            usage=usage,
            stop_reason=stop,
            pending_tool_calls=calls,
            started_at=self.started_at or now,
            ended_at=now,
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
                stop_reason=stop,
            ),
            status="ok",
        )

    def _stream_failed(self, failure: Failure) -> None:
        if self._ended:
            return
        self._stream = None
        if isinstance(failure.value, CancelledError):
            self._abort(RunAbortedError("model stream was cancelled"), status="aborted")
            return
        if not isinstance(failure.value, ProviderError):
            log.failure("run {run_id}: model stream failed", failure, run_id=self.run_id)
        self._fail(failure)

    def _fail(self, failure: Failure) -> None:
        self._ended = True
        error = failure.value
        message = (
            error.message
            if isinstance(error, ProviderError)
            else (str(error) or type(error).__name__)
        )
        recorded = self._record("error", error=message)
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
            ),
            status="error",
            error=message,
        )

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
        stream, self._stream = self._stream, None
        message = str(error)
        if stream is not None:
            _stop_quietly(stream)
        recorded = self._record("aborted", error=message)
        now = self._now()
        timed_out = status == "timeout"
        self._settle_after(
            recorded,
            _failure(error),
            LifecycleEvent(
                run_id=self.run_id,
                phase="error" if timed_out else "end",
                ts=now,
                started_at=self.started_at,
                ended_at=now,
                error=message if timed_out else None,
                aborted=True,
                stop_reason="aborted",
            ),
            status=status,
            error=message if timed_out else None,
        )

    def _record(
        self, stop: StopReason, *, tool_calls: tuple[ToolCall, ...] = (), error: str | None = None
    ) -> Deferred[None]:
        """Append the assistant outcome to the transcript (only if the turn began).

        Fires once the store reports the lines durable (never fails: a store
        error is logged and the run settles all the same).
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
                text=self.text,
                timestamp=self._now(),
                usage=self.usage,
                stop_reason=stop,
                tool_calls=tool_calls,
                error=error,
                provider=ref.provider if ref else None,
                model=ref.model if ref else None,
                api=self._api_of(ref),
                channel=self.request.channel,
            )
        except Exception:
            log.failure("run {run_id}: could not record the turn", run_id=self.run_id)
            return succeed(None)

        def unsynced(failure: Failure) -> None:
            log.failure(
                "run {run_id}: could not write the turn to disk", failure, run_id=self.run_id
            )

        return written.addErrback(unsynced)

    def _api_of(self, ref: ModelRef | None) -> str | None:
        if ref is None:
            return None
        return self._registry.provider_api(ref.provider)

    def _settle_after(
        self,
        recorded: Deferred[None],
        outcome: AgentResult | Failure,
        event: LifecycleEvent,
        *,
        status: RunStatus,
        error: str | None = None,
    ) -> None:
        """Settle once the transcript is written (at once when it already is), so
        nobody is told of a turn the disk does not hold yet."""

        def settle(_: object) -> None:
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
        # Kept for agent.wait: drop what can be large (base64 images, tool state).
        if self.request.images:
            self.request = evolve(self.request, images=())
        self._tools.clear()
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


def _stop_quietly(stream: ModelStream) -> None:
    try:
        stream.stopProducing()
    except Exception:
        log.failure("a model stream failed to stop")
