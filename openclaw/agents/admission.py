"""Run admission: at most ``maxConcurrent`` runs at once, a bounded queue behind.

OpenClaw caps parallel agent runs across sessions with
``agents.defaults.maxConcurrent`` (each session is still serialised by its
lane) and queues the rest. Here the queue is bounded too
(``gateway.maxQueuedRuns``): past ``maxConcurrent + maxQueuedRuns`` runs not
yet settled, :meth:`RunAdmission.check` raises :class:`RunQueueFullError`,
which HTTP answers ``429`` with ``Retry-After`` and the WebSocket
``UNAVAILABLE`` with ``retryAfterMs``.

:class:`GatedLanes` is the session lanes with the global slot folded in: a run
first waits for its session's lane, then for a slot, and releasing gives both
back. Waiting for a slot while holding the lane keeps the session FIFO.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Final

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

from openclaw.agents.types import RunQueueFullError
from openclaw.sessions.lanes import Release, SessionLanes, once

#: OpenClaw's floor for the CPU-derived default of ``maxConcurrent``.
MIN_DEFAULT_CONCURRENT: Final = 8
#: Runs waiting for a slot, at most (beyond them new runs are refused).
DEFAULT_MAX_QUEUED: Final = 1000
#: What a refused client is told to wait.
DEFAULT_RETRY_AFTER_SECONDS: Final = 1.0


def default_max_concurrent(cpus: int | None = None) -> int:
    """OpenClaw's default: ``max(8, available CPUs * 4)``."""
    if cpus is None:
        affinity = getattr(os, "sched_getaffinity", None)
        cpus = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return max(MIN_DEFAULT_CONCURRENT, cpus * 4)


class RunAdmission:
    """Global run slots: ``max_concurrent`` holders, FIFO waiters behind them."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queued: int = DEFAULT_MAX_QUEUED,
        retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS,
    ) -> None:
        if max_concurrent < 1 or max_queued < 0:
            raise ValueError("maxConcurrent must be >= 1 and the queue bound >= 0")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.retry_after_seconds = retry_after_seconds
        self.running = 0
        self._waiting: deque[Deferred[Release]] = deque()

    @property
    def waiting(self) -> int:
        """Acquisitions waiting for a slot."""
        return len(self._waiting)

    @property
    def capacity(self) -> int:
        """Runs that may exist at once, running or queued."""
        return self.max_concurrent + self.max_queued

    def check(self, unsettled_runs: int) -> None:
        """Refuse a new run when ``unsettled_runs`` (running, or queued in a
        session lane or for a slot) already fill the capacity."""
        if unsettled_runs >= self.capacity:
            raise RunQueueFullError(self.retry_after_seconds, self.capacity)

    def try_acquire(self) -> Release | None:
        """A slot's release callable when one is free now (and nobody waits)."""
        if self.running >= self.max_concurrent or self._waiting:
            return None
        self.running += 1
        return self._releaser()

    def acquire(self) -> Deferred[Release]:
        """Fire with a release callable once a slot is free; cancelling a waiter
        removes it from the queue."""
        release = self.try_acquire()
        if release is not None:
            return succeed(release)

        def forget(d: Deferred[Release]) -> None:
            if d in self._waiting:
                self._waiting.remove(d)

        waiter: Deferred[Release] = Deferred(forget)
        self._waiting.append(waiter)
        return waiter

    def _releaser(self) -> Release:
        return once(self._hand_over)

    def _hand_over(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if waiter.called:  # pragma: no cover - cancel removes the waiter
                continue
            waiter.callback(self._releaser())
            return
        self.running -= 1


class GatedLanes(SessionLanes):
    """Session lanes whose holders also hold one of the global run slots.

    It wraps the lanes it is given (in-process ones by default; a shared
    store's lanes when several workers serialise sessions together), so the
    global cap composes with any lane implementation.
    """

    def __init__(self, admission: RunAdmission, lanes: SessionLanes | None = None) -> None:
        super().__init__()
        self.admission = admission
        self.inner = lanes if lanes is not None else SessionLanes()

    def try_acquire(self, key: str) -> Release | None:
        """Both the session's lane and a slot, now, or neither."""
        if self.inner.is_busy(key):
            return None
        slot = self.admission.try_acquire()
        if slot is None:
            return None
        lane = self.inner.try_acquire(key)
        if lane is None:  # pragma: no cover - taken by another process meanwhile
            slot()
            return None
        return _both(lane, slot)

    def acquire(self, key: str) -> Deferred[Release]:
        """The session's lane first (FIFO), then a slot; cancel works at either step."""
        return _GatedAcquisition(self.inner.acquire(key), self.admission).result

    def check_available(self) -> None:
        """The wrapped lanes' check (a shared store may be unreachable)."""
        self.inner.check_available()

    def is_busy(self, key: str) -> bool:
        """True while some holder has the session's lane."""
        return self.inner.is_busy(key)

    def queued(self, key: str) -> int:
        """Acquisitions waiting behind the session's current holder."""
        return self.inner.queued(key)

    def __len__(self) -> int:
        return len(self.inner)


class _GatedAcquisition:
    """One run waiting for its lane, then for a slot."""

    def __init__(self, lane_wait: Deferred[Release], admission: RunAdmission) -> None:
        self._admission = admission
        self._lane_wait = lane_wait
        self._slot_wait: Deferred[Release] | None = None
        self._lane: Release | None = None
        self.result: Deferred[Release] = Deferred(self._cancel)
        lane_wait.addCallbacks(self._got_lane, self._failed)

    def _got_lane(self, lane: Release) -> None:
        self._lane = lane
        self._slot_wait = self._admission.acquire()
        self._slot_wait.addCallbacks(self._got_slot, self._failed)

    def _got_slot(self, slot: Release) -> None:
        lane, self._lane = self._lane, None
        assert lane is not None
        self.result.callback(_both(lane, slot))

    def _failed(self, failure: Failure) -> None:
        if isinstance(failure.value, CancelledError) or self.result.called:
            return
        self._drop_lane()
        self.result.errback(failure)

    def _cancel(self, _: Deferred[Release]) -> None:
        if not self._lane_wait.called:
            self._lane_wait.cancel()
        if self._slot_wait is not None and not self._slot_wait.called:
            self._slot_wait.cancel()
        self._drop_lane()

    def _drop_lane(self) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            lane()


def _both(first: Release, second: Release) -> Release:
    """One release callable for two holds (idempotent)."""

    def release() -> None:
        try:
            first()
        finally:
            second()

    return once(release)
