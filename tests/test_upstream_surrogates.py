"""A lone UTF-16 surrogate in what the model upstream sends, through the gateway.

JSON allows ``"ab\\ud83d"``: a reply cut at ``max_tokens`` in the middle of an
emoji by a UTF-16-based (JavaScript) provider or proxy carries one, and
Python decodes it to a ``str`` no UTF-8 writer accepts. Before the fix the
reply was stored, and every later turn of that session answered 500 (the
next provider request could not be encoded); a streamed ``/v1/responses``
never ended (its failure frame could not be encoded either); streamed chat
dropped the delta.

Now the upstream's text and tool-call arguments have each lone surrogate
replaced with U+FFFD as they are decoded, while a pair split across two
chunks still joins into its one character; a transcript that already holds a
lone-surrogate escape reads back the same way. The upstream is the in-memory
fake OpenAI server behind the real ``openai-completions`` provider.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import ResponsesConfig
from openclaw.gateway.http.responses_format import ResponseEvents
from openclaw.testing import FakeReply, FakeToolCall, Reply
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config
from tests.chat_fakes import RawConnection, RawResponse, parse_sse
from tests.test_security_hardening import TOKEN, _Gateway, assert_no_traceback

SESSION = {"x-openclaw-session-key": "poison-1"}
#: A client tool, so the model's call comes back to the client as it was streamed.
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "openclaw", "messages": [{"role": "user", "content": content}], **fields}


def stream_text(response: RawResponse) -> str:
    """The content a streamed chat answer delivered, checked to end with ``[DONE]``."""
    events = [e for e in parse_sse(response.body) if not isinstance(e, tuple)]
    assert events[-1] == "[DONE]", events[-3:]
    frames = events[:-1]
    assert all("error" not in f for f in frames), frames
    return "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])


def responses_events(body: bytes) -> list[dict[str, Any]]:
    """The JSON ``data:`` of each Responses SSE event (comments skipped)."""
    out = []
    for block in body.decode("utf-8").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[len("data: ") :]))
    return out


class _Case(SynchronousTestCase):
    def gateway(self) -> _Gateway:
        return _Gateway(self, http={"responses": ResponsesConfig(enabled=True)})

    def transcript(self, gw: _Gateway) -> Path:
        (path,) = (gw.state_dir / "agents" / "main" / "sessions").glob("*.jsonl")
        return path

    def assert_history_sent(self, gw: _Gateway, expected: list[tuple[str, Any]]) -> None:
        """The last upstream request carried these messages (after the system prompt)."""
        messages = gw.upstream.requests[-1].body["messages"]
        self.assertEqual([(m["role"], m["content"]) for m in messages[1:]], expected)


class UpstreamTextTests(_Case):
    """Reply text with a lone surrogate is answered, stored and replayed as U+FFFD."""

    def test_non_streamed_chat_then_a_second_turn(self) -> None:
        gw = self.gateway()
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="Sure: ab\ud83d", chunks=2, finish_reason="length"))
            first = gw.post(chat("first"), SESSION)
            self.assertEqual(first.status, 200, first.body)
            message = json.loads(first.body)["choices"][0]["message"]
            self.assertEqual(message["content"], "Sure: ab\ufffd")
            gw.upstream.enqueue(FakeReply(text="fine"))
            second = gw.post(chat("second"), SESSION)
            self.assertEqual(second.status, 200, second.body)
            self.assertEqual(json.loads(second.body)["choices"][0]["message"]["content"], "fine")
        self.assert_history_sent(
            gw, [("user", "first"), ("assistant", "Sure: ab\ufffd"), ("user", "second")]
        )
        self.transcript(gw).read_bytes().decode("utf-8")
        assert_no_traceback(self, events)

    def test_streamed_chat_delivers_the_whole_delta(self) -> None:
        """The delta holding the surrogate reaches the client (its ordinary
        characters with it), and the next streamed turn works."""
        gw = self.gateway()
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="one two\udc00x three"))
            first = gw.post(chat("first", stream=True), SESSION)
            self.assertTrue(first.complete)
            self.assertEqual(stream_text(first), "one two\ufffdx three")
            gw.upstream.enqueue(FakeReply(text="fine"))
            second = gw.post(chat("second", stream=True), SESSION)
            self.assertEqual(stream_text(second), "fine")
        self.assert_history_sent(
            gw, [("user", "first"), ("assistant", "one two\ufffdx three"), ("user", "second")]
        )
        assert_no_traceback(self, events)

    def test_a_pair_split_across_two_chunks_joins(self) -> None:
        """``\\ud83d`` ending one chunk and ``\\ude00`` starting the next are one
        emoji, streamed and stored; a high surrogate at the very end becomes
        U+FFFD."""
        gw = self.gateway()
        gw.upstream.enqueue(FakeReply(text="x\ud83d\ude00y\ud83d", chunks=5))
        first = gw.post(chat("first", stream=True), SESSION)
        self.assertEqual(stream_text(first), "x\U0001f600y\ufffd")
        gw.upstream.enqueue(FakeReply(text="fine"))
        gw.post(chat("second"), SESSION)
        self.assert_history_sent(
            gw, [("user", "first"), ("assistant", "x\U0001f600y\ufffd"), ("user", "second")]
        )

    def test_streamed_responses_complete(self) -> None:
        """``/v1/responses`` with ``stream: true`` ends with ``response.incomplete``
        (the reply was cut) holding the text, then ``[DONE]``; non-streamed too."""
        gw = self.gateway()
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="Sure: ab\ud83d", chunks=2, finish_reason="length"))
            conn = RawConnection(site=gw.gateway.site)
            conn.send(
                {"model": "openclaw", "input": "x", "stream": True},
                path="/v1/responses",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            gw.client.pump(30)
            response = conn.response()
            self.assertTrue(response.complete)
            self.assertTrue(response.body.endswith(b"data: [DONE]\n\n"), response.body[-200:])
            frames = responses_events(response.body)
            deltas = "".join(
                f["delta"] for f in frames if f["type"] == "response.output_text.delta"
            )
            self.assertEqual(deltas, "Sure: ab\ufffd")
            self.assertEqual(frames[-1]["type"], "response.incomplete")
            gw.upstream.enqueue(FakeReply(text="ab\udfff"))
            plain = RawConnection(site=gw.gateway.site)
            plain.send(
                {"model": "openclaw", "input": "x"},
                path="/v1/responses",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            gw.client.pump(30)
            answer = plain.response()
            self.assertEqual(answer.status, 200, answer.body)
            self.assertEqual(json.loads(answer.body)["output"][0]["content"][0]["text"], "ab\ufffd")
        assert_no_traceback(self, events)


class UpstreamToolCallTests(_Case):
    """Tool-call arguments get the same rule, streamed or not."""

    def test_client_tool_arguments(self) -> None:
        gw = self.gateway()
        lone = FakeToolCall("get_weather", '{"c":"\ud800"}', id="call_1")
        # The pair falls across the two halves the fake streams arguments in.
        split = FakeToolCall("get_weather", '{"c":"\ud83d\ude00xxxx"}', id="call_2")
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="", tool_calls=(lone, split)))
            plain = gw.post(chat("first", tools=WEATHER), SESSION)
            self.assertEqual(plain.status, 200, plain.body)
            calls = json.loads(plain.body)["choices"][0]["message"]["tool_calls"]
            self.assertEqual(
                [c["function"]["arguments"] for c in calls],
                ['{"c":"\ufffd"}', '{"c":"\U0001f600xxxx"}'],
            )
            gw.upstream.enqueue(FakeReply(text="", tool_calls=(lone,)))
            streamed = gw.post(chat("again", tools=WEATHER, stream=True), SESSION)
            events_ = [e for e in parse_sse(streamed.body) if isinstance(e, dict)]
            arguments = "".join(
                call["function"].get("arguments") or ""
                for e in events_
                if e["choices"]
                for call in e["choices"][0]["delta"].get("tool_calls") or ()
            )
            self.assertEqual(arguments, '{"c":"\ufffd"}')
            gw.upstream.enqueue(FakeReply(text="done"))
            after = gw.post(chat("third"), SESSION)
            self.assertEqual(after.status, 200, after.body)
        assert_no_traceback(self, events)


class PoisonedTranscriptTests(_Case):
    """A transcript written before the fix, holding ``\\ud83d`` escapes."""

    def test_a_stored_lone_surrogate_escape_reads_back_as_u_fffd(self) -> None:
        gw = self.gateway()
        gw.upstream.enqueue(FakeReply(text="Sure: ab"))
        self.assertEqual(gw.post(chat("first"), SESSION).status, 200)
        path = self.transcript(gw)
        raw = path.read_bytes()
        self.assertIn(b'"text":"Sure: ab"', raw)
        # What the old gateway wrote: the escape, with a valid pair beside it.
        path.write_bytes(
            raw.replace(b'"text":"Sure: ab"', b'"text":"Sure: ab\\ud83d \\ud83d\\ude00"')
        )
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="fine"))
            second = gw.post(chat("second"), SESSION)
            self.assertEqual(second.status, 200, second.body)
            gw.upstream.enqueue(FakeReply(text="fine"))
            streamed = gw.post(chat("third", stream=True), SESSION)
            self.assertEqual(stream_text(streamed), "fine")
        self.assert_history_sent(
            gw,
            [
                ("user", "first"),
                ("assistant", "Sure: ab\ufffd \U0001f600"),
                ("user", "second"),
                ("assistant", "fine"),
                ("user", "third"),
            ],
        )
        assert_no_traceback(self, events)


class UnmendedTextTests(SynchronousTestCase):
    """Text that reaches the gateway's answers with a lone surrogate anyway (a
    provider that is not one of the HTTP decoders, here the scripted one):
    written as the ``\\ud83d`` escape OpenClaw's ``JSON.stringify`` writes,
    never a lost delta, a 500 or a stream that does not end."""

    def setUp(self) -> None:
        state = Path(self.mktemp())
        self.h = GatewayHarness.create(state, http_test_config(state, responses=True))

    def post(self, path: bytes, body: dict[str, Any]) -> tuple[int, bytes, bool]:
        exchange = self.h.request(b"POST", path, body=body, token=TEST_TOKEN, headers=SESSION)
        self.h.run_due()
        response = RawResponse.parse(exchange.raw())
        return response.status, response.body, response.complete

    def test_every_answer_carries_the_escape_and_the_session_goes_on(self) -> None:
        self.h.provider.add(
            Reply.text("one ", "ab\ud83d"), Reply.text("ab\ud83d"), Reply.text("ab\ud83d")
        )
        with capturedLogs() as events:
            status, body, complete = self.post(
                b"/v1/responses", {"model": "openclaw", "input": "x", "stream": True}
            )
            self.assertTrue(complete)
            self.assertIn(b'"delta":"ab\\ud83d"', body)
            frames = responses_events(body)
            self.assertEqual(frames[-1]["type"], "response.completed")
            self.assertEqual(
                frames[-1]["response"]["output"][0]["content"][0]["text"], "one ab\ud83d"
            )
            status, body, _ = self.post(b"/v1/chat/completions", chat("second"))
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["choices"][0]["message"]["content"], "ab\ud83d")
            status, body, complete = self.post(b"/v1/chat/completions", chat("third", stream=True))
            self.assertTrue(complete)
            frames = [e for e in parse_sse(body) if isinstance(e, dict)]
            self.assertEqual(
                "".join(f["choices"][0]["delta"].get("content") or "" for f in frames), "ab\ud83d"
            )
        # What the session replays is the stored text, read back as U+FFFD.
        replayed = [(m.role, m.content) for m in self.h.provider.calls[-1].messages]
        self.assertIn(("assistant", "ab\ufffd"), replayed)
        assert_no_traceback(self, events)

    def test_a_failure_frame_that_cannot_be_built_still_ends_the_stream(self) -> None:
        """The run fails after some text, and building ``response.failed``
        raises: the client still gets the end of the stream (``[DONE]``, the
        body closed), and the bug is logged."""

        def broken(events: ResponseEvents, error: object) -> bytes:
            raise UnicodeEncodeError("utf-8", "\ud83d", 0, 1, "surrogates not allowed")

        self.patch(ResponseEvents, "failed", broken)
        error = ProviderError(FailureKind.SERVER_ERROR, "upstream broke", status=500)
        self.h.provider.add(Reply.failure(error, "partial "))
        with capturedLogs() as events:
            _, body, complete = self.post(
                b"/v1/responses", {"model": "openclaw", "input": "x", "stream": True}
            )
        self.assertTrue(complete)
        self.assertTrue(body.endswith(b"data: [DONE]\n\n"), body[-200:])
        self.assertEqual(len(self.flushLoggedErrors(UnicodeEncodeError)), 1)
        logged = [e for e in events if "log_failure" in e]
        self.assertEqual(
            [e["log_format"] for e in logged], ["bug framing the failure of run {run_id}"]
        )
