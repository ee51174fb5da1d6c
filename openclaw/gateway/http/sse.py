"""Server-sent events over a twisted.web request, as a push producer.

:class:`SSEStream` owns the response once its headers are out. It is
registered on the request as an ``IPushProducer``, so Twisted tells it when the
client's socket is full (``pauseProducing``), drained (``resumeProducing``) or
gone (``stopProducing``); it forwards pause and resume to its source (the agent
run, and through it the upstream socket) and reports loss exactly once.

Buffering is bounded: while paused, frames are queued here instead of being
pushed into the transport; the queue may hold ``max_buffered_bytes`` (default
1 MiB) for a client that is not reading. On top of that, Twisted's transport
buffer holds what was written before it asked us to pause (it pauses at 64
KiB). Passing the bound is judged at the end of the reactor turn, not at the
write that passed it, because a run writes its closing frames in one
synchronous burst (Responses repeats the whole text in four of them; chat
sends client tool-call arguments as chunks), often several times the bound
for a long reply, and then closes the stream:

- still open then (the source kept producing past the bound despite the
  pause): the connection is aborted rather than memory grown without limit;
- closed (the run is over: the queue is its last frames and cannot grow): the
  queue drains as the client reads. Only a client that makes no progress for
  ``stall_seconds`` while more than the bound waits for it is aborted (by
  default four keep-alive periods, 60 s without keep-alives).

Progress is the transport asking for more: Twisted calls ``resumeProducing``
once everything written so far has gone to the socket, and the stream then
writes again. For that to follow the client's reading rather than whole frames
(Responses' closing frames each repeat the whole reply, a megabyte each for a
long one), frames larger than :data:`WRITE_SLICE_BYTES` are queued in slices of
that size, and a drain writes slices only until the transport pauses the
stream again (its buffer past 64 KiB: one slice). So the client has to take
about 64 KiB, not a frame, per ``stall_seconds`` (about 1 KiB/s by default). A
large frame written while the client keeps up goes out the same way, its first
slice at once and the rest as the transport asks. That rest would have sat in
the transport's buffer before; it is not the source producing past a pause, so
the bound on an open stream does not count it (a closed stream's watch does).

Frames that arrive together are written together: inside a delivery batch
(:mod:`openclaw.core.delivery`: the upstream connection opens one around each
socket read) frames are held and written as one ``request.write`` when the
batch ends, still in the same reactor turn (sliced as above when larger than
a slice). Outside a batch a frame is written at once.

Keep-alive: while nothing has been written for ``keep_alive_seconds`` an SSE
comment ``: ping`` is sent, so idle-timeout proxies keep the stream open
during long silent agent work. Comments are ignored by every SSE client.
A write only notes its time; the ping timer, when it fires, moves itself to
``keep_alive_seconds`` after the last write (no timer reset per write).

The stream never errbacks its ``done`` Deferred: it fires with ``b""`` after
``[DONE]`` is written and the producer unregistered (the route dispatcher
then finishes the request), or is cancelled when the connection is lost (it
cancels the Deferred a route returns when the client leaves). The loss is
reported to ``on_lost`` once, whichever comes first: ``stopProducing`` (the transport),
that cancellation, or the stream aborting a client that does not read.
After a loss nothing is written, and neither ``finish`` nor
``unregisterProducer`` is called.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from typing import Literal

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from openclaw.core.delivery import DELIVERY, DeliveryBatch
from openclaw.core.fastjson import dumps

log = Logger()

DONE_FRAME = b"data: [DONE]\n\n"
PING_FRAME = b": ping\n\n"
#: Bytes queued while the client is not reading before the stream is aborted.
DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024
#: ``SO_SNDBUF`` of a streaming connection. Without it the kernel grows a
#: socket's send buffer to megabytes, and a slow reader lets the gateway pull
#: that much more from the upstream before backpressure stops it (all of it
#: held as run text in the process). Linux doubles the value for its own use.
DEFAULT_SEND_BUFFER_BYTES = 32 * 1024
#: A closed stream over the bound whose client takes nothing for this many
#: keep-alive periods is aborted ...
STALL_KEEP_ALIVE_PERIODS = 4
#: ... or for this long when the stream sends no keep-alives.
DEFAULT_STALL_SECONDS = 60.0
#: Frames larger than this are written this much at a time, as the transport
#: drains, so that a client reading a large frame slowly is seen to make
#: progress (the size of Twisted's buffer before it pauses the stream).
WRITE_SLICE_BYTES = 64 * 1024

StreamState = Literal["new", "open", "closing", "finished", "lost"]


def data_frame(obj: object) -> bytes:
    """One SSE event: ``data: <compact JSON>`` (as ``errors.json_bytes``
    encodes every HTTP body) and a blank line."""
    return b"data: " + dumps(obj) + b"\n\n"


def _limit_send_buffer(request: Request, size: int) -> None:
    """Set ``SO_SNDBUF`` on the request's TCP socket, when it has one."""
    transport = getattr(request, "transport", None)
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return
    try:
        handle = get_handle()
        if isinstance(handle, socket.socket):
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except (OSError, AttributeError, NotImplementedError):
        pass  # not a socket we can tune (TLS over memory BIOs, test transports)


@implementer(IPushProducer)
class SSEStream:
    """One ``text/event-stream`` response with flow control and keep-alives."""

    # One per open stream: no instance dict (S3 holds a thousand of them).
    __slots__ = (
        "__weakref__",
        "_batch",
        "_clock",
        "_held",
        "_keep_alive",
        "_last_write",
        "_max_buffered",
        "_on_lost",
        "_on_pause",
        "_on_resume",
        "_paused",
        "_ping",
        "_queue",
        "_queued_bytes",
        "_request",
        "_send_buffer",
        "_source_paused",
        "_stall",
        "_tail_bytes",
        "_watch",
        "bytes_written",
        "done",
        "state",
    )

    def __init__(
        self,
        request: Request,
        *,
        clock: IReactorTime,
        keep_alive_seconds: float,
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
        on_lost: Callable[[], None],
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        send_buffer_bytes: int | None = DEFAULT_SEND_BUFFER_BYTES,
        batch: DeliveryBatch = DELIVERY,
        stall_seconds: float | None = None,
    ) -> None:
        """
        :param send_buffer_bytes: the connection's ``SO_SNDBUF`` while
            streaming (None: leave the kernel's autotuning alone).
        :param batch: the delivery batch whose end flushes held frames.
        :param stall_seconds: how long a client may take nothing of a closed
            stream's final frames over the bound (None: four keep-alive
            periods, or :data:`DEFAULT_STALL_SECONDS` without keep-alives).
        """
        self._request = request
        self._batch = batch
        #: Frames of the current delivery batch, written when it ends.
        self._held: list[bytes] = []
        self._last_write = 0.0
        self._send_buffer = send_buffer_bytes
        self._clock = clock
        self._keep_alive = keep_alive_seconds
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._on_lost = on_lost
        self._max_buffered = max_buffered_bytes
        if stall_seconds is None:
            stall_seconds = (
                STALL_KEEP_ALIVE_PERIODS * keep_alive_seconds
                if keep_alive_seconds > 0
                else DEFAULT_STALL_SECONDS
            )
        self._stall = stall_seconds
        #: The end-of-turn judgement of a queue over the bound, then the
        #: watch on a closed stream's client (at most one at a time).
        self._watch: IDelayedCall | None = None
        #: Made by the first pause: a stream whose client keeps up never
        #: needs it (an empty deque is 600 bytes per open stream).
        self._queue: deque[bytes] | None = None
        self._queued_bytes = 0
        #: Of the queued bytes, those that are the unwritten rest of frames
        #: written while the client kept up: not counted against the bound
        #: of an open stream (they lead the queue; never more than it holds).
        self._tail_bytes = 0
        self._paused = False
        self._source_paused = False
        self._ping: IDelayedCall | None = None
        self.state: StreamState = "new"
        #: Fires with ``b""`` once the stream ended cleanly; cancelled on loss.
        self.done: Deferred[bytes] = Deferred(self._cancelled)
        #: Bytes handed to the request so far (frames and pings).
        self.bytes_written = 0

    # -- the writer's side -------------------------------------------------

    @property
    def writable(self) -> bool:
        """True while frames may still be sent (open, not closing, not lost)."""
        return self.state == "open"

    @property
    def queued_bytes(self) -> int:
        """Bytes held here while the client is not reading."""
        return self._queued_bytes

    def open(self, first_frame: bytes) -> None:
        """Send the status, the SSE headers and ``first_frame`` at once."""
        if self.state != "new":
            raise RuntimeError(f"cannot open an SSE stream in state {self.state}")
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        self.state = "open"
        if self._send_buffer is not None:
            _limit_send_buffer(request, self._send_buffer)
        request.registerProducer(self, True)
        self._write(first_frame)
        self._schedule_ping()

    def send(self, frame: bytes) -> None:
        """Send one already-framed event (see :func:`data_frame`)."""
        if self.state == "open":
            self._write(frame)

    def send_json(self, obj: object) -> None:
        """Send ``obj`` as one ``data:`` event."""
        if self.state == "open":
            self._write(data_frame(obj))

    def close(self) -> None:
        """Send ``data: [DONE]`` and end the body once everything queued is out."""
        if self.state != "open":
            return
        self._write(DONE_FRAME)
        self._flush_held()
        self.state = "closing"
        self._cancel_ping()
        if self._queued_bytes > self._max_buffered and self._watch is None:
            self._watch = self._clock.callLater(0, self._judge)
        self._finish_if_drained()

    # -- IPushProducer -------------------------------------------------------

    def pauseProducing(self) -> None:
        """The client's socket is full: queue frames here and pause the source."""
        if self.state in ("finished", "lost") or self._paused:
            return
        self._paused = True
        held, self._held = self._held, []
        for frame in held:  # written before the pause: they go first
            self._enqueue(frame)
        if not self._source_paused:
            self._source_paused = True
            self._on_pause()

    def resumeProducing(self) -> None:
        """The socket drained: flush the queue, then let the source go on."""
        if self.state in ("finished", "lost") or not self._paused:
            return
        self._paused = False
        self._flush()
        if self._paused or self.state in ("finished", "lost"):
            return
        if self._source_paused and self.state == "open":
            self._source_paused = False
            self._on_resume()
        self._finish_if_drained()

    def stopProducing(self) -> None:
        """The connection is going away: stop everything, write nothing more."""
        self._lose("stopProducing")

    # -- internals --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._paused or self._queue:
            self._enqueue(data)
            return
        if self._batch.open:
            held = self._held
            if not held:
                self._batch.defer(self._flush_held)
            held.append(data)
            return
        if len(data) > WRITE_SLICE_BYTES:
            self._write_sliced(data)
        else:
            self._write_now(data)

    def _enqueue(self, data: bytes) -> None:
        """Queue ``data`` (in slices when large) behind what waits already."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        size = len(data)
        if size <= WRITE_SLICE_BYTES:
            queue.append(data)
        else:
            queue.extend(
                data[at : at + WRITE_SLICE_BYTES] for at in range(0, size, WRITE_SLICE_BYTES)
            )
        self._queued_bytes += size
        if self._queued_bytes > self._max_buffered and self._watch is None:
            # Judged once the current burst is over (see the module doc).
            self._watch = self._clock.callLater(0, self._judge)

    def _write_sliced(self, data: bytes) -> None:
        """A large frame while nothing waits: its first slice now, the rest
        as the transport asks for more (see the module doc)."""
        self._tail_bytes += len(data)
        self._enqueue(data)
        self._flush()

    def _write_now(self, data: bytes) -> None:
        self.bytes_written += len(data)
        self._last_write = self._clock.seconds()
        self._request.write(data)

    def _flush_held(self) -> None:
        """The delivery ended (or the stream closes): write its frames at once."""
        held = self._held
        if not held:
            return
        self._held = []
        if self.state in ("finished", "lost"):
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        if len(data) > WRITE_SLICE_BYTES:
            self._write_sliced(data)
        else:
            self._write_now(data)

    def _flush(self) -> None:
        while self._queue and not self._paused and self.state not in ("finished", "lost"):
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            self._write_now(data)
        if self._tail_bytes > self._queued_bytes:
            self._tail_bytes = self._queued_bytes

    def _finish_if_drained(self) -> None:
        if self.state != "closing" or self._queue or self._paused or self._held:
            return
        self.state = "finished"
        self._cancel_watch()
        self._forget_source()
        self._request.unregisterProducer()
        self.done.callback(b"")

    def _forget_source(self) -> None:
        """Drop the source's callbacks once the stream is over: the source
        holds this stream, so keeping them would leave a reference cycle for
        Python's cycle collector instead of freeing the request at once."""
        self._on_pause = self._on_resume = self._on_lost = _ignore

    def _schedule_ping(self) -> None:
        if self._keep_alive > 0 and self.state == "open":
            self._ping = self._clock.callLater(self._keep_alive, self._send_ping)

    def _send_ping(self) -> None:
        self._ping = None
        if self.state != "open":
            return
        idle = self._clock.seconds() - self._last_write
        if idle < self._keep_alive:  # written since: wait out the rest of the period
            self._ping = self._clock.callLater(self._keep_alive - idle, self._send_ping)
            return
        if not self._paused:
            self._write_now(PING_FRAME)
        self._schedule_ping()

    def _cancel_ping(self) -> None:
        if self._ping is not None and self._ping.active():
            self._ping.cancel()
        self._ping = None

    def _cancel_watch(self) -> None:
        if self._watch is not None and self._watch.active():
            self._watch.cancel()
        self._watch = None

    def _judge(self) -> None:
        """The end of the turn in which the queue passed the bound."""
        self._watch = None
        if self._queued_bytes <= self._max_buffered:
            return  # the client took enough meanwhile
        if self.state == "open" and self._queued_bytes - self._tail_bytes > self._max_buffered:
            log.warn(
                "SSE client not reading: {queued} bytes queued (limit {limit}); aborting stream",
                queued=self._queued_bytes,
                limit=self._max_buffered,
            )
            self._overflow()
        elif self.state == "closing":
            self._watch_client()

    def _watch_client(self) -> None:
        """A closed stream over the bound: abort it once its client has made
        no progress (the transport asked for nothing more) for
        ``stall_seconds``; stop watching below the bound."""
        self._watch = None
        if self.state != "closing" or self._queued_bytes <= self._max_buffered:
            return
        idle = self._clock.seconds() - self._last_write
        if idle < self._stall:
            self._watch = self._clock.callLater(self._stall - idle, self._watch_client)
            return
        log.warn(
            "SSE client not reading: no progress for {idle:.1f} s with {queued} bytes"
            " queued (limit {limit}); aborting stream",
            idle=idle,
            queued=self._queued_bytes,
            limit=self._max_buffered,
        )
        self._overflow()

    def _overflow(self) -> None:
        transport = getattr(self._request, "transport", None)
        self._lose("buffer overflow")
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self._request.loseConnection()

    def _lose(self, why: str) -> None:
        if self.state in ("finished", "lost"):
            return
        self.state = "lost"
        self._cancel_ping()
        self._cancel_watch()
        self._queue = None
        self._queued_bytes = 0
        self._tail_bytes = 0
        self._held = []
        on_lost = self._on_lost
        self._forget_source()
        on_lost()

    def _cancelled(self, _: Deferred[bytes]) -> None:
        self._lose("cancelled")


def _ignore() -> None:
    """What a finished stream calls instead of its source."""
