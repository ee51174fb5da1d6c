"""A bounded in-memory ring buffer of recent gateway log lines, for ``logs.tail``.

The service registers a :class:`LogBuffer` with the global log publisher; the
WebSocket ``logs.tail`` method reads it. Memory is bounded both in lines and in
bytes: the oldest lines are dropped first. Every line gets a sequence number,
which is the cursor a following client hands back to get only newer lines.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

from openclaw.core.logformat import escape_controls

DEFAULT_MAX_LINES = 2000
DEFAULT_MAX_BYTES = 1024 * 1024
#: One line never holds more than this many characters (a huge repr, a body).
MAX_LINE_CHARS = 4000


@frozen
class LogTail:
    """A slice of the buffer.

    ``cursor`` is the sequence number of the next line to be written; ``reset``
    says the client's cursor no longer matched this buffer (the gateway
    restarted, or the client's lines were already dropped) and ``truncated``
    that older lines were left out to honour the limits.
    """

    lines: tuple[str, ...]
    cursor: int
    size: int
    truncated: bool
    reset: bool


def _iso(ts: float) -> str:
    whole = int(ts)
    millis = int((ts - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def format_log_line(event: LogEvent) -> str:
    """``<ISO time> <level> [<namespace>] <message>`` on one line."""
    level = event.get("log_level")
    level_name = getattr(level, "name", "info") if level is not None else "info"
    try:
        text = formatEvent(event)
    except Exception:  # formatEvent already guards; stay safe anyway
        text = "(unformattable log event)"
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}: {failure.type.__name__}: {failure.getErrorMessage()}"
    ts = event.get("log_time")
    stamp = _iso(ts if isinstance(ts, int | float) else time.time())
    namespace = event.get("log_namespace") or "-"
    line = f"{stamp} {level_name} [{namespace}] {text}".replace("\r", "\\r").replace("\n", "\\n")
    # A failure's message, or a field logged without the scrubber in front,
    # may still carry a terminal escape: `openclaw logs` prints these lines.
    line = escape_controls(line)
    if len(line) > MAX_LINE_CHARS:
        line = line[: MAX_LINE_CHARS - 1] + "\u2026"
    return line


@implementer(ILogObserver)
class LogBuffer:
    """Keeps the last log lines in memory, bounded in count and bytes."""

    def __init__(
        self,
        max_lines: int = DEFAULT_MAX_LINES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        formatter: Callable[[LogEvent], str] = format_log_line,
    ) -> None:
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("a log buffer needs room for at least one line")
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._formatter = formatter
        self._lines: deque[tuple[int, str, int]] = deque()
        self._bytes = 0
        self._next_seq = 0

    def __call__(self, event: dict[str, Any]) -> None:
        """Observe one log event (never raises: it runs inside the publisher)."""
        try:
            line = self._formatter(event)
        except Exception:
            return
        self.append(line)

    def append(self, line: str) -> None:
        """Add one already formatted line."""
        size = len(line.encode("utf-8")) + 1
        self._lines.append((self._next_seq, line, size))
        self._next_seq += 1
        self._bytes += size
        while len(self._lines) > self._max_lines or (
            self._bytes > self._max_bytes and len(self._lines) > 1
        ):
            _, _, dropped = self._lines.popleft()
            self._bytes -= dropped

    @property
    def cursor(self) -> int:
        """The sequence number the next line will get."""
        return self._next_seq

    def __len__(self) -> int:
        return len(self._lines)

    def tail(
        self, *, cursor: int | None = None, limit: int = 200, max_bytes: int = 250_000
    ) -> LogTail:
        """Lines after ``cursor`` (or the last ``limit`` lines), newest last.

        At most ``limit`` lines and ``max_bytes`` bytes are returned; when more
        were available the newest win and ``truncated`` is set.
        """
        oldest = self._lines[0][0] if self._lines else self._next_seq
        reset = False
        truncated = False
        if cursor is None:
            candidates = list(self._lines)
        elif cursor > self._next_seq or cursor < 0:
            # A cursor from another gateway process: start over.
            reset = True
            candidates = list(self._lines)
        else:
            # Lines between the cursor and the oldest kept line were dropped.
            truncated = cursor < oldest
            start = max(cursor, oldest)
            candidates = [entry for entry in self._lines if entry[0] >= start]
        picked: list[str] = []
        used = 0
        for _, line, size in reversed(candidates):
            if len(picked) >= limit or used + size > max_bytes:
                truncated = True
                break
            picked.append(line)
            used += size
        picked.reverse()
        return LogTail(
            lines=tuple(picked),
            cursor=self._next_seq,
            size=self._bytes,
            truncated=truncated,
            reset=reset,
        )
