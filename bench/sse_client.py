"""A cheap streaming load client: many chat completion SSE streams at once.

One asyncio protocol per stream over a raw socket: it writes the request,
parses the status line and headers, de-chunks the body and counts SSE events
by splitting on the blank line, looking inside an event only until the first
content delta has been seen. That keeps it well below the gateway's cost per
event, so it is not the bottleneck (its CPU is reported with the rest).

Behaviours the scenarios need: a fixed number of streams or as many as fit in
a duration (S2), all held open at once (S3), a slow reader that paces its
reads and leaves after a while (S4), and a client that leaves right after the
first content event (S5).

Run as ``python -m bench.sse_client ...``: it prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

_CONTENT = b'"content":"'
_EMPTY_CONTENT = b'"content":""'
_DONE = b"data: [DONE]"


@attrs.define
class StreamResult:
    """What one stream saw. Times are ``time.monotonic()`` seconds."""

    index: int
    started: float
    status: int = 0
    first_byte: float | None = None
    first_content: float | None = None
    ended: float | None = None
    events: int = 0
    body_bytes: int = 0
    done: bool = False
    complete: bool = False
    left_at: float | None = None
    error: str | None = None

    @property
    def ttfb(self) -> float | None:
        """Seconds from the request to the first body byte."""
        return None if self.first_byte is None else self.first_byte - self.started

    @property
    def ttft(self) -> float | None:
        """Seconds from the request to the first non-empty content delta."""
        return None if self.first_content is None else self.first_content - self.started


@attrs.frozen
class StreamOptions:
    """How each stream behaves."""

    #: Leave (close the socket) after this many content events.
    leave_after_content: int | None = None
    #: Read at most this many body bytes per second (None: as fast as possible).
    read_rate: float | None = None
    #: Leave this many seconds after the request (None: read to the end).
    leave_after_seconds: float | None = None
    #: SO_RCVBUF for the socket (a slow reader wants a small one).
    rcvbuf: int | None = None


class SSEStreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 request with an SSE (or any) response, parsed incrementally."""

    def __init__(
        self,
        request: bytes,
        result: StreamResult,
        options: StreamOptions,
        done: asyncio.Future[StreamResult],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request = request
        self.result = result
        self._options = options
        self._done = done
        self._clock = clock
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._in_body = False
        self._chunked = False
        self._remaining: int | None = None  # Content-Length left, if not chunked
        self._chunk_left = 0  # bytes left in the current chunk (chunked)
        self._chunk_state = "size"  # size | data | crlf | trailer
        self._pending = b""  # undecoded chunked framing bytes
        self._events = b""  # SSE bytes not yet ended by a blank line
        self._content_seen = 0
        self._read_since: float | None = None
        self._read_bytes = 0
        self._resume_call: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the request."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._loop = self._done.get_loop()
        self.result.started = self._clock()
        transport.write(self._request)
        if self._options.leave_after_seconds is not None:
            self._loop.call_later(self._options.leave_after_seconds, self.leave)

    def data_received(self, data: bytes) -> None:
        """Parse what arrived."""
        if self._done.done():
            return
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._head = b""
            self._parse_head(head)
            if self._done.done():
                return
        if data:
            self._body(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """The server (or we) closed the connection."""
        if self._done.done():
            return
        result = self.result
        result.ended = self._clock()
        if self._remaining is None and not self._chunked and self._in_body:
            result.complete = True  # body delimited by the connection close
        elif not result.complete and result.error is None and result.left_at is None:
            result.error = f"connection closed: {exc}" if exc else "connection closed early"
        self._done.set_result(result)

    # -- parsing ----------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        try:
            self.result.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(f"bad status line {lines[0][:80]!r}")
            return
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif name == b"content-length":
                self._remaining = int(value.strip())
        self._in_body = True
        if self._remaining == 0:
            self._finish()

    def _body(self, data: bytes) -> None:
        result = self.result
        if result.first_byte is None:
            result.first_byte = self._clock()
        self._pace(len(data))
        if not self._chunked:
            if self._remaining is not None:
                data = data[: self._remaining]
                self._remaining -= len(data)
            self._payload(data)
            if self._remaining == 0:
                self._finish()
            return
        buf = self._pending + data if self._pending else data
        self._pending = b""
        pos = 0
        size = len(buf)
        while pos < size:
            state = self._chunk_state
            if state == "data":
                take = min(self._chunk_left, size - pos)
                self._payload(buf[pos : pos + take])
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_state = "crlf"
            elif state == "crlf":
                if size - pos < 2:
                    break
                pos += 2
                self._chunk_state = "size"
            else:  # "size" or "trailer": a line ending in CRLF
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                line = buf[pos:eol]
                pos = eol + 2
                if state == "trailer":
                    if not line:
                        self._finish()
                        return
                    continue
                try:
                    self._chunk_left = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    self._fail(f"bad chunk size {line[:40]!r}")
                    return
                self._chunk_state = "data" if self._chunk_left else "trailer"
            if self._done.done():
                return
        self._pending = buf[pos:]

    def _payload(self, data: bytes) -> None:
        result = self.result
        result.body_bytes += len(data)
        buf = self._events + data if self._events else data
        parts = buf.split(b"\n\n")
        self._events = parts.pop()
        if not parts:
            return
        if parts[-1].startswith(_DONE):
            result.done = True
            result.events += len(parts) - 1
        else:
            result.events += len(parts)
        if self._content_seen < (self._options.leave_after_content or 1):
            for event in parts:
                if _CONTENT in event and _EMPTY_CONTENT not in event:
                    if result.first_content is None:
                        result.first_content = self._clock()
                    self._content_seen += 1
                    wanted = self._options.leave_after_content
                    if wanted is not None and self._content_seen >= wanted:
                        self.leave()
                        return

    def _pace(self, nbytes: int) -> None:
        """Slow reader: stop reading until the bytes read so far fit the rate."""
        rate = self._options.read_rate
        if rate is None or self._transport is None or self._loop is None:
            return
        now = self._clock()
        if self._read_since is None:
            self._read_since = now
        self._read_bytes += nbytes
        delay = self._read_since + self._read_bytes / rate - now
        if delay <= 0:
            return
        self._transport.pause_reading()
        if self._resume_call is not None:
            self._resume_call.cancel()
        self._resume_call = self._loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._resume_call = None
        if self._transport is not None and not self._done.done():
            self._transport.resume_reading()

    def _finish(self) -> None:
        result = self.result
        result.complete = True
        result.ended = self._clock()
        if self._transport is not None:
            self._transport.close()
        self._done.set_result(result)

    def _fail(self, message: str) -> None:
        self.result.error = message
        self.result.ended = self._clock()
        if self._transport is not None:
            self._transport.abort()
        self._done.set_result(self.result)

    def leave(self) -> None:
        """Close the connection from the client side, as a user closing a tab."""
        if self._done.done():
            return
        result = self.result
        result.left_at = result.ended = self._clock()
        if self._transport is not None:
            self._transport.close()
        self._done.set_result(result)


def build_request(
    host: str,
    port: int,
    path: str,
    body: dict[str, Any],
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """An HTTP/1.1 POST of ``body`` as JSON."""
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


async def open_stream(
    host: str,
    port: int,
    request: bytes,
    index: int,
    options: StreamOptions = StreamOptions(),  # a frozen value
    timeout: float = 60.0,
) -> StreamResult:
    """Run one stream to its end (or until it leaves, fails or times out)."""
    loop = asyncio.get_running_loop()
    result = StreamResult(index=index, started=time.monotonic())
    done: asyncio.Future[StreamResult] = loop.create_future()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if options.rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, options.rcvbuf)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        transport, _protocol = await loop.create_connection(
            lambda: SSEStreamProtocol(request, result, options, done), sock=sock
        )
    except (OSError, TimeoutError) as e:
        sock.close()
        result.error = f"connect: {e!r}"
        result.ended = time.monotonic()
        return result
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        result.error = "timeout"
        result.ended = time.monotonic()
        transport.abort()
        return result


async def run_streams(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    count: int | None = None,
    concurrency: int = 1,
    duration: float | None = None,
    ramp: float = 0.0,
    options: StreamOptions = StreamOptions(),  # a frozen value
    timeout: float = 60.0,
) -> tuple[list[StreamResult], float]:
    """``concurrency`` workers open streams one after another until ``count``
    streams have been started or ``duration`` seconds have passed. Worker
    ``i`` starts ``i * ramp`` seconds late (to spare the listen backlog).
    Returns the results and the wall time."""
    if count is None and duration is None:
        raise ValueError("give count or duration")
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    counter = iter(range(count if count is not None else 1 << 62))
    results: list[StreamResult] = []

    async def worker(i: int) -> None:
        if ramp:
            await asyncio.sleep(i * ramp)
        while deadline is None or time.monotonic() < deadline:
            index = next(counter, None)
            if index is None:
                return
            results.append(
                await open_stream(host, port, make_request(index), index, options, timeout)
            )

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return results, time.monotonic() - started


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[rank]


def summarize(results: Sequence[StreamResult], wall: float) -> dict[str, Any]:
    """The figures a scenario reports, from the streams' results."""
    ttfb = [r.ttfb for r in results if r.ttfb is not None]
    ttft = [r.ttft for r in results if r.ttft is not None]
    durations = [r.ended - r.started for r in results if r.complete and r.ended is not None]
    events = sum(r.events for r in results)
    errors: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        if r.error is not None:
            kind = r.error.split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
    return {
        "streams": len(results),
        "complete": sum(1 for r in results if r.complete and r.status == 200),
        "done": sum(1 for r in results if r.done),
        "left": sum(1 for r in results if r.left_at is not None),
        "errors": errors,
        "statuses": statuses,
        "events": events,
        "body_bytes": sum(r.body_bytes for r in results),
        "wall_s": wall,
        "events_per_s": events / wall if wall > 0 else 0.0,
        "ttfb_p50_ms": _ms(percentile(ttfb, 50)),
        "ttfb_p99_ms": _ms(percentile(ttfb, 99)),
        "ttft_p50_ms": _ms(percentile(ttft, 50)),
        "ttft_p99_ms": _ms(percentile(ttft, 99)),
        "duration_p50_ms": _ms(percentile(durations, 50)),
        "left_at": {str(r.index): r.left_at for r in results if r.left_at is not None},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def main(argv: list[str] | None = None) -> None:
    """Run streams as the command line says; print one JSON summary line."""
    p = argparse.ArgumentParser(description="SSE load client for the benchmark")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--model", default="fake-model")
    p.add_argument("--token", default=None)
    p.add_argument("--count", type=int, default=None)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--ramp", type=float, default=0.0)
    p.add_argument("--leave-after-content", type=int, default=None)
    p.add_argument("--read-rate", type=float, default=None)
    p.add_argument("--leave-after-seconds", type=float, default=None)
    p.add_argument("--rcvbuf", type=int, default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--marker", action="store_true", help="put bench-id-<n> in each message")
    args = p.parse_args(argv)

    headers = [("Authorization", f"Bearer {args.token}")] if args.token else []
    cache: dict[int, bytes] = {}

    def make_request(index: int) -> bytes:
        if not args.marker and 0 in cache:
            return cache[0]
        text = f"bench-id-{index} hello" if args.marker else "hello"
        body = {
            "model": args.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": text}],
        }
        request = build_request(args.host, args.port, args.path, body, headers)
        cache[0] = request
        return request

    options = StreamOptions(
        leave_after_content=args.leave_after_content,
        read_rate=args.read_rate,
        leave_after_seconds=args.leave_after_seconds,
        rcvbuf=args.rcvbuf,
    )
    results, wall = asyncio.run(
        run_streams(
            args.host,
            args.port,
            make_request,
            count=args.count,
            concurrency=args.concurrency,
            duration=args.duration,
            ramp=args.ramp,
            options=options,
            timeout=args.timeout,
        )
    )
    sys.stdout.write(json.dumps(summarize(results, wall)) + "\n")


if __name__ == "__main__":
    main()
