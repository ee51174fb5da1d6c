"""A fake :class:`~openclaw.agents.types.AgentRun` a test drives by hand.

For tests of adapters (an HTTP or WebSocket front end, a CLI) that want to
script a run's events and outcome without a model: ``start()``, ``say(...)``,
then ``finish()`` or ``fail(...)``; the fake records how the adapter drove it
(``cancel_calls``, ``pause_calls``, ``resume_calls``). Events and results go
through the same :class:`~openclaw.agents.broadcast.RunBroadcast` the real
run uses, so subscription and result semantics match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from openclaw.agents.broadcast import RunBroadcast
from openclaw.agents.types import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AssistantEvent,
    LifecycleEvent,
    RunAbortedError,
    StopReason,
    ToolCall,
    Usage,
)

#: The usage a finished fake run reports unless told otherwise.
DEFAULT_USAGE = Usage(input=3, output=5, total=8)


class FakeRun:
    """An ``AgentRun`` whose events and outcome the test scripts."""

    def __init__(self, request: AgentRequest, clock: IReactorTime) -> None:
        self.request = request
        self._clock = clock
        self._broadcast = RunBroadcast(request.run_id)
        #: The assistant text emitted so far.
        self.text = ""
        self.cancel_calls = 0
        self.pause_calls = 0
        self.resume_calls = 0
        self.paused = False

    @property
    def run_id(self) -> str:
        """The request's run id."""
        return self.request.run_id

    @property
    def agent_id(self) -> str:
        """The request's agent."""
        return self.request.agent_id

    @property
    def session_key(self) -> str:
        """The request's session key."""
        return self.request.session_key

    @property
    def settled(self) -> bool:
        """True once the run finished, failed or was cancelled."""
        return self._broadcast.settled

    @property
    def listener_count(self) -> int:
        """Subscribers still attached."""
        return self._broadcast.listener_count

    @property
    def result(self) -> Deferred[AgentResult]:
        """A new Deferred for the outcome (safe to cancel)."""
        return self._broadcast.result()

    def subscribe(self, listener: Callable[[AgentEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with each later event; returns the unsubscribe callable."""
        return self._broadcast.subscribe(listener)

    def emit(self, event: AgentEvent) -> None:
        """Deliver any event to the subscribers."""
        self._broadcast.emit(event)

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def start(self) -> None:
        """Emit lifecycle ``start``."""
        now = self._now()
        self.emit(LifecycleEvent(run_id=self.run_id, phase="start", ts=now, started_at=now))

    def say(self, delta: str) -> None:
        """Emit one assistant delta."""
        self.text += delta
        self.emit(AssistantEvent(self.run_id, delta, self.text, self._now()))

    def finish(
        self,
        text: str | None = None,
        usage: Usage | None = None,
        *,
        stop_reason: StopReason = "stop",
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        """Complete the run (``text``, when given, is said first), 250 ms long."""
        if text:
            self.say(text)
        now = self._now()
        result = AgentResult(
            run_id=self.run_id,
            agent_id=self.agent_id,
            session_key=self.session_key,
            session_id="sess-" + self.run_id,
            text=self.text,
            usage=DEFAULT_USAGE if usage is None else usage,
            stop_reason=stop_reason,
            pending_tool_calls=tuple(tool_calls),
            started_at=now - 250,
            ended_at=now,
        )
        end = LifecycleEvent(
            run_id=self.run_id,
            phase="end",
            ts=now,
            started_at=now - 250,
            ended_at=now,
            stop_reason=stop_reason,
        )
        self._settle(result, end)

    def fail(self, error: Exception, *, emit_lifecycle: bool = True) -> None:
        """Fail the run with ``error`` (after a lifecycle ``error`` unless told not to)."""
        now = self._now()
        event = (
            LifecycleEvent(
                run_id=self.run_id,
                phase="error",
                ts=now,
                ended_at=now,
                error=str(error),
                stop_reason="error",
            )
            if emit_lifecycle
            else None
        )
        self._settle(Failure(error), event)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted

    def cancel(self) -> None:
        """Abort: lifecycle ``end`` with ``aborted``, the result fails with
        :class:`~openclaw.agents.types.RunAbortedError` (idempotent)."""
        self.cancel_calls += 1
        if self.settled:
            return
        now = self._now()
        aborted = LifecycleEvent(
            run_id=self.run_id,
            phase="end",
            ts=now,
            started_at=now,
            ended_at=now,
            aborted=True,
            stop_reason="aborted",
        )
        self._settle(Failure(RunAbortedError("cancelled")), aborted)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted

    def pauseProducing(self) -> None:
        """Record a pause."""
        self.pause_calls += 1
        self.paused = True

    def resumeProducing(self) -> None:
        """Record a resume."""
        self.resume_calls += 1
        self.paused = False

    def _settle(self, outcome: AgentResult | Failure, event: LifecycleEvent | None) -> None:
        if self.settled:
            return
        if event is not None:
            self.emit(event)
        self._broadcast.settle(outcome)
