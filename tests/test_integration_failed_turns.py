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
from tests.test_integration_agent_loop import process_gone
from tests.ws_sync_client import SyncWsClient

_T = TypeVar("_T")

#: OpenClaw's FAILED_ASSISTANT_REPLAY_TEXT, word for word.
MARKER = (
    "[This turn failed before it completed. "
    "Do not redo its work without confirming with the user first.]"
)
#: The result OpenClaw sends for a call whose result is missing.
NO_RESULT = "No result provided"
#: The result OpenClaw's exec tool gives when the run's end killed it.
EXEC_ABORTED = "Tool execution was aborted"
#: A quick command with a side effect, and a slow one that outlives the run.
QUICK = "echo sent >> mail.log; echo receipt emailed to bob"
SLOW = "echo $$ > build.pid; exec sleep 300"
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
        config = support.one_fake_agent(port)
        # A failed turn fails at once (no same-model retry).
        config["agents"]["defaults"] = {"modelRetry": {"maxRetries": 0}}
        return config

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

    def messages(self, key: str) -> list[dict[str, Any]]:
        """The transcript messages of session ``key``, in order."""
        sessions = self.gateway.directory / "state" / "agents" / "main" / "sessions"
        for path in sessions.glob("*.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if lines and lines[0].get("sessionKey") == key:
                return [line["message"] for line in lines if line.get("type") == "message"]
        return []

    async def watcher(self, key: str) -> SyncWsClient:
        """A WebSocket client that gets the tool events of session ``key``."""
        ws = await self.call(lambda: SyncWsClient(self.gateway.port, caps=("tool-events",)))
        self.addCleanup(ws.close)
        subscribed = await self.call(lambda: ws.request("sessions.subscribe", {"keys": [key]}))
        self.assertTrue(subscribed["ok"], subscribed)
        return ws

    async def quick_done_slow_running(self, ws: SyncWsClient) -> int:
        """Wait until the quick call's result event reached ``ws`` (the gateway
        has its result) while the slow command runs; the slow command's pid."""

        def quick_result(frame: dict[str, Any]) -> bool:
            payload = frame.get("payload") or {}
            data = payload.get("data") or {}
            return (
                frame.get("event") == "agent"
                and payload.get("stream") == "tool"
                and data.get("phase") == "result"
                and data.get("toolCallId") == "q1"
            )

        await self.call(lambda: ws.wait_event(quick_result))
        pid_file = self.workspace / "build.pid"
        await self.until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", "pid")
        pid = int(pid_file.read_text())
        pid_file.unlink()
        self.assertFalse(process_gone(pid))
        return pid

    async def assert_stopped_batch_recorded(self, key: str, pid: int, stop: str) -> None:
        """The run ended (``stop``) with the slow command killed; the transcript
        holds the quick call's real result and the slow call's abort error, in
        call order, before the turn's final message."""
        await self.until(
            lambda: any(m.get("stopReason") == stop for m in self.messages(key)), "the turn's end"
        )
        await self.until(lambda: process_gone(pid), f"process {pid} to end")
        messages = self.messages(key)
        self.assertEqual(
            [(m["role"], m.get("stopReason")) for m in messages],
            [("user", None), ("assistant", "toolUse"), ("toolResult", None),
             ("toolResult", None), ("assistant", stop)],
        )  # fmt: skip
        quick, slow = messages[2], messages[3]
        self.assertEqual((quick["toolCallId"], quick["isError"]), ("q1", False))
        self.assertIn("receipt emailed to bob", quick["content"][0]["text"])
        self.assertEqual((slow["toolCallId"], slow["isError"]), ("s1", True))
        self.assertEqual(slow["content"][0]["text"], EXEC_ABORTED)
        self.assertEqual((self.workspace / "mail.log").read_text(), "sent\n")
        (self.workspace / "mail.log").unlink()

    def assert_next_request_has_the_results(self, request: ReceivedRequest, asked: str) -> None:
        sent = conversation(request)
        self.assertEqual(
            [(role, extra) for role, _, extra in sent],
            [("user", ""), ("assistant", "q1:exec s1:exec"), ("tool", "q1"), ("tool", "s1"),
             ("user", "")],
        )  # fmt: skip
        self.assertEqual(sent[0][1], "email the receipt and wait for the build")
        self.assertIn("receipt emailed to bob", sent[2][1] or "")
        self.assertEqual(sent[3][1], EXEC_ABORTED)
        self.assertEqual(sent[4][1], asked)
        self.assertNotIn(NO_RESULT, json.dumps(request.body))

    def step_with_quick_and_slow(self) -> FakeReply:
        return FakeReply(
            text="Working.",
            tool_calls=(tool("exec", "q1", command=QUICK), tool("exec", "s1", command=SLOW)),
        )

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
        the question, the exec call and OpenClaw's abort error for it (recorded
        when the run stopped it), so the upstream gets a valid history."""
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
                ("tool", EXEC_ABORTED, "a1"),
                ("user", "what happened?", ""),
            ],
        )
        flag.unlink()

    async def test_client_hanging_up_keeps_the_finished_calls_result(self) -> None:
        """One step runs a quick exec (it e-mails) and a slow one; the client
        hangs up after the quick one finished. The transcript holds the quick
        call's real result and the slow call's abort error, the slow command's
        process is gone, and the next turn tells the model what the quick
        call did (not "No result provided"), so it is not redone."""
        key = "agent:main:openai-user:hangup"
        ws = await self.watcher(key)
        self.fake.enqueue(self.step_with_quick_and_slow(), FakeReply(text="Yes, it was sent."))
        client = await self.raw(
            {
                "model": "openclaw",
                "stream": True,
                "user": "hangup",
                "messages": [
                    {"role": "user", "content": "email the receipt and wait for the build"}
                ],
            }
        )
        await client.wait_for(b"Working.")
        pid = await self.quick_done_slow_running(ws)
        client.abort()
        await client.closed
        await self.assert_stopped_batch_recorded(key, pid, "aborted")
        self.assertEqual(await self.chat("hangup", "did you email it?"), "Yes, it was sent.")
        self.assert_next_request_has_the_results(self.fake.requests[1], "did you email it?")

    async def chat_send(self, ws: SyncWsClient, key: str, message: str, **params: Any) -> str:
        sent = await self.call(
            lambda: ws.request(
                "chat.send",
                {
                    "sessionKey": key,
                    "message": message,
                    "idempotencyKey": f"{key} {message}",
                    **params,
                },
            )
        )
        self.assertTrue(sent["ok"], sent)
        run_id: str = sent["payload"]["runId"]
        return run_id

    async def chat_state(self, ws: SyncWsClient, run_id: str, state: str) -> None:
        await self.call(
            lambda: ws.wait_event(
                lambda f: (
                    f.get("event") == "chat"
                    and f["payload"].get("runId") == run_id
                    and f["payload"].get("state") == state
                )
            )
        )

    async def test_chat_abort_keeps_the_finished_calls_result(self) -> None:
        """The same stopped by chat.abort (the Control UI's Stop button) over
        the WebSocket; chat.history has both results."""
        key = "agent:main:ws-abort"
        ws = await self.watcher(key)
        self.fake.enqueue(self.step_with_quick_and_slow(), FakeReply(text="Yes, it was sent."))
        await self.chat_send(ws, key, "email the receipt and wait for the build")
        pid = await self.quick_done_slow_running(ws)
        aborted = await self.call(lambda: ws.request("chat.abort", {"sessionKey": key}))
        self.assertTrue(aborted["payload"]["aborted"], aborted)
        await self.assert_stopped_batch_recorded(key, pid, "aborted")
        history = await self.call(
            lambda: ws.request("chat.history", {"sessionKey": key, "limit": 50})
        )
        # What the Control UI fills its tool boxes from after a reload.
        results = [
            (m["toolCallId"], m["isError"])
            for m in history["payload"]["messages"]
            if m["role"] == "toolResult"
        ]
        self.assertEqual(results, [("q1", False), ("s1", True)])
        run_id = await self.chat_send(ws, key, "did you email it?")
        await self.chat_state(ws, run_id, "final")
        self.assert_next_request_has_the_results(self.fake.requests[1], "did you email it?")

    async def test_run_timeout_keeps_the_finished_calls_result(self) -> None:
        """The same stopped by the run's timeout (chat.send timeoutMs)."""
        key = "agent:main:timed-out"
        ws = await self.watcher(key)
        self.fake.enqueue(self.step_with_quick_and_slow(), FakeReply(text="Yes, it was sent."))
        await self.chat_send(ws, key, "email the receipt and wait for the build", timeoutMs=2500)
        pid = await self.quick_done_slow_running(ws)
        await self.assert_stopped_batch_recorded(key, pid, "aborted")
        self.assertIn("timed out", self.messages(key)[-1]["errorMessage"])
        run_id = await self.chat_send(ws, key, "did you email it?")
        await self.chat_state(ws, run_id, "final")
        self.assert_next_request_has_the_results(self.fake.requests[1], "did you email it?")

    async def test_a_step_with_client_tools_stopped_mid_batch_is_recorded(self) -> None:
        """A step that also calls a client tool is recorded only at the turn's
        end normally; stopped mid-batch, it is recorded then, with the
        built-in calls' results: the next turn replays the built-in calls with
        their results and the client call as text."""
        key = "agent:main:openai-user:mixed"
        ws = await self.watcher(key)
        weather = tool("weather", "w1", city="Oslo")
        self.fake.enqueue(
            FakeReply(
                text="Working.",
                tool_calls=(
                    tool("exec", "q1", command=QUICK),
                    weather,
                    tool("exec", "s1", command=SLOW),
                ),
            ),
            FakeReply(text="Yes, it was sent."),
        )
        function = {"name": "weather", "parameters": {"type": "object"}}
        client = await self.raw(
            {
                "model": "openclaw",
                "stream": True,
                "user": "mixed",
                "tools": [{"type": "function", "function": function}],
                "messages": [
                    {"role": "user", "content": "email the receipt and wait for the build"}
                ],
            }
        )
        await client.wait_for(b"Working.")
        pid = await self.quick_done_slow_running(ws)
        client.abort()
        await client.closed
        await self.until(
            lambda: any(m.get("stopReason") == "aborted" for m in self.messages(key)), "the end"
        )
        await self.until(lambda: process_gone(pid), f"process {pid} to end")
        messages = self.messages(key)
        self.assertEqual(
            [m["role"] for m in messages],
            ["user", "assistant", "toolResult", "toolResult", "assistant"],
        )
        self.assertEqual(
            [b["id"] for b in messages[1]["content"] if b["type"] == "toolCall"],
            ["q1", "w1", "s1"],
        )
        self.assertNotIn("turnStep", messages[1])
        self.assertEqual([m["toolCallId"] for m in messages[2:4]], ["q1", "s1"])
        (self.workspace / "mail.log").unlink()
        self.assertEqual(await self.chat("mixed", "did you email it?"), "Yes, it was sent.")
        sent = conversation(self.fake.requests[1])
        self.assertEqual(
            [(role, extra) for role, _, extra in sent],
            [("user", ""), ("assistant", "q1:exec s1:exec"), ("tool", "q1"), ("tool", "s1"),
             ("user", "")],
        )  # fmt: skip
        self.assertIn("tool_call id=w1 name=weather", sent[1][1] or "")
        self.assertIn("receipt emailed to bob", sent[2][1] or "")
        self.assertEqual(sent[3][1], EXEC_ABORTED)

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
