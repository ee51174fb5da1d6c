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

import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.sessions.transcript import archive_suffix
from openclaw.sessions.writes import WriteQueue

__all__ = ["ArchiveSweeper", "SweepResult", "archive_time_ms", "remove_expired", "sweep_interval"]

log = Logger()

#: ``<id>.jsonl.deleted.2026-12-07T15-48-18.123Z`` (``archive_suffix``'s format).
_ARCHIVE = re.compile(r"\.jsonl\.(?:deleted|reset)\.(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d)\.(\d{3})Z\Z")
#: The time suffix's fixed width: as text it sorts as the times do.
_SUFFIX_CHARS = len("2026-12-07T15-48-18.123Z")
#: A sweep at least this often, however long the retention.
MAX_SWEEP_INTERVAL = 600.0


@frozen
class SweepResult:
    """What one sweep did."""

    removed: int = 0
    #: Archives (or sessions directories) that could not be removed (or read).
    failed: int = 0
    #: The sweep was told to stop before it finished.
    stopped: bool = False


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


def remove_expired(
    state_dir: Path, cutoff_ms: int, stop: Callable[[], bool] = lambda: False
) -> SweepResult:
    """Delete the archives made before ``cutoff_ms`` in every agent's sessions
    directory under ``state_dir`` (an IO thread's work).

    A name is compared as text with the cutoff's suffix first (about 0.1 us;
    a directory may hold millions of archives) and parsed only when older. One
    entry that cannot be removed (a directory, no permission) is counted and
    skipped, so it cannot hold back the rest. ``stop`` is checked as it goes.
    """
    try:
        agents = os.scandir(state_dir / "agents")
    except FileNotFoundError:
        return SweepResult()
    cutoff = archive_suffix(cutoff_ms)
    removed = failed = 0
    with agents:
        for agent in agents:
            swept = _sweep_directory(Path(agent.path) / "sessions", cutoff, stop)
            removed += swept.removed
            failed += swept.failed
            if swept.stopped:
                return SweepResult(removed, failed, stopped=True)
    return SweepResult(removed, failed)


def _sweep_directory(directory: Path, cutoff: str, stop: Callable[[], bool]) -> SweepResult:
    """:func:`remove_expired` for one sessions directory (``cutoff``: the
    archive suffix of the cutoff time)."""
    removed = failed = 0
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return SweepResult()
    except OSError:
        return SweepResult(failed=1)
    with entries:
        for entry in entries:
            name = entry.name
            if name[-_SUFFIX_CHARS:] >= cutoff or archive_time_ms(name) is None:
                continue
            if stop():
                return SweepResult(removed, failed, stopped=True)
            try:
                if entry.is_dir(follow_symlinks=False):
                    failed += 1
                else:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
            except OSError:
                failed += 1
    return SweepResult(removed, failed)


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
        self._sweeping: Deferred[SweepResult] | None = None
        #: Set from the reactor, read by the sweep on its IO thread.
        self._stopping = threading.Event()
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = clock

    def start(self) -> None:
        """Sweep now and then every interval."""
        if not self._loop.running:
            self._loop.start(sweep_interval(self._retention), now=True)

    def stop(self) -> None:
        """No more sweeps; one in progress ends at its next entry."""
        self._stopping.set()
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> Deferred[SweepResult] | None:
        """One sweep (skipped while the previous one still runs)."""
        if self._sweeping is not None:
            return None
        cutoff = int((self._clock.seconds() - self._retention) * 1000)
        sweeping = self._sweeping = self._writes.run(
            remove_expired, self._state_dir, cutoff, self._stopping.is_set
        )
        sweeping.addCallback(self._swept)
        sweeping.addErrback(self._failed)
        return sweeping

    def _swept(self, result: SweepResult) -> SweepResult:
        self._sweeping = None
        if result.removed:
            log.info(
                "deleted {count} archived transcripts older than {seconds:.0f} s",
                count=result.removed,
                seconds=self._retention,
            )
        if result.failed:
            log.warn(
                "could not delete {count} expired archived transcripts (not files, or no "
                "permission); the next sweep tries again",
                count=result.failed,
            )
        return result

    def _failed(self, failure: Failure) -> SweepResult:
        self._sweeping = None
        log.failure("could not delete expired archived transcripts", failure)
        return SweepResult()
