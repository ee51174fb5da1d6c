"""The store's queue of blocking writes: counted, and ordered per transcript.

Every write goes to a :class:`~openclaw.sessions.fileio.BlockingIO`; this
queue counts them (so closing the store can wait until none is in flight)
and chains those of one transcript (so an append and a later rename of the
same file reach the disk in the order they were made).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import ParamSpec, TypeVar

from twisted.internet.defer import Deferred, gatherResults

from openclaw.core.drain import Drain
from openclaw.sessions.fileio import BlockingIO, InlineIO

_P = ParamSpec("_P")
_T = TypeVar("_T")


class WriteQueue:
    """Runs blocking calls on an executor, counted and (per key) in order."""

    def __init__(self, io: BlockingIO) -> None:
        self._io = io
        #: Writes submitted and not finished yet.
        self._pending = Drain()
        #: Per key, fires when its last submitted write has finished.
        self._tails: dict[Hashable, Deferred[None]] = {}

    def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        """Run ``fn`` on the executor, counted so :meth:`when_idle` can wait for it."""
        self._pending.add()
        d = self._io.run(fn, *args, **kwargs)
        d.addBoth(self._settled)
        return d

    def _settled(self, result: object) -> object:
        self._pending.done()
        return result

    def busy(self, key: Hashable) -> bool:
        """True while a write for ``key`` is queued or running."""
        return key in self._tails

    def serial(
        self,
        key: Hashable,
        fn: Callable[_P, _T],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """Run ``fn`` after every write submitted earlier for the same ``key``."""
        return self.serial_all((key,), fn, *args, **kwargs)

    def serial_all(
        self,
        keys: Sequence[Hashable],
        fn: Callable[_P, _T],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """Run ``fn`` after every write submitted earlier for any of ``keys``;
        later writes for any of them wait for it (a batch of renames)."""
        self._pending.add()
        before = [tail for tail in (self._tails.get(key) for key in keys) if tail is not None]
        done: Deferred[None] = Deferred()
        for key in keys:
            self._tails[key] = done
        result: Deferred[_T] = Deferred()

        def start(_: object = None) -> None:
            self._io.run(fn, *args, **kwargs).chainDeferred(result)

        def finished(outcome: object) -> object:
            for key in keys:
                if self._tails.get(key) is done:
                    del self._tails[key]
            done.callback(None)
            return self._settled(outcome)

        result.addBoth(finished)
        if not before:
            start()
        elif len(before) == 1:
            before[0].addCallback(start)
        else:
            gatherResults(before).addCallback(start)
        return result

    def when_idle(self) -> Deferred[None]:
        """Fires when no write is in flight."""
        return self._pending.drained()

    def stop(self) -> None:
        """Release the executor's threads; later calls run inline."""
        io, self._io = self._io, InlineIO()
        io.stop()
