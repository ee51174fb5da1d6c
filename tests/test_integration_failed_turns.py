"""What the model is sent after a turn that did not complete, in the real
``twistd openclaw`` process against the fake upstream.

As in OpenClaw, a failed, aborted or step-limited turn keeps its user message
and the tool steps it completed (their effects are real); only its failed
reply goes, replaced by OpenClaw's marker when it had text. A call whose
result was never recorded is answered with an error result, so the history
stays valid for strict upstreams.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import openai
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from openclaw.testing import FakeReply, FakeToolCall, ReceivedRequest, ToolConversation
from tests import integration_support as support

_T = TypeVar("_T")

#: OpenClaw's FAILED_ASSISTANT_REPLAY_TEXT, word for word.
MARKER = (
    "[This turn failed before it completed. "
    "Do not redo its work without confirming with the user first.]"
)
#: The result OpenClaw sends for a call whose result is missing.
NO_RESULT = "No result provided"
#: The turn's step limit (model calls without a final answer).
STEP_LIMIT = 50
DEADLINE = 15.0
POLL = 0.02


def tool(name: str, call_id: str, **arguments: Any) -> FakeToolCall:
    return FakeToolCall(name, json.dumps(arguments), id=call_id)


def conversation(request: ReceivedRequest) -> list[tuple[str, str | None, str]]:
    """The messages the upstream got after the system prompt, as ``(role,
    content, tool calls or tool_call_id)``."""
    system, *messages = request.body["messages"]
    assert system["role"] == "system", system
    out: list[tuple[str, str | None, str]] = []
    for message in messages:
        calls = message.get("tool_calls") or []
        extra = message.get("tool_call_id") or " ".join(
            f"{c['id']}:{c['function']['name']}" for c in calls
        )
        out.append((message["role"], message["content"], extra))
    return out


class FailedTurnReplayTests(support.GatewayTestCase):
    """One gateway whose only agent uses the fake upstream, with no fallback."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port)

    def setUp(self) -> None:
        super().setUp()
        self.client = self.openai_client()

    @property
    def workspace(self) -> Path:
        return self.gateway.directory / "state" / "workspace"

    async def call(self, function: Callable[[], _T]) -> _T:
        return await deferToThread(function)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait (polling the other process's effects) until ``condition`` holds."""
        waited = 0.0
        while not condition():
            if waited > DEADLINE:
                raise AssertionError(f"timed out waiting for {what}")
            await deferLater(self.reactor, POLL, lambda: None)
            waited += POLL

    async def chat(self, user: str, text: str) -> str | None:
        completion = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": text}], user=user
            )
        )
        return completion.choices[0].message.content

    async def failing_chat(self, user: str, text: str) -> openai.APIStatusError:
        try:
            await self.chat(user, text)
        except openai.APIStatusError as e:
            return e
        raise AssertionError("the turn did not fail")

    def stop_reasons(self, user: str) -> list[str | None]:
        sessions = self.gateway.directory / "state" / "agents" / "main" / "sessions"
        key = f"agent:main:openai-user:{user}"
        for path in sessions.glob("*.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if lines and lines[0].get("sessionKey") == key:
                return [
                    line["message"].get("stopReason")
                    for line in lines
                    if line.get("type") == "message"
                ]
        raise AssertionError(f"no transcript for {key}")

    async def test_a_turn_that_failed_after_an_exec_keeps_the_exec(self) -> None:
        """Step 1 runs an exec that writes a file, step 2 gets a 500 (no fallback
        left): the client gets the error, and the next turn's request carries
        the failed turn's question, the exec call and its result (no marker: the
        failed reply had no text), then the new question; the exec ran once."""
        command = "echo charged >> payments.log; echo charged-once"
        self.fake.enqueue(
            FakeReply(text="", tool_calls=(tool("exec", "x1", command=command),)),
            FakeReply.failing(500, "upstream exploded"),
            FakeReply(text="The charge went through; shall I send the receipt?"),
        )
        error = await self.failing_chat("pay", "Charge the customer once, then email the receipt")
        self.assertGreaterEqual(error.status_code, 500)
        self.assertEqual((self.workspace / "payments.log").read_text(), "charged\n")

        answer = await self.chat("pay", "please continue")
        self.assertEqual(answer, "The charge went through; shall I send the receipt?")
        self.assertEqual(self.fake.request_count, 3)
        sent = conversation(self.fake.requests[2])
        self.assertEqual(
            [(role, extra) for role, _, extra in sent],
            [("user", ""), ("assistant", "x1:exec"), ("tool", "x1"), ("user", "")],
        )
        self.assertEqual(sent[0][1], "Charge the customer once, then email the receipt")
        self.assertIn("charged-once", sent[2][1] or "")
        self.assertEqual(sent[3][1], "please continue")
        arguments = self.fake.requests[2].body["messages"][2]["tool_calls"][0]["function"]
        self.assertEqual(json.loads(arguments["arguments"]), {"command": command})
        self.assertEqual(self.stop_reasons("pay"), [None, "toolUse", None, "error", None, "stop"])
        self.assertEqual((self.workspace / "payments.log").read_text(), "charged\n")

    async def test_a_failed_reply_with_text_becomes_the_marker(self) -> None:
        """Step 2 streams some text, then the upstream fails mid-stream: the next
        turn sees the exec step and OpenClaw's marker in place of that text."""
        self.fake.enqueue(
            FakeReply(text="", tool_calls=(tool("exec", "m1", command="echo sent"),)),
            FakeReply(text="Sending the receipt now", mode="error_frame", fail_after_chunks=2),
            FakeReply(text="ok"),
        )
        await self.failing_chat("mark", "email the receipt")
        await self.chat("mark", "did it work?")
        sent = conversation(self.fake.requests[2])
        self.assertEqual(
            sent[1:],
            [
                ("assistant", None, "m1:exec"),
                ("tool", sent[2][1], "m1"),
                ("assistant", MARKER, ""),
                ("user", "did it work?", ""),
            ],
        )
        self.assertIn("sent", sent[2][1] or "")
        self.assertEqual(sent[0], ("user", "email the receipt", ""))

    async def test_an_aborted_exec_is_replayed_with_an_error_result(self) -> None:
        """A client that hangs up while the agent's exec runs: the next turn sees
        the question, the exec call and OpenClaw's error result for it (its
        result was never recorded), so the upstream gets a valid history."""
        command = "touch started.flag; sleep 300"
        flag = self.workspace / "started.flag"
        self.fake.responder = ToolConversation(
            FakeReply(text="Working.", tool_calls=(tool("exec", "a1", command=command),)),
            FakeReply(text="never"),
        )
        client = await self.raw(
            {
                "model": "openclaw",
                "stream": True,
                "user": "abort",
                "messages": [{"role": "user", "content": "run the migration"}],
            }
        )
        await client.wait_for(b"Working.")
        await self.until(flag.exists, "the exec to start")
        client.abort()
        await client.closed
        await self.until(lambda: "aborted" in self.stop_reasons("abort"), "the aborted turn")
        self.fake.responder = None
        self.fake.enqueue(FakeReply(text="It was interrupted."))
        await self.chat("abort", "what happened?")
        self.assertEqual(
            conversation(self.fake.requests[1]),
            [
                ("user", "run the migration", ""),
                ("assistant", "Working.", "a1:exec"),
                ("tool", NO_RESULT, "a1"),
                ("user", "what happened?", ""),
            ],
        )
        flag.unlink()

    async def test_a_turn_stopped_by_the_step_limit_keeps_its_steps(self) -> None:
        """A model that calls a tool at every step is stopped by the step limit
        (500 agent_loop_stopped); the next turn still sees the question and
        every completed call with its result."""
        steps = iter(range(STEP_LIMIT))

        def always_a_tool(request: ReceivedRequest) -> FakeReply:
            n = next(steps)
            return FakeReply(text="", tool_calls=(tool("session_status", f"s{n}"),))

        self.fake.responder = always_a_tool
        error = await self.failing_chat("limit", "loop")
        self.assertEqual(error.status_code, 500)
        self.assertEqual(self.fake.request_count, STEP_LIMIT)
        self.fake.responder = None
        self.fake.enqueue(FakeReply(text="I stopped."))
        await self.chat("limit", "continue")
        sent = conversation(self.fake.requests[STEP_LIMIT])
        expected = [("user", "loop")]
        for n in range(STEP_LIMIT):
            expected += [("assistant", f"s{n}:session_status"), ("tool", f"s{n}")]
        expected.append(("user", "continue"))
        self.assertEqual(
            [(role, extra or content) for role, content, extra in sent],
            expected,
        )
