"""CPU seconds and RSS of a process, read from ``/proc``.

The machine is shared and noisy, so every figure the benchmark reports comes
with the CPU each process actually used (``utime + stime`` from
``/proc/<pid>/stat``) and its resident memory (``VmRSS`` from
``/proc/<pid>/status``): those stay meaningful when wall-clock rates do not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Iterable, Mapping

import attrs

_TICKS = os.sysconf("SC_CLK_TCK")


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them when the harness dies (Linux)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_from_stat(raw: bytes, ticks: int = _TICKS) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``."""
    # The command name (field 2) is in parentheses and may contain spaces and
    # parentheses itself: split after the last ")".
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return cpu_from_stat(f.read())


def _status_kb(pid: int, key: bytes) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS``)."""
    return _status_kb(pid, b"VmRSS:")


def hwm_kb(pid: int) -> int:
    """Peak resident set size of ``pid`` in KiB (``VmHWM``)."""
    return _status_kb(pid, b"VmHWM:")


@attrs.frozen
class Usage:
    """What one process used over an interval."""

    cpu_s: float
    rss_kb: int
    peak_rss_kb: int


class Meter:
    """CPU used and peak RSS of several processes over one interval.

    ``start()`` records the CPU counters; a background thread samples RSS
    every ``interval`` seconds (the peak matters for S3/S4, where memory is
    held only while the streams are open); ``stop()`` returns the usage per
    name. Processes that have gone away report what was seen last.
    """

    def __init__(self, pids: Mapping[str, int], interval: float = 0.1) -> None:
        self._pids = dict(pids)
        self._interval = interval
        self._cpu0: dict[str, float] = {}
        self._cpu1: dict[str, float] = {}
        self._peak: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, name: str, pid: int) -> None:
        """Meter one more process from now on (a load generator started late)."""
        self._pids[name] = pid
        self._read_cpu(name, pid, self._cpu0)

    def _read_cpu(self, name: str, pid: int, into: dict[str, float]) -> None:
        with contextlib.suppress(OSError):
            into[name] = cpu_seconds(pid)

    def _sample(self) -> None:
        with self._lock:
            self._sample_locked()

    def _sample_locked(self) -> None:
        for name, pid in list(self._pids.items()):
            try:
                rss = rss_kb(pid)
            except OSError:
                continue
            self._last[name] = rss
            if rss > self._peak.get(name, 0):
                self._peak[name] = rss
            # Keep the CPU counter fresh so a process that exits mid-interval
            # still reports (almost) all it used.
            self._read_cpu(name, pid, self._cpu1)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> Meter:
        """Start metering now."""
        for name, pid in self._pids.items():
            self._read_cpu(name, pid, self._cpu0)
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="meter", daemon=True)
        self._thread.start()
        return self

    def sample_rss(self) -> dict[str, int]:
        """Current RSS (KiB) of every process, sampled now."""
        self._sample()
        return dict(self._last)

    def stop(self) -> dict[str, Usage]:
        """Stop metering; the usage of each process over the interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return {
            name: Usage(
                cpu_s=max(0.0, self._cpu1.get(name, 0.0) - self._cpu0.get(name, 0.0)),
                rss_kb=self._last.get(name, 0),
                peak_rss_kb=self._peak.get(name, 0),
            )
            for name in self._pids
            if name in self._cpu0
        }


def total_cpu(usages: Iterable[Usage]) -> float:
    """The CPU seconds of several processes together."""
    return sum(u.cpu_s for u in usages)
