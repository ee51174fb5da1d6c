"""A run's broadcast: its event subscribers, its result waiters, its outcome.

Every :class:`~openclaw.agents.types.AgentRun` needs the same bookkeeping: a
new cancellable Deferred per ``result`` access, ``subscribe`` returning an
unsubscribe callable, and fan-out of events and of the final outcome. The real
run and the test doubles share this one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.types import AgentEvent, AgentResult

log = Logger()


class RunBroadcast:
    """Listeners, result waiters and, once known, the outcome of one run."""

    __slots__ = ("_listeners", "_run_id", "_waiters", "outcome")

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        #: Replaced, never mutated: ``emit`` walks the tuple it read without
        #: copying it per event (a listener may subscribe or leave meanwhile).
        self._listeners: tuple[Callable[[AgentEvent], None], ...] = ()
        self._waiters: list[Deferred[AgentResult]] = []
        self.outcome: AgentResult | Failure | None = None

    @property
    def settled(self) -> bool:
        """True once the result (or failure) is known."""
        return self.outcome is not None

    @property
    def listener_count(self) -> int:
        """Subscribers still attached."""
        return len(self._listeners)

    def result(self) -> Deferred[AgentResult]:
        """A new Deferred per call; cancelling it detaches only that caller."""
        outcome = self.outcome
        if isinstance(outcome, Failure):
            return fail(outcome)
        if outcome is not None:
            return succeed(outcome)

        d: Deferred[AgentResult] = Deferred(self._forget)
        self._waiters.append(d)
        return d

    def _forget(self, d: Deferred[AgentResult]) -> None:
        """A waiter was cancelled (a bound method: no closure per waiter)."""
        if d in self._waiters:
            self._waiters.remove(d)

    def subscribe(self, listener: Callable[[AgentEvent], None]) -> Callable[[], None]:
        """Deliver later events to ``listener``; the returned callable detaches it."""
        self._listeners = (*self._listeners, listener)
        # A partial is a third of a closure's size; a run has a few per stream.
        return partial(self._unsubscribe, listener)

    def _unsubscribe(self, listener: Callable[[AgentEvent], None]) -> None:
        listeners = self._listeners
        if listener in listeners:
            at = listeners.index(listener)
            self._listeners = listeners[:at] + listeners[at + 1 :]

    def emit(self, event: AgentEvent) -> None:
        """Give ``event`` to every subscriber; one failing listener harms no other."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.failure("run {run_id}: an event listener failed", run_id=self._run_id)

    def settle(self, outcome: AgentResult | Failure, *, drop_listeners: bool = True) -> None:
        """Record the outcome and fire every waiting Deferred with it."""
        self.outcome = outcome
        if drop_listeners:
            self._listeners = ()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)
