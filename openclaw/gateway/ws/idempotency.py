"""``idempotencyKey`` deduplication for ``agent`` and ``chat.send``, across connections.

OpenClaw's CLI resends the same key after a dropped connection; the gateway
must then attach the caller to the run already in flight, or answer with the
cached final response, rather than run the turn twice. The cache lives in the
factory (so it survives reconnects) and is bounded in entries and in time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from openclaw.agents.types import AgentResult, AgentRun
from openclaw.gateway.ws.frames import RequestError


def input_digest(text: str) -> str:
    """What makes two requests under one key "the same input"."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


DEFAULT_MAX_ENTRIES = 1024
DEFAULT_TTL_SECONDS = 600.0


@frozen
class AgentFinal:
    """The final ``res`` of an ``agent`` request: ``payload`` or ``error`` (+ payload)."""

    payload: Any = None
    error: RequestError | None = None

    @property
    def ok(self) -> bool:
        """True for a successful final response."""
        return self.error is None


FinalBuilder = Callable[["IdempotencyEntry", "AgentResult | Failure"], AgentFinal]


class IdempotencyEntry:
    """One key: the run it started, its ack, and its final response once known."""

    def __init__(self, key: str, run: AgentRun, ack: dict[str, Any], created: float) -> None:
        self.key = key
        self.run = run
        self.ack = ack
        self.created = created
        self.finished_at: float | None = None
        self.final: AgentFinal | None = None
        #: A digest of the input the key was first used for (``chat.send``'s
        #: message): a resend of the same input replays, another is a conflict.
        self.input_digest: str | None = None
        self._waiters: list[Deferred[AgentFinal]] = []

    def remember_input(self, text: str) -> None:
        """Record the input this key was first used for (the first one stays)."""
        if self.input_digest is None:
            self.input_digest = input_digest(text)

    def conflicts_with(self, text: str) -> bool:
        """Whether ``text`` is other input than the key was first used for
        (OpenClaw's chat.send: the message text decides)."""
        return self.input_digest is not None and self.input_digest != input_digest(text)

    @property
    def run_id(self) -> str:
        """The run this key started."""
        return self.run.run_id

    def wait(self) -> Deferred[AgentFinal]:
        """Fire with the final response (at once if known); safe to cancel."""
        if self.final is not None:
            return succeed(self.final)

        def forget(d: Deferred[AgentFinal]) -> None:
            if d in self._waiters:
                self._waiters.remove(d)

        d: Deferred[AgentFinal] = Deferred(forget)
        self._waiters.append(d)
        return d

    def settle(self, final: AgentFinal, now: float) -> None:
        """Record the final response and hand it to everyone waiting."""
        if self.final is not None:
            return
        self.final = final
        self.finished_at = now
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(final)


class IdempotencyCache:
    """Bounded map of idempotency key to :class:`IdempotencyEntry`.

    Finished entries expire ``ttl_seconds`` after they finished; when the
    cache is full the oldest entry goes first, finished or not (only the
    deduplication of that key is lost, never the run).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
    ) -> None:
        self._clock = clock
        self._max = max_entries
        self._ttl = ttl_seconds
        self._entries: OrderedDict[str, IdempotencyEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> IdempotencyEntry | None:
        """The live entry for ``key``, if any."""
        self._expire()
        return self._entries.get(key)

    def begin(
        self, key: str, run: AgentRun, ack: dict[str, Any], build_final: FinalBuilder
    ) -> IdempotencyEntry:
        """Remember a newly started run under ``key``; its final is built when it ends."""
        self._expire()
        entry = IdempotencyEntry(key, run, ack, self._clock.seconds())
        self._entries.pop(key, None)
        self._entries[key] = entry
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

        def done(outcome: AgentResult | Failure) -> None:
            entry.settle(build_final(entry, outcome), self._clock.seconds())

        run.result.addCallbacks(done, done)
        return entry

    def _expire(self) -> None:
        if not self._entries:
            return
        horizon = self._clock.seconds() - self._ttl
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.finished_at is not None and entry.finished_at <= horizon
        ]
        for key in stale:
            del self._entries[key]
