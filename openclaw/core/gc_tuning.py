"""Python's cycle collector, set for a long-running gateway process.

A request's objects are freed by reference counting (tests/test_reference_cycles.py
keeps it so), so collections find next to nothing to free; their cost is
walking objects that are still alive. Two settings cut it (issue 16, measured
under S1 at 16 concurrent requests, docs/benchmarks.md):

- :func:`gc.freeze` once the process has started moves the objects of the
  loaded modules, the config and the app (about 67,000) out of the
  collector's generations. Every full collection walked them all, a 40-45 ms
  pause of the event loop each time.
- A young-generation threshold of 3,000 container allocations (net of frees)
  instead of Python's 700: the requests in flight alone kept the count near
  700, so a young collection ran after almost every request.

Together: collector time from 0.12 ms to under 0.01 ms per request. This is
process-wide, so ``twistd openclaw`` and the workers apply it; an application
embedding the gateway decides for itself (docs/embedding.md).
"""

from __future__ import annotations

import gc

from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

__all__ = ["YOUNG_THRESHOLD", "tune_collector", "tune_collector_when_running"]

#: Net container allocations between two young collections (Python: 700).
YOUNG_THRESHOLD = 3000

log = Logger()


def tune_collector() -> None:
    """Collect once, freeze what survived start-up, make young collections rarer."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    log.info(
        "cycle collector tuned: {frozen} start-up objects frozen, young threshold {threshold}",
        frozen=gc.get_freeze_count(),
        threshold=YOUNG_THRESHOLD,
    )


def tune_collector_when_running(reactor: IReactorCore) -> None:
    """Apply :func:`tune_collector` once ``reactor`` runs (the service is built
    and started by then, so its objects are frozen too)."""
    reactor.callWhenRunning(tune_collector)
