"""A count of unfinished work and the waiters for it to reach zero.

Graceful shutdown waits for several such counts (requests in flight, open
connections, pending session writes); each keeps one :class:`Drain`.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed


class Drain:
    """Counts started-but-unfinished work; :meth:`drained` fires at zero."""

    __slots__ = ("_count", "_waiters")

    def __init__(self) -> None:
        self._count = 0
        self._waiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        return self._count

    def add(self) -> None:
        """One more piece of work began."""
        self._count += 1

    def done(self) -> None:
        """One piece ended; at zero every waiter fires (extra calls are ignored)."""
        if self._count == 0:
            return
        self._count -= 1
        if self._count == 0:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                # A waiter its caller cancelled (a timeout) ignores this.
                waiter.callback(None)

    def drained(self) -> Deferred[None]:
        """Fires once the count is zero (at once if it is). Cancelling it, for
        instance with ``addTimeout``, only stops that caller's wait."""
        if self._count == 0:
            return succeed(None)
        waiters = self._waiters

        def forget(waiter: Deferred[None]) -> None:
            if waiter in waiters:
                waiters.remove(waiter)

        waiter: Deferred[None] = Deferred(forget)
        waiters.append(waiter)
        return waiter
