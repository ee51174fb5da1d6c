"""A transcript as this process knows it: the newest lines of a Redis list.

The store reads a session's transcript when its lane is granted (the lane
guarantees no other process appends meanwhile), keeps it here, appends to
it as the turn writes, and answers the runtime's synchronous reads
(history, ``chat.history``) from it. Lines are OpenClaw's JSONL entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from openclaw.core.ids import short_id
from openclaw.sessions.journal import RAW_ENTRY
from openclaw.sessions.transcript import (
    DISPLAY_ROLES,
    DISPLAY_ROLES_WITH_TOOLS,
    encode_json,
    for_display,
    iso_ms,
    loads_line,
    message_of,
)

#: Transcript lines one read brings from Redis, at most (the newest).
DEFAULT_TAIL_LINES = 2000


def encode_line(entry: Mapping[str, Any]) -> str:
    """One JSONL line as text Redis stores (valid UTF-8 for any ``str``)."""
    return encode_json(entry).decode("utf-8")


def decode_lines(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Parsed lines; anything that is not a JSON object is skipped."""
    out: list[dict[str, Any]] = []
    for line in raw:
        try:
            parsed = loads_line(line)
        except (TypeError, ValueError):
            continue
        if isinstance(parsed, dict):
            out.append(parsed)
    return out


class CachedTranscript:
    """The newest entries of one transcript (oldest first) and the chain's tail."""

    def __init__(self, entries: list[dict[str, Any]], length: int, *, known: bool = True) -> None:
        """:param known: False for a stand-in made without reading Redis (its
        ``length`` is not the list's, so it is never extended, only replaced)."""
        self.known = known
        self.entries = entries
        #: Lines the Redis list holds (including any not read into ``entries``).
        self.length = length
        self.last_id: str | None = None
        for entry in reversed(entries):
            entry_id = entry.get("id")
            if isinstance(entry_id, str) and entry.get("type") != "session":
                self.last_id = entry_id
                break

    def extend(self, entries: list[dict[str, Any]], length: int, keep: int) -> None:
        """Add lines other processes appended (the list is now ``length`` long);
        keep at most the newest ``keep`` entries."""
        self.entries.extend(entries)
        if len(self.entries) > keep:
            del self.entries[: len(self.entries) - keep]
        self.length = length
        for entry in reversed(entries):
            entry_id = entry.get("id")
            if isinstance(entry_id, str) and entry.get("type") != "session":
                self.last_id = entry_id
                break

    def build(self, messages: Sequence[tuple[str, int, Mapping[str, Any]]]) -> list[str]:
        """Make the lines of ``(run_id, timestamp, message)`` entries (a
        ``RAW_ENTRY`` run id: a whole entry), link them into the parent chain
        and remember them; returns the encoded lines to send."""
        lines: list[str] = []
        for run_id, ts, message in messages:
            if run_id == RAW_ENTRY:
                entry = {**message, "parentId": self.last_id}
                entry["id"] = str(entry.get("id") or short_id())
            else:
                entry = {
                    "type": "message",
                    "id": short_id(),
                    "parentId": self.last_id,
                    "timestamp": iso_ms(ts),
                    "runId": run_id,
                    "message": dict(message),
                }
            self.last_id = str(entry["id"])
            self.entries.append(entry)
            self.length += 1
            lines.append(encode_line(entry))
        return lines

    def recent_messages(self) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
        for entry in reversed(self.entries):
            message = message_of(entry)
            if message is None:
                continue
            run_id = entry.get("runId") or message.get("runId")
            yield (run_id if isinstance(run_id, str) else None), message

    def recent_entries(self) -> Iterator[Mapping[str, Any]]:
        for entry in reversed(self.entries):
            if entry.get("type") in ("message", "compaction"):
                yield entry

    def display(self, limit: int, *, include_tools: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        roles = DISPLAY_ROLES_WITH_TOOLS if include_tools else DISPLAY_ROLES
        for entry in reversed(self.entries):
            if len(out) >= limit:
                break
            message = message_of(entry)
            if message is not None and message.get("role") in roles:
                out.append(for_display(message))
        out.reverse()
        return out

    def count(self) -> int:
        return sum(
            1
            for entry in self.entries
            if (m := message_of(entry)) is not None and m.get("role") in ("user", "assistant")
        )
