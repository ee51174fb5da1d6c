"""The shared bookkeeping helpers: Drain and RecentlyFinished."""

from __future__ import annotations

from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.drain import Drain
from openclaw.core.recent import RecentlyFinished


class DrainTests(SynchronousTestCase):
    """Waiters fire when the count reaches zero."""

    def test_idle_drain_fires_at_once(self) -> None:
        """Nothing in progress: drained() has already fired."""
        self.assertIsNone(self.successResultOf(Drain().drained()))

    def test_waiters_fire_at_zero(self) -> None:
        """Two pieces of work: the waiter fires after the second ends, not the first."""
        drain = Drain()
        drain.add()
        drain.add()
        waiter = drain.drained()
        drain.done()
        self.assertNoResult(waiter)
        self.assertEqual(len(drain), 1)
        drain.done()
        self.assertIsNone(self.successResultOf(waiter))
        drain.done()  # an extra end is ignored
        self.assertEqual(len(drain), 0)

    def test_timed_out_waiter_is_forgotten(self) -> None:
        """A waiter cut by addTimeout fails with TimeoutError; the drain later fires
        the others without touching it."""
        clock = Clock()
        drain = Drain()
        drain.add()
        impatient = drain.drained().addTimeout(1, clock)
        patient = drain.drained()
        clock.advance(1)
        self.failureResultOf(impatient, DeferredTimeoutError)
        drain.done()
        self.assertIsNone(self.successResultOf(patient))


class RecentlyFinishedTests(SynchronousTestCase):
    """Bounded in entries and in age."""

    def test_oldest_goes_first_when_full(self) -> None:
        """Past max_entries the oldest entry is forgotten; remembering again renews."""
        recent: RecentlyFinished[int] = RecentlyFinished(Clock(), max_entries=2)
        recent.remember("a", 1)
        recent.remember("b", 2)
        recent.remember("a", 3)
        recent.remember("c", 4)
        self.assertEqual([recent.get(k) for k in "abc"], [3, None, 4])
        self.assertEqual(len(recent), 2)

    def test_entries_expire(self) -> None:
        """An entry is forgotten ttl_seconds after it was remembered."""
        clock = Clock()
        recent: RecentlyFinished[str] = RecentlyFinished(clock, max_entries=10, ttl_seconds=5)
        recent.remember("a", "x")
        clock.advance(3)
        recent.remember("b", "y")
        clock.advance(2.5)
        self.assertEqual((recent.get("a"), recent.get("b")), (None, "y"))
        recent.forget("b")
        self.assertIsNone(recent.get("b"))
