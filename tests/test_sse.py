"""The SSE push producer on its own, behind a one-route Klein app on a real HTTPChannel."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.monkey import MonkeyPatcher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from openclaw.gateway.http.sse import (
    DEFAULT_SEND_BUFFER_BYTES,
    DONE_FRAME,
    PING_FRAME,
    WRITE_SLICE_BYTES,
    SSEStream,
    data_frame,
)
from tests.chat_fakes import RawConnection


class Source:
    """Records what the stream asked of its source."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def lost(self) -> None:
        self.calls.append("lost")


class Harness:
    """A Klein route whose handler opens an SSEStream and returns its ``done``."""

    def __init__(self, *, keep_alive: float = 0, max_buffered: int = 1 << 20) -> None:
        self.clock = Clock()
        self.source = Source()
        self.streams: list[SSEStream] = []
        app = Klein()

        @app.route("/events", methods=["GET"])
        def events(request: Request) -> Deferred[bytes]:
            stream = SSEStream(
                request,
                clock=self.clock,
                keep_alive_seconds=keep_alive,
                on_pause=self.source.pause,
                on_resume=self.source.resume,
                on_lost=self.source.lost,
                max_buffered_bytes=max_buffered,
            )
            self.streams.append(stream)
            stream.open(data_frame({"n": 0}))
            return stream.done

        self.conn = RawConnection(app.resource())
        self.conn.send(b"", method="GET", path="/events")

    @property
    def stream(self) -> SSEStream:
        """The stream of the request sent."""
        return self.streams[-1]

    @property
    def body(self) -> bytes:
        """The response body received so far."""
        return self.conn.response().body


class SSEStreamTests(SynchronousTestCase):
    """Opening, writing, closing, pausing, losing."""

    def test_open_writes_at_once(self) -> None:
        """Headers and the first frame are on the wire before ``done`` fires."""
        h = Harness()
        response = h.conn.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(response.body, b'data: {"n":0}\n\n')
        self.assertNoResult(h.stream.done)
        self.assertIs(h.conn.transport.producer, h.conn._producer)

    def test_close_ends_body(self) -> None:
        """``close`` writes [DONE], unregisters, fires ``done``; Klein ends the body."""
        h = Harness()
        h.stream.send_json({"n": 1})
        h.stream.close()
        self.successResultOf(h.stream.done)
        response = h.conn.response()
        self.assertTrue(response.complete)
        self.assertTrue(response.body.endswith(DONE_FRAME))
        self.assertEqual(h.stream.state, "finished")
        h.stream.send_json({"n": 2})
        h.stream.close()
        self.assertNotIn(b'"n":2', h.conn.transport.value())

    def test_open_twice_refused(self) -> None:
        """A stream opens once."""
        h = Harness()
        self.assertRaises(RuntimeError, h.stream.open, b"")

    def test_pause_queues_and_resume_flushes(self) -> None:
        """While paused frames wait here (counted); the source is paused/resumed once."""
        h = Harness()
        h.stream.pauseProducing()
        h.stream.pauseProducing()
        h.stream.send_json({"n": 1})
        h.stream.send_json({"n": 2})
        self.assertEqual(h.stream.queued_bytes, 2 * len(data_frame({"n": 1})))
        self.assertNotIn(b'"n":1', h.body)
        h.stream.resumeProducing()
        h.stream.resumeProducing()
        self.assertEqual(h.stream.queued_bytes, 0)
        self.assertTrue(h.body.endswith(b'data: {"n":1}\n\ndata: {"n":2}\n\n'))
        self.assertEqual(h.source.calls, ["pause", "resume"])

    def test_close_while_paused(self) -> None:
        """Closing while paused ends the body only after the queue drained."""
        h = Harness()
        h.stream.pauseProducing()
        h.stream.send_json({"n": 1})
        h.stream.close()
        self.assertNoResult(h.stream.done)
        h.stream.resumeProducing()
        self.successResultOf(h.stream.done)
        self.assertTrue(h.conn.response().complete)
        self.assertEqual(h.source.calls, ["pause"])

    def test_repause_during_flush(self) -> None:
        """A pause triggered by a flushed write keeps the rest queued and the source paused."""
        h = Harness()
        stream = h.stream
        stream.pauseProducing()
        for n in range(3):
            stream.send_json({"n": n + 1})
        original = h.conn.transport.writeSequence
        writes = []

        def write_sequence(data: list[bytes]) -> None:
            writes.append(data)
            original(data)
            if len(writes) == 1:
                stream.pauseProducing()

        # The transport's buffer fills on the first flushed frame.
        h.conn.transport.writeSequence = write_sequence  # type: ignore[method-assign]
        stream.resumeProducing()
        self.assertEqual(stream.queued_bytes, 2 * len(data_frame({"n": 1})))
        self.assertEqual(h.source.calls, ["pause"])
        stream.resumeProducing()
        self.assertEqual(stream.queued_bytes, 0)
        self.assertEqual(h.source.calls, ["pause", "resume"])

    def test_loss_is_reported_once(self) -> None:
        """stopProducing, the notifyFinish errback and Klein's cancel: one ``lost``."""
        h = Harness()
        h.conn.disconnect()
        self.assertEqual(h.source.calls, ["lost"])
        self.assertEqual(h.stream.state, "lost")
        h.stream.stopProducing()
        h.stream.done.cancel()
        self.assertEqual(h.source.calls, ["lost"])
        before = h.conn.transport.value()
        h.stream.send_json({"n": 9})
        h.stream.close()
        self.assertEqual(h.conn.transport.value(), before)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_pause_after_loss_ignored(self) -> None:
        """Producer calls after the loss do nothing."""
        h = Harness()
        h.conn.disconnect()
        h.stream.pauseProducing()
        h.stream.resumeProducing()
        self.assertEqual(h.source.calls, ["lost"])

    def test_overflow_aborts(self) -> None:
        """Queuing past the bound while the stream is still open aborts the
        connection at the end of the reactor turn and reports the loss."""
        h = Harness(max_buffered=100)
        h.stream.pauseProducing()
        h.stream.send(b"x" * 60)
        h.clock.advance(0)
        self.assertFalse(h.conn.transport.disconnected)
        h.stream.send(b"x" * 60)
        h.clock.advance(0)
        self.assertTrue(h.conn.transport.disconnected)
        self.assertEqual(h.source.calls, ["pause", "lost"])
        self.assertEqual(h.stream.queued_bytes, 0)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_large_frame_while_keeping_up_is_no_overflow(self) -> None:
        """A frame over the bound written while the client keeps up goes out a
        slice at a time as the transport asks; the rest waiting here is not
        the source producing past a pause, so the open stream is kept."""
        h = Harness(max_buffered=100)
        frame = data_frame({"text": "z" * 200_000})
        written = []
        original = h.conn.transport.writeSequence

        def write_sequence(data: list[bytes]) -> None:
            written.append(sum(map(len, data)))
            original(data)
            h.stream.pauseProducing()  # the transport's buffer is full at once

        h.conn.transport.writeSequence = write_sequence  # type: ignore[method-assign]
        h.stream.send(frame)
        self.assertEqual(h.stream.queued_bytes, len(frame) - WRITE_SLICE_BYTES)
        h.clock.advance(0)
        self.assertFalse(h.conn.transport.disconnected)
        for _ in range(3):
            h.stream.resumeProducing()
        self.assertEqual(h.stream.queued_bytes, 0)
        self.assertLessEqual(max(written), WRITE_SLICE_BYTES + 16)
        h.conn.transport.writeSequence = original  # type: ignore[method-assign]
        h.stream.resumeProducing()
        h.stream.close()
        self.assertTrue(h.conn.response().body.endswith(frame + DONE_FRAME))
        self.assertEqual(h.source.calls, ["pause", "resume"])

    def test_source_past_the_bound_behind_a_large_frame_aborts(self) -> None:
        """Behind a large frame's rest, a source that goes on producing past
        the bound while paused is still cut off."""
        h = Harness(max_buffered=100)
        original = h.conn.transport.writeSequence

        def write_sequence(data: list[bytes]) -> None:
            original(data)
            h.stream.pauseProducing()

        h.conn.transport.writeSequence = write_sequence  # type: ignore[method-assign]
        h.stream.send(data_frame({"text": "z" * 200_000}))
        h.clock.advance(0)
        self.assertFalse(h.conn.transport.disconnected)
        h.stream.send(b"x" * 150)
        h.clock.advance(0)
        self.assertTrue(h.conn.transport.disconnected)
        self.assertEqual(h.source.calls, ["pause", "lost"])

    def test_overflow_drained_within_the_turn_is_kept(self) -> None:
        """A queue back under the bound by the end of the turn is no overflow."""
        h = Harness(max_buffered=100)
        h.stream.pauseProducing()
        h.stream.send(b"x" * 150)
        h.stream.resumeProducing()
        h.clock.advance(0)
        self.assertFalse(h.conn.transport.disconnected)
        h.stream.close()
        self.assertTrue(h.conn.response().complete)


class FinalBurstTests(SynchronousTestCase):
    """A run's closing frames, written at once and then closed, may pass the
    bound: they go out as the client reads; a client that takes nothing of
    them for the stall window is cut off."""

    def burst(self, h: Harness, frames: int = 5) -> bytes:
        """The client's socket fills, then a final burst of 60-byte frames and
        the close, in one turn (as a run's end writes them)."""
        payload = b"".join(data_frame({"n": i, "pad": "y" * 40}) for i in range(frames))
        h.stream.pauseProducing()
        for i in range(frames):
            h.stream.send(data_frame({"n": i, "pad": "y" * 40}))
        h.stream.close()
        h.clock.advance(0)
        return payload

    def take(
        self, h: Harness, frames: int, action: Callable[[], object] | None = None
    ) -> list[int]:
        """The client reads some: the socket drains (``resumeProducing``, or
        ``action``), takes ``frames`` writes and is full again
        (``pauseProducing``). Returns the size of each write (chunk framing
        included)."""
        transport = h.conn.transport
        sizes: list[int] = []

        def full_after(write: Callable[[Any], None]) -> Callable[[Any], None]:
            def counted(data: Any) -> None:  # typing note: bytes, or a list for writeSequence
                write(data)
                sizes.append(len(data) if isinstance(data, bytes) else sum(map(len, data)))
                if len(sizes) == frames:
                    h.stream.pauseProducing()

            return counted

        patches = MonkeyPatcher(
            (transport, "write", full_after(transport.write)),
            (transport, "writeSequence", full_after(transport.writeSequence)),
        )
        patches.runWithPatches(action or h.stream.resumeProducing)
        return sizes

    def test_reading_client_gets_everything(self) -> None:
        """Several times the bound, drained by a client that keeps reading
        (slowly: a little every 19 s, within four keep-alive periods)."""
        h = Harness(keep_alive=5, max_buffered=100)
        payload = self.burst(h, frames=10)
        self.assertGreater(h.stream.queued_bytes, 500)
        for _ in range(4):
            h.clock.advance(19)
            self.take(h, 2)
        self.assertFalse(h.conn.transport.disconnected)
        h.clock.advance(19)
        h.stream.resumeProducing()
        response = h.conn.response()
        self.assertTrue(response.complete)
        self.assertTrue(response.body.endswith(payload + DONE_FRAME))
        self.assertNotIn("lost", h.source.calls)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_client_taking_nothing_is_cut_off(self) -> None:
        """Four keep-alive periods without progress over the bound: aborted."""
        h = Harness(keep_alive=5, max_buffered=100)
        self.burst(h)
        h.clock.advance(19.9)
        self.assertFalse(h.conn.transport.disconnected)
        h.clock.advance(0.1)
        self.assertTrue(h.conn.transport.disconnected)
        self.assertEqual(h.source.calls, ["pause", "lost"])
        self.assertEqual(h.stream.queued_bytes, 0)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertEqual(h.stream.state, "lost")

    def test_progress_restarts_the_window(self) -> None:
        """Each drain gives the client another full window."""
        h = Harness(keep_alive=5, max_buffered=100)
        self.burst(h, frames=10)
        h.clock.advance(15)
        self.take(h, 1)
        h.clock.advance(15)
        self.assertFalse(h.conn.transport.disconnected)
        h.clock.advance(5)
        self.assertTrue(h.conn.transport.disconnected)

    def test_large_frames_go_out_a_slice_per_drain(self) -> None:
        """Closing frames larger than a slice are written a slice per drain,
        so a client reading them slowly is seen to progress: three 200 KB
        frames, one slice taken every 19 s (a whole frame takes four of them,
        longer than the 20 s window), all arrive."""
        h = Harness(keep_alive=5, max_buffered=100)
        frame = data_frame({"text": "z" * 200_000})
        h.stream.pauseProducing()
        for _ in range(3):
            h.stream.send(frame)
        h.stream.close()
        h.clock.advance(0)
        writes: list[int] = []
        for _ in range(20):
            if h.stream.state != "closing":
                break
            h.clock.advance(19)
            writes += self.take(h, 1)
        self.assertEqual(h.stream.state, "finished")
        self.assertFalse(h.conn.transport.disconnected)
        self.assertTrue(h.conn.response().body.endswith(frame * 3 + DONE_FRAME))
        self.assertGreaterEqual(len(writes), 12)
        self.assertLessEqual(max(writes), WRITE_SLICE_BYTES + 16)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_large_last_frame_to_a_client_taking_nothing(self) -> None:
        """A large frame written while the client kept up, then the close:
        its first slice goes at once, the rest waits over the bound, and a
        client that takes none of it for the window is cut off."""
        h = Harness(keep_alive=5, max_buffered=100)
        frame = data_frame({"text": "z" * 200_000})

        def end() -> None:
            h.stream.send(frame)
            h.stream.close()

        [first] = self.take(h, 1, end)
        self.assertLessEqual(first, WRITE_SLICE_BYTES + 16)
        self.assertEqual(h.stream.queued_bytes, len(frame) - WRITE_SLICE_BYTES + len(DONE_FRAME))
        h.clock.advance(19.9)
        self.assertFalse(h.conn.transport.disconnected)
        h.clock.advance(0.1)
        self.assertTrue(h.conn.transport.disconnected)
        self.assertEqual(h.source.calls, ["pause", "lost"])

    def test_without_keep_alives_the_window_is_a_minute(self) -> None:
        """No keep-alive period to count in: 60 s."""
        h = Harness(keep_alive=0, max_buffered=100)
        self.burst(h)
        h.clock.advance(59)
        self.assertFalse(h.conn.transport.disconnected)
        h.clock.advance(1)
        self.assertTrue(h.conn.transport.disconnected)

    def test_under_the_bound_waits_for_the_client(self) -> None:
        """A final burst within the bound is held until the client reads or leaves."""
        h = Harness(keep_alive=5, max_buffered=1000)
        self.burst(h)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.clock.advance(3600)
        self.assertFalse(h.conn.transport.disconnected)
        h.stream.resumeProducing()
        self.assertTrue(h.conn.response().complete)

    def test_client_leaving_cancels_the_watch(self) -> None:
        """A client that leaves while watched: the loss once, no timer left."""
        h = Harness(keep_alive=5, max_buffered=100)
        self.burst(h)
        h.conn.disconnect()
        self.assertEqual(h.source.calls, ["pause", "lost"])
        self.assertEqual(h.clock.getDelayedCalls(), [])


class KeepAliveTests(SynchronousTestCase):
    """``: ping`` comments."""

    def test_pings_while_silent_not_while_paused(self) -> None:
        """A ping per idle period; none while paused; none after close."""
        h = Harness(keep_alive=5)
        h.clock.advance(5)
        self.assertTrue(h.body.endswith(PING_FRAME))
        h.stream.pauseProducing()
        h.clock.advance(20)
        self.assertEqual(h.body.count(PING_FRAME), 1)
        h.stream.resumeProducing()
        h.clock.advance(5)
        self.assertEqual(h.body.count(PING_FRAME), 2)
        h.stream.close()
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_writes_postpone_pings(self) -> None:
        """Each write restarts the idle period."""
        h = Harness(keep_alive=5)
        for _ in range(4):
            h.clock.advance(4)
            h.stream.send_json({"n": 1})
        self.assertNotIn(PING_FRAME, h.body)
        h.clock.advance(5)
        self.assertIn(PING_FRAME, h.body)

    def test_loss_cancels_timer(self) -> None:
        """A lost stream leaves no timer behind."""
        h = Harness(keep_alive=5)
        h.conn.disconnect()
        self.assertEqual(h.clock.getDelayedCalls(), [])


class _PushRequest(DummyRequest):
    """A DummyRequest that takes a push producer (its own loops on pull producers)."""

    producer: object = None
    transport: object = None

    def registerProducer(self, prod: object, s: bool) -> None:
        self.producer = prod


class _SocketTransport:
    """A transport whose handle is a real socket (what a TCP connection has)."""

    def __init__(self, handle: object) -> None:
        self._handle = handle

    def getHandle(self) -> object:
        return self._handle


class SendBufferTests(SynchronousTestCase):
    """A streaming connection gets a small kernel send buffer, so a slow reader's
    backpressure reaches the source after kilobytes, not megabytes."""

    def open_on(self, handle: object, **kwargs: int | None) -> DummyRequest:
        request = _PushRequest([b"events"])
        request.transport = _SocketTransport(handle)
        source = Source()
        stream = SSEStream(
            request,  # type: ignore[arg-type]
            clock=Clock(),
            keep_alive_seconds=0,
            on_pause=source.pause,
            on_resume=source.resume,
            on_lost=source.lost,
            **kwargs,  # type: ignore[arg-type]
        )
        stream.open(data_frame({"n": 0}))
        self.assertIs(request.producer, stream)
        self.assertEqual(request.written, [b'data: {"n":0}\n\n'])
        return request

    def socket_pair(self) -> socket.socket:
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        return left

    def test_send_buffer_is_limited(self) -> None:
        """SO_SNDBUF is set to the default (the kernel reports it doubled)."""
        handle = self.socket_pair()
        before = handle.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.open_on(handle)
        after = handle.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertLess(after, before)
        self.assertIn(after, (DEFAULT_SEND_BUFFER_BYTES, 2 * DEFAULT_SEND_BUFFER_BYTES))

    def test_none_leaves_the_socket_alone(self) -> None:
        """``send_buffer_bytes=None`` keeps the kernel's own sizing."""
        handle = self.socket_pair()
        before = handle.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.open_on(handle, send_buffer_bytes=None)
        self.assertEqual(handle.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), before)

    def test_handles_that_are_not_sockets_are_skipped(self) -> None:
        """TLS connections (an OpenSSL object as handle) or closed sockets: no error."""
        self.open_on(object())
        closed = socket.socket()
        closed.close()
        self.open_on(closed)
