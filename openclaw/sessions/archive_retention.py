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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from attrs import frozen

__all__ = [
    "SweepResult",
    "archive_stamp",
    "archive_time_ms",
    "sweep_directory",
    "sweep_interval",
]

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


def archive_stamp(name: str) -> str | None:
    """The time in an archive's name (``2026-12-07T15-48-18``, fixed width, so
    it sorts as the times do); None for any other file."""
    if ".jsonl." not in name:  # most names, cheaply
        return None
    match = _ARCHIVE.search(name)
    return match.group(1) if match is not None else None


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


def sweep_directory(directory: Path, cutoff: str, stop: Callable[[], bool]) -> SweepResult:
    """Delete the archives made before ``cutoff`` (the archive suffix of the
    cutoff time) in one sessions directory (an IO thread's work).

    A name is compared as text with the cutoff first (about 0.1 us; a
    directory may hold millions of archives) and parsed only when older. One
    entry that cannot be removed (a directory, no permission) is counted and
    skipped, so it cannot hold back the rest. ``stop`` is checked as it goes.
    """
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
