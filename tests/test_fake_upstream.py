"""The fake upstreams themselves, driven over an in-memory HTTP connection."""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from openclaw.agents.providers.sse import SSEEvent, SSEParser
from openclaw.testing import (
    BATCH_YIELD,
    FakeAnthropicUpstream,
    FakeOpenAIUpstream,
    FakeReply,
    FakeToolCall,
    FakeUpstream,
    FakeUsage,
)

STREAM_BODY = {
    "model": "m1",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


class Connection:
    """One server-side HTTP connection to a fake, over a StringTransport."""

    def __init__(self, fake: FakeUpstream) -> None:
        # A memory reactor keeps the channel's idle timer off the global reactor.
        self.site = Site(fake, reactor=MemoryReactorClock())
        self.protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert self.protocol is not None
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def post(
        self,
        body: Any,
        path: str = "/v1/chat/completions",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send one POST with a JSON (or raw bytes) body."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        lines = [f"POST {path} HTTP/1.1", "Host: upstream.test", f"Content-Length: {len(raw)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + raw)

    def raw(self) -> bytes:
        """Everything the fake wrote so far."""
        value: bytes = self.transport.value()
        return value

    def status(self) -> int:
        """The response status code."""
        return int(self.raw().split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        """A response header (case-insensitive)."""
        head = self.raw().split(b"\r\n\r\n", 1)[0].decode()
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None

    def chunks(self) -> list[bytes]:
        """The body's chunked-encoding pieces, in order."""
        body = self.raw().split(b"\r\n\r\n", 1)[1]
        out = []
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out.append(rest[:size])
            body = rest[size + 2 :]
        return out

    def body(self) -> bytes:
        """The decoded body (chunked or plain)."""
        if self.header("transfer-encoding") == "chunked":
            return b"".join(self.chunks())
        return self.raw().split(b"\r\n\r\n", 1)[1]

    def events(self) -> list[SSEEvent]:
        """The body parsed as SSE."""
        parser = SSEParser()
        return parser.feed(self.body()) + parser.close()


def openai_chunks(connection: Connection) -> list[Any]:
    """The JSON payloads of an OpenAI stream ([DONE] kept as a string)."""
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in connection.events()]


class FakeOpenAIUpstreamTests(SynchronousTestCase):
    """The OpenAI-compatible fake's knobs and observations."""

    def test_records_requests_and_streams(self) -> None:
        """A request is recorded (JSON body, lower-case headers) and answered with
        role, content, finish, usage chunks and [DONE]."""
        clock = Clock()
        fake = FakeOpenAIUpstream(
            clock, FakeReply(text="a b", usage=FakeUsage(input_tokens=5, cache_read=2))
        )
        waiting = fake.wait_for_requests(1)
        conn = Connection(fake)
        conn.post(STREAM_BODY, headers={"X-Trace": "t1"})
        self.successResultOf(waiting)
        [received] = fake.requests
        self.assertEqual(
            (received.method, received.path, received.body, received.headers["x-trace"]),
            ("POST", "/v1/chat/completions", STREAM_BODY, "t1"),
        )
        self.assertEqual(conn.header("content-type"), "text/event-stream")
        clock.advance(0)
        chunks = openai_chunks(conn)
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(
            [c["choices"][0]["delta"].get("content") for c in chunks[1:3]], ["a ", "b"]
        )
        self.assertEqual(chunks[3]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(chunks[3]["model"], "m1")
        self.assertEqual(
            chunks[4]["usage"],
            {
                "prompt_tokens": 7,
                "completion_tokens": 2,
                "total_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
        )
        self.assertEqual(chunks[5], "[DONE]")
        self.assertEqual((fake.finished, fake.client_closed), (1, 0))
        self.assertEqual(fake.bytes_written, len(conn.body()))

    def test_usage_only_when_asked(self) -> None:
        """Without stream_options.include_usage there is no usage chunk."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock)
        conn = Connection(fake)
        conn.post({"model": "m", "messages": [], "stream": True})
        clock.advance(0)
        self.assertFalse(any("usage" in c for c in openai_chunks(conn)[:-1]))

    def test_tool_calls(self) -> None:
        """Tool calls stream as id/name first, then argument halves."""
        clock = Clock()
        reply = FakeReply(text="", tool_calls=(FakeToolCall("f", '{"x":1}'),))
        fake = FakeOpenAIUpstream(clock, reply)
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        clock.advance(0)
        deltas = [c["choices"][0] for c in openai_chunks(conn)[1:4]]
        self.assertEqual(
            deltas[0]["delta"]["tool_calls"][0],
            {
                "index": 0,
                "id": "call_fake_0",
                "type": "function",
                "function": {"name": "f", "arguments": ""},
            },
        )
        self.assertEqual(
            [d["delta"]["tool_calls"][0]["function"]["arguments"] for d in deltas[1:]],
            ['{"x', '":1}'],
        )
        self.assertEqual(openai_chunks(conn)[4]["choices"][0]["finish_reason"], "tool_calls")

    def test_delays_use_the_clock(self) -> None:
        """First-token and per-chunk delays are measured on the injected clock;
        headers go out at once."""
        clock = Clock()
        fake = FakeOpenAIUpstream(
            clock, FakeReply(text="a b c", first_token_delay=2.0, chunk_delay=0.5)
        )
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        self.assertEqual(conn.status(), 200)
        clock.advance(1.9)
        self.assertEqual(conn.events(), [])
        clock.advance(0.1)
        self.assertEqual(len(conn.events()), 1)
        clock.advance(0.5)
        self.assertEqual(len(conn.events()), 2)

    def test_chunks_and_write_size(self) -> None:
        """``chunks`` splits the text evenly; ``write_size`` splits every frame into
        transport writes of at most that many bytes."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock, FakeReply(text="abcdefghij", chunks=3, write_size=7))
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        clock.advance(0)
        contents = [c["choices"][0]["delta"].get("content") for c in openai_chunks(conn)[1:4]]
        self.assertEqual(contents, ["abcd", "efg", "hij"])
        sizes = {len(chunk) for chunk in conn.chunks()}
        self.assertEqual(max(sizes), 7)

    def test_sized(self) -> None:
        """FakeReply.sized makes N chunks of B bytes."""
        pieces = FakeReply.sized(4, 100).pieces()
        self.assertEqual([len(p) for p in pieces], [100, 100, 100, 100])

    def test_backpressure_pauses_the_fake(self) -> None:
        """When the transport pauses the request, the fake writes nothing more
        until resumed, even in endless mode."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock, FakeReply.sized(1, 1000, mode="endless"))
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        clock.advance(0)
        first_batch = fake.bytes_written
        self.assertGreaterEqual(first_batch, 64 * 1024)
        self.assertLess(first_batch, 64 * 1024 + 2000)
        paused = fake.wait_for_pause()
        assert conn.transport.producer is not None
        conn.transport.producer.pauseProducing()
        self.successResultOf(paused)
        for _ in range(5):
            clock.advance(0)
        self.assertEqual(fake.bytes_written, first_batch)
        conn.transport.producer.resumeProducing()
        clock.advance(0)
        self.assertGreater(fake.bytes_written, first_batch)

    def test_client_close_is_counted(self) -> None:
        """A client that goes away mid-stream is counted, and the fake stops."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock, FakeReply(mode="endless"))
        closed = fake.wait_for_client_closes(1)
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        clock.advance(0)
        self.assertEqual(fake.active_streams, 1)
        conn.protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        written = fake.bytes_written
        clock.advance(0)
        self.assertEqual((fake.bytes_written, fake.active_streams), (written, 0))

    def test_server_resets_are_not_client_closes(self) -> None:
        """reset_before_headers and reset_mid_stream abort the connection and
        are not counted as client closes."""
        for mode in ("reset_before_headers", "reset_mid_stream"):
            clock = Clock()
            fake = FakeOpenAIUpstream(clock, FakeReply(mode=mode))
            conn = Connection(fake)
            conn.post(STREAM_BODY)
            clock.advance(0)
            self.assertTrue(conn.transport.disconnecting, mode)
            conn.protocol.connectionLost(Failure(ConnectionDone()))
            self.assertEqual(fake.client_closed, 0, mode)
        self.assertEqual(conn.events()[-1].data.count("content"), 1)

    def test_failure_frames(self) -> None:
        """malformed, error_frame and stall come after fail_after_chunks chunks."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock)
        fake.enqueue(
            FakeReply(text="a b c", mode="malformed", fail_after_chunks=2),
            FakeReply(text="a b", mode="error_frame", error_message="bad", error_code="x"),
            FakeReply(text="a b", mode="stall"),
        )
        conns = [Connection(fake) for _ in range(3)]
        for conn in conns:
            conn.post(STREAM_BODY)
        clock.advance(0)
        self.assertEqual(conns[0].events()[-1].data, "{this is not json")
        self.assertEqual(len(conns[0].events()), 4)
        self.assertEqual(
            json.loads(conns[1].events()[-1].data),
            {"error": {"message": "bad", "type": "server_error", "code": "x"}},
        )
        self.assertEqual(len(conns[2].events()), 2)
        self.assertEqual(fake.active_streams, 1)
        fake.close_all()
        self.assertTrue(conns[2].transport.disconnecting)

    def test_error_statuses_and_auth(self) -> None:
        """A failing reply answers its status, OpenAI error shape and headers;
        a wrong key is 401; another path is 404."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock, FakeReply.rate_limited("5"), api_key="k1")
        conn = Connection(fake)
        conn.post(STREAM_BODY, headers={"Authorization": "Bearer k1"})
        self.assertEqual((conn.status(), conn.header("retry-after")), (429, "5"))
        self.assertEqual(json.loads(conn.body())["error"]["code"], "rate_limit_exceeded")
        conn = Connection(fake)
        conn.post(STREAM_BODY, headers={"Authorization": "Bearer nope"})
        self.assertEqual(conn.status(), 401)
        self.assertEqual(json.loads(conn.body())["error"]["type"], "authentication_error")
        conn = Connection(fake)
        conn.post(STREAM_BODY, path="/v1/embeddings")
        self.assertEqual(conn.status(), 404)
        self.assertEqual(fake.request_count, 3)

    def test_request_over_max_bytes_is_a_context_overflow(self) -> None:
        """max_request_bytes refuses a larger body with OpenAI's 400
        context_length_exceeded and keeps the queued reply for the next
        request that fits."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock)
        fake.enqueue(FakeReply(text="fits"))
        size = len(json.dumps(STREAM_BODY).encode())
        fake.max_request_bytes = size - 1
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        self.assertEqual(conn.status(), 400)
        error = json.loads(conn.body())["error"]
        self.assertEqual(error["code"], "context_length_exceeded")
        self.assertIn("maximum context length", error["message"])
        fake.max_request_bytes = size
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        self.assertEqual(conn.status(), 200)
        clock.advance(0)
        self.assertEqual(openai_chunks(conn)[1]["choices"][0]["delta"]["content"], "fits")

    def test_verbatim_error_body(self) -> None:
        """error_body is sent as it is."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock, FakeReply(status=502, error_body=b"upstream down"))
        conn = Connection(fake)
        conn.post(STREAM_BODY)
        self.assertEqual((conn.status(), conn.body()), (502, b"upstream down"))

    def test_non_streaming_request(self) -> None:
        """stream false (or mode json) gets one chat.completion JSON."""
        clock = Clock()
        fake = FakeOpenAIUpstream(clock, FakeReply(text="whole"))
        conn = Connection(fake)
        conn.post({"model": "m", "messages": []})
        answer = json.loads(conn.body())
        self.assertEqual(answer["object"], "chat.completion")
        self.assertEqual(answer["choices"][0]["message"]["content"], "whole")
        self.assertEqual(conn.header("content-type"), "application/json")
        conn = Connection(fake)
        conn.post(b"not json")
        self.assertIsNone(fake.requests[-1].body)
        self.assertEqual(json.loads(conn.body())["object"], "chat.completion")


class FakeAnthropicUpstreamTests(SynchronousTestCase):
    """The Anthropic fake speaks the Messages event stream."""

    def test_event_sequence(self) -> None:
        """message_start, ping, text block, tool_use block, message_delta, message_stop."""
        clock = Clock()
        reply = FakeReply(
            text="hi there",
            tool_calls=(FakeToolCall("f", '{"a":2}', id="toolu_1"),),
            usage=FakeUsage(input_tokens=3, cache_read=4, cache_write=5, output_tokens=6),
        )
        fake = FakeAnthropicUpstream(clock, reply, api_key="ak")
        conn = Connection(fake)
        conn.post(
            {"model": "c", "messages": [], "stream": True},
            path="/v1/messages",
            headers={"x-api-key": "ak"},
        )
        clock.advance(0)
        events = conn.events()
        self.assertEqual(
            [e.event for e in events],
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ],
        )
        start = json.loads(events[0].data)["message"]
        self.assertEqual(
            start["usage"],
            {
                "input_tokens": 3,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 4,
                "output_tokens": 1,
            },
        )
        tool_start = json.loads(events[6].data)
        self.assertEqual(tool_start["index"], 1)
        self.assertEqual(tool_start["content_block"]["id"], "toolu_1")
        delta = json.loads(events[10].data)
        self.assertEqual(delta["delta"]["stop_reason"], "tool_use")
        self.assertEqual(delta["usage"], {"output_tokens": 6})

    def test_errors_in_anthropic_shape(self) -> None:
        """HTTP errors and the wrong key use {"type":"error","error":{...}}."""
        clock = Clock()
        fake = FakeAnthropicUpstream(clock, FakeReply.failing(529, "Overloaded"), api_key="ak")
        conn = Connection(fake)
        conn.post({"stream": True}, path="/v1/messages", headers={"x-api-key": "ak"})
        self.assertEqual(conn.status(), 529)
        self.assertEqual(
            json.loads(conn.body()),
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
        conn = Connection(fake)
        conn.post({"stream": True}, path="/v1/messages")
        self.assertEqual(json.loads(conn.body())["error"]["type"], "authentication_error")

    def test_error_event_and_json_message(self) -> None:
        """error_frame sends an ``error`` event; a non-streamed request gets a message."""
        clock = Clock()
        fake = FakeAnthropicUpstream(clock)
        fake.enqueue(FakeReply(text="a b", mode="error_frame", error_message="busy"))
        conn = Connection(fake)
        conn.post({"stream": True}, path="/v1/messages")
        clock.advance(0)
        last = conn.events()[-1]
        self.assertEqual(last.event, "error")
        self.assertEqual(
            json.loads(last.data)["error"], {"type": "overloaded_error", "message": "busy"}
        )
        conn = Connection(fake)
        conn.post({"model": "c"}, path="/v1/messages")
        message = json.loads(conn.body())
        self.assertEqual((message["type"], message["stop_reason"]), ("message", "end_turn"))
        self.assertEqual(
            message["content"], [{"type": "text", "text": "Hello from the fake upstream."}]
        )

    def test_endless_text(self) -> None:
        """Endless mode keeps sending text deltas, one batch per reactor turn."""
        clock = Clock()
        fake = FakeAnthropicUpstream(clock, FakeReply(text="x", mode="endless"), batch_bytes=1000)
        conn = Connection(fake)
        conn.post({"stream": True}, path="/v1/messages")
        clock.advance(0)
        first = fake.bytes_written
        self.assertLess(first, 1000 + 200)
        clock.advance(0)
        self.assertEqual(fake.bytes_written, first)
        clock.advance(BATCH_YIELD)
        self.assertGreater(fake.bytes_written, first)
        self.assertEqual(
            len(re.findall(rb"text_delta", conn.body())),
            len(conn.events()) - 3,
        )


class DeprecatedModuleTests(SynchronousTestCase):
    def test_old_module_name_still_works_and_warns(self) -> None:
        """``openclaw.fake_upstream`` (the pre-package name) still gives the same
        classes, with a DeprecationWarning pointing at openclaw.testing."""
        import importlib
        import sys
        import warnings

        import openclaw.testing

        sys.modules.pop("openclaw.fake_upstream", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = importlib.import_module("openclaw.fake_upstream")
        self.assertIs(old.FakeOpenAIUpstream, openclaw.testing.FakeOpenAIUpstream)
        self.assertEqual(
            [(w.category, "openclaw.testing" in str(w.message)) for w in caught],
            [(DeprecationWarning, True)],
        )
