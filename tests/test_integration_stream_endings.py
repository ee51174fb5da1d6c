"""The end of a long streamed answer, through the real ``twistd openclaw``.

A run that ends writes its closing frames in one go: Responses repeats the
whole text in ``output_text.done``, ``content_part.done``, ``output_item.done``
and ``response.completed``; chat sends client tool-call arguments as argument
chunks. For a reply of a megabyte that is several megabytes at once, more than
the slow-reader bound (1 MiB). A client reading at full speed must get all of
it, and so must a client that reads slowly but steadily; a client that has
stopped reading must still be cut off.

The clients are the official ``openai`` SDK (streaming helpers that assemble
the final answer), a raw socket that reads at a bounded rate and a raw socket
that never reads, all on loopback.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

from openai import OpenAI
from openai.types.chat import ChatCompletionToolParam
from openai.types.responses import FunctionToolParam
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorSocket,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from openclaw.testing import FakeReply, FakeToolCall
from tests import integration_support as support
from tests.gateway_process import TOKEN
from tests.integration_support import CLIENT_TIMEOUT

_T = TypeVar("_T")

#: The slow-client gateway's keep-alive period; a client that makes no
#: progress on a final burst over the bound for four of them is cut off.
KEEP_ALIVE = 0.25
#: That gateway's stall window.
STALL = 4 * KEEP_ALIVE
#: Over a megabyte of reply text or tool-call arguments.
BIG = 1_200_000

WRITE_FILE: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "write_file", "parameters": {"type": "object"}},
}
WRITE_FILE_RESPONSES: FunctionToolParam = {
    "type": "function",
    "name": "write_file",
    "parameters": {"type": "object"},
    "strict": False,
}


def big_text() -> str:
    """``BIG`` characters of prose."""
    unit = "lorem ipsum dolor sit amet "
    return (unit * (BIG // len(unit) + 1))[:BIG]


def big_arguments() -> str:
    """Tool-call arguments of over ``BIG`` characters (escaped newlines inside)."""
    return json.dumps({"path": "big.txt", "content": "line of code;\n" * (BIG // 14)})


class _StreamGateway(support.GatewayTestCase):
    """Agent main on the fake upstream; chat completions and Responses on,
    with ``keep_alive`` seconds between pings."""

    keep_alive: ClassVar[float]

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """Agent main on the fake upstream."""
        return support.one_fake_agent(port)

    @classmethod
    def gateway_settings(cls) -> dict[str, Any]:
        """Chat completions and Responses, pinging every ``keep_alive`` seconds."""
        endpoint = {"enabled": True, "sseKeepAliveSeconds": cls.keep_alive}
        return {"http": {"endpoints": {"chatCompletions": endpoint, "responses": endpoint}}}

    async def call(self, function: Callable[[], _T]) -> _T:
        """Run a blocking client in a thread; the reactor keeps serving the fake."""
        return await deferToThread(function)


class FinalBurstTests(_StreamGateway):
    """Final bursts over the bound reach a client reading at full speed
    (the default keep-alive: a busy client thread is never taken for gone)."""

    keep_alive = 15

    def setUp(self) -> None:
        super().setUp()
        self.client = OpenAI(
            base_url=f"{self.gateway.base_url}/v1",
            api_key=TOKEN,
            max_retries=0,
            timeout=CLIENT_TIMEOUT,
        )
        self.addCleanup(self.client.close)

    async def test_responses_megabyte_text_arrives_whole(self) -> None:
        """A 1.2 MB streamed Responses reply ends with ``response.completed``
        carrying the whole text (its closing events are ~5 MB at once)."""
        text = big_text()
        self.fake.reply = FakeReply(text=text, chunks=300)

        def run() -> tuple[list[str], Any]:
            with self.client.responses.stream(model="openclaw", input="write") as stream:
                kinds: list[str] = [event.type for event in stream]
                return kinds, stream.get_final_response()

        kinds, final = await self.call(run)
        self.assertEqual(kinds[-1], "response.completed")
        self.assertEqual(final.status, "completed")
        self.assertEqual(final.output_text, text)

    async def test_responses_megabyte_tool_arguments_arrive_whole(self) -> None:
        """Client tool-call arguments of 1.2 MB reach a streaming Responses client."""
        arguments = big_arguments()
        self.fake.reply = FakeReply(
            text="Writing.", tool_calls=(FakeToolCall("write_file", arguments, id="c1"),)
        )

        def run() -> Any:
            with self.client.responses.stream(
                model="openclaw", input="write", tools=[WRITE_FILE_RESPONSES]
            ) as stream:
                for _ in stream:
                    pass
                return stream.get_final_response()

        final = await self.call(run)
        calls = [item for item in final.output if item.type == "function_call"]
        self.assertEqual([(c.name, c.arguments) for c in calls], [("write_file", arguments)])

    async def test_chat_megabyte_tool_arguments_arrive_whole(self) -> None:
        """Client tool-call arguments of 1.2 MB reach a streaming chat client
        (``.stream()`` assembles them), finish reason ``tool_calls``."""
        arguments = big_arguments()
        self.fake.reply = FakeReply(
            text="Writing.", tool_calls=(FakeToolCall("write_file", arguments, id="c1"),)
        )

        def run() -> Any:
            with self.client.chat.completions.stream(
                model="openclaw",
                messages=[{"role": "user", "content": "write"}],
                tools=[WRITE_FILE],
            ) as stream:
                for _ in stream:
                    pass
                return stream.get_final_completion()

        final = await self.call(run)
        choice = final.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        [call] = choice.message.tool_calls
        self.assertEqual(call.function.arguments, arguments)


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP/1.1 body (up to its last chunk)."""
    payload = bytearray()
    at = 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(payload)
        payload += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


class PacedReader(Protocol):
    """A raw HTTP/1.1 client that reads its answer at no more than ``rate``
    bytes a second: after a read that puts it ahead of that pace it leaves the
    socket unread (the transport paused) until the pace catches up, so the
    gateway sees a steady slow reader. ``finished`` fires with the raw answer
    once its last chunk is in; ``longest_gap`` is the longest time between
    two reads."""

    def __init__(self, clock: IReactorTime, request: bytes, rate: float) -> None:
        self.clock = clock
        self.request = request
        self.rate = rate
        self.received = bytearray()
        self.finished: Deferred[bytes] = Deferred()
        self.started = self.last_read = 0.0
        self.longest_gap = 0.0
        self._resume: IDelayedCall | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.started = self.last_read = self.clock.seconds()
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        now = self.clock.seconds()
        self.longest_gap = max(self.longest_gap, now - self.last_read)
        self.last_read = now
        self.received += data
        if self.received.endswith(b"\r\n0\r\n\r\n"):
            cast(ITCPTransport, self.transport).loseConnection()
            return
        due = self.started + len(self.received) / self.rate
        if due > now:
            reading = cast(IPushProducer, self.transport)
            reading.pauseProducing()
            self._resume = self.clock.callLater(due - now, reading.resumeProducing)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        if self.received.endswith(b"\r\n0\r\n\r\n"):
            self.finished.callback(bytes(self.received))
        else:
            self.finished.errback(reason)

    def ensure_closed(self) -> Deferred[None]:
        """Cleanup: abort the connection unless it is already gone, and wait."""
        closed: Deferred[None] = Deferred()
        self.finished.addBoth(lambda _: closed.callback(None))
        if not self.finished.called:
            cast(ITCPTransport, self.transport).abortConnection()
        return closed


class StalledClientTests(_StreamGateway):
    """A client that stops reading is still cut off, or pauses the run; one
    that reads slowly is not."""

    keep_alive = KEEP_ALIVE

    def stalled_client(self, body: dict[str, Any]) -> socket.socket:
        """A raw connection that sends one Responses request and never reads
        (a 4 KB receive buffer), closed at cleanup."""
        payload = json.dumps(body).encode()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self.gateway.port))
        sock.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        return sock

    async def test_client_that_stops_reading_is_cut_off(self) -> None:
        """A client that reads nothing gets its stream aborted once the final
        burst passes the bound and it has taken nothing for four keep-alive
        periods; the gateway then drops what it held for it."""
        # A short text, then arguments whose closing events pass the bound:
        # the run ends although the client never reads.
        self.fake.reply = FakeReply(
            text="Writing.", tool_calls=(FakeToolCall("write_file", big_arguments(), id="c1"),)
        )
        body = {"model": "openclaw", "input": "write", "stream": True}
        sock = self.stalled_client({**body, "tools": [WRITE_FILE_RESPONSES]})
        started = time.monotonic()
        aborted = r"SSE client not reading: no progress for [0-9.]+ s"
        await self.call(lambda: self.gateway.process.wait_for_output(aborted, timeout=10))
        elapsed = time.monotonic() - started
        # Four keep-alive periods after the run ended, not at once and not never.
        self.assertGreaterEqual(elapsed, 4 * KEEP_ALIVE * 0.9)

        def read_all() -> tuple[bytes, BaseException | None]:
            sock.settimeout(CLIENT_TIMEOUT)
            received = bytearray()
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError as error:
                return bytes(received), error
            return bytes(received), None

        received, _error = await self.call(read_all)
        self.assertNotIn(b"response.completed", received)
        self.assertNotIn(b"[DONE]", received)
        census = await self.census()
        self.assertEqual(census.tcp.get("ESTABLISHED", 0), 0, census.connections)

    async def test_stalled_client_pauses_a_running_reply(self) -> None:
        """While the run still produces, a client that stops reading pauses it
        (and the upstream read) instead of being buffered for: the gateway
        holds a bounded amount and leaves the stream open."""
        self.fake.reply = FakeReply.sized(4000, 512)
        aborts = self.gateway.log.count("SSE client not reading")
        sock = self.stalled_client({"model": "openclaw", "input": "write", "stream": True})
        await self.fake.wait_for_pause()
        self.assertEqual(self.fake.paused_streams, 1)
        self.assertEqual(self.gateway.log.count("SSE client not reading"), aborts)
        sock.close()
        await self.fake.wait_for_client_closes()

    async def test_slow_steady_reader_gets_a_long_reply_whole(self) -> None:
        """A client reading steadily but slowly (small reads, never idle for
        anywhere near the stall window) gets a 1.2 MB Responses reply whole,
        although each of its closing frames takes it one and a half stall
        windows to read: progress is the client taking bytes, not frames."""
        text = big_text()
        self.fake.reply = FakeReply(text=text, chunks=300)
        body = json.dumps({"model": "openclaw", "input": "write", "stream": True}).encode()
        request = (
            b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # A closing frame (the whole text) takes 1.5 stall windows at this pace.
        reader = PacedReader(self.reactor, request, rate=BIG / (1.5 * STALL))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", self.gateway.port))
        sock.setblocking(False)
        aborts = self.gateway.log.count("SSE client not reading")
        factory: ServerFactory = ServerFactory()
        factory.protocol = lambda: reader
        IReactorSocket(self.reactor).adoptStreamConnection(sock.fileno(), socket.AF_INET, factory)
        sock.close()
        self.addCleanup(reader.ensure_closed)
        answer = await reader.finished
        elapsed = self.reactor.seconds() - reader.started
        # Slow (several stall windows in all), yet never idle for one.
        self.assertGreater(elapsed, 3 * STALL)
        self.assertLess(reader.longest_gap, STALL / 2)
        head, _, chunked = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        sse = dechunk(chunked)
        self.assertTrue(sse.endswith(b"data: [DONE]\n\n"))
        events = [
            json.loads(line[len(b"data: ") :])
            for line in sse.split(b"\n")
            if line.startswith(b"data: {")
        ]
        completed = events[-1]
        self.assertEqual(completed["type"], "response.completed")
        [message] = completed["response"]["output"]
        self.assertEqual(message["content"][0]["text"], text)
        self.assertEqual(self.gateway.log.count("SSE client not reading"), aborts)
