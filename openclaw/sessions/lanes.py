"""Session lanes: at most one run at a time per session key, FIFO.

Two turns on one session must not interleave (each turn reads the transcript
the previous one wrote), while different sessions run in parallel. A lane
exists only while it is busy or has waiters, so one-off keys (stateless
chat completions) leave nothing behind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed

Release = Callable[[], None]


def once(action: Callable[[], None]) -> Release:
    """A release that runs ``action`` the first time it is called only (every
    release a lane hands out may be called twice: by the run and by a cleanup)."""
    done = False

    def release() -> None:
        nonlocal done
        if done:
            return
        done = True
        action()

    return release


class _Lane:
    """One key's state: whether a holder runs, and who waits behind it."""

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        #: Made by the first waiter: most lanes (every stateless chat
        #: completion has its own) never queue, and an empty deque is 600 bytes.
        self.waiting: deque[Deferred[Release]] | None = None


class SessionLanes:
    """Serialises work per key; ``acquire`` fires with a one-shot release callable."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    def acquire(self, key: str) -> Deferred[Release]:
        """Fire (possibly at once) when ``key`` is free.

        Cancelling the returned Deferred while it waits removes it from the
        queue; it then never holds the lane.
        """
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if not lane.busy:
            lane.busy = True
            return succeed(self._releaser(key))

        def forget(d: Deferred[Release]) -> None:
            current = self._lanes.get(key)
            if current is not None and current.waiting and d in current.waiting:
                current.waiting.remove(d)

        waiter: Deferred[Release] = Deferred(forget)
        if lane.waiting is None:
            lane.waiting = deque()
        lane.waiting.append(waiter)
        return waiter

    def try_acquire(self, key: str) -> Release | None:
        """The lane's release callable when ``key`` is free now, else None
        (nothing is queued): :meth:`acquire` without a Deferred."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        elif lane.busy:
            return None
        lane.busy = True
        return self._releaser(key)

    def check_available(self) -> None:
        """Raise SharedStateUnavailableError when no lane can be granted now
        (a shared backend is unreachable); in-process lanes always can."""

    def is_busy(self, key: str) -> bool:
        """True while some holder has the lane."""
        lane = self._lanes.get(key)
        return lane is not None and lane.busy

    def queued(self, key: str) -> int:
        """How many acquisitions wait behind the current holder."""
        lane = self._lanes.get(key)
        return 0 if lane is None or lane.waiting is None else len(lane.waiting)

    def __len__(self) -> int:
        """Number of keys with a holder or waiters (idle keys are dropped)."""
        return len(self._lanes)

    def _releaser(self, key: str) -> Release:
        return once(lambda: self._hand_over(key))

    def _hand_over(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is None:  # pragma: no cover - a release always has its lane
            return
        waiting = lane.waiting
        while waiting:
            waiter = waiting.popleft()
            if waiter.called:
                continue
            waiter.callback(self._releaser(key))
            return
        del self._lanes[key]
