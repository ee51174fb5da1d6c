"""A bounded memory of recently finished things, by id.

``agent.wait`` asks about runs that may have ended a moment ago, and a resent
``idempotencyKey`` about a turn that ended a while ago: each keeps such a
memory, bounded in entries (the oldest goes first) and optionally in age.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime

V = TypeVar("V")


class RecentlyFinished(Generic[V]):
    """At most ``max_entries`` values, each forgotten ``ttl_seconds`` after it
    was remembered (never, when ``ttl_seconds`` is None)."""

    def __init__(
        self, clock: IReactorTime, *, max_entries: int, ttl_seconds: float | None = None
    ) -> None:
        self._clock = clock
        self._max = max_entries
        self._ttl = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def remember(self, key: str, value: V) -> None:
        """Keep ``value`` under ``key`` (as the newest entry)."""
        self._entries.pop(key, None)
        self._entries[key] = (self._clock.seconds(), value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        self._expire()

    def get(self, key: str) -> V | None:
        """The value kept under ``key``, unless it was forgotten."""
        self._expire()
        kept = self._entries.get(key)
        return kept[1] if kept is not None else None

    def forget(self, key: str) -> None:
        """Drop ``key`` (a run id reused by a new run)."""
        self._entries.pop(key, None)

    def _expire(self) -> None:
        if self._ttl is None:
            return
        horizon = self._clock.seconds() - self._ttl
        entries = self._entries
        while entries:
            key, (kept_at, _) = next(iter(entries.items()))
            if kept_at >= horizon:
                break
            del entries[key]
