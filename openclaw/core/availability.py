"""Whether a backend the gateway depends on can serve now (``/readyz``).

A load balancer should stop sending traffic to an instance that would answer
every new run with 503: the shared session store (Redis) being unreachable
is such a state. The store reports it through :class:`ReportsAvailability`,
so the gateway's readiness probe can ask without knowing the backend.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

#: The reason ``/readyz`` gives while the shared session state is unreachable.
SHARED_STATE_UNAVAILABLE: Final = "shared state unavailable"


@runtime_checkable
class ReportsAvailability(Protocol):
    """A dependency that can say it cannot serve right now."""

    def unavailable_reason(self) -> str | None:
        """None while it can serve; otherwise a short reason (names no secret)."""
        ...
