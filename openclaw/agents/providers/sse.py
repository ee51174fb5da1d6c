# -*- test-case-name: tests.test_provider_sse -*-
"""An incremental Server-Sent Events parser for streamed model responses.

Upstream bodies arrive in arbitrary pieces: a line, a multi-byte UTF-8
character or a CRLF pair may be split across two reads. The parser works on
bytes and only decodes complete lines, so no split can corrupt text, and it
bounds memory: a line (or an event's data) longer than the limit raises
:class:`SSEError` instead of growing without end.

The network side lives in :mod:`openclaw.agents.providers.http`, whose body
protocol feeds this parser from ``dataReceived``.
"""

from __future__ import annotations

import re

from attrs import define

#: Longest single line accepted (a ``data:`` line carries one JSON chunk).
MAX_LINE_BYTES = 1024 * 1024
#: Longest event (all ``data:`` lines of one event together).
MAX_EVENT_BYTES = 4 * 1024 * 1024

_EOL = re.compile(rb"\r\n|\r|\n")


class SSEError(ValueError):
    """The byte stream is not acceptable SSE (a line or event is too long)."""


@define
class SSEEvent:
    """One dispatched event: ``event`` defaults to ``message`` as in the spec.

    Not frozen: one is made per upstream chunk, and a frozen attrs class sets
    each field through ``object.__setattr__`` (twice the cost, issue 16).
    """

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Turns body bytes into :class:`SSEEvent` values, one ``feed`` at a time.

    Follows the WHATWG event-stream rules: CRLF, LF or CR end a line; a line
    starting with ``:`` is a comment; ``data`` lines are joined with ``\\n``;
    a blank line dispatches; an event with no data is dropped. At the end of
    the body, :meth:`close` also dispatches a last event that lacks its
    blank line (lenient: some upstreams end the body right after ``[DONE]``).
    """

    def __init__(
        self, *, max_line_bytes: int = MAX_LINE_BYTES, max_event_bytes: int = MAX_EVENT_BYTES
    ) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._buf = bytearray()
        self._skip_lf = False
        self._first = True
        self._data: list[str] = []
        self._data_size = 0
        self._event_type: str | None = None
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Parse more bytes; returns the events completed by them, in order."""
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        buf = self._buf
        buf.extend(data)
        events: list[SSEEvent] = []
        if b"\r" not in data:
            # Fast path (LF-only upstreams): a CR is always consumed as a line
            # end as soon as it arrives, so the buffer holds none either.
            last = buf.rfind(b"\n")
            if last >= 0:
                lines = bytes(buf[:last]).split(b"\n")
                del buf[: last + 1]
                self._lines(lines, events)
            if len(buf) > self._max_line:
                raise SSEError(f"SSE line longer than {self._max_line} bytes")
            return events
        pos = 0
        end = len(buf)
        while pos < end:
            match = _EOL.search(buf, pos)
            if match is None:
                break
            line = bytes(buf[pos : match.start()])
            pos = match.end()
            if pos == end and match.group() == b"\r":
                # A CR at the very end may be half of a CRLF split across reads.
                self._skip_lf = True
            self._line(line, events)
        if pos:
            del buf[:pos]
        if len(buf) > self._max_line:
            raise SSEError(f"SSE line longer than {self._max_line} bytes")
        return events

    def _lines(self, lines: list[bytes], events: list[SSEEvent]) -> None:
        """Complete lines; ``data:`` lines and blank lines (nearly all of a
        model stream) are handled inline, anything else by :meth:`_line`."""
        if self._first and lines:
            self._line(lines[0], events)
            lines = lines[1:]
        max_line = self._max_line
        for line in lines:
            if not line:
                if self._data:
                    self._dispatch(events)
                else:
                    self._event_type = None
            elif line[:5] == b"data:" and len(line) <= max_line:
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data_size += len(value) + 1
                if self._data_size > self._max_event:
                    raise SSEError(f"SSE event larger than {self._max_event} bytes")
                self._data.append(value.decode("utf-8", errors="replace"))
            else:
                self._line(line, events)

    def close(self) -> list[SSEEvent]:
        """The body ended: flush a final unterminated line and event."""
        events: list[SSEEvent] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, events)
        self._dispatch(events)
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if len(raw) > self._max_line:
            raise SSEError(f"SSE line longer than {self._max_line} bytes")
        if self._first:
            self._first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if not raw:
            self._dispatch(events)
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_event:
                raise SSEError(f"SSE event larger than {self._max_event} bytes")
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored, as the spec says.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        event_type = self._event_type
        self._event_type = None
        if not self._data:
            return
        data = "\n".join(self._data)
        self._data = []
        self._data_size = 0
        events.append(SSEEvent(data=data, event=event_type or "message", id=self._last_id))
