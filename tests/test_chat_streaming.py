"""Streaming ``POST /v1/chat/completions``: SSE sequence, keep-alives, errors,
flow control, disconnects and streamed tool calls."""

from __future__ import annotations

from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from openclaw.agents.types import (
    FailureKind,
    ProviderError,
    RunTimeoutError,
    ToolCall,
    Usage,
)
from tests.chat_fakes import ChatHarness, ChatTestCase, chat_body

STREAM = chat_body(stream=True)
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather"}}


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deltas of the chunks that have choices."""
    return [c["choices"][0]["delta"] for c in chunks if c.get("choices")]


def content_of(chunks: list[dict[str, Any]]) -> str:
    """The streamed text, concatenated as a client would."""
    return "".join(d.get("content") or "" for d in deltas(chunks))


def finish_reasons(chunks: list[dict[str, Any]]) -> list[Any]:
    """The finish_reason of each chunk that has choices."""
    return [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]


def sdk_final(chunks: list[dict[str, Any]], tools: Any = ()) -> Any:
    """Feed the chunks to the official SDK's ``.stream()`` accumulator."""
    state: Any = (
        ChatCompletionStreamState(input_tools=list(tools)) if tools else ChatCompletionStreamState()
    )
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


class SequenceTests(ChatTestCase):
    """The SSE frames of a successful run, in order."""

    def test_headers_and_role_chunk_at_once(self) -> None:
        """Headers and the role chunk arrive before the agent says anything."""
        h = ChatHarness()
        client = self.stream(h, STREAM)
        self.assertEqual(client.status, 200)
        self.assertEqual(client.headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(client.headers["cache-control"], "no-cache")
        self.assertEqual(client.headers["x-accel-buffering"], "no")
        events = client.events()
        self.assertEqual(len(events), 1)
        self.assertEqual(
            events[0]["choices"],
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        )
        self.assertFalse(h.runtime.last_run.settled)

    def test_full_sequence(self) -> None:
        """Role, append-only deltas (not deduplicated), one finish chunk, [DONE], body ends."""
        h = ChatHarness()
        client = self.stream(h, STREAM)
        run = h.runtime.last_run
        run.say("hi")
        self.assertEqual(deltas(client.chunks())[-1], {"content": "hi"})
        run.say("hi")
        run.finish()
        events = client.events()
        self.assertEqual(events[-1], "[DONE]")
        chunks = [e for e in events if isinstance(e, dict)]
        self.assertEqual(content_of(chunks), "hihi")
        self.assertEqual(finish_reasons(chunks), [None, None, None, "stop"])
        self.assertEqual(deltas(chunks)[-1], {})
        self.assertEqual({c["id"] for c in chunks}, {h.runtime.requests[0].run_id})
        self.assertEqual({c["created"] for c in chunks}, {int(h.clock.seconds())})
        self.assertEqual({c["model"] for c in chunks}, {"openclaw"})
        self.assertEqual({c["object"] for c in chunks}, {"chat.completion.chunk"})
        self.assertTrue(all("usage" not in c for c in chunks))
        self.assertIsNone(self.successResultOf(client.finished))
        self.assertEqual(run.listener_count, 0)

    def test_raw_body_ends_after_done(self) -> None:
        """On the wire the chunked body is terminated right after ``[DONE]``."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(STREAM)
        h.runtime.last_run.say("x")
        self.assertFalse(conn.response().complete)
        h.runtime.last_run.finish()
        response = conn.response()
        self.assertTrue(response.complete)
        self.assertTrue(response.body.endswith(b"data: [DONE]\n\n"))
        self.assertEqual(response.headers["transfer-encoding"], "chunked")

    def test_usage_chunk(self) -> None:
        """With include_usage: usage chunk with ``choices: []`` after the finish chunk."""
        h = ChatHarness()
        client = self.stream(h, chat_body(stream=True, stream_options={"include_usage": True}))
        run = h.runtime.last_run
        run.say("hello")
        run.finish(usage=Usage(input=12, output=5, cache_read=3))
        chunks = client.chunks()
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(
            chunks[-1]["usage"],
            {
                "prompt_tokens": 15,
                "completion_tokens": 5,
                "total_tokens": 20,
                "prompt_tokens_details": {"cached_tokens": 3},
            },
        )
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "stop")
        self.assertTrue(all(c["usage"] is None for c in chunks[:-1]))

    def test_final_text_fills_in(self) -> None:
        """Text the events missed is sent from the final result before the finish chunk."""
        h = ChatHarness()
        client = self.stream(h, STREAM)
        run = h.runtime.last_run
        run.say("Hello")
        run.finish("Hello, world")
        chunks = client.chunks()
        self.assertEqual([d.get("content") for d in deltas(chunks)], ["", "Hello", ", world", None])

    def test_nothing_streamed(self) -> None:
        """No events at all: the whole result text; no text: the fallback text."""
        for text, expected in (("whole", "whole"), ("", "No response from OpenClaw.")):
            h = ChatHarness()
            client = self.stream(h, STREAM)
            h.runtime.last_run.finish(text)
            self.assertEqual(content_of(client.chunks()), expected)

    def test_already_settled_run(self) -> None:
        """A run that settles inside ``start`` still streams the whole sequence."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("quick")
        client = self.stream(h, STREAM)
        self.assertEqual(client.events()[-1], "[DONE]")
        self.assertEqual(content_of(client.chunks()), "quick")

    def test_non_append_final_text(self) -> None:
        """A final text that rewrites streamed text: error frame and [DONE], no finish."""
        h = ChatHarness()
        client = self.stream(h, STREAM)
        run = h.runtime.last_run
        run.say("Hello")
        run.finish("Goodbye")
        events = client.events()
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(
            events[-2]["error"]["message"],
            "Assistant output cannot be represented as an append-only response stream.",
        )
        self.assertNotIn("stop", finish_reasons([e for e in events if isinstance(e, dict)]))

    def test_sdk_stream_helper(self) -> None:
        """The official SDK's ``.stream()`` accumulator builds the right completion."""
        h = ChatHarness()
        client = self.stream(h, chat_body(stream=True, stream_options={"include_usage": True}))
        run = h.runtime.last_run
        run.say("Hel")
        run.say("lo")
        run.finish(usage=Usage(input=1, output=2))
        final = sdk_final(client.chunks())
        self.assertEqual(final.choices[0].message.role, "assistant")
        self.assertEqual(final.choices[0].message.content, "Hello")
        self.assertEqual(final.choices[0].finish_reason, "stop")
        self.assertEqual(final.usage.total_tokens, 3)

    def test_accept_json_still_streams(self) -> None:
        """``Accept: application/json`` (what SDKs send) does not change streaming."""
        h = ChatHarness()
        client = self.stream(h, STREAM, headers={"accept": "application/json"})
        self.assertTrue(client.headers["content-type"].startswith("text/event-stream"))

    def test_multibyte_text(self) -> None:
        """Non-ASCII deltas arrive as valid UTF-8 JSON frames."""
        h = ChatHarness()
        client = self.stream(h, STREAM)
        run = h.runtime.last_run
        run.say("café ")
        run.say("\U0001f600")
        run.finish()
        self.assertEqual(content_of(client.chunks()), "café \U0001f600")


class KeepAliveTests(ChatTestCase):
    """``: ping`` comments while the agent is silent."""

    def test_ping_when_silent(self) -> None:
        """After ``sseKeepAliveSeconds`` of silence a comment goes out; writes reset it."""
        h = ChatHarness(keep_alive=15)
        client = self.stream(h, STREAM)
        h.clock.advance(14)
        self.assertEqual(len(client.events()), 1)
        h.clock.advance(1)
        self.assertEqual(client.events()[-1], (":", "ping"))
        h.clock.advance(10)
        h.runtime.last_run.say("x")
        h.clock.advance(10)
        self.assertEqual(client.events()[-1]["choices"][0]["delta"], {"content": "x"})
        h.clock.advance(5)
        self.assertEqual(client.events()[-1], (":", "ping"))
        h.clock.advance(15)
        self.assertEqual([e for e in client.events() if e == (":", "ping")], [(":", "ping")] * 3)

    def test_sdk_ignores_pings(self) -> None:
        """A stream with pings still parses for the SDK helper."""
        h = ChatHarness(keep_alive=1)
        client = self.stream(h, STREAM)
        h.clock.advance(3)
        h.runtime.last_run.finish("ok")
        self.assertEqual(sdk_final(client.chunks()).choices[0].message.content, "ok")

    def test_zero_disables(self) -> None:
        """``sseKeepAliveSeconds: 0``: no timer, no pings."""
        h = ChatHarness(keep_alive=0)
        client = self.stream(h, STREAM)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.clock.advance(3600)
        self.assertEqual(len(client.events()), 1)

    def test_no_timer_after_end(self) -> None:
        """Once the stream ended, and after a disconnect, no ping timer is left."""
        h = ChatHarness()
        self.stream(h, STREAM)
        h.runtime.last_run.finish("x")
        self.assertEqual(h.clock.getDelayedCalls(), [])
        conn = h.raw()
        conn.send(STREAM)
        conn.disconnect()
        self.assertEqual(h.clock.getDelayedCalls(), [])


class ErrorFrameTests(ChatTestCase):
    """Failures after the headers: one error frame, then [DONE]; never HTML."""

    def failed_stream(self, error: BaseException) -> list[Any]:
        """Stream a run that says ``partial`` then fails; checks the common shape."""
        h = ChatHarness()
        client = self.stream(h, STREAM)
        run = h.runtime.last_run
        run.say("partial")
        run.fail(error)
        events = client.events()
        self.assertIsNone(self.successResultOf(client.finished))
        self.assertEqual(events[-1], "[DONE]")
        self.assertNotIn(b"<html", client.data)
        chunks = [e for e in events if isinstance(e, dict)]
        self.assertEqual(content_of([c for c in chunks if "error" not in c]), "partial")
        self.assertNotIn("stop", finish_reasons([c for c in chunks if "error" not in c]))
        return events

    def test_provider_error_frame(self) -> None:
        """A provider failure: its mapped error as a frame."""
        events = self.failed_stream(
            ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429, code="rate_limited_x")
        )
        self.assertEqual(
            events[-2],
            {
                "error": {
                    "message": "slow down",
                    "type": "rate_limit_error",
                    "param": None,
                    "code": "rate_limited_x",
                }
            },
        )

    def test_timeout_frame(self) -> None:
        """The agent timeout: ``agent run timed out``."""
        events = self.failed_stream(RunTimeoutError())
        self.assertEqual(events[-2]["error"]["message"], "agent run timed out")

    def test_unexpected_failure_frame(self) -> None:
        """Any other failure: ``internal error`` (logged), still a clean end."""
        events = self.failed_stream(ValueError("boom"))
        self.assertEqual(
            events[-2]["error"],
            {"message": "internal error", "type": "api_error", "param": None, "code": None},
        )
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_errors_before_headers_are_json(self) -> None:
        """Validation failures of a stream request are plain JSON errors."""
        reply = self.call(ChatHarness(), chat_body(stream=True, temperature=5))
        self.assertEqual(reply.status, 400)
        self.assertTrue(reply.headers["content-type"].startswith("application/json"))


class FlowControlTests(ChatTestCase):
    """A slow client pauses the run; memory stays bounded."""

    def test_pause_and_resume_reach_the_run(self) -> None:
        """Socket full: the run is paused and frames wait; drained: flushed in order."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(STREAM)
        run = h.runtime.last_run
        conn.pause()
        self.assertEqual((run.pause_calls, run.paused), (1, True))
        conn.pause()
        self.assertEqual(run.pause_calls, 1)
        before = conn.transport.value()
        run.say("a")
        run.say("b")
        self.assertEqual(conn.transport.value(), before)
        conn.resume()
        self.assertEqual((run.resume_calls, run.paused), (1, False))
        self.assertEqual(
            content_of([e for e in conn.response().events() if isinstance(e, dict)]), "ab"
        )

    def test_finish_while_paused(self) -> None:
        """A run ending while the client is slow ends the body only after it drains."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(STREAM)
        run = h.runtime.last_run
        conn.pause()
        run.finish("done")
        self.assertFalse(conn.response().complete)
        conn.resume()
        response = conn.response()
        self.assertTrue(response.complete)
        self.assertEqual(response.events()[-1], "[DONE]")
        self.assertEqual(run.resume_calls, 0)

    def test_buffer_bound(self) -> None:
        """A source that ignores the pause past the bound gets the stream aborted."""
        h = ChatHarness(max_buffered_bytes=2000)
        conn = h.raw()
        conn.send(STREAM)
        run = h.runtime.last_run
        conn.pause()
        for _ in range(50):
            run.say("x" * 50)
        h.clock.advance(0)  # judged at the end of the reactor turn
        self.assertTrue(conn.transport.disconnected)
        self.assertEqual(run.cancel_calls, 1)
        self.assertEqual(run.listener_count, 0)
        conn.disconnect()
        self.assertEqual(run.cancel_calls, 1)
        self.assertEqual(self.flushLoggedErrors(), [])


class DisconnectTests(ChatTestCase):
    """A client that leaves mid-stream cancels the run, once, and hears nothing more."""

    def test_disconnect_mid_stream(self) -> None:
        """stopProducing + connectionLost + Klein's cancel: one cancel, no writes, no errors."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(STREAM)
        run = h.runtime.last_run
        run.say("partial")
        conn.disconnect()
        self.assertEqual(run.cancel_calls, 1)
        self.assertEqual(run.listener_count, 0)
        written = conn.transport.value()
        run.say("more")
        h.clock.advance(60)
        self.assertEqual(conn.transport.value(), written)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_disconnect_before_any_event(self) -> None:
        """Leaving right after the headers (agent still queued) cancels too."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(STREAM)
        conn.disconnect(stop_producer=False)
        self.assertEqual(h.runtime.last_run.cancel_calls, 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_disconnect_while_paused(self) -> None:
        """A paused stream that loses its client cancels the run and drops the queue."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(STREAM)
        run = h.runtime.last_run
        conn.pause()
        run.say("queued")
        conn.disconnect()
        self.assertEqual(run.cancel_calls, 1)
        conn.resume()
        self.assertNotIn(b"queued", conn.transport.value())
        self.assertEqual(self.flushLoggedErrors(), [])


class StreamedToolCallTests(ChatTestCase):
    """Client tool calls in a stream (§1.10)."""

    def test_tool_call_deltas(self) -> None:
        """Text, then per call one identity delta and argument deltas; finish tool_calls."""
        h = ChatHarness()
        client = self.stream(h, chat_body(stream=True, tools=[WEATHER_TOOL]))
        run = h.runtime.last_run
        run.say("Checking.")
        run.finish(
            stop_reason="tool_calls",
            tool_calls=(
                ToolCall("call_1", "get_weather", '{"city":"Taipei"}'),
                ToolCall("call_2", "get_weather", '{"city":"Oslo"}'),
            ),
        )
        chunks = client.chunks()
        tool_deltas = [d["tool_calls"][0] for d in deltas(chunks) if "tool_calls" in d]
        self.assertEqual(
            tool_deltas,
            [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                },
                {"index": 0, "function": {"arguments": '{"city":"Taipei"}'}},
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                },
                {"index": 1, "function": {"arguments": '{"city":"Oslo"}'}},
            ],
        )
        self.assertEqual(finish_reasons(chunks)[-1], "tool_calls")
        final = sdk_final(chunks, tools=[WEATHER_TOOL])
        calls = final.choices[0].message.tool_calls
        self.assertEqual(
            [(c.id, c.function.name) for c in calls],
            [("call_1", "get_weather"), ("call_2", "get_weather")],
        )
        self.assertEqual(calls[0].function.arguments, '{"city":"Taipei"}')
        self.assertEqual(final.choices[0].message.content, "Checking.")

    def test_astral_boundary_arguments(self) -> None:
        """Arguments with an astral char at units 255/511 stay well-formed when sliced."""
        arguments = '{"q":"' + "a" * 249 + "\U0001f600" + "b" * 254 + "\U0001f600" + "c" * 40 + '"}'
        h = ChatHarness()
        client = self.stream(h, chat_body(stream=True, tools=[WEATHER_TOOL]))
        h.runtime.last_run.finish("", tool_calls=(ToolCall("call_1", "get_weather", arguments),))
        pieces = [
            d["tool_calls"][0]["function"]["arguments"]
            for d in deltas(client.chunks())
            if "tool_calls" in d and "id" not in d["tool_calls"][0]
        ]
        self.assertGreater(len(pieces), 2)
        self.assertEqual("".join(pieces), arguments)
        for piece in pieces:
            self.assertLessEqual(len(piece.encode("utf-16-le")) // 2, 256)

    def test_required_holds_prose(self) -> None:
        """With ``required``, prose is held; unmet: error frame, and the prose never sent."""
        h = ChatHarness()
        client = self.stream(
            h, chat_body(stream=True, tools=[WEATHER_TOOL], tool_choice="required")
        )
        run = h.runtime.last_run
        run.say("I'd rather chat.")
        self.assertEqual(len(client.events()), 1)
        run.finish()
        events = client.events()
        self.assertNotIn(b"rather", client.data)
        self.assertEqual(
            events[-2]["error"]["message"],
            "tool_choice=required was not satisfied by the agent response",
        )

    def test_required_met_sends_prose(self) -> None:
        """With ``required`` met, the held prose precedes the tool call."""
        h = ChatHarness()
        client = self.stream(
            h, chat_body(stream=True, tools=[WEATHER_TOOL], tool_choice="required")
        )
        run = h.runtime.last_run
        run.say("One moment.")
        run.finish(tool_calls=(ToolCall("call_1", "get_weather", "{}"),))
        chunks = client.chunks()
        self.assertEqual(content_of(chunks), "One moment.")
        self.assertEqual(finish_reasons(chunks)[-1], "tool_calls")
