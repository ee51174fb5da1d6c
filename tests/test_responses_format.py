"""The Responses wire shapes without HTTP: usage, error codes, the response
object, and the event frames (the fast text-delta frame included)."""

from __future__ import annotations

import json

from openai.types.responses import Response
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import AgentResult, ToolCall, Usage
from openclaw.gateway.http.completions_format import MappedError
from openclaw.gateway.http.responses_format import (
    ResponseEvents,
    ResponseShell,
    error_json,
    event_frame,
    usage_json,
)

SHELL = ResponseShell(response_id="resp_1", created_at=1_700_000_000, model="openclaw")


def result(text: str, **kwargs: object) -> AgentResult:
    """A settled run of agent main."""
    return AgentResult("resp_1", "main", "agent:main:x", "s1", text, **kwargs)  # type: ignore[arg-type]


class ShapeTests(SynchronousTestCase):
    """Pure mappings."""

    def test_usage(self) -> None:
        """Cache reads count as input (as on chat), cache writes are reported apart."""
        self.assertEqual(
            usage_json(Usage(input=10, output=5, cache_read=20, cache_write=3)),
            {
                "input_tokens": 30,
                "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 3},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 35,
            },
        )

    def test_error_codes_are_openais(self) -> None:
        """A 429 is ``rate_limit_exceeded``; anything else ``server_error``; the message stays."""
        limited = MappedError(429, "slow down", "rate_limit_error", "rate_limit_exceeded")
        self.assertEqual(
            error_json(limited), {"code": "rate_limit_exceeded", "message": "slow down"}
        )
        self.assertEqual(
            error_json(MappedError(504, "t", "api_error", "timeout"))["code"], "server_error"
        )

    def test_completed_response(self) -> None:
        """Commentary then function calls; a length stop is incomplete; the SDK parses it."""
        call = ToolCall(id="call_1", name="w", arguments="{}")
        body = SHELL.completed(result("Checking.", pending_tool_calls=(call,)))
        parsed = Response.model_validate(body)
        self.assertEqual([item.type for item in parsed.output], ["message", "function_call"])
        self.assertEqual(parsed.output_text, "Checking.")
        cut = SHELL.completed(result("cut", stop_reason="length"))
        self.assertEqual(
            (cut["status"], cut["incomplete_details"]),
            ("incomplete", {"reason": "max_output_tokens"}),
        )
        self.assertEqual(cut["output"][0]["status"], "incomplete")
        empty = SHELL.completed(result(""))
        self.assertEqual(empty["output"][0]["content"][0]["text"], "No response from OpenClaw.")


class EventTests(SynchronousTestCase):
    """Numbered events and their framing."""

    def test_frames_are_event_and_data_lines(self) -> None:
        """``event: <type>`` then ``data: <json>`` and a blank line."""
        frame = event_frame({"type": "response.in_progress", "sequence_number": 3})
        self.assertEqual(
            frame,
            b"event: response.in_progress\n"
            b'data: {"type":"response.in_progress","sequence_number":3}\n\n',
        )

    def test_text_delta_frame_matches_the_generic_encoding(self) -> None:
        """The templated delta frame is exactly what encoding the event dict gives,
        for quotes, newlines and non-ASCII text."""
        events = ResponseEvents(SHELL)
        events.opening()
        events.open_message()
        item_id = events.output[0]["id"]
        for delta in ('say "hi"\n', "naïve ✓ 𝄞", ""):
            number = events._sequence  # the next number
            frame = events.text_delta(delta)
            expected = event_frame(
                {
                    "type": "response.output_text.delta",
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": delta,
                    "logprobs": [],
                    "sequence_number": number,
                }
            )
            self.assertEqual(frame, expected)

    def test_numbering_is_continuous(self) -> None:
        """Every event of a stream has the next number, from 0."""
        events = ResponseEvents(SHELL)
        frames = [*events.opening(), *events.open_message(), events.text_delta("a")]
        frames += events.close_message("a", "completed")
        frames += events.function_calls([ToolCall(id="c", name="w", arguments="{}")])
        frames.append(events.finished("completed", Usage()))
        numbers = [json.loads(f.split(b"\ndata: ")[1])["sequence_number"] for f in frames]
        self.assertEqual(numbers, list(range(len(frames))))
