"""Gateway lifecycle state: readiness and in-flight HTTP requests.

Graceful shutdown needs to know when the last in-flight request finished; the
readiness probe needs to know whether the gateway has started or is stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from twisted.internet.interfaces import IReactorTime

from openclaw.core.drain import Drain

ReadinessState = Literal["starting", "ready", "stopping"]


class Readiness:
    """Whether the gateway should receive traffic."""

    def __init__(self) -> None:
        self.state: ReadinessState = "starting"
        self._started_at: float | None = None
        self._checks: list[Callable[[], str | None]] = []

    def add_check(self, check: Callable[[], str | None]) -> None:
        """A dependency the gateway cannot serve without (the shared session
        store): ``check`` returns None while it is available, else a reason."""
        self._checks.append(check)

    def unready_reason(self) -> str | None:
        """Why a ready gateway should get no traffic now (a dependency is
        down), or None. It clears by itself when the dependency recovers."""
        for check in self._checks:
            reason = check()
            if reason is not None:
                return reason
        return None

    def mark_ready(self, clock: IReactorTime) -> None:
        """Listening and able to serve."""
        self.state = "ready"
        self._started_at = clock.seconds()

    def mark_stopping(self) -> None:
        """Shutting down: load balancers should stop sending requests."""
        self.state = "stopping"

    @property
    def draining(self) -> bool:
        """True once stopping: new work is refused (503), probes still answer."""
        return self.state == "stopping"

    def uptime_ms(self, clock: IReactorTime) -> int:
        """Milliseconds since the gateway became ready (0 before)."""
        if self._started_at is None:
            return 0
        return int((clock.seconds() - self._started_at) * 1000)


class InFlight(Drain):
    """Counts unfinished HTTP requests and says when there are none left."""

    __slots__ = ()

    def started(self) -> None:
        """A request began."""
        self.add()

    def finished(self) -> None:
        """A request ended (answered or abandoned by its client)."""
        self.done()
