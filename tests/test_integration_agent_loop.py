"""The agent loop in the real ``twistd openclaw`` process, driven through the
``openai`` SDK and raw sockets, against a scripted multi-step fake model."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from openclaw.testing import FakeReply, FakeToolCall, ToolConversation
from tests import integration_support as support
from tests.gateway_process import TOKEN

_T = TypeVar("_T")

#: How long a test waits for a condition in the other process at most.
DEADLINE = 15.0
POLL = 0.02


def tool(name: str, call_id: str, **arguments: Any) -> FakeToolCall:
    return FakeToolCall(name, json.dumps(arguments), id=call_id)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie awaiting its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class AgentLoopProcessTests(support.GatewayTestCase):
    """One gateway whose only agent uses the fake upstream."""

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

    def transcript(self, user: str) -> list[dict[str, Any]]:
        sessions = self.gateway.directory / "state" / "agents" / "main" / "sessions"
        key = f"agent:main:openai-user:{user}"
        for path in sessions.glob("*.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if lines and lines[0].get("sessionKey") == key:
                return [line["message"] for line in lines if line.get("type") == "message"]
        raise AssertionError(f"no transcript for {key}")

    async def test_write_then_read_back_through_the_sdk(self) -> None:
        """The model writes notes/today.md, reads it back and answers: the SDK gets
        the answer, the file is in the agent's workspace, the model saw the file's
        text as the read result, and the transcript holds both calls and results."""
        conversation = ToolConversation(
            FakeReply(
                text="",
                tool_calls=(tool("write", "w1", path="notes/today.md", content="Buy milk."),),
            ),
            FakeReply(text="", tool_calls=(tool("read", "r1", path="notes/today.md"),)),
            FakeReply(text="Your note says: Buy milk."),
        )
        self.fake.responder = conversation
        completion = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw",
                messages=[{"role": "user", "content": "Save and read my note."}],
                user="notes",
            )
        )
        self.assertEqual(completion.choices[0].message.content, "Your note says: Buy milk.")
        self.assertEqual(completion.choices[0].finish_reason, "stop")
        self.assertEqual((self.workspace / "notes" / "today.md").read_text(), "Buy milk.")
        self.assertEqual(conversation.answered, [0, 1, 2])
        self.assertEqual(conversation.results["r1"], "Buy milk.")
        first = self.fake.requests[0].body
        offered = [t["function"]["name"] for t in first["tools"]]
        self.assertIn("write", offered)
        self.assertIn("exec", offered)
        self.assertIn(str(self.workspace), first["messages"][0]["content"])
        messages = self.transcript("notes")
        self.assertEqual(
            [(m["role"], m.get("toolName")) for m in messages],
            [
                ("user", None),
                ("assistant", None),
                ("toolResult", "write"),
                ("assistant", None),
                ("toolResult", "read"),
                ("assistant", None),
            ],
        )
        self.assertEqual(messages[1]["content"][0]["type"], "toolCall")
        self.assertEqual(messages[4]["content"], [{"type": "text", "text": "Buy milk."}])

    async def test_streamed_text_of_every_step_is_append_only(self) -> None:
        """Streaming: the text of each step reaches the client, in order, in one
        append-only stream that ends with finish_reason stop."""
        self.fake.responder = ToolConversation(
            FakeReply(text="Listing files.", tool_calls=(tool("exec", "e1", command="ls"),)),
            FakeReply(text="Done."),
        )
        stream = await self.call(
            lambda: list(
                self.client.chat.completions.create(
                    model="openclaw",
                    messages=[{"role": "user", "content": "what is here?"}],
                    stream=True,
                    user="stream",
                )
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        self.assertEqual(text, "Listing files.\n\nDone.")
        finishes = [
            c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason
        ]
        self.assertEqual(finishes, ["stop"])
        # The built-in calls are the gateway's business: no tool_calls reach the client.
        self.assertTrue(all(c.choices[0].delta.tool_calls is None for c in stream if c.choices))

    async def test_disconnect_during_a_long_exec_kills_its_process_group(self) -> None:
        """A client that hangs up while the agent's exec runs a long command: the
        command's process group is killed (the background sleep is gone), and the
        turn is recorded as aborted."""
        pid_file = self.workspace / "sleep.pid"
        command = "sleep 300 & echo $! > sleep.pid; wait"
        self.fake.responder = ToolConversation(
            FakeReply(text="Working.", tool_calls=(tool("exec", "e1", command=command),)),
            FakeReply(text="never"),
        )
        client = await self.raw(
            {
                "model": "openclaw",
                "stream": True,
                "user": "long",
                "messages": [{"role": "user", "content": "run it"}],
            }
        )
        await client.wait_for(b"Working.")
        await self.until(
            lambda: pid_file.exists() and pid_file.read_text().strip() != "", "the pid"
        )
        pid = int(pid_file.read_text())
        self.assertFalse(process_gone(pid))
        client.abort()
        await client.closed
        await self.until(lambda: process_gone(pid), f"process {pid} to end")
        await self.until(
            lambda: any(m.get("stopReason") == "aborted" for m in self.transcript("long")),
            "the aborted turn on disk",
        )
        self.assertEqual(self.fake.request_count, 1)
        os.unlink(pid_file)

    async def test_exec_calls_of_one_step_run_at_the_same_time(self) -> None:
        """Two exec calls of one step run at once (OpenClaw's parallel default):
        each command sees the other one's marker file while it runs; the second
        ends first, yet the transcript and the next model request carry the
        results in call order."""
        first = (
            "touch a.started; i=0; "
            "while [ ! -s b.pid ] || kill -0 $(cat b.pid) 2>/dev/null; do "
            "[ $i -ge 750 ] && break; sleep 0.02; i=$((i+1)); done; "
            "if [ -s b.pid ] && ! kill -0 $(cat b.pid) 2>/dev/null; "
            "then echo A-outlived-B; else echo A-alone; fi"
        )
        second = (
            "echo $$ > b.pid.tmp; mv b.pid.tmp b.pid; i=0; "
            "while [ ! -e a.started ] && [ $i -lt 750 ]; do sleep 0.02; i=$((i+1)); done; "
            "if [ -e a.started ]; then echo B-saw-A; else echo B-alone; fi"
        )
        conversation = ToolConversation(
            FakeReply(
                text="",
                tool_calls=(tool("exec", "a1", command=first), tool("exec", "b1", command=second)),
            ),
            FakeReply(text="Both done."),
        )
        self.fake.responder = conversation
        completion = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw",
                messages=[{"role": "user", "content": "run both"}],
                user="parallel",
            )
        )
        self.assertEqual(completion.choices[0].message.content, "Both done.")
        self.assertIn("B-saw-A", conversation.results["b1"])
        self.assertIn("A-outlived-B", conversation.results["a1"])
        follow_up = self.fake.requests[-1].body["messages"]
        self.assertEqual(
            [m["tool_call_id"] for m in follow_up if m["role"] == "tool"], ["a1", "b1"]
        )
        self.assertEqual(
            [m["toolCallId"] for m in self.transcript("parallel") if m["role"] == "toolResult"],
            ["a1", "b1"],
        )
        for name in ("a.started", "b.pid"):
            os.unlink(self.workspace / name)

    async def test_abort_during_parallel_execs_kills_every_process_group(self) -> None:
        """A client that hangs up while two exec calls of one step both run: both
        commands' process groups are killed, and the turn is recorded as aborted."""
        pid_files = [self.workspace / f"par{n}.pid" for n in (1, 2)]
        calls = tuple(
            tool("exec", f"k{n}", command=f"sleep 300 & echo $! > par{n}.pid; wait") for n in (1, 2)
        )
        self.fake.responder = ToolConversation(
            FakeReply(text="Working.", tool_calls=calls), FakeReply(text="never")
        )
        client = await self.raw(
            {
                "model": "openclaw",
                "stream": True,
                "user": "par-abort",
                "messages": [{"role": "user", "content": "run them"}],
            }
        )
        await client.wait_for(b"Working.")
        await self.until(
            lambda: all(p.exists() and p.read_text().strip() != "" for p in pid_files),
            "both pids (both commands running at once)",
        )
        pids = [int(p.read_text()) for p in pid_files]
        self.assertFalse(any(process_gone(pid) for pid in pids))
        client.abort()
        await client.closed
        await self.until(lambda: all(process_gone(pid) for pid in pids), f"{pids} to end")
        await self.until(
            lambda: any(m.get("stopReason") == "aborted" for m in self.transcript("par-abort")),
            "the aborted turn on disk",
        )
        for pid_file in pid_files:
            os.unlink(pid_file)


class _Operator(WebSocketClientProtocol):
    """An operator client that answers every exec approval with ``factory.decision``."""

    factory: _OperatorFactory

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame = json.loads(payload)
        if frame.get("event") == "connect.challenge":
            self._send_frame(
                {
                    "type": "req",
                    "id": "c1",
                    "method": "connect",
                    "params": {
                        "minProtocol": 4,
                        "maxProtocol": 4,
                        "auth": {"token": TOKEN},
                        "client": {"id": "cli", "version": "t", "platform": "linux", "mode": "cli"},
                        "role": "operator",
                        "scopes": ["operator.admin"],
                    },
                }
            )
        elif frame.get("id") == "c1" and not self.factory.ready.called:
            self.factory.ready.callback(None)
        elif frame.get("event") == "exec.approval.requested":
            self.factory.requests.append(frame["payload"])
            self.factory.waiting.append(frame["payload"]["id"])
            if len(self.factory.waiting) < self.factory.together:
                return
            self.factory.most_waiting = max(self.factory.most_waiting, len(self.factory.waiting))
            for approval in self.factory.waiting:
                params = {"id": approval, "decision": self.factory.decision}
                self._send_frame(
                    {"type": "req", "id": "r1", "method": "exec.approval.resolve", "params": params}
                )
            self.factory.waiting.clear()
        elif frame.get("id") == "r1":
            self.factory.answers.append(frame)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.closed.called:
            self.factory.closed.callback(None)

    def _send_frame(self, frame: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(frame).encode(), isBinary=False)


class _OperatorFactory(WebSocketClientFactory):
    def __init__(self, url: str, reactor: Any, decision: str, together: int = 1) -> None:
        super().__init__(url, reactor=reactor)
        self.protocol = _Operator
        self.decision = decision
        #: Answer only once this many requests wait (then all of them).
        self.together = together
        self.waiting: list[str] = []
        #: The most requests that waited for an answer at once.
        self.most_waiting = 0
        self.requests: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.ready: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()


class ExecApprovalProcessTests(support.GatewayTestCase):
    """A gateway whose exec policy asks an operator (tools.exec.mode "ask")."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port, tools={"exec": {"mode": "ask"}})

    async def operator(self, decision: str, together: int = 1) -> _OperatorFactory:
        url = f"ws://127.0.0.1:{self.gateway.port}/"
        factory = _OperatorFactory(url, self.reactor, decision, together)
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.gateway.port)
        protocol = cast(_Operator, await endpoint.connect(factory))

        async def close() -> None:
            protocol.sendClose()
            await factory.closed

        self.addCleanup(close)
        await factory.ready
        return factory

    async def turn(self, user: str) -> str:
        client = self.openai_client()
        completion = await deferToThread(
            lambda: client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "touch it"}], user=user
            )
        )
        return completion.choices[0].message.content or ""

    async def test_operator_approves_over_the_websocket(self) -> None:
        """The command waits for an operator: the WS client gets
        exec.approval.requested with the command, answers allow-once through
        exec.approval.resolve, and the command runs."""
        operator = await self.operator("allow-once")
        conversation = ToolConversation(
            FakeReply(text="", tool_calls=(tool("exec", "e1", command="touch approved.txt"),)),
            FakeReply(text="Done."),
        )
        self.fake.responder = conversation
        self.assertEqual(await self.turn("approve"), "Done.")
        (request,) = operator.requests
        self.assertEqual(request["request"]["command"], "touch approved.txt")
        self.assertEqual(request["request"]["sessionKey"], "agent:main:openai-user:approve")
        self.assertTrue(operator.answers[0]["ok"])
        workspace = self.gateway.directory / "state" / "workspace"
        self.assertTrue((workspace / "approved.txt").exists())

    async def test_operator_denies(self) -> None:
        """deny: the command does not run and the model reads that it was denied."""
        operator = await self.operator("deny")
        conversation = ToolConversation(
            FakeReply(text="", tool_calls=(tool("exec", "e2", command="touch denied.txt"),)),
            FakeReply(text="It was refused."),
        )
        self.fake.responder = conversation
        self.assertEqual(await self.turn("deny"), "It was refused.")
        self.assertEqual(len(operator.requests), 1)
        self.assertIn("denied", conversation.results["e2"].lower())
        self.assertFalse((self.gateway.directory / "state" / "workspace" / "denied.txt").exists())

    async def test_no_operator_connected_means_unanswered(self) -> None:
        """With no operator client connected nobody could answer: the request is
        unanswered at once and askFallback (deny) applies; the command does not run."""
        conversation = ToolConversation(
            FakeReply(text="", tool_calls=(tool("exec", "e3", command="touch nobody.txt"),)),
            FakeReply(text="Nobody approved it."),
        )
        self.fake.responder = conversation
        self.assertEqual(await self.turn("nobody"), "Nobody approved it.")
        self.assertIn("Exec denied", conversation.results["e3"])
        self.assertFalse((self.gateway.directory / "state" / "workspace" / "nobody.txt").exists())

    async def test_parallel_commands_wait_for_approval_at_once(self) -> None:
        """Two exec calls of one step run in parallel, so both approval requests
        are pending at the same time; the operator answers both and both run."""
        operator = await self.operator("allow-once", together=2)
        conversation = ToolConversation(
            FakeReply(
                text="",
                tool_calls=(
                    tool("exec", "p1", command="touch one.txt"),
                    tool("exec", "p2", command="touch two.txt"),
                ),
            ),
            FakeReply(text="Both done."),
        )
        self.fake.responder = conversation
        self.assertEqual(await self.turn("together"), "Both done.")
        self.assertEqual(operator.most_waiting, 2)
        self.assertEqual(
            sorted(r["request"]["command"] for r in operator.requests),
            ["touch one.txt", "touch two.txt"],
        )
        self.assertTrue(all(answer["ok"] for answer in operator.answers))
        workspace = self.gateway.directory / "state" / "workspace"
        self.assertTrue((workspace / "one.txt").exists())
        self.assertTrue((workspace / "two.txt").exists())
