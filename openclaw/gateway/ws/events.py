"""Fan-out of agent runs to WebSocket connections as ``agent`` and ``chat`` events.

:class:`RunHub` observes every run the runtime starts, whatever the ingress
(WebSocket ``agent``/``chat.send`` or HTTP chat completions), numbers its
events with a per-run ``seq`` shared by the ``agent`` and ``chat`` streams, and
delivers them to the connections interested in the run's session. It also
remembers how recent runs ended, for ``agent.wait``.

Payloads are serialised once per event; each connection only wraps them with
its own frame-level ``seq``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from attrs import asdict
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.types import (
    AgentEvent,
    AgentLoopError,
    AgentResult,
    AgentRun,
    AgentRuntime,
    AssistantEvent,
    LifecycleEvent,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
    ToolEvent,
)
from openclaw.core.recent import RecentlyFinished
from openclaw.core.relay import LocalRelay, RunRelay
from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.gateway.ws.outbound import (
    EventSink,
    OutboundEvent,
    RunOutcome,
    RunStatus,
    error_kind,
    event_to_wire,
    failure_message,
)

log = Logger()

#: Finished runs remembered for ``agent.wait``; the oldest are forgotten first.
MAX_FINISHED_RUNS = 1024
#: ... and of each, at most this much of its reply.
MAX_REMEMBERED_REPLY = 16 * 1024
#: At most one chat ``delta`` per run in this many seconds (OpenClaw throttles
#: them too: each carries the whole message so far).
CHAT_DELTA_INTERVAL = 0.15


def _no_outcome(result: object, timeout: float) -> None:
    """What a timed-out ``wait`` answers."""
    return None


class _TrackedRun:
    """The hub's state for one run."""

    __slots__ = (
        "agent_id",
        "chat_last",
        "chat_pending",
        "chat_timer",
        "ended_at",
        "last_assistant",
        "lifecycle_done",
        "outcome",
        "rpc_abort",
        "run",
        "run_id",
        "seq",
        "session_key",
        "started_at",
        "unsubscribe",
        "waiters",
    )

    def __init__(self, run: AgentRun) -> None:
        self.run = run
        self.run_id = run.run_id
        self.agent_id = run.agent_id
        self.session_key = run.session_key
        self.seq = 0
        #: The latest assistant event: its ``text`` is joined only when read.
        self.last_assistant: AssistantEvent | None = None
        self.started_at: int | None = None
        self.ended_at: int | None = None
        self.lifecycle_done = False
        self.rpc_abort = False
        #: Assistant text not yet sent as a chat delta, and when one was last sent.
        self.chat_pending = ""
        self.chat_last = float("-inf")
        self.chat_timer: IDelayedCall | None = None
        self.outcome: RunOutcome | None = None
        self.waiters: list[Deferred[RunOutcome | None]] = []
        self.unsubscribe: Callable[[], None] | None = None

    @property
    def text(self) -> str:
        """The assistant text so far."""
        event = self.last_assistant
        return event.text if event is not None else ""

    def base(self) -> dict[str, Any]:
        return {"runId": self.run_id, "sessionKey": self.session_key, "agentId": self.agent_id}


class RunHub:
    """Tracks runs and delivers their events to interested connections."""

    def __init__(
        self, runtime: AgentRuntime, clock: IReactorTime, relay: RunRelay | None = None
    ) -> None:
        """:param relay: the runs of other gateway instances (a shared store's);
        by default there are none."""
        self._runtime = runtime
        self._clock = clock
        self._relay: RunRelay = relay if relay is not None else LocalRelay()
        self._active: dict[str, _TrackedRun] = {}
        self._finished: RecentlyFinished[RunOutcome] = RecentlyFinished(
            clock, max_entries=MAX_FINISHED_RUNS
        )
        self._by_session: dict[str, set[EventSink]] = {}
        self._sink_sessions: dict[EventSink, set[str]] = {}
        self._all: set[EventSink] = set()
        self._early: dict[str, list[Deferred[RunOutcome | None]]] = {}
        self._stop_observing: Callable[[], None] | None = None

    @property
    def relay(self) -> RunRelay:
        """The runs of the other gateway instances (aborts, claims, busy checks)."""
        return self._relay

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Begin observing every run the runtime starts."""
        if self._stop_observing is None:
            self._stop_observing = self._runtime.observe_runs(self.track)

    def stop(self) -> None:
        """Stop observing; runs already tracked still finish normally."""
        if self._stop_observing is not None:
            stop, self._stop_observing = self._stop_observing, None
            stop()
            self._relay.detach()

    # -- interest ------------------------------------------------------------

    def subscribe(self, sink: EventSink, session_key: str) -> None:
        """Deliver the runs of ``session_key`` to ``sink`` from now on."""
        if not self._by_session.get(session_key):
            self._relay.watch(session_key)
        self._by_session.setdefault(session_key, set()).add(sink)
        self._sink_sessions.setdefault(sink, set()).add(session_key)

    def subscribe_all(self, sink: EventSink) -> None:
        """Deliver every run to ``sink``."""
        if not self._all:
            self._relay.watch(None)
        self._all.add(sink)

    def forget(self, sink: EventSink) -> None:
        """Drop every subscription of a closed connection."""
        if sink in self._all:
            self._all.discard(sink)
            if not self._all:
                self._relay.unwatch(None)
        for key in self._sink_sessions.pop(sink, set()):
            sinks = self._by_session.get(key)
            if sinks is not None:
                sinks.discard(sink)
                if not sinks:
                    del self._by_session[key]
                    self._relay.unwatch(key)

    def _sinks_for(self, session_key: str) -> Iterable[EventSink]:
        scoped = self._by_session.get(session_key)
        if not scoped:
            return tuple(self._all)
        if not self._all:
            return tuple(scoped)
        return tuple(self._all | scoped)

    # -- runs ------------------------------------------------------------------

    def track(self, run: AgentRun) -> None:
        """Start following ``run`` (idempotent); called for every started run."""
        if run.run_id in self._active:
            return
        tracked = _TrackedRun(run)
        self._active[run.run_id] = tracked
        self._relay.run_started(run.run_id, run.session_key)
        self._finished.forget(run.run_id)
        early = self._early.pop(run.run_id, None)
        if early is not None:
            # The same list object: pending waiters' cancellers still find themselves.
            tracked.waiters = early
        # A partial, not a lambda: one Python frame fewer per event of every run.
        tracked.unsubscribe = run.subscribe(partial(self._on_event, tracked))
        run.result.addCallbacks(
            lambda result: self._on_result(tracked, result),
            lambda failure: self._on_failure(tracked, failure),
        )

    def mark_rpc_abort(self, run_id: str) -> None:
        """Remember that ``chat.abort`` cancelled this run (``stopReason: "rpc"``)."""
        tracked = self._active.get(run_id)
        if tracked is not None:
            tracked.rpc_abort = True

    def wait(self, run_id: str, timeout_seconds: float) -> Deferred[RunOutcome | None]:
        """Fire with the run's outcome, or None when ``timeout_seconds`` pass first.

        Works for runs that already ended and for runs not started yet.
        """
        done = self._finished.get(run_id)
        if done is not None:
            return succeed(done)
        tracked = self._active.get(run_id)
        if tracked is None:
            run = self._runtime.get_run(run_id)
            if run is not None:
                self.track(run)
                done = self._finished.get(run_id)
                if done is not None:
                    return succeed(done)
                tracked = self._active.get(run_id)
        waiters = tracked.waiters if tracked is not None else self._early.setdefault(run_id, [])
        if tracked is None:
            # Perhaps another instance ran it: it may have ended already.
            self._relay.outcome(run_id).addCallback(self._found_elsewhere, run_id)

        def forget(d: Deferred[RunOutcome | None]) -> None:
            if d in waiters:
                waiters.remove(d)
            if not waiters and self._early.get(run_id) is waiters:
                del self._early[run_id]

        d: Deferred[RunOutcome | None] = Deferred(forget)
        waiters.append(d)
        # On time the wait is cancelled (which forgets it) and answers None.
        return d.addTimeout(max(0.0, timeout_seconds), self._clock, onTimeoutCancel=_no_outcome)

    # -- event conversion ------------------------------------------------------

    def _emit(self, tracked: _TrackedRun, events: Callable[[], list[OutboundEvent]]) -> None:
        sinks = self._sinks_for(tracked.session_key)
        remote = self._relay.wants(tracked.session_key)
        if not sinks and not remote:
            return
        built = events()
        if remote:
            self._relay.publish(tracked.session_key, [event_to_wire(event) for event in built])
        self._deliver(tracked.session_key, tracked.run_id, sinks, built)

    def _deliver(
        self,
        session_key: str,
        run_id: str,
        sinks: Iterable[EventSink],
        built: Sequence[OutboundEvent],
    ) -> None:
        for sink in sinks:
            for event in built:
                if event.tool and not sink.wants_tool_events:
                    continue
                try:
                    sink.deliver(event)
                except Exception:
                    log.failure(
                        "delivering {event} of run {run_id}",
                        event=event.name,
                        run_id=run_id,
                    )

    def _on_event(self, tracked: _TrackedRun, event: AgentEvent) -> None:
        if tracked.outcome is not None:
            return
        tracked.seq += 1
        seq = tracked.seq
        if isinstance(event, AssistantEvent):
            tracked.last_assistant = event
            key = tracked.session_key
            if not (self._all or self._by_session.get(key) or self._relay.wants(key)):
                return  # nobody watches: what _emit would do, without its closure
            self._emit(tracked, lambda: self._assistant(tracked, event, seq))
        elif isinstance(event, LifecycleEvent):
            if event.phase == "start":
                tracked.started_at = event.started_at or event.ts
            else:
                tracked.lifecycle_done = True
                tracked.ended_at = event.ended_at or event.ts
            self._emit(tracked, lambda: [self._lifecycle(tracked, event, seq)])
        elif isinstance(event, ToolEvent):
            self._emit(tracked, lambda: [self._tool(tracked, event, seq)])

    def _assistant(
        self, tracked: _TrackedRun, event: AssistantEvent, seq: int
    ) -> list[OutboundEvent]:
        agent = OutboundEvent(
            "agent",
            {
                **tracked.base(),
                "stream": "assistant",
                "data": {"text": event.text, "delta": event.delta},
                "seq": seq,
                "ts": event.ts,
            },
            run_id=tracked.run_id,
            delta_key=(tracked.run_id, "agent"),
            delta=event.delta,
        )
        tracked.chat_pending += event.delta
        now = self._clock.seconds()
        if tracked.chat_timer is not None:
            return [agent]
        due = tracked.chat_last + CHAT_DELTA_INTERVAL
        if now < due:
            # Chat deltas carry the whole text so far: send at most one per
            # interval, the next one carrying what accumulated meanwhile.
            tracked.chat_timer = self._clock.callLater(due - now, self._flush_chat, tracked)
            return [agent]
        return [agent, self._chat_delta(tracked, now)]

    def _chat_delta(self, tracked: _TrackedRun, now: float) -> OutboundEvent:
        delta, tracked.chat_pending = tracked.chat_pending, ""
        tracked.chat_last = now
        ts = int(now * 1000)
        return OutboundEvent(
            "chat",
            {
                **tracked.base(),
                "seq": tracked.seq,
                "state": "delta",
                "deltaText": delta,
                "message": _assistant_message(tracked.text, ts),
            },
            run_id=tracked.run_id,
            delta_key=(tracked.run_id, "chat"),
            delta=delta,
        )

    def _flush_chat(self, tracked: _TrackedRun) -> None:
        tracked.chat_timer = None
        if tracked.outcome is None and tracked.chat_pending:
            now = self._clock.seconds()
            self._emit(tracked, lambda: [self._chat_delta(tracked, now)])

    def _pending_chat(self, tracked: _TrackedRun) -> list[OutboundEvent]:
        """The throttled chat delta still owed, sent just before the final."""
        if tracked.chat_timer is not None and tracked.chat_timer.active():
            tracked.chat_timer.cancel()
        tracked.chat_timer = None
        if not tracked.chat_pending:
            return []
        return [self._chat_delta(tracked, self._clock.seconds())]

    def _lifecycle(self, tracked: _TrackedRun, event: LifecycleEvent, seq: int) -> OutboundEvent:
        data: dict[str, Any] = {"phase": event.phase}
        if event.phase == "start":
            data["startedAt"] = event.started_at or event.ts
        else:
            data["startedAt"] = tracked.started_at
            data["endedAt"] = event.ended_at or event.ts
            data["aborted"] = event.aborted
            if event.stop_reason is not None:
                data["stopReason"] = event.stop_reason
            if event.aborted:
                data["status"] = "cancelled"
            if event.error is not None:
                data["error"] = event.error
            if event.model is not None:
                # Which model answered (after a fallback, not the configured primary).
                data["provider"] = event.provider
                data["model"] = event.model
        return OutboundEvent(
            "agent",
            {**tracked.base(), "stream": "lifecycle", "data": data, "seq": seq, "ts": event.ts},
            run_id=tracked.run_id,
            terminal=event.phase != "start",
        )

    def _tool(self, tracked: _TrackedRun, event: ToolEvent, seq: int) -> OutboundEvent:
        data: dict[str, Any] = {
            "phase": event.phase,
            "name": event.name,
            "toolCallId": event.tool_call_id,
        }
        if event.phase == "start":
            # OpenClaw sends the parsed arguments; the raw text when they were not JSON.
            if event.args is not None:
                data["args"] = dict(event.args)
            elif event.arguments is not None:
                data["args"] = event.arguments
        elif event.phase == "update":
            data["partialResult"] = event.partial_result
        else:
            data["result"] = event.result
            data["isError"] = event.is_error
            data["meta"] = dict(event.meta) if event.meta else {}
        return OutboundEvent(
            "agent",
            {**tracked.base(), "stream": "tool", "data": data, "seq": seq, "ts": event.ts},
            run_id=tracked.run_id,
            tool=True,
        )

    # -- terminal ----------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _on_result(self, tracked: _TrackedRun, result: AgentResult) -> None:
        ended = result.ended_at or tracked.ended_at or self._now_ms()
        started = result.started_at or tracked.started_at
        outcome = RunOutcome(
            run_id=tracked.run_id,
            status="ok",
            agent_id=tracked.agent_id,
            session_key=tracked.session_key,
            started_at=started,
            ended_at=ended,
            reply=result.text[:MAX_REMEMBERED_REPLY],
        )

        def build() -> list[OutboundEvent]:
            events = self._synthetic_end(
                tracked, ended, aborted=False, error=None, stop_reason=result.stop_reason
            )
            events.extend(self._pending_chat(tracked))
            payload = {
                **tracked.base(),
                "seq": tracked.seq,
                "state": "final",
                "stopReason": result.stop_reason,
                "message": _assistant_message(result.text, ended),
                "usage": result.usage.as_openclaw(),
            }
            events.append(OutboundEvent("chat", payload, run_id=tracked.run_id, terminal=True))
            return events

        self._finish(tracked, outcome, build)

    def _on_failure(self, tracked: _TrackedRun, failure: Failure) -> None:
        error = failure.value
        ended = tracked.ended_at or self._now_ms()
        if isinstance(error, RunAbortedError | CancelledError):
            status: RunStatus = "aborted"
        elif isinstance(error, RunTimeoutError):
            status = "timeout"
        else:
            status = "error"
        if status == "error" and isinstance(error, SharedStateUnavailableError):
            # Expected while Redis is away (the client logs the outage once).
            log.info("agent run {run_id} not saved: {why}", run_id=tracked.run_id, why=error)
        elif status == "error" and not isinstance(error, ProviderError | AgentLoopError):
            log.failure("agent run {run_id} failed", failure, run_id=tracked.run_id)
        message = failure_message(error)  # type: ignore[arg-type]  # a Failure's value is an exception
        outcome = RunOutcome(
            run_id=tracked.run_id,
            status=status,
            agent_id=tracked.agent_id,
            session_key=tracked.session_key,
            started_at=tracked.started_at,
            ended_at=ended,
            error=None if status == "aborted" else message,
        )

        def build() -> list[OutboundEvent]:
            aborted = status == "aborted"
            events = self._synthetic_end(
                tracked,
                ended,
                aborted=aborted,
                error=None if aborted else message,
                stop_reason="aborted" if aborted else "error",
            )
            events.extend(self._pending_chat(tracked))
            payload: dict[str, Any] = {**tracked.base(), "seq": tracked.seq}
            if aborted:
                payload["state"] = "aborted"
                payload["stopReason"] = "rpc" if tracked.rpc_abort else "aborted"
                if tracked.text:
                    payload["message"] = _assistant_message(tracked.text, ended)
            else:
                payload["state"] = "error"
                payload["errorMessage"] = message
                payload["errorKind"] = error_kind(error)  # type: ignore[arg-type]  # see above
            events.append(OutboundEvent("chat", payload, run_id=tracked.run_id, terminal=True))
            return events

        self._finish(tracked, outcome, build)

    def _synthetic_end(
        self,
        tracked: _TrackedRun,
        ended: int,
        *,
        aborted: bool,
        error: str | None,
        stop_reason: str,
    ) -> list[OutboundEvent]:
        """A lifecycle end/error when the runtime settled without emitting one."""
        if tracked.lifecycle_done:
            return []
        tracked.lifecycle_done = True
        tracked.seq += 1
        data: dict[str, Any] = {
            "phase": "error" if error is not None else "end",
            "startedAt": tracked.started_at,
            "endedAt": ended,
            "aborted": aborted,
            "stopReason": stop_reason,
        }
        if aborted:
            data["status"] = "cancelled"
        if error is not None:
            data["error"] = error
        return [
            OutboundEvent(
                "agent",
                {
                    **tracked.base(),
                    "stream": "lifecycle",
                    "data": data,
                    "seq": tracked.seq,
                    "ts": ended,
                },
                run_id=tracked.run_id,
                terminal=True,
            )
        ]

    def _finish(
        self,
        tracked: _TrackedRun,
        outcome: RunOutcome,
        build: Callable[[], list[OutboundEvent]],
    ) -> None:
        if tracked.outcome is not None:
            return
        if tracked.unsubscribe is not None:
            tracked.unsubscribe()
            tracked.unsubscribe = None
        sinks = self._sinks_for(tracked.session_key)
        if sinks or self._relay.wants(tracked.session_key):
            self._emit(tracked, build)
        elif not tracked.lifecycle_done:
            # Keep the per-run seq honest even when nobody listens.
            tracked.lifecycle_done = True
            tracked.seq += 1
        if tracked.chat_timer is not None and tracked.chat_timer.active():
            tracked.chat_timer.cancel()
        tracked.chat_timer = None
        tracked.outcome = outcome
        self._active.pop(tracked.run_id, None)
        self._finished.remember(tracked.run_id, outcome)
        self._relay.run_finished(tracked.run_id, tracked.session_key, asdict(outcome))
        waiters = list(tracked.waiters)
        tracked.waiters.clear()
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(outcome)

    # -- other instances (used by .relayed) -----------------------------------------

    def deliver_relayed(self, session_key: str, built: Sequence[OutboundEvent]) -> None:
        """Deliver events of another instance's run to this instance's clients."""
        sinks = self._sinks_for(session_key)
        if sinks and built:
            self._deliver(session_key, built[0].run_id, sinks, built)

    def _found_elsewhere(self, found: Mapping[str, Any] | None, run_id: str) -> None:
        if found:
            with contextlib.suppress(TypeError):
                self.finished_elsewhere(run_id, RunOutcome(**found))

    def finished_elsewhere(self, run_id: str, ended: RunOutcome) -> None:
        """A run of another instance ended: answer this instance's waiters."""
        if run_id in self._active or self._finished.get(run_id) is not None:
            return
        self._finished.remember(run_id, ended)
        for waiter in list(self._early.pop(run_id, None) or ()):
            if not waiter.called:
                waiter.callback(ended)


def _assistant_message(text: str, timestamp: int) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "timestamp": timestamp,
    }
