"""Transcript lines: how a turn is encoded into JSONL, and how it is read back.

A transcript is ``<sessionId>.jsonl``, one JSON object per line in the
pi-agent v3 format OpenClaw writes: a ``session`` header, then ``message``
entries whose ``message`` carries ``role``, ``content`` blocks, ``usage`` and
``stopReason``. Lines are read from the end (the newest turns are what a
request needs); an unparseable line is skipped and reported.

Every encoder here produces valid UTF-8 whatever the ``str`` holds: text with
a lone UTF-16 surrogate (which ``str.encode`` refuses) is written with JSON
escapes instead, so one odd key or message cannot stop the store's writers.
Reading a line back (:func:`loads_line`) turns such an escape into U+FFFD, so
what a session replays to its model is always valid text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from openclaw.core.fastjson import dumps_escaped
from openclaw.core.textguard import scrub_json_text
from openclaw.core.types import ImageInput, StopReason, ToolCall, Usage

#: Transcript line format version (pi-agent's session header ``version``).
TRANSCRIPT_VERSION = 3
#: Never read more than this much of a transcript's tail for one request.
MAX_TAIL_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024
#: Stop reasons of turns that did not complete (history replay drops their
#: reply or replaces it with a marker).
FAILED_STOPS = frozenset({"error", "aborted"})
#: Marks the assistant message of an intermediate tool step (a field OpenClaw's
#: readers ignore): a run whose newest message carries it never finished.
STEP_MARK = "turnStep"
_TO_DISK_STOP: Mapping[str, str] = {"tool_calls": "toolUse"}


def encode_json(value: object) -> bytes:
    """Compact JSON as UTF-8 bytes, valid for any ``str`` content.

    The fast path keeps non-ASCII text as it is; a lone surrogate (which has
    no UTF-8 form) makes the whole value fall back to ``\\uXXXX`` escapes, which
    every JSON reader turns back into the same ``str``.
    """
    return dumps_escaped(value)


def dumps_line(entry: Mapping[str, Any]) -> bytes:
    """One JSONL line (with its newline)."""
    return encode_json(entry) + b"\n"


def line_pieces(entry: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """A JSONL line as two pieces (the JSON, then the newline): no copy of a
    large entry just to append one byte."""
    return encode_json(entry), b"\n"


def usage_to_disk(usage: Usage) -> dict[str, Any]:
    """Usage in the transcript's (pi-agent) shape."""
    return {
        "input": usage.input,
        "output": usage.output,
        "cacheRead": usage.cache_read,
        "cacheWrite": usage.cache_write,
        "totalTokens": usage.total,
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
    }


def usage_from_disk(raw: object) -> Usage:
    """Read a usage object written by us or by OpenClaw; junk becomes zeros."""
    if not isinstance(raw, Mapping):
        return Usage()

    def num(*names: str) -> int:
        for name in names:
            value = raw.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
        return 0

    return Usage(
        input=num("input"),
        output=num("output"),
        cache_read=num("cacheRead"),
        cache_write=num("cacheWrite"),
        total=num("totalTokens", "total"),
    )


_last_stamp: tuple[int, str] = (-1, "")


def iso_ms(ms: int) -> str:
    """``2026-01-02T03:04:05.678Z`` for an epoch-millisecond time."""
    global _last_stamp
    seconds = ms // 1000
    cached_seconds, stamp = _last_stamp
    if seconds != cached_seconds:  # strftime is the costly part; a turn repeats it
        stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_stamp = (seconds, stamp)
    return f"{stamp}.{ms % 1000:03d}Z"


def archive_suffix(ms: int) -> str:
    return iso_ms(ms).replace(":", "-")


def session_header(
    session_id: str, timestamp: int, cwd: str | None, session_key: str | None
) -> bytes:
    """The ``session`` header line; it records the key so a session the index
    lost in a crash can be put back."""
    header: dict[str, Any] = {
        "type": "session",
        "version": TRANSCRIPT_VERSION,
        "id": session_id,
        "timestamp": iso_ms(timestamp),
        "cwd": cwd or "",
    }
    if session_key is not None:
        header["sessionKey"] = session_key
    return dumps_line(header)


def user_message(text: str, images: Sequence[ImageInput], timestamp: int) -> dict[str, Any]:
    """A user turn: content is the text, or blocks when images come with it."""
    content: Any = text
    if images:
        content = [{"type": "text", "text": text}] + [
            {"type": "image", "data": image.data, "mimeType": image.mime_type} for image in images
        ]
    return {"role": "user", "content": content, "timestamp": timestamp}


def assistant_message(
    *,
    text: str,
    timestamp: int,
    usage: Usage,
    stop_reason: StopReason,
    tool_calls: Sequence[ToolCall],
    error: str | None,
    provider: str | None,
    model: str | None,
    api: str | None,
) -> dict[str, Any]:
    """An assistant outcome (complete, failed or aborted) in pi-agent's shape."""
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    for call in tool_calls:
        try:
            arguments: Any = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            arguments = call.arguments
        content.append(
            {"type": "toolCall", "id": call.id, "name": call.name, "arguments": arguments}
        )
    message: dict[str, Any] = {"role": "assistant", "content": content}
    for name, value in (("api", api), ("provider", provider), ("model", model)):
        if value is not None:
            message[name] = value
    message.update(
        {
            "usage": usage_to_disk(usage),
            "stopReason": _TO_DISK_STOP.get(stop_reason, stop_reason),
            "timestamp": timestamp,
        }
    )
    if error is not None:
        message["errorMessage"] = error
    return message


# -- reading ----------------------------------------------------------------------


def read_backwards(
    path: Path, max_bytes: int, on_bad: Callable[[Path, bool], None]
) -> Iterator[dict[str, Any]]:
    """Parsed lines of ``path`` from the last to the first.

    Unparseable lines (a torn last line after a crash, or damage) are skipped
    and reported to ``on_bad(path, is_last_line)``. Stops after ``max_bytes``
    from the end.
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        floor = max(0, pos - max_bytes)
        carry = b""
        at_end = True
        while pos > floor:
            step = min(_CHUNK, pos - floor)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + carry
            lines = buf.split(b"\n")
            carry = lines[0]
            tail = lines[1:]
            for i in range(len(tail) - 1, -1, -1):
                parsed = _parse_line(path, tail[i], at_end and i == len(tail) - 1, on_bad)
                if parsed is not None:
                    yield parsed
            at_end = at_end and not tail
        if pos == 0 and carry:
            parsed = _parse_line(path, carry, at_end, on_bad)
            if parsed is not None:
                yield parsed


def _parse_line(
    path: Path, line: bytes, last: bool, on_bad: Callable[[Path, bool], None]
) -> dict[str, Any] | None:
    """A line's JSON object; None (and a report) for damage, None for blanks."""
    if not line.strip():
        return None
    try:
        parsed = loads_line(line)
    except ValueError:
        on_bad(path, last)
        return None
    return parsed if isinstance(parsed, dict) else None


def loads_line(line: bytes | str) -> Any:
    """One transcript line parsed, with each lone surrogate escape (``\\ud83d``,
    as :func:`encode_json` writes text that held one) read as U+FFFD; valid
    pairs stay one character. Text read back is then always encodable, so
    a transcript stored before model output was mended replays. Lines with
    neither a ``\\ud`` escape nor a 0xED byte (the lead byte of raw surrogates)
    are parsed as they are."""
    if isinstance(line, bytes | bytearray):
        if b"\\ud" not in line and b"\\uD" not in line and b"\xed" not in line:
            return json.loads(line)
        line = bytes(line).decode(json.detect_encoding(line), "surrogatepass")
    elif "\\ud" not in line and "\\uD" not in line and line.isascii():
        return json.loads(line)
    return json.loads(scrub_json_text(line))


def message_of(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The message of a ``message`` entry (nested pi form, or a flat line)."""
    if entry.get("type") != "message":
        return None
    nested = entry.get("message")
    if isinstance(nested, dict):
        return nested
    if "role" in entry:
        return dict(entry)
    return None


#: The roles ``chat.history`` shows, and with tool results (``sessions_history``'s
#: ``includeTools``).
DISPLAY_ROLES: Final = frozenset({"user", "assistant"})
DISPLAY_ROLES_WITH_TOOLS: Final = frozenset({"user", "assistant", "toolResult"})


def for_display(message: Mapping[str, Any]) -> dict[str, Any]:
    """A stored message as ``chat.history`` shows it: image data replaced by
    its type and size. The stop reason stays as stored (``toolUse``, not the
    runtime's ``tool_calls``): OpenClaw's ``chat.history`` passes it through."""
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        shown: list[Any] = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "image":
                data = block.get("data")
                shown.append(
                    {
                        "type": "image",
                        "mimeType": block.get("mimeType"),
                        "bytes": (len(data) * 3) // 4 if isinstance(data, str) else None,
                        "omitted": True,
                    }
                )
            else:
                shown.append(block)
        out["content"] = shown
    return out
