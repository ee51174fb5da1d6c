"""The per-chunk path (issue 16): reads of any size, one write per delivery, pings.

The upstream connection de-chunks whatever a read holds (reads may start
inside a chunk), opens one delivery batch per read, and the SSE writer holds
the frames of a batch and writes them once when it ends.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.wire import READ_SIZE, Target, UpstreamConnection
from openclaw.core.delivery import DELIVERY, DeliveryBatch
from openclaw.gateway.http.sse import DONE_FRAME, PING_FRAME, data_frame
from tests.test_sse import Harness

TARGET = Target("http://up/v1", "http", "up", 80, (), b"POST /v1 HTTP/1.1\r\nContent-Length: ")


class Recorder:
    """A ResponseHandler that keeps the body pieces and how the body ended."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.ended: list[BaseException | None] = []
        self.batch_open_during_data: list[bool] = []

    def response_started(self, status: int, headers: dict[str, str]) -> None:
        """Nothing to keep."""

    def body_data(self, data: bytes) -> None:
        self.pieces.append(data)
        self.batch_open_during_data.append(DELIVERY.open)

    def body_end(self, reason: BaseException | None) -> None:
        self.ended.append(reason)

    def request_failed(self, reason: BaseException) -> None:
        self.ended.append(reason)


def chunked_response(chunks: list[bytes]) -> bytes:
    """A 200 response whose body is ``chunks`` in chunked framing."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def exchange(raw: bytes, cuts: list[int]) -> Recorder:
    """Feed ``raw`` to a fresh connection, split at ``cuts``; return what it heard."""
    connection = UpstreamConnection()
    transport = StringTransport()
    connection.makeConnection(transport)
    recorder = Recorder()
    connection.send(TARGET, b"{}", recorder)
    last = 0
    for cut in [*sorted(set(cuts)), len(raw)]:
        if last < cut:
            connection.dataReceived(raw[last:cut])
            last = cut
    return recorder


class DechunkTests(SynchronousTestCase):
    """Chunked bodies decode the same whatever the read boundaries."""

    @given(
        st.lists(st.binary(min_size=1, max_size=40), max_size=30),
        st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    )
    def test_any_split_same_body(self, chunks: list[bytes], cuts: list[int]) -> None:
        """Every split of the response gives the whole body once and a clean end."""
        recorder = exchange(chunked_response(chunks), cuts)
        self.assertEqual(b"".join(recorder.pieces), b"".join(chunks))
        self.assertEqual(recorder.ended, [None])

    def test_one_piece_per_read_after_a_split_chunk(self) -> None:
        """A read that starts inside a chunk hands the rest of that chunk and
        every whole chunk after it over as one piece."""
        chunks = [b"data: %d\n\n" % n for n in range(50)]
        raw = chunked_response(chunks)
        middle = raw.index(b"data: 10") + 3  # inside chunk 10
        recorder = exchange(raw, [middle])
        self.assertEqual(len(recorder.pieces), 2)
        self.assertEqual(b"".join(recorder.pieces), b"".join(chunks))

    def test_reads_are_delivery_batches(self) -> None:
        """Body data is handed over inside a delivery batch, closed after the read."""
        recorder = exchange(chunked_response([b"a", b"b"]), [60])
        self.assertEqual(recorder.batch_open_during_data, [True] * len(recorder.pieces))
        self.assertFalse(DELIVERY.open)

    def test_read_size_is_bounded(self) -> None:
        """A TCP-like transport is told to read at most READ_SIZE bytes a turn."""
        connection = UpstreamConnection()
        transport = StringTransport()
        transport.bufferSize = 65536  # type: ignore[attr-defined]  # typing note: what tcp.Connection has
        connection.makeConnection(transport)
        self.assertEqual(transport.bufferSize, READ_SIZE)  # type: ignore[attr-defined]  # typing note: see above

    def test_read_size_under_tls(self) -> None:
        """Under TLS the TCP connection below the TLS layer gets the bound."""
        tcp = StringTransport()
        tcp.bufferSize = 65536  # type: ignore[attr-defined]  # typing note: what tcp.Connection has
        tls = StringTransport()
        tls.transport = tcp  # type: ignore[attr-defined]  # typing note: as TLSMemoryBIOProtocol
        UpstreamConnection().makeConnection(tls)
        self.assertEqual(tcp.bufferSize, READ_SIZE)  # type: ignore[attr-defined]  # typing note: see above


class DeliveryBatchTests(SynchronousTestCase):
    """The batch runs its flushes when the outermost delivery ends."""

    def test_nested_and_failing_flushes(self) -> None:
        """Flushes wait for the outermost end; one failing flush harms no other."""
        batch = DeliveryBatch()
        ran: list[str] = []

        def broken() -> None:
            raise ValueError("boom")

        batch.begin()
        batch.begin()
        batch.defer(lambda: ran.append("a"))
        batch.defer(broken)
        batch.defer(lambda: ran.append("b"))
        batch.end()
        self.assertEqual(ran, [])
        self.assertTrue(batch.open)
        batch.end()
        self.assertEqual(ran, ["a", "b"])
        self.assertFalse(batch.open)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class BatchedWriterTests(SynchronousTestCase):
    """The SSE writer inside a delivery batch."""

    def setUp(self) -> None:
        self.writes: list[bytes] = []

    def harness(self, **kwargs: float) -> Harness:
        h = Harness(**kwargs)  # type: ignore[arg-type]  # typing note: keep_alive only
        original = h.conn.transport.writeSequence

        def record(data: list[bytes]) -> None:
            self.writes.append(b"".join(data))
            original(data)

        h.conn.transport.writeSequence = record  # type: ignore[method-assign]
        return h

    def test_frames_of_a_delivery_are_one_write(self) -> None:
        """Frames sent during a delivery reach the client as one write at its end."""
        h = self.harness()
        DELIVERY.begin()
        try:
            for n in range(5):
                h.stream.send_json({"n": n})
            self.assertEqual(self.writes, [])
        finally:
            DELIVERY.end()
        frames = b"".join(data_frame({"n": n}) for n in range(5))
        self.assertEqual(len(self.writes), 1)
        self.assertIn(frames, self.writes[0])
        self.assertTrue(h.body.endswith(frames))

    def test_close_inside_a_delivery_flushes_first(self) -> None:
        """[DONE] and the frames before it are written when the stream closes."""
        h = self.harness()
        DELIVERY.begin()
        try:
            h.stream.send_json({"n": 1})
            h.stream.close()
            self.successResultOf(h.stream.done)
        finally:
            DELIVERY.end()
        self.assertTrue(h.body.endswith(data_frame({"n": 1}) + DONE_FRAME))

    def test_pause_during_a_delivery_queues_held_frames_in_order(self) -> None:
        """A pause keeps held frames ahead of later ones; resume writes them in order."""
        h = self.harness()
        DELIVERY.begin()
        try:
            h.stream.send_json({"n": 1})
            h.stream.pauseProducing()
            h.stream.send_json({"n": 2})
        finally:
            DELIVERY.end()
        self.assertNotIn(b'"n":1', h.body)
        self.assertEqual(h.stream.queued_bytes, 2 * len(data_frame({"n": 1})))
        h.stream.resumeProducing()
        self.assertTrue(h.body.endswith(data_frame({"n": 1}) + data_frame({"n": 2})))

    def test_loss_during_a_delivery_drops_held_frames(self) -> None:
        """Frames held when the client goes away are never written."""
        h = self.harness()
        DELIVERY.begin()
        try:
            h.stream.send_json({"n": 1})
            h.conn.disconnect()
        finally:
            DELIVERY.end()
        self.assertNotIn(b'"n":1', h.conn.transport.value())
        self.assertEqual(h.source.calls, ["lost"])

    def test_ping_timer_is_not_reset_per_write(self) -> None:
        """Writes leave the one ping timer alone; it fires a full idle period
        after the last write, once."""
        h = self.harness(keep_alive=5)
        [ping] = h.clock.getDelayedCalls()
        first = ping.getTime()
        for _ in range(3):
            h.clock.advance(1)
            h.stream.send_json({"n": 1})
        self.assertEqual(h.clock.getDelayedCalls(), [ping])
        self.assertEqual(ping.getTime(), first)
        h.clock.advance(4.9)  # t=7.9: the timer fired at t=5 and moved itself to t=8
        self.assertNotIn(PING_FRAME, h.body)
        h.clock.advance(0.1)
        self.assertTrue(h.body.endswith(PING_FRAME))
