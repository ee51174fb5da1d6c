"""Streamed ``POST /v1/responses``: the event sequence (checked by the official
SDK's accumulator), tools, failures, keep-alive, flow control and disconnects."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import FailureKind, ProviderError, ToolCall, Usage
from tests.test_responses import Harness, sdk_final, sse_events


class StreamTests(SynchronousTestCase):
    """Streamed answers: event order, numbering, tools, failures, flow control."""

    def test_text_sequence(self) -> None:
        """created, in_progress, item/part added, deltas, done events, completed, [DONE]."""
        h = Harness()
        conn = h.raw({"input": "hi", "stream": True})
        run = h.runtime.last_run
        early = sse_events(conn.response().body)
        self.assertEqual([e[0] for e in early], ["response.created", "response.in_progress"])
        run.say("Hel")
        run.say("lo")
        run.finish("Hello", usage=Usage(input=2, output=1))
        response = conn.response()
        self.assertTrue(response.complete)
        self.assertEqual(response.headers["content-type"], "text/event-stream; charset=utf-8")
        events = sse_events(response.body)
        self.assertEqual(events[-1], "[DONE]")
        kinds = [e[0] for e in events[:-1]]
        self.assertEqual(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ],
        )
        self.assertEqual([e[1]["sequence_number"] for e in events[:-1]], list(range(len(kinds))))
        final = sdk_final(events)
        self.assertEqual(final.output_text, "Hello")
        self.assertEqual(final.usage.total_tokens, 3)

    def test_final_text_fills_in_and_tools(self) -> None:
        """Text the run did not stream is sent at the end; tool calls follow as items."""
        h = Harness()
        tools = [
            {"type": "function", "name": "w", "parameters": {"type": "object", "properties": {}}}
        ]
        conn = h.raw({"input": "x", "stream": True, "tools": tools})
        run = h.runtime.last_run
        run.say("Checking")
        run.finish(
            "Checking now.",
            tool_calls=[ToolCall(id="call_1", name="w", arguments='{"a":"' + "x" * 300 + '"}')],
        )
        events = sse_events(conn.response().body)
        kinds = [e[0] for e in events if isinstance(e, tuple)]
        self.assertIn("response.function_call_arguments.delta", kinds)
        self.assertEqual(kinds.count("response.function_call_arguments.delta"), 2)
        final = sdk_final(events, tools)
        self.assertEqual(final.output_text, "Checking now.")
        self.assertEqual(final.output[1].arguments, '{"a":"' + "x" * 300 + '"}')

    def test_failure_event(self) -> None:
        """A failed run ends with ``response.failed`` carrying the error, then [DONE]."""
        h = Harness()
        conn = h.raw({"input": "x", "stream": True})
        run = h.runtime.last_run
        run.say("part")
        run.fail(ProviderError(FailureKind.SERVER_ERROR, "boom", status=500))
        events = sse_events(conn.response().body)
        self.assertEqual(events[-1], "[DONE]")
        kind, payload = events[-2]
        self.assertEqual(kind, "response.failed")
        self.assertEqual(payload["response"]["status"], "failed")
        self.assertEqual(payload["response"]["error"]["message"], "upstream provider error")
        self.assertEqual(sdk_final(events).status, "failed")

    def test_non_append_final_text_fails(self) -> None:
        """A final text that does not extend what was streamed is a failure, not a lie."""
        h = Harness()
        conn = h.raw({"input": "x", "stream": True})
        run = h.runtime.last_run
        run.say("abc")
        run.finish("xyz")
        self.assertEqual(sse_events(conn.response().body)[-2][0], "response.failed")

    def test_keep_alive(self) -> None:
        """A silent stream gets ``: ping`` comments."""
        h = Harness(keep_alive=5)
        conn = h.raw({"input": "x", "stream": True})
        h.clock.advance(5)
        self.assertEqual(sse_events(conn.response().body)[-1], ":")

    def test_backpressure_pauses_the_run(self) -> None:
        """A full socket pauses the run; draining resumes it and flushes in order."""
        h = Harness()
        conn = h.raw({"input": "x", "stream": True})
        run = h.runtime.last_run
        conn.pause()
        self.assertEqual(run.pause_calls, 1)
        run.say("a")
        run.say("b")
        conn.resume()
        self.assertEqual(run.resume_calls, 1)
        deltas = [
            e[1]["delta"]
            for e in sse_events(conn.response().body)
            if isinstance(e, tuple) and e[0].endswith("text.delta")
        ]
        self.assertEqual(deltas, ["a", "b"])

    def test_disconnect_cancels_once(self) -> None:
        """A client leaving mid-stream cancels the run once; nothing more is written."""
        h = Harness()
        conn = h.raw({"input": "x", "stream": True})
        run = h.runtime.last_run
        run.say("partial")
        conn.disconnect()
        self.assertEqual(run.cancel_calls, 1)
        written = conn.transport.value()
        run.say("more")
        self.assertEqual(conn.transport.value(), written)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_forced_choice_holds_prose(self) -> None:
        """With tool_choice required, prose is not streamed and an unmet choice fails."""
        h = Harness()
        conn = h.raw(
            {
                "input": "x",
                "stream": True,
                "tools": [{"type": "function", "name": "w"}],
                "tool_choice": "required",
            }
        )
        run = h.runtime.last_run
        run.say("secret prose")
        run.finish()
        body = conn.response().body
        self.assertNotIn(b"secret prose", body)
        self.assertEqual(sse_events(body)[-2][0], "response.failed")
