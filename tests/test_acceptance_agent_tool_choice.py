"""Acceptance (issue 11): a forced ``tool_choice`` with client tools, when the
model first uses built-in tools.

OpenClaw checks the agent's response (the turn's final model step) for a
matching client-tool call; built-in steps before it are the agent's own work
and do not count against the forced choice. Through the ``openai`` SDK and
the real gateway: the model reads a workspace file with the built-in ``read``
and then calls the client's ``get_weather``; the client gets exactly that
call, streamed or not, with ``finish_reason: "tool_calls"``.
"""

from __future__ import annotations

import json
from typing import Any

from openai import InternalServerError
from twisted.internet.threads import deferToThread

from openclaw.testing import FakeReply, FakeToolCall, ToolConversation
from tests import integration_support as support

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
OTHER: Any = {
    "type": "function",
    "function": {"name": "other_tool", "parameters": {"type": "object"}},
}
ASK: Any = [{"role": "user", "content": "Check notes.md, then get the weather for its city."}]


def conversation(prose: str = "") -> ToolConversation:
    """A built-in read of notes.md, then the client's get_weather."""
    read = FakeToolCall("read", json.dumps({"path": "notes.md"}), id="r1")
    weather = FakeToolCall("get_weather", json.dumps({"city": "Oslo"}), id="w1")
    return ToolConversation(
        FakeReply(text=prose, tool_calls=(read,)), FakeReply(text="", tool_calls=(weather,))
    )


class ForcedChoiceAfterBuiltinStepsTests(support.GatewayTestCase):
    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port)

    def setUp(self) -> None:
        super().setUp()
        self.client = self.openai_client(timeout=30)
        workspace = self.gateway.directory / "state" / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "notes.md").write_text("city: Oslo\n")

    def assert_read_ran(self, talk: ToolConversation) -> None:
        self.assertEqual(talk.results["r1"], "city: Oslo\n")

    async def test_required_after_a_builtin_step(self) -> None:
        """tool_choice "required": the built-in read runs, the answer is the
        client-tool call (no 502), and only the client tool reaches the client."""
        talk = self.fake.responder = conversation()
        completion = await deferToThread(
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=ASK, tools=[WEATHER], tool_choice="required"
            )
        )
        choice = completion.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        calls = choice.message.tool_calls or []
        self.assertEqual([(c.id, c.function.name) for c in calls], [("w1", "get_weather")])  # type: ignore[union-attr]  # typing note: function tool calls
        self.assert_read_ran(talk)

    async def test_required_instruction_names_the_client_tools(self) -> None:
        """The agent is told which tools the client requires: the built-in ones
        are available too and calling only those would not meet the choice."""
        self.fake.responder = conversation()
        await deferToThread(
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=ASK, tools=[WEATHER, OTHER], tool_choice="required"
            )
        )
        system = self.fake.requests[0].body["messages"][0]
        self.assertEqual(system["role"], "system")
        self.assertIn(
            "You must call one of these client tools before responding: get_weather, "
            "other_tool. Other tools do not count.",
            system["content"],
        )

    async def test_pinned_after_a_builtin_step_streamed(self) -> None:
        """A pinned function choice, streamed, with prose on the built-in step: the
        stream ends with the pinned call and finish_reason tool_calls, no error."""
        talk = self.fake.responder = conversation(prose="Let me look first. ")

        def run() -> tuple[list[Any], list[str | None]]:
            stream = self.client.chat.completions.create(
                model="openclaw",
                messages=ASK,
                tools=[WEATHER, OTHER],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                stream=True,
            )
            deltas: list[Any] = []
            finishes: list[str | None] = []
            for chunk in stream:
                for c in chunk.choices:
                    deltas.append(c.delta)
                    finishes.append(c.finish_reason)
            return deltas, finishes

        deltas, finishes = await deferToThread(run)
        names = [t.function.name for d in deltas for t in d.tool_calls or [] if t.function.name]
        self.assertEqual(names, ["get_weather"])
        self.assertEqual([f for f in finishes if f], ["tool_calls"])
        self.assert_read_ran(talk)


class EmptyAllowListTests(support.GatewayTestCase):
    """``tools.allow`` naming no tool stops every run (as OpenClaw does): the
    client gets a 500 that names the gateway's configuration, not a 404."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port, tools={"allow": ["no_such_tool"]})

    async def test_a_run_stops_with_a_500_naming_the_allow_list(self) -> None:
        """The SDK raises InternalServerError with code tool_policy_empty and a
        message naming tools.allow; the model is never called."""
        client = self.openai_client(timeout=30)

        def run() -> InternalServerError:
            try:
                client.chat.completions.create(model="openclaw", messages=ASK)
            except InternalServerError as e:
                return e
            raise AssertionError("the run was not refused")

        error = await deferToThread(run)
        self.assertEqual(error.status_code, 500)
        self.assertEqual(error.code, "tool_policy_empty")
        self.assertIn("tools.allow matches no tool", error.message)
        self.assertEqual(self.fake.requests, [])
