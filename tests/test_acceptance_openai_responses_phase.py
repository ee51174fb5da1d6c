"""Acceptance of issue 13: assistant ``message`` items carry OpenClaw's ``phase``.

OpenClaw marks the assistant message of a response ``"phase": "commentary"``
when it comes with client tool calls (the agent is not done) and
``"final_answer"`` otherwise, in the JSON answer and on the stream's done
events, as OpenAI's Responses API does; clients such as Codex-style tools tell
narration from the answer by it. The gateway sent no ``phase``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.testing import (
    TEST_TOKEN,
    GatewayHarness,
    Reply,
    ScriptedToolCall,
    http_test_config,
)

TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]


class PhaseTests(SynchronousTestCase):
    """The real gateway on a scripted model, over raw HTTP."""

    def setUp(self) -> None:
        """A gateway with /v1/responses enabled."""
        state = self.mktemp()
        self.h = GatewayHarness.create(state, http_test_config(state, responses=True))

    def post(self, **body: Any) -> bytes:
        """POST a responses request; the raw answer body."""
        exchange = self.h.request(
            b"POST", b"/v1/responses", body={"model": "openclaw", **body}, token=TEST_TOKEN
        )
        self.h.run_due()
        status, _headers, raw = exchange.response()
        self.assertEqual(status, 200)
        return raw

    def messages(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The message items of ``output``."""
        return [item for item in output if item["type"] == "message"]

    def test_final_answer(self) -> None:
        """A plain reply is the final answer."""
        self.h.provider.add(Reply.text("Hello"))
        answer = json.loads(self.post(input="hi"))
        self.assertEqual(self.messages(answer["output"])[0]["phase"], "final_answer")

    def test_commentary_before_tool_calls(self) -> None:
        """Text that comes with a client tool call is commentary."""
        call = ScriptedToolCall("get_weather", '{"city":"Oslo"}')
        self.h.provider.add(Reply(chunks=("Checking.",), tool_calls=(call,)))
        answer = json.loads(self.post(input="weather?", tools=TOOLS))
        self.assertEqual(self.messages(answer["output"])[0]["phase"], "commentary")
        self.assertEqual(answer["output"][1]["type"], "function_call")

    def test_stream_done_events(self) -> None:
        """The stream's output_item.done and the completed response carry the phase."""
        call = ScriptedToolCall("get_weather", '{"city":"Oslo"}')
        self.h.provider.add(Reply(chunks=("Checking.",), tool_calls=(call,)))
        raw = self.post(input="weather?", tools=TOOLS, stream=True)
        events = [
            json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")
        ]
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        self.assertEqual(self.messages(done)[0]["phase"], "commentary")
        completed = events[-1]
        self.assertEqual(completed["type"], "response.completed")
        self.assertEqual(self.messages(completed["response"]["output"])[0]["phase"], "commentary")
