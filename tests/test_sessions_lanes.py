"""Session lanes: one holder per key, FIFO, cancellable waits, nothing left behind."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.lanes import Release, SessionLanes


class LaneTests(SynchronousTestCase):
    def test_one_holder_per_key_in_fifo_order(self) -> None:
        """Waiters on a key get it one at a time, in the order they asked."""
        lanes = SessionLanes()
        order: list[str] = []
        releases: dict[str, Release] = {}

        def got(name: str) -> None:
            def cb(release: Release) -> None:
                order.append(name)
                releases[name] = release

            lanes.acquire("k").addCallback(cb)

        for name in ("a", "b", "c"):
            got(name)
        self.assertEqual(order, ["a"])
        self.assertEqual(lanes.queued("k"), 2)
        releases["a"]()
        self.assertEqual(order, ["a", "b"])
        releases["b"]()
        releases["c"]()
        self.assertEqual(order, ["a", "b", "c"])
        self.assertEqual(len(lanes), 0)

    def test_different_keys_do_not_wait_for_each_other(self) -> None:
        """Holding one key does not delay another."""
        lanes = SessionLanes()
        first = self.successResultOf(lanes.acquire("k1"))
        self.successResultOf(lanes.acquire("k2"))
        self.assertTrue(lanes.is_busy("k1") and lanes.is_busy("k2"))
        first()
        self.assertFalse(lanes.is_busy("k1"))

    def test_cancelled_waiter_is_skipped(self) -> None:
        """Cancelling a queued acquisition removes it; the next waiter gets the lane."""
        lanes = SessionLanes()
        release = self.successResultOf(lanes.acquire("k"))
        second = lanes.acquire("k")
        third = lanes.acquire("k")
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertEqual(lanes.queued("k"), 1)
        release()
        self.successResultOf(third)
        self.assertTrue(lanes.is_busy("k"))

    def test_release_is_idempotent(self) -> None:
        """Releasing twice does not hand the lane to two waiters."""
        lanes = SessionLanes()
        release = self.successResultOf(lanes.acquire("k"))
        second = lanes.acquire("k")
        third = lanes.acquire("k")
        release()
        release()
        self.successResultOf(second)
        self.assertNoResult(third)


class TryAcquireTests(SynchronousTestCase):
    def test_free_key_is_taken_at_once(self) -> None:
        """try_acquire takes a free lane without a Deferred; others then wait behind it."""
        lanes = SessionLanes()
        release = lanes.try_acquire("k")
        assert release is not None
        self.assertTrue(lanes.is_busy("k"))
        waiting = lanes.acquire("k")
        self.assertNoResult(waiting)
        release()
        self.successResultOf(waiting)()
        self.assertEqual(len(lanes), 0)

    def test_busy_key_is_not_queued(self) -> None:
        """On a busy lane try_acquire returns None and queues nothing."""
        lanes = SessionLanes()
        holder = self.successResultOf(lanes.acquire("k"))
        self.assertIsNone(lanes.try_acquire("k"))
        self.assertEqual(lanes.queued("k"), 0)
        holder()
        self.assertEqual(len(lanes), 0)
        release = lanes.try_acquire("k")
        assert release is not None
        release()
        release()  # idempotent, like acquire's
        self.assertEqual(len(lanes), 0)
