"""The anthropic-messages provider against the fake Anthropic upstream, in memory."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from openclaw.agents.providers.anthropic_messages import (
    AnthropicMessagesProvider,
    messages_url,
)
from openclaw.agents.providers.base import ModelCall, ModelMessage, StreamOutcome
from openclaw.agents.providers.http import HTTPModelStream
from openclaw.agents.types import (
    ClientTool,
    FailureKind,
    ImageInput,
    ProviderError,
    StreamParams,
    ToolCall,
    Usage,
)
from openclaw.config.model import ModelEntry, ProviderConfig
from openclaw.testing import (
    FakeAnthropicUpstream,
    FakeReply,
    FakeToolCall,
    FakeUsage,
    InMemoryClient,
    RecordingSink,
)

KEY = "sk-ant-test-0123456789"
HELLO = ModelCall(model="claude-x", messages=(ModelMessage(role="user", content="hi"),))


class Harness:
    """Fake Anthropic upstream + in-memory client + provider on one Clock."""

    def __init__(
        self,
        reply: FakeReply | None = None,
        overrides: dict[str, Any] | None = None,
        resource: Resource | None = None,
    ) -> None:
        self.clock = Clock()
        self.fake = FakeAnthropicUpstream(self.clock, reply, api_key=KEY)
        self.client = InMemoryClient(resource or self.fake, self.clock)
        values: dict[str, Any] = {
            "id": "anthropic",
            "api": "anthropic-messages",
            "base_url": "http://upstream.test",
            "api_key": KEY,
            "timeout_seconds": 30.0,
        }
        values.update(overrides or {})
        self.provider = AnthropicMessagesProvider(
            ProviderConfig(**values), agent=self.client.agent, clock=self.clock
        )

    def run(
        self, call: ModelCall = HELLO, sink: RecordingSink | None = None
    ) -> tuple[HTTPModelStream, RecordingSink, list[Any]]:
        """Start a stream, pump, and return it with its sink and results."""
        sink = sink or RecordingSink()
        stream = self.provider.stream(call, sink)
        results: list[Any] = []
        stream.done.addBoth(results.append)
        self.client.pump()
        return stream, sink, results


def failure_of(test: SynchronousTestCase, results: list[Any]) -> ProviderError:
    """The ProviderError a stream failed with."""
    test.assertEqual(len(results), 1, results)
    test.assertIsInstance(results[0], Failure)
    error = results[0].value
    assert isinstance(error, ProviderError), error
    return error


def sse(*events: dict[str, Any]) -> bytes:
    """Anthropic-style named SSE events."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


class RawResource(Resource):
    """Answers every POST with fixed SSE bytes."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_POST(self, request: Request) -> bytes:
        """Return the fixed body."""
        request.setHeader(b"content-type", b"text/event-stream")
        return self.body


class AnthropicStreamingTests(SynchronousTestCase):
    """Events -> sink calls and outcome."""

    def test_text_and_cache_usage(self) -> None:
        """Text deltas arrive in order; message_start's cache read/write counts and
        message_delta's output count make the usage."""
        reply = FakeReply(
            text="Hello there you",
            usage=FakeUsage(input_tokens=10, output_tokens=3, cache_read=100, cache_write=50),
        )
        _stream, sink, results = Harness(reply).run()
        self.assertEqual(sink.deltas, ["Hello ", "there ", "you"])
        final = Usage(input=10, output=3, cache_read=100, cache_write=50, total=163)
        self.assertEqual(sink.usages[0], Usage(10, 1, 100, 50, 161))
        self.assertEqual(sink.usages[-1], final)
        self.assertEqual(results, [StreamOutcome("stop", final)])

    def test_tool_use_blocks(self) -> None:
        """tool_use blocks become tool calls numbered from 0 after a text block."""
        reply = FakeReply(
            text="Let me check.",
            tool_calls=(
                FakeToolCall("get_weather", '{"city":"Oslo"}', id="toolu_1"),
                FakeToolCall("get_time", "{}", id="toolu_2"),
            ),
        )
        _stream, sink, results = Harness(reply).run()
        self.assertEqual(sink.text, "Let me check.")
        self.assertEqual(
            sink.tool_calls(),
            [
                ToolCall("toolu_1", "get_weather", '{"city":"Oslo"}'),
                ToolCall("toolu_2", "get_time", "{}"),
            ],
        )
        self.assertEqual(sink.tool_pieces[0], (0, "toolu_1", "get_weather", ""))
        self.assertEqual(results[0].stop_reason, "tool_calls")

    def test_tool_use_without_input_deltas(self) -> None:
        """A tool_use block with no input_json_delta gets its start input as arguments."""
        body = sse(
            {"type": "message_start", "message": {"usage": {"input_tokens": 1}}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t1", "name": "now", "input": {}},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
            {"type": "message_stop"},
        )
        _stream, sink, results = Harness(resource=RawResource(body)).run()
        self.assertEqual(sink.tool_calls(), [ToolCall("t1", "now", "{}")])
        self.assertEqual(results[0].stop_reason, "tool_calls")

    def test_stop_reasons(self) -> None:
        """max_tokens is length, stop_sequence is stop, refusal is content_filter."""
        for upstream, expected in (
            ("max_tokens", "length"),
            ("stop_sequence", "stop"),
            ("end_turn", "stop"),
            ("refusal", "content_filter"),
        ):
            _s, _sink, results = Harness(FakeReply(finish_reason=upstream)).run()
            self.assertEqual(results[0].stop_reason, expected, upstream)

    def test_request_body_and_headers(self) -> None:
        """system, base64 images, tool_use / tool_result blocks (merged into
        alternating turns), tools with input_schema, max_tokens default and
        Anthropic's sampling params; x-api-key and anthropic-version headers."""
        h = Harness()
        call = ModelCall(
            model="claude-x",
            system_prompt="Be brief.",
            messages=(
                ModelMessage(
                    role="user",
                    content="What is this?",
                    images=(ImageInput(data="aGk=", mime_type="image/jpeg"),),
                ),
                ModelMessage(
                    role="assistant",
                    content="Checking.",
                    tool_calls=(
                        ToolCall(id="t1", name="lookup", arguments='{"q":"x"}'),
                        ToolCall(id="t2", name="lookup", arguments="not json"),
                    ),
                ),
                ModelMessage(role="tool", content="42", tool_call_id="t1"),
                ModelMessage(role="tool", content="43", tool_call_id="t2"),
                ModelMessage(role="user", content="thanks"),
            ),
            tools=(
                ClientTool(name="lookup", description="Look up", parameters={"type": "object"}),
                ClientTool(name="bare"),
            ),
            stream_params=StreamParams(
                temperature=0.5, top_p=0.8, stop=("END",), seed=3, presence_penalty=1.0
            ),
        )
        h.run(call)
        [received] = h.fake.requests
        self.assertEqual(received.path, "/v1/messages")
        self.assertEqual(received.headers["x-api-key"], KEY)
        self.assertEqual(received.headers["anthropic-version"], "2023-06-01")
        self.assertEqual(received.headers["content-type"], "application/json")
        self.assertNotIn("authorization", received.headers)
        self.assertEqual(
            received.body,
            {
                "model": "claude-x",
                "max_tokens": 4096,
                "stream": True,
                "system": "Be brief.",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/jpeg",
                                    "data": "aGk=",
                                },
                            },
                            {"type": "text", "text": "What is this?"},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "Checking."},
                            {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "x"}},
                            {"type": "tool_use", "id": "t2", "name": "lookup", "input": {}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
                            {"type": "tool_result", "tool_use_id": "t2", "content": "43"},
                            {"type": "text", "text": "thanks"},
                        ],
                    },
                ],
                "tools": [
                    {
                        "name": "lookup",
                        "description": "Look up",
                        "input_schema": {"type": "object"},
                    },
                    {"name": "bare", "input_schema": {"type": "object", "properties": {}}},
                ],
                "temperature": 0.5,
                "stop_sequences": ["END"],
            },
        )

    def test_max_tokens_from_params(self) -> None:
        """max_tokens from the stream params replaces the 4096 default."""
        h = Harness()
        h.run(
            ModelCall(model="m", messages=HELLO.messages, stream_params=StreamParams(max_tokens=9))
        )
        self.assertEqual(h.fake.requests[0].body["max_tokens"], 9)

    def test_anthropic_request_rules(self) -> None:
        """What Anthropic refuses is not sent: whitespace-only text blocks,
        temperature outside [0, 1] or with top_p, whitespace stop sequences, and
        a tool schema without type "object"; a failed tool's result says
        is_error; the model's maxTokens is the default and the client's cap is
        kept within it."""
        model = ModelEntry(id="claude-x", max_tokens=8192)
        h = Harness(overrides={"models": (model,)})
        call = ModelCall(
            model="claude-x",
            messages=(
                ModelMessage(role="user", content="read it"),
                ModelMessage(
                    role="assistant",
                    content=" \n",
                    tool_calls=(ToolCall(id="t1", name="read", arguments='{"path":"x"}'),),
                ),
                ModelMessage(role="tool", content="no such file", tool_call_id="t1", is_error=True),
            ),
            tools=(
                ClientTool(name="empty", parameters={}),
                ClientTool(name="props", parameters={"properties": {"a": {"type": "string"}}}),
            ),
            stream_params=StreamParams(temperature=1.5, top_p=0.5, stop=("\n", "END")),
        )
        h.run(call)
        body = h.fake.requests[0].body
        self.assertEqual(body["max_tokens"], 8192)
        assistant = body["messages"][1]["content"]
        self.assertEqual([b["type"] for b in assistant], ["tool_use"])
        self.assertEqual(body["messages"][2]["content"][0]["is_error"], True)
        self.assertEqual((body["temperature"], "top_p" in body), (1.0, False))
        self.assertEqual(body["stop_sequences"], ["END"])
        self.assertEqual(
            [t["input_schema"] for t in body["tools"]],
            [{"type": "object"}, {"type": "object", "properties": {"a": {"type": "string"}}}],
        )
        capped = Harness(overrides={"models": (model,)})
        capped.run(
            ModelCall(
                model="claude-x",
                messages=HELLO.messages,
                stream_params=StreamParams(max_tokens=100_000),
            )
        )
        self.assertEqual(capped.fake.requests[0].body["max_tokens"], 8192)

    def test_prompt_caching_on_anthropics_own_api(self) -> None:
        """On api.anthropic.com the system prompt is one text block with a cache
        breakpoint (tools and prompt are cached across steps); a compatible
        server gets the plain string."""
        call = ModelCall(model="m", system_prompt="Be brief.", messages=HELLO.messages)
        native = Harness(overrides={"base_url": "https://api.anthropic.com"})
        native.run(call)
        self.assertEqual(
            native.fake.requests[0].body["system"],
            [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        )
        other = Harness()
        other.run(call)
        self.assertEqual(other.fake.requests[0].body["system"], "Be brief.")

    def test_base_url_ending_in_v1(self) -> None:
        """A baseUrl that already ends in /v1 is not doubled."""
        h = Harness(overrides={"base_url": "http://upstream.test/v1/"})
        _s, sink, _r = h.run()
        self.assertEqual(h.fake.requests[0].path, "/v1/messages")
        self.assertEqual(sink.text, "Hello from the fake upstream.")
        self.assertEqual(messages_url(None), "https://api.anthropic.com/v1/messages")
        self.assertEqual(
            messages_url("https://proxy.example/anthropic/v1"),
            "https://proxy.example/anthropic/v1/messages",
        )

    def test_non_streamed_message(self) -> None:
        """A whole ``message`` JSON answer is a one-shot result."""
        reply = FakeReply(
            mode="json",
            text="all at once",
            tool_calls=(FakeToolCall("f", '{"a": 1}', id="t9"),),
            usage=FakeUsage(input_tokens=4, output_tokens=2, cache_read=1),
        )
        _s, sink, results = Harness(reply).run()
        self.assertEqual(sink.deltas, ["all at once"])
        self.assertEqual(sink.tool_calls(), [ToolCall("t9", "f", '{"a": 1}')])
        self.assertEqual(results, [StreamOutcome("tool_calls", Usage(4, 2, 1, 0, 7))])

    def test_stop_closes_upstream(self) -> None:
        """stopProducing closes the connection; the fake sees the client go."""
        h = Harness(FakeReply(mode="stall"))
        stream, _sink, results = h.run()
        stream.stopProducing()
        h.client.pump()
        results[0].trap(CancelledError)
        self.assertEqual(h.fake.client_closed, 1)

    def test_message_delta_without_message_stop(self) -> None:
        """A body that ends after message_delta (no message_stop) still succeeds;
        one that ends before any stop reason is MALFORMED_STREAM."""
        start = {"type": "message_start", "message": {"usage": {"input_tokens": 2}}}
        done = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}
        _s, _sink, results = Harness(resource=RawResource(sse(start, done))).run()
        self.assertEqual(results[0].stop_reason, "stop")
        _s, _sink, results = Harness(resource=RawResource(sse(start))).run()
        self.assertEqual(failure_of(self, results).kind, FailureKind.MALFORMED_STREAM)


class AnthropicFailureTests(SynchronousTestCase):
    """Anthropic's error shapes, HTTP and mid-stream."""

    def test_http_errors(self) -> None:
        """Anthropic error bodies map to kinds, keeping the error type as code."""
        cases = [
            (FakeReply.failing(529, "Overloaded"), FailureKind.OVERLOADED, "overloaded_error"),
            (
                FakeReply.failing(400, "prompt is too long: 300000 tokens > 200000 maximum"),
                FailureKind.CONTEXT_OVERFLOW,
                "invalid_request_error",
            ),
            (FakeReply.failing(403, "no access"), FailureKind.PERMISSION, "permission_error"),
            (
                FakeReply.failing(404, "model: claude-9"),
                FailureKind.MODEL_NOT_FOUND,
                "not_found_error",
            ),
            (FakeReply.failing(500, "internal"), FailureKind.SERVER_ERROR, "api_error"),
        ]
        for reply, kind, code in cases:
            error = failure_of(self, Harness(reply).run()[2])
            self.assertEqual((error.kind, error.status, error.code), (kind, reply.status, code))

    def test_bad_key(self) -> None:
        """A wrong x-api-key is AUTH."""
        h = Harness(overrides={"api_key": "wrong-key-123"})
        error = failure_of(self, h.run()[2])
        self.assertEqual((error.kind, error.code), (FailureKind.AUTH, "authentication_error"))

    def test_rate_limited(self) -> None:
        """429 with retry-after is RATE_LIMIT with the delay."""
        error = failure_of(self, Harness(FakeReply.rate_limited("3")).run()[2])
        self.assertEqual((error.kind, error.retry_after_seconds), (FailureKind.RATE_LIMIT, 3.0))

    def test_error_event_mid_stream(self) -> None:
        """An ``error`` event after some text is classified (overloaded here)."""
        reply = FakeReply(text="a b c", mode="error_frame", error_message="Overloaded")
        _s, sink, results = Harness(reply).run()
        self.assertEqual(sink.deltas, ["a "])
        error = failure_of(self, results)
        self.assertEqual(
            (error.kind, error.code, error.message),
            (FailureKind.OVERLOADED, "overloaded_error", "Overloaded"),
        )

    def test_malformed_event(self) -> None:
        """An event whose data is not JSON is MALFORMED_STREAM."""
        error = failure_of(self, Harness(FakeReply(mode="malformed")).run()[2])
        self.assertEqual(error.kind, FailureKind.MALFORMED_STREAM)

    def test_reset_mid_stream(self) -> None:
        """A dropped connection mid-stream is CONNECTION."""
        error = failure_of(self, Harness(FakeReply(mode="reset_mid_stream")).run()[2])
        self.assertEqual(error.kind, FailureKind.CONNECTION)
