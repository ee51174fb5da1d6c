"""``session.maintenance.resetArchiveRetention``: archived transcripts are
deleted once they are older than the retention (OpenClaw's key, opt-in).

Archives are the ``<id>.jsonl.deleted.<time>`` and ``<id>.jsonl.reset.<time>``
files that ``sessions.delete``, ``sessions.reset`` and maintenance leave in an
agent's sessions directory. A gateway that serves stateless requests leaves
one per request, so without a retention they pile up without bound. The
archive's own name says when it was made, so a sweep reads directory entries
only (no ``stat``), on the store's IO threads, a few times per retention
period. Live transcripts (``<id>.jsonl``) are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.sessions.writes import WriteQueue

__all__ = ["ArchiveSweeper", "archive_time_ms", "remove_expired", "sweep_interval"]

log = Logger()

#: ``<id>.jsonl.deleted.2026-12-07T15-48-18.123Z`` (``archive_suffix``'s format).
_ARCHIVE = re.compile(r"\.jsonl\.(?:deleted|reset)\.(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d)\.(\d{3})Z$")
#: A sweep at least this often, however long the retention.
MAX_SWEEP_INTERVAL = 600.0


def archive_time_ms(name: str) -> int | None:
    """When the archive called ``name`` was made (epoch ms); None for any
    other file."""
    match = _ARCHIVE.search(name)
    if match is None:
        return None
    try:
        made = datetime.strptime(match.group(1), "%Y-%m-%dT%H-%M-%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(made.timestamp()) * 1000 + int(match.group(2))


def remove_expired(state_dir: Path, cutoff_ms: int) -> int:
    """Delete the archives made before ``cutoff_ms`` in every agent's sessions
    directory under ``state_dir``; returns how many (an IO thread's work)."""
    removed = 0
    agents = state_dir / "agents"
    with contextlib.suppress(FileNotFoundError):
        for agent in os.scandir(agents):
            try:
                entries = os.scandir(Path(agent.path) / "sessions")
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:  # read lazily: a directory may hold millions of archives
                for entry in entries:
                    made = archive_time_ms(entry.name)
                    if made is None or made >= cutoff_ms:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
    return removed


def sweep_interval(retention_seconds: float) -> float:
    """Seconds between sweeps: a quarter of the retention, at most 10 minutes."""
    return max(1.0, min(retention_seconds / 4, MAX_SWEEP_INTERVAL))


class ArchiveSweeper:
    """Deletes expired archives every :func:`sweep_interval` on the store's IO threads."""

    def __init__(
        self,
        state_dir: Path,
        *,
        retention_seconds: float,
        clock: IReactorTime,
        writes: WriteQueue,
    ) -> None:
        """
        :param writes: the store's write queue: sweeps run on its IO threads and
            the store's ``close`` waits for a sweep in progress.
        """
        self._state_dir = state_dir
        self._retention = retention_seconds
        self._clock = clock
        self._writes = writes
        self._sweeping: Deferred[int] | None = None
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = clock

    def start(self) -> None:
        """Sweep now and then every interval."""
        if not self._loop.running:
            self._loop.start(sweep_interval(self._retention), now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> Deferred[int] | None:
        """One sweep (skipped while the previous one still runs)."""
        if self._sweeping is not None:
            return None
        cutoff = int((self._clock.seconds() - self._retention) * 1000)
        sweeping = self._sweeping = self._writes.run(remove_expired, self._state_dir, cutoff)
        sweeping.addCallback(self._swept)
        sweeping.addErrback(self._failed)
        return sweeping

    def _swept(self, removed: int) -> int:
        self._sweeping = None
        if removed:
            log.info(
                "deleted {count} archived transcripts older than {seconds:.0f} s",
                count=removed,
                seconds=self._retention,
            )
        return removed

    def _failed(self, failure: Failure) -> int:
        self._sweeping = None
        log.failure("could not delete expired archived transcripts", failure)
        return 0
