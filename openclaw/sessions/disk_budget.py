"""``session.maintenance.maxDiskBytes``: a per-agent budget for the sessions
directory, kept by deleting the oldest archived transcripts.

OpenClaw measures an agent's sessions directory by the sizes of its files
and, once they pass the budget, deletes the oldest reset and deletion archives
until the directory is down to ``highWaterBytes``. Live transcripts and the
index are counted but never deleted, so a directory of live sessions alone can
stay over the budget; the caller warns about that.

A directory may hold millions of archives (stateless traffic leaves one per
request), so the cleanup does not keep one record per file: the first pass
adds up the bytes of the archives made in each minute, which says how many
minutes of the oldest archives must go; the second pass deletes those, and of
the last of those minutes only as many (in directory order) as are still
needed. So the oldest go first, exact to the minute. Runs on an IO thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from attrs import frozen

from openclaw.sessions.archive_retention import archive_stamp

__all__ = ["BudgetResult", "DiskBudget", "DiskUse", "enforce_budget", "measure"]

#: ``2026-12-07T15-48``: an archive stamp cut to the minute.
_MINUTE_CHARS = len("2026-12-07T15-48")
#: Entries measured between two looks at the stop flag (about 5 ms of work).
_STOP_CHECK_EVERY = 1024


@frozen
class DiskBudget:
    """The budget and where a cleanup stops (bytes; ``0 < high_water <= max``)."""

    max_bytes: int
    high_water_bytes: int


@frozen
class DiskUse:
    """A sessions directory's file bytes, and how many of them are archives."""

    used_bytes: int = 0
    archived_bytes: int = 0


@frozen
class BudgetResult:
    """What one cleanup of one sessions directory found and did."""

    #: The directory's bytes after the cleanup.
    used_bytes: int = 0
    removed: int = 0
    freed_bytes: int = 0
    #: Archives that could not be deleted.
    failed: int = 0
    stopped: bool = False
    #: The directory could not be read (nothing was measured or deleted).
    unreadable: bool = False


def enforce_budget(
    directory: Path, budget: DiskBudget, stop: Callable[[], bool] = lambda: False
) -> BudgetResult:
    """Measure ``directory`` (the sizes of its files, not of subdirectories)
    and, past ``budget.max_bytes``, delete its oldest archives until it is at
    or under ``budget.high_water_bytes``. ``stop`` is checked between
    deletions."""
    try:
        measured = _measure(directory, stop)
    except _StoppedError:
        return BudgetResult(stopped=True)
    if measured is None:
        return BudgetResult(unreadable=True)
    used, by_minute = measured
    if used <= budget.max_bytes:
        return BudgetResult(used_bytes=used)
    need = used - budget.high_water_bytes
    boundary, older = _boundary_minute(by_minute, need)
    # Every archive older than the boundary minute goes; of the boundary
    # minute's (listed in no particular order), only as many as still needed.
    boundary_need = need - older
    removed = freed = boundary_freed = failed = 0
    try:
        entries = os.scandir(directory)
    except OSError:
        return BudgetResult(used_bytes=used, unreadable=True)
    with entries:
        for entry in entries:
            stamp = archive_stamp(entry.name)
            if stamp is None:
                continue
            minute = stamp[:_MINUTE_CHARS]
            at_boundary = minute == boundary
            if boundary is not None and (
                minute > boundary or (at_boundary and boundary_freed >= boundary_need)
            ):
                continue
            if stop():
                return BudgetResult(used - freed, removed, freed, failed, stopped=True)
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue  # never counted: not an archive file
                size = entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError:
                failed += 1
                continue
            removed += 1
            freed += size
            if at_boundary:
                boundary_freed += size
    return BudgetResult(used - freed, removed, freed, failed)


def measure(directory: Path) -> DiskUse | None:
    """What ``directory`` holds, as the budget counts it (None: unreadable)."""
    measured = _measure(directory)
    if measured is None:
        return None
    used, by_minute = measured
    return DiskUse(used, sum(by_minute.values()))


class _StoppedError(Exception):
    """A measurement was told to stop."""


def _measure(
    directory: Path, stop: Callable[[], bool] = lambda: False
) -> tuple[int, dict[str, int]] | None:
    """The directory's file bytes, and its archives' bytes per minute made;
    None when it cannot be read (a missing directory is empty). ``stop`` is
    checked every :data:`_STOP_CHECK_EVERY` entries (raises :class:`_StoppedError`):
    a directory of millions takes seconds, and a gateway stopping waits."""
    used = 0
    seen = 0
    by_minute: dict[str, int] = {}
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return 0, by_minute
    except OSError:
        return None
    with entries:
        for entry in entries:
            seen += 1
            if not seen % _STOP_CHECK_EVERY and stop():
                raise _StoppedError
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue  # deleted meanwhile
            used += size
            stamp = archive_stamp(entry.name)
            if stamp is not None:
                minute = stamp[:_MINUTE_CHARS]
                by_minute[minute] = by_minute.get(minute, 0) + size
    return used, by_minute


def _boundary_minute(by_minute: dict[str, int], need: int) -> tuple[str | None, int]:
    """The minute whose archives, with every older one, add up to ``need``,
    and the bytes of the older ones; ``(None, all)`` when all of them together
    do not (delete them all)."""
    older = 0
    for minute in sorted(by_minute):
        size = by_minute[minute]
        if older + size >= need:
            return minute, older
        older += size
    return None, older
