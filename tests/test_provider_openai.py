"""The openai-completions provider against the fake upstream, in memory."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import TransportProxyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from openclaw.agents.providers.base import ModelCall, ModelMessage, StreamOutcome
from openclaw.agents.providers.http import DRAIN_GRACE_SECONDS, HTTPModelStream
from openclaw.agents.providers.openai_completions import (
    OpenAICompletionsProvider,
    chat_completions_url,
)
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
    FakeOpenAIUpstream,
    FakeReply,
    FakeToolCall,
    FakeUsage,
    InMemoryClient,
    RecordingSink,
)

KEY = "sk-test-0123456789"
HELLO = ModelCall(model="llama3.2", messages=(ModelMessage(role="user", content="hi"),))


def config(**overrides: Any) -> ProviderConfig:
    """A provider config pointing at the in-memory fake."""
    values: dict[str, Any] = {
        "id": "local",
        "api": "openai-completions",
        "base_url": "http://upstream.test/v1/",
        "api_key": KEY,
        "timeout_seconds": 30.0,
    }
    values.update(overrides)
    return ProviderConfig(**values)


class Harness:
    """A fake upstream, an in-memory client and a provider sharing one Clock."""

    def __init__(
        self,
        reply: FakeReply | None = None,
        overrides: dict[str, Any] | None = None,
        resource: Resource | None = None,
    ) -> None:
        self.clock = Clock()
        self.fake = FakeOpenAIUpstream(self.clock, reply, api_key=KEY)
        self.client = InMemoryClient(resource or self.fake, self.clock)
        self.provider = OpenAICompletionsProvider(
            config(**(overrides or {})), agent=self.client.agent, clock=self.clock
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
    test.assertIsInstance(error, ProviderError)
    assert isinstance(error, ProviderError)
    return error


class RawResource(Resource):
    """Answers every POST with fixed bytes (for bodies the fake cannot make)."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes = b"text/event-stream") -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_POST(self, request: Request) -> bytes:
        """Return the fixed body."""
        request.setHeader(b"content-type", self.content_type)
        return self.body


class EndlessBodyResource(Resource):
    """Sends a complete stream up to [DONE] but never ends the HTTP body."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[Failure] = []

    def render_POST(self, request: Request) -> int:
        """Write the frames, keep the response open, note when the client closes."""
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(
            b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
            b"data: [DONE]\n\n"
        )
        request.notifyFinish().addErrback(self.closed.append)
        return NOT_DONE_YET


@implementer(IAgent)
class SilentAgent:
    """An agent whose requests never get an answer; records cancellation."""

    def __init__(self) -> None:
        self.cancelled = 0

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        """Never answer."""

        def cancel(d: Deferred[IResponse]) -> None:
            self.cancelled += 1

        return Deferred(cancel)


class SocketConnection:
    """What an upstream TCP connection offers: a socket handle and an abort."""

    def __init__(self, handle: socket.socket) -> None:
        self.handle = handle
        self.calls: list[str] = []

    def getHandle(self) -> socket.socket:
        return self.handle

    def abortConnection(self) -> None:
        self.calls.append("abort")

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class SocketResponse:
    """A 200 SSE response whose body transport wraps a :class:`SocketConnection`,
    as Twisted's HTTP client hands a body over."""

    code = 200
    headers = Headers({b"content-type": [b"text/event-stream"]})

    def __init__(self, connection: SocketConnection, body: bytes) -> None:
        self._connection = connection
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(TransportProxyProducer(self._connection))
        protocol.dataReceived(self._body)


@implementer(IAgent)
class SocketAgent:
    """An IAgent answering every request with one :class:`SocketResponse`."""

    def __init__(self, response: SocketResponse) -> None:
        self._response = response

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[Any]:
        return succeed(self._response)


class StreamingTests(SynchronousTestCase):
    """Deltas, usage, tool calls and the request sent upstream."""

    def test_text_deltas_in_order(self) -> None:
        """Each upstream chunk becomes one on_text call, in order, then done fires."""
        h = Harness(FakeReply(text="one two three four"))
        _stream, sink, results = h.run()
        self.assertEqual(sink.deltas, ["one ", "two ", "three ", "four"])
        self.assertEqual(results, [StreamOutcome("stop", sink.usages[-1])])
        self.assertEqual(h.fake.finished, 1)
        self.assertEqual(h.clock.getDelayedCalls(), [], "no timer left behind")

    def test_output_cap_field_follows_the_api(self) -> None:
        """OpenAI's own API gets max_completion_tokens (its reasoning models
        refuse max_tokens), other servers max_tokens, and a model's
        compat.maxTokensField decides when set."""
        capped = ModelCall(
            model="o4-mini",
            messages=(ModelMessage(role="user", content="hi"),),
            stream_params=StreamParams(max_tokens=64),
        )
        openai = Harness(overrides={"base_url": "https://api.openai.com/v1"})
        openai.run(capped)
        self.assertEqual(openai.fake.requests[0].body["max_completion_tokens"], 64)
        self.assertNotIn("max_tokens", openai.fake.requests[0].body)
        other = Harness()
        other.run(capped)
        self.assertEqual(other.fake.requests[0].body["max_tokens"], 64)
        pinned = Harness(
            overrides={
                "base_url": "https://api.openai.com/v1",
                "models": (ModelEntry(id="o4-mini", max_tokens_field="max_tokens"),),
            }
        )
        pinned.run(capped)
        self.assertEqual(pinned.fake.requests[0].body["max_tokens"], 64)

    def test_usage_with_cached_tokens(self) -> None:
        """prompt_tokens minus cached tokens is input; cached tokens are cache_read."""
        h = Harness(FakeReply(usage=FakeUsage(input_tokens=20, cache_read=30, output_tokens=7)))
        _stream, sink, results = h.run()
        usage = Usage(input=20, output=7, cache_read=30, cache_write=0, total=57)
        self.assertEqual(sink.usages, [usage])
        self.assertEqual(results[0].usage, usage)

    def test_request_body_and_headers(self) -> None:
        """System prompt, images, assistant tool calls, tool results, tools and
        every stream param are forwarded in OpenAI's format, with the API key
        and extra headers; a trailing slash on baseUrl is dropped."""
        h = Harness(overrides={"headers": {"X-Title": "openclaw"}})
        call = ModelCall(
            model="gpt-4o-mini",
            system_prompt="Be brief.",
            messages=(
                ModelMessage(
                    role="user",
                    content="What is this?",
                    images=(ImageInput(data="aGk=", mime_type="image/png"),),
                ),
                ModelMessage(
                    role="assistant",
                    content="",
                    tool_calls=(ToolCall(id="call_1", name="lookup", arguments='{"q":"x"}'),),
                ),
                ModelMessage(role="tool", content="42", tool_call_id="call_1"),
                ModelMessage(role="assistant", content="It is 42."),
                ModelMessage(role="user", content="thanks"),
            ),
            tools=(
                ClientTool(
                    name="lookup",
                    description="Look up",
                    parameters={"type": "object", "properties": {"q": {"type": "string"}}},
                    strict=True,
                ),
                ClientTool(name="bare"),
            ),
            stream_params=StreamParams(
                temperature=0.2,
                top_p=0.9,
                max_tokens=64,
                stop=("END",),
                seed=7,
                frequency_penalty=0.1,
                presence_penalty=0.3,
                response_format={"type": "json_object"},
            ),
        )
        h.run(call)
        [received] = h.fake.requests
        self.assertEqual(received.path, "/v1/chat/completions")
        self.assertEqual(received.headers["authorization"], f"Bearer {KEY}")
        self.assertEqual(received.headers["content-type"], "application/json")
        self.assertEqual(received.headers["x-title"], "openclaw")
        self.assertEqual(
            received.body,
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,aGk="},
                            },
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                    {"role": "assistant", "content": "It is 42."},
                    {"role": "user", "content": "thanks"},
                ],
                "stream": True,
                "stream_options": {"include_usage": True},
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "lookup",
                            "description": "Look up",
                            "parameters": {
                                "type": "object",
                                "properties": {"q": {"type": "string"}},
                            },
                            "strict": True,
                        },
                    },
                    {"type": "function", "function": {"name": "bare"}},
                ],
                "temperature": 0.2,
                "top_p": 0.9,
                "max_tokens": 64,
                "seed": 7,
                "frequency_penalty": 0.1,
                "presence_penalty": 0.3,
                "stop": ["END"],
                "response_format": {"type": "json_object"},
            },
        )

    def test_unset_params_and_no_key(self) -> None:
        """Unset stream params are absent, and no Authorization header is sent
        without an API key."""
        h = Harness(overrides={"api_key": None})
        h.fake.api_key = None
        h.run(ModelCall(model="m", messages=HELLO.messages, stream_params=StreamParams()))
        [received] = h.fake.requests
        self.assertNotIn("authorization", received.headers)
        self.assertEqual(sorted(received.body), ["messages", "model", "stream", "stream_options"])

    def test_tool_call_deltas(self) -> None:
        """Tool call pieces arrive with id and name on the first piece only."""
        reply = FakeReply(
            text="",
            tool_calls=(
                FakeToolCall("get_weather", '{"city":"Paris"}', id="call_a"),
                FakeToolCall("get_time", "{}"),
            ),
        )
        _stream, sink, results = Harness(reply).run()
        self.assertEqual(
            sink.tool_pieces,
            [
                (0, "call_a", "get_weather", ""),
                (0, None, None, '{"city":'),
                (0, None, None, '"Paris"}'),
                (1, "call_fake_1", "get_time", ""),
                (1, None, None, "{"),
                (1, None, None, "}"),
            ],
        )
        self.assertEqual(results[0].stop_reason, "tool_calls")
        self.assertEqual(sink.deltas, [])

    def test_finish_reasons(self) -> None:
        """length and content_filter map to the same stop reasons."""
        for upstream, expected in (("length", "length"), ("content_filter", "content_filter")):
            _s, _sink, results = Harness(FakeReply(finish_reason=upstream)).run()
            self.assertEqual(results[0].stop_reason, expected)

    def test_non_sse_json_answer(self) -> None:
        """A server that answers one chat.completion JSON is a one-shot result."""
        reply = FakeReply(
            mode="json",
            text="whole answer",
            tool_calls=(FakeToolCall("f", '{"a":1}'),),
            usage=FakeUsage(input_tokens=3, output_tokens=2),
        )
        _stream, sink, results = Harness(reply).run()
        self.assertEqual(sink.deltas, ["whole answer"])
        self.assertEqual(sink.tool_calls(), [ToolCall("call_fake_0", "f", '{"a":1}')])
        self.assertEqual(results, [StreamOutcome("tool_calls", Usage(3, 2, 0, 0, 5))])

    def test_stream_without_done_but_finished(self) -> None:
        """A stream that ends after a finish_reason but without [DONE] succeeds."""
        body = (
            b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        )
        _stream, sink, results = Harness(resource=RawResource(body)).run()
        self.assertEqual(sink.deltas, ["ok"])
        self.assertEqual(results, [StreamOutcome("stop", Usage())])

    def test_other_choices_ignored_and_comments_skipped(self) -> None:
        """Only choice 0 is streamed; SSE comments are skipped; a sniffed body
        without a content type is still read as SSE."""
        body = (
            b": hello\n\n"
            b'data: {"choices":[{"index":1,"delta":{"content":"no"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":"yes"},"finish_reason":"stop"}]}\n\n'
            b"data: [DONE]\n\n"
        )
        _stream, sink, results = Harness(resource=RawResource(body, b"text/plain")).run()
        self.assertEqual(sink.deltas, ["yes"])
        self.assertEqual(results[0].stop_reason, "stop")

    def test_url(self) -> None:
        """The URL is baseUrl (without a trailing slash) plus /chat/completions."""
        self.assertEqual(
            chat_completions_url("http://127.0.0.1:11434/v1/"),
            "http://127.0.0.1:11434/v1/chat/completions",
        )
        self.assertEqual(chat_completions_url(None), "https://api.openai.com/v1/chat/completions")


class FlowControlTests(SynchronousTestCase):
    """pause, resume, stop and cancel."""

    def test_stop_closes_the_upstream_connection(self) -> None:
        """stopProducing fails done with CancelledError and the fake sees the
        client close the connection; nothing more is delivered."""
        h = Harness(FakeReply(text="a b c d e f", chunk_delay=1.0))
        stream, sink, results = h.run()
        h.client.advance(1.0)
        self.assertEqual(sink.deltas, ["a "])
        stream.stopProducing()
        stream.stopProducing()
        h.client.pump()
        self.assertIsInstance(results[0], Failure)
        results[0].trap(CancelledError)
        self.assertEqual((h.fake.client_closed, h.fake.active_streams), (1, 0))
        h.client.advance(10.0)
        self.assertEqual(sink.deltas, ["a "])

    def test_stop_shuts_the_upstream_socket_down_at_once(self) -> None:
        """stopProducing shuts the upstream socket down before returning (the
        upstream reads end-of-stream without waiting for a reactor turn) and
        aborts the connection instead of closing it gracefully later."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        connection = SocketConnection(ours)
        chunk = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        provider = OpenAICompletionsProvider(
            config(), agent=SocketAgent(SocketResponse(connection, chunk)), clock=Clock()
        )
        sink = RecordingSink()
        stream = provider.stream(HELLO, sink)
        self.assertEqual(sink.deltas, ["a"])
        stream.stopProducing()
        self.assertEqual(connection.calls, ["abort"])
        theirs.setblocking(False)
        self.assertEqual(theirs.recv(16), b"")  # end of stream, already
        self.failureResultOf(stream.done, CancelledError)

    def test_stop_without_a_socket_stops_the_transport(self) -> None:
        """A body transport that wraps no TCP connection is stopped the usual way."""

        class Plain:
            def __init__(self) -> None:
                self.calls: list[str] = []

            def pauseProducing(self) -> None:
                self.calls.append("pause")

            def resumeProducing(self) -> None:
                self.calls.append("resume")

            def stopProducing(self) -> None:
                self.calls.append("stop")

        plain = Plain()
        chunk = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        response = SocketResponse(plain, chunk)  # type: ignore[arg-type]
        provider = OpenAICompletionsProvider(config(), agent=SocketAgent(response), clock=Clock())
        stream = provider.stream(HELLO, RecordingSink())
        stream.stopProducing()
        self.assertEqual(plain.calls, ["stop"])
        self.failureResultOf(stream.done, CancelledError)

    def test_cancel_done_closes_the_upstream_connection(self) -> None:
        """Cancelling the done Deferred is the same as stopProducing."""
        h = Harness(FakeReply(mode="stall"))
        stream, _sink, results = h.run()
        stream.done.cancel()
        h.client.pump()
        results[0].trap(CancelledError)
        self.assertEqual(h.fake.client_closed, 1)

    def test_stop_before_the_response(self) -> None:
        """Stopping before the answer arrives cancels the request."""
        h = Harness()
        stream = h.provider.stream(HELLO, RecordingSink())
        results: list[Any] = []
        stream.done.addBoth(results.append)
        stream.stopProducing()
        h.client.pump()
        results[0].trap(CancelledError)

    def test_pause_holds_back_events(self) -> None:
        """Events already parsed when the consumer pauses are delivered only
        after resume; a paused stream emits nothing."""
        stream_box: list[HTTPModelStream] = []
        sink = RecordingSink(lambda _delta: stream_box[0].pauseProducing())
        h = Harness(FakeReply(text="one two three"))
        stream = h.provider.stream(HELLO, sink)
        stream_box.append(stream)
        results: list[Any] = []
        stream.done.addBoth(results.append)
        h.client.pump()
        self.assertEqual((sink.deltas, results), (["one "], []))
        stream.resumeProducing()
        self.assertEqual((sink.deltas, results), (["one ", "two "], []))
        stream.resumeProducing()
        stream.resumeProducing()
        h.client.pump()
        self.assertEqual(sink.deltas, ["one ", "two ", "three"])
        self.assertEqual(results[0].stop_reason, "stop")

    def test_pause_before_the_response(self) -> None:
        """A pause that comes before the response still holds the body back."""
        h = Harness(FakeReply(text="x y"))
        sink = RecordingSink()
        stream = h.provider.stream(HELLO, sink)
        stream.pauseProducing()
        h.client.pump()
        self.assertEqual(sink.deltas, [])
        stream.resumeProducing()
        h.client.pump()
        self.assertEqual(sink.deltas, ["x ", "y"])

    def test_body_that_never_ends_after_done(self) -> None:
        """After [DONE], done waits for the end of the body (so the connection
        can be reused) but at most DRAIN_GRACE_SECONDS; then the connection is
        closed and the outcome delivered."""
        resource = EndlessBodyResource()
        h = Harness(resource=resource)
        _stream, sink, results = h.run()
        self.assertEqual((sink.deltas, results), (["hi"], []))
        h.client.advance(DRAIN_GRACE_SECONDS)
        self.assertEqual(results, [StreamOutcome("stop", Usage())])
        self.assertEqual(len(resource.closed), 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_stop_after_done_event_keeps_the_outcome(self) -> None:
        """stopProducing after the terminal event closes the connection but the
        completed outcome is still delivered (not CancelledError)."""
        resource = EndlessBodyResource()
        h = Harness(resource=resource)
        stream, _sink, results = h.run()
        stream.stopProducing()
        h.client.pump()
        self.assertEqual(results, [StreamOutcome("stop", Usage())])
        self.assertEqual(len(resource.closed), 1)

    def test_sink_exception_fails_the_stream(self) -> None:
        """A sink that raises ends the stream with that error and closes upstream."""

        def explode(_delta: str) -> None:
            raise RuntimeError("consumer bug")

        h = Harness(FakeReply(mode="stall"))
        _stream, _sink, results = h.run(sink=RecordingSink(explode))
        results[0].trap(RuntimeError)
        h.client.pump()
        self.assertEqual(h.fake.client_closed, 1)


class TimeoutTests(SynchronousTestCase):
    """The idle timeout, driven by the Clock."""

    def test_stall_times_out(self) -> None:
        """No bytes for timeout_seconds fails with TIMEOUT and closes upstream."""
        h = Harness(FakeReply(text="a b", mode="stall"), {"timeout_seconds": 5.0})
        _stream, sink, results = h.run()
        self.assertEqual(sink.deltas, ["a "])
        h.clock.advance(4.9)
        self.assertEqual(results, [])
        h.client.advance(0.2)
        error = failure_of(self, results)
        self.assertEqual(error.kind, FailureKind.TIMEOUT)
        self.assertEqual(h.fake.client_closed, 1)

    def test_activity_restarts_the_timer(self) -> None:
        """Chunks 4 s apart never trip a 5 s idle timeout."""
        h = Harness(FakeReply(text="a b c d", chunk_delay=4.0), {"timeout_seconds": 5.0})
        _stream, sink, results = h.run()
        for _ in range(8):  # role, 4 text chunks, finish, usage, [DONE]
            h.client.advance(4.0)
        self.assertEqual(sink.text, "a b c d")
        self.assertEqual(results[0].stop_reason, "stop")

    def test_no_answer_times_out_and_cancels_the_request(self) -> None:
        """Waiting for the response counts too; the request is cancelled."""
        clock = Clock()
        agent = SilentAgent()
        provider = OpenAICompletionsProvider(config(timeout_seconds=3.0), agent=agent, clock=clock)
        stream = provider.stream(HELLO, RecordingSink())
        results: list[Any] = []
        stream.done.addBoth(results.append)
        clock.advance(3.0)
        self.assertEqual(failure_of(self, results).kind, FailureKind.TIMEOUT)
        self.assertEqual(agent.cancelled, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_paused_stream_does_not_time_out(self) -> None:
        """The timer is suspended while paused and restarts on resume."""
        h = Harness(FakeReply(text="a b", mode="stall"), {"timeout_seconds": 5.0})
        stream, _sink, results = h.run()
        stream.pauseProducing()
        h.clock.advance(60.0)
        self.assertEqual(results, [])
        stream.resumeProducing()
        h.clock.advance(5.0)
        self.assertEqual(failure_of(self, results).kind, FailureKind.TIMEOUT)


class FailureTests(SynchronousTestCase):
    """Every failure class, through a real HTTP exchange with the fake."""

    def test_http_statuses(self) -> None:
        """Each upstream status and error body becomes its FailureKind, keeping
        status, code and message."""
        cases = [
            (FakeReply.failing(403, "forbidden"), FailureKind.PERMISSION),
            (FakeReply.failing(402, "pay up"), FailureKind.BILLING),
            (FakeReply.failing(429, "quota", code="insufficient_quota"), FailureKind.BILLING),
            (
                FakeReply.failing(404, "no such model", code="model_not_found"),
                FailureKind.MODEL_NOT_FOUND,
            ),
            (
                FakeReply.failing(
                    400, "maximum context length is 8192 tokens", code="context_length_exceeded"
                ),
                FailureKind.CONTEXT_OVERFLOW,
            ),
            (
                FakeReply.failing(400, "bad temperature", code="decimal_above_max_value"),
                FailureKind.FORMAT,
            ),
            (FakeReply.failing(422, "unprocessable"), FailureKind.FORMAT),
            (FakeReply.failing(408, "request timeout"), FailureKind.TIMEOUT),
            (FakeReply.failing(504, "gateway timeout"), FailureKind.TIMEOUT),
            (FakeReply.failing(529, "overloaded"), FailureKind.OVERLOADED),
            (FakeReply.failing(500, "boom"), FailureKind.SERVER_ERROR),
            (FakeReply.failing(503, "unavailable"), FailureKind.SERVER_ERROR),
        ]
        for reply, kind in cases:
            _s, _sink, results = Harness(reply).run()
            error = failure_of(self, results)
            self.assertEqual(
                (error.kind, error.status, error.message),
                (kind, reply.status, reply.error_message),
            )
            self.assertEqual(
                error.code,
                reply.error_code
                or reply.error_type
                or ("invalid_request_error" if reply.status < 500 else "server_error"),
            )

    def test_bad_api_key(self) -> None:
        """A rejected key is AUTH with the upstream's status and code."""
        h = Harness()
        h.fake.api_key = "another-key"
        error = failure_of(self, h.run()[2])
        self.assertEqual(
            (error.kind, error.status, error.code), (FailureKind.AUTH, 401, "invalid_api_key")
        )

    def test_rate_limit_retry_after(self) -> None:
        """A 429 carries retry-after (and retry-after-ms wins)."""
        error = failure_of(self, Harness(FakeReply.rate_limited("12")).run()[2])
        self.assertEqual((error.kind, error.retry_after_seconds), (FailureKind.RATE_LIMIT, 12.0))
        reply = FakeReply.rate_limited("12", retry_after_ms="250")
        error = failure_of(self, Harness(reply).run()[2])
        self.assertEqual(error.retry_after_seconds, 0.25)

    def test_key_never_in_the_message(self) -> None:
        """An upstream that echoes the API key does not leak it."""
        reply = FakeReply.failing(401, f"Incorrect API key provided: {KEY}")
        error = failure_of(self, Harness(reply).run()[2])
        self.assertNotIn(KEY, error.message)
        self.assertNotIn(KEY, repr(error))

    def test_credential_header_never_in_the_message(self) -> None:
        """A credential sent in a configured header (Azure's api-key) is redacted too."""
        reply = FakeReply.failing(403, "key azure-secret-value is not allowed here")
        h = Harness(reply, {"headers": {"api-key": "azure-secret-value"}})
        error = failure_of(self, h.run()[2])
        self.assertEqual(h.fake.requests[0].headers["api-key"], "azure-secret-value")
        self.assertEqual(error.message, "key *** is not allowed here")

    def test_reset_before_headers(self) -> None:
        """A connection dropped before the response is CONNECTION."""
        error = failure_of(self, Harness(FakeReply(mode="reset_before_headers")).run()[2])
        self.assertEqual((error.kind, error.status), (FailureKind.CONNECTION, None))

    def test_reset_mid_stream(self) -> None:
        """A connection dropped mid-body is CONNECTION, after the text so far."""
        reply = FakeReply(text="a b c", mode="reset_mid_stream", fail_after_chunks=2)
        _stream, sink, results = Harness(reply).run()
        self.assertEqual(sink.deltas, ["a ", "b "])
        self.assertEqual(failure_of(self, results).kind, FailureKind.CONNECTION)

    def test_malformed_sse(self) -> None:
        """A data frame that is not JSON is MALFORMED_STREAM."""
        error = failure_of(self, Harness(FakeReply(mode="malformed")).run()[2])
        self.assertEqual(error.kind, FailureKind.MALFORMED_STREAM)

    def test_error_frame_mid_stream(self) -> None:
        """A {"error": ...} frame after some text is classified like an HTTP error."""
        reply = FakeReply(
            text="a b",
            mode="error_frame",
            error_message="This model's maximum context length is 4096 tokens",
            error_type="invalid_request_error",
            error_code="context_length_exceeded",
        )
        _stream, sink, results = Harness(reply).run()
        error = failure_of(self, results)
        self.assertEqual(sink.deltas, ["a "])
        self.assertEqual(
            (error.kind, error.code, error.status),
            (FailureKind.CONTEXT_OVERFLOW, "context_length_exceeded", None),
        )

    def test_line_too_long(self) -> None:
        """One SSE line over 1 MiB is MALFORMED_STREAM (memory stays bounded)."""
        reply = FakeReply(text="x" * (1024 * 1024 + 16), chunks=1)
        error = failure_of(self, Harness(reply).run()[2])
        self.assertEqual(error.kind, FailureKind.MALFORMED_STREAM)

    def test_stream_ends_early(self) -> None:
        """A body that ends before a finish_reason or [DONE] is MALFORMED_STREAM."""
        body = b'data: {"choices":[{"index":0,"delta":{"content":"par"}}]}\n\n'
        _stream, sink, results = Harness(resource=RawResource(body)).run()
        self.assertEqual(sink.deltas, ["par"])
        self.assertEqual(failure_of(self, results).kind, FailureKind.MALFORMED_STREAM)

    def test_html_answer(self) -> None:
        """A 200 answer that is neither SSE nor JSON is MALFORMED_STREAM."""
        resource = RawResource(b"<html>captive portal</html>", b"text/html")
        error = failure_of(self, Harness(resource=resource).run()[2])
        self.assertEqual(error.kind, FailureKind.MALFORMED_STREAM)

    def test_json_error_with_status_200(self) -> None:
        """A 200 JSON body holding an error is classified."""
        resource = RawResource(
            b'{"error":{"message":"Rate limit","type":"rate_limit_exceeded"}}',
            b"application/json",
        )
        error = failure_of(self, Harness(resource=resource).run()[2])
        self.assertEqual(error.kind, FailureKind.RATE_LIMIT)

    def test_json_that_is_not_a_completion(self) -> None:
        """A 200 JSON body that is not a completion is MALFORMED_STREAM."""
        for body in (b'{"hello":"world"}', b"[1, 2]", b"  "):
            resource = RawResource(body, b"application/json")
            error = failure_of(self, Harness(resource=resource).run()[2])
            self.assertEqual(error.kind, FailureKind.MALFORMED_STREAM, body)
