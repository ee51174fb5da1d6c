"""Gateway lifecycle state: readiness and in-flight HTTP requests.

Graceful shutdown needs to know when the last in-flight request finished; the
readiness probe needs to know whether the gateway has started or is stopping.
"""

from __future__ import annotations

from typing import Literal

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

ReadinessState = Literal["starting", "ready", "stopping"]


class Readiness:
    """Whether the gateway should receive traffic."""

    def __init__(self) -> None:
        self.state: ReadinessState = "starting"
        self._started_at: float | None = None

    def mark_ready(self, clock: IReactorTime) -> None:
        """Listening and able to serve."""
        self.state = "ready"
        self._started_at = clock.seconds()

    def mark_stopping(self) -> None:
        """Shutting down: load balancers should stop sending requests."""
        self.state = "stopping"

    def uptime_ms(self, clock: IReactorTime) -> int:
        """Milliseconds since the gateway became ready (0 before)."""
        if self._started_at is None:
            return 0
        return int((clock.seconds() - self._started_at) * 1000)


class InFlight:
    """Counts unfinished HTTP requests and says when there are none left."""

    def __init__(self) -> None:
        self._count = 0
        self._waiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        return self._count

    def started(self) -> None:
        """A request began."""
        self._count += 1

    def finished(self) -> None:
        """A request ended (answered or abandoned by its client)."""
        self._count = max(0, self._count - 1)
        if self._count == 0:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def drained(self) -> Deferred[None]:
        """Fires once no request is in flight (at once if none is)."""
        if self._count == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter
