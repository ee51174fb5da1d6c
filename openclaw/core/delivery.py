"""Writes that arrive together leave together: one synchronous delivery batch.

An upstream connection hands a whole socket read (up to hundreds of model
events) to the run in one call, and every event becomes a frame for a
client. Written one by one, each frame costs a chunk header, a transport
append and a producer check. Inside a batch a writer keeps its frames and
asks for one flush instead; the flushes run when the outermost batch ends,
still inside the same reactor turn, so a stream writes once per upstream
read and nothing waits for a later turn.

The batch is synchronous (a ``try``/``finally`` around one delivery), so it
never spans reactor turns; outside any batch writers write at once, which is
also what in-memory tests see.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

log = Logger()


class DeliveryBatch:
    """Nested delivery scopes and the flushes asked for inside them."""

    __slots__ = ("_depth", "_flushes")

    def __init__(self) -> None:
        self._depth = 0
        self._flushes: list[Callable[[], None]] = []

    @property
    def open(self) -> bool:
        """True inside a delivery: frames may wait for :meth:`end`."""
        return self._depth > 0

    def begin(self) -> None:
        """Enter a delivery (deliveries nest; the outermost one flushes)."""
        self._depth += 1

    def end(self) -> None:
        """Leave a delivery; the outermost one runs every flush asked for."""
        self._depth -= 1
        if self._depth:
            return
        while self._flushes:
            flushes, self._flushes = self._flushes, []
            for flush in flushes:
                try:
                    flush()
                except Exception:
                    log.failure("a delivery flush failed")

    def defer(self, flush: Callable[[], None]) -> None:
        """Run ``flush`` when the delivery ends (callers ask once per delivery)."""
        self._flushes.append(flush)


#: The process's batch: deliveries happen on the reactor thread only, and the
#: upstream connection and the SSE writers meet here without knowing each other.
DELIVERY = DeliveryBatch()
