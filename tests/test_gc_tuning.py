"""The cycle collector settings the gateway's own processes apply (issue 16)."""

from __future__ import annotations

import gc

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.gc_tuning import YOUNG_THRESHOLD, tune_collector_when_running


class TuneCollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        threshold = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *threshold)
        self.addCleanup(gc.unfreeze)
        gc.set_threshold(700, *threshold[1:])  # Python's default, whatever ran before

    def test_applied_once_the_reactor_runs(self) -> None:
        """Nothing changes before the reactor runs; then the objects alive are
        frozen and young collections wait for 3,000 allocations."""
        gc.unfreeze()
        reactor = MemoryReactor()
        tune_collector_when_running(reactor)
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertNotEqual(gc.get_threshold()[0], YOUNG_THRESHOLD)
        reactor.run()
        self.assertGreater(gc.get_freeze_count(), 1000)
        self.assertEqual(gc.get_threshold()[0], YOUNG_THRESHOLD)
