"""Acceptance (issue 11): ``allow-always`` is durable, as in OpenClaw.

An operator's ``allow-always`` answer saves a generated entry in the agent's
allowlist of the approvals document (``<stateDir>/exec-approvals.json``),
bound to the exact command and working directory; the same command there is
approved without asking again, also after a restart, unless ask is
``always``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.approvals import ApprovalBroker, from_record, to_record
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.exec_grants import APPROVALS_FILENAME, ExecGrants, fingerprint
from openclaw.agents.tools.exec_policy import ApprovalRequest
from openclaw.agents.tools.limits import ExecReactor
from openclaw.agents.tools.policy import ExecPolicy
from openclaw.agents.types import ApprovalEvent, ExecApprovalRequested
from openclaw.config.model import ExecAsk
from openclaw.gateway.ws.methods_loop import requested_payload
from openclaw.testing import FakeReply, ToolConversation
from tests import integration_support as support
from tests.test_integration_agent_loop import _Operator, _OperatorFactory, tool


def request(
    approval_id: str,
    command: str = "make deploy",
    workdir: str = "/ws",
    agent_id: str = "main",
    ask: ExecAsk = "on-miss",
    env: dict[str, str] | None = None,
) -> ApprovalRequest:
    return ApprovalRequest(
        id=approval_id,
        command=command,
        workdir=workdir,
        agent_id=agent_id,
        session_key=f"agent:{agent_id}:main",
        run_id="run-1",
        tool_call_id="call-1",
        reason="command is not on the exec allowlist",
        ask=ask,
        env=env or {},
    )


class DurableAllowAlwaysTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / APPROVALS_FILENAME
        self.clock = Clock()
        self.clock.advance(1_737_150_000)
        self.events: list[ApprovalEvent] = []
        self.broker = self.new_broker()

    def new_broker(self) -> ApprovalBroker:
        broker = ApprovalBroker(self.clock, grants=ExecGrants(self.path))

        def operator(event: ApprovalEvent) -> bool:
            self.events.append(event)
            return True  # an operator client saw it

        broker.observe(operator)
        return broker

    def asked(self) -> list[str]:
        return [e.id for e in self.events if isinstance(e, ExecApprovalRequested)]

    def approve(self, approval_id: str, decision: Any, **kw: Any) -> bool:
        answer: Deferred[bool] = self.broker(request(approval_id, **kw))
        self.assertTrue(self.successResultOf(self.broker.resolve(approval_id, decision)))
        return self.successResultOf(answer)

    def test_allow_always_is_saved_in_openclaws_document_shape(self) -> None:
        """allow-always runs the command and writes a generated allowlist entry for
        the agent (source allow-always, argPattern bound to command + cwd, no
        plaintext command), readable only by the owner."""
        self.assertIs(self.approve("a1", "allow-always"), True)
        document = json.loads(self.path.read_text())
        self.assertEqual(document["version"], 1)
        (entry,) = document["agents"]["main"]["allowlist"]
        self.assertEqual(entry["source"], "allow-always")
        self.assertEqual(entry["pattern"], "make")
        self.assertEqual(entry["argPattern"], fingerprint("make deploy", "/ws"))
        self.assertEqual(entry["lastUsedAt"], 1_737_150_000_000)
        self.assertNotIn("make deploy", self.path.read_text())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_granted_command_is_not_asked_again_even_after_a_restart(self) -> None:
        """The next request for the same agent, command and directory is approved at
        once without an event, by this broker and by a new one (a restart)."""
        self.approve("a1", "allow-always")
        self.assertIs(self.successResultOf(self.broker(request("a2"))), True)
        restarted = self.new_broker()
        self.assertIs(self.successResultOf(restarted(request("a3"))), True)
        self.assertEqual(self.asked(), ["a1"])

    def test_grant_is_bound_to_agent_command_and_directory(self) -> None:
        """Another directory, another command or another agent is a miss: asked."""
        self.approve("a1", "allow-always")
        self.broker(request("b1", workdir="/elsewhere"))
        self.broker(request("b2", command="make deploy --force"))
        self.broker(request("b3", agent_id="ops"))
        self.assertEqual(self.asked(), ["a1", "b1", "b2", "b3"])

    def test_grant_is_bound_to_the_env_overrides(self) -> None:
        """allow-always for a command with env overrides covers those names and
        values only: other values, no overrides or more overrides are asked about;
        the request names the overrides for the operator (OpenClaw's envKeys)."""
        self.approve("a1", "allow-always", env={"TARGET": "staging", "A": "1"})
        self.broker(request("b1", env={"TARGET": "production", "A": "1"}))
        self.broker(request("b2"))
        self.broker(request("b3", env={"TARGET": "staging", "A": "1", "B": "2"}))
        self.assertIs(
            self.successResultOf(self.broker(request("c1", env={"A": "1", "TARGET": "staging"}))),
            True,
        )
        self.assertEqual(self.asked(), ["a1", "b1", "b2", "b3"])
        first = next(e for e in self.events if isinstance(e, ExecApprovalRequested))
        self.assertEqual(first.env_keys, ("A", "TARGET"))
        payload = requested_payload(first)
        self.assertEqual(payload["request"]["envKeys"], ["A", "TARGET"])
        self.assertEqual(from_record(to_record(first)), first)
        bare = next(e for e in self.events if isinstance(e, ExecApprovalRequested) and e.id == "b2")
        self.assertNotIn("envKeys", requested_payload(bare)["request"])

    def test_grants_saved_before_env_binding_still_hold(self) -> None:
        """A command without overrides keeps the digest of [cwd, command], so the
        grants already in exec-approvals.json still apply."""
        legacy = hashlib.sha256(json.dumps(["/ws", "make deploy"]).encode()).hexdigest()
        self.assertEqual(fingerprint("make deploy", "/ws"), f"sha256:argv:{legacy}")
        self.assertEqual(fingerprint("make deploy", "/ws", {}), f"sha256:argv:{legacy}")

    def test_ask_always_still_asks(self) -> None:
        """With the effective ask mode always, a durable grant does not skip the question."""
        self.approve("a1", "allow-always")
        self.broker(request("a2", ask="always"))
        self.assertEqual(self.asked(), ["a1", "a2"])

    def test_allow_always_under_ask_always_runs_once_and_saves_nothing(self) -> None:
        """While every command must be asked (ask: always) durable approval is not
        offered: allow-always runs the command once and saves no grant."""
        self.assertIs(self.approve("a1", "allow-always", ask="always"), True)
        self.assertFalse(self.path.exists())
        self.broker(request("a2"))
        self.assertEqual(self.asked(), ["a1", "a2"])

    def test_allow_once_and_deny_save_nothing(self) -> None:
        """Only allow-always is durable: after allow-once or deny the command asks again."""
        self.assertIs(self.approve("a1", "allow-once"), True)
        self.assertIs(self.approve("a2", "deny"), False)
        self.assertFalse(self.path.exists())
        self.broker(request("a3"))
        self.assertEqual(self.asked(), ["a1", "a2", "a3"])

    def test_removing_the_entry_revokes_it(self) -> None:
        """Editing the document (deleting the entry) revokes the grant; other keys an
        operator put there are kept when a grant is added."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"version": 1, "defaults": {"askFallback": "deny"}}))
        self.approve("a1", "allow-always")
        document = json.loads(self.path.read_text())
        self.assertEqual(document["defaults"], {"askFallback": "deny"})
        document["agents"]["main"]["allowlist"] = []
        self.path.write_text(json.dumps(document) + " ")
        self.broker(request("a2"))
        self.assertEqual(self.asked(), ["a1", "a2"])

    def test_unwritable_document_still_runs_the_command_once(self) -> None:
        """When the document cannot be written the answer still applies to the
        waiting command (and to this process)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()  # a directory where the file should be: writes fail
        self.assertIs(self.approve("a1", "allow-always"), True)
        self.assertIs(self.successResultOf(self.broker(request("a2"))), True)


class ExecToolApprovalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.asked: list[ApprovalRequest] = []
        self.context = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="r1",
            tool_call_id="c1",
            workspace=FilePath(self.mktemp()),
        )
        self.context.workspace.makedirs()

    def run_exec(self, approver: Any, **arguments: Any) -> ToolResult:
        policy = ExecPolicy(security="allowlist", ask="on-miss")
        # The command is never spawned here: a memory reactor is enough.
        reactor = cast(ExecReactor, self.reactor)
        tool = ExecTool(reactor, ProcessRegistry(reactor), policy=policy, approver=approver)
        result: ToolResult = self.successResultOf(tool.run(arguments, self.context))
        return result

    def test_nobody_to_ask_says_so(self) -> None:
        """With no operator client connected the model reads that nobody could
        approve it (not that an approval timed out)."""
        result = self.run_exec(ApprovalBroker(self.reactor), command="touch x")
        self.assertTrue(result.is_error)
        self.assertIn("no operator client is connected", result.content)
        self.assertIn("askFallback deny", result.content)
        self.assertNotIn("timed out", result.content)
        self.assertNotIn("in time", result.content)

    def test_effective_ask_mode_reaches_the_approver(self) -> None:
        """The approver learns the effective ask mode (a per-call ask: always
        hardens it), which decides whether a durable grant may skip the question."""

        def approver(request: ApprovalRequest) -> Deferred[bool]:
            self.asked.append(request)
            return succeed(False)

        self.run_exec(approver, command="touch x")
        self.run_exec(approver, command="touch x", ask="always")
        self.assertEqual([r.ask for r in self.asked], ["on-miss", "always"])


class AllowAlwaysProcessTests(support.GatewayTestCase):
    """The real gateway with tools.exec.mode "ask": allow-always over the WebSocket."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port, tools={"exec": {"mode": "ask"}})

    async def turn(self, user: str) -> str:
        client = self.openai_client(timeout=30)
        completion = await deferToThread(
            lambda: client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "run it"}], user=user
            )
        )
        return completion.choices[0].message.content or ""

    async def operator(self, decision: str) -> tuple[_OperatorFactory, _Operator]:
        factory = _OperatorFactory(f"ws://127.0.0.1:{self.gateway.port}/", self.reactor, decision)
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.gateway.port)
        protocol = cast(_Operator, await endpoint.connect(factory))
        await factory.ready
        return factory, protocol

    async def test_allow_always_then_no_operator_needed(self) -> None:
        """An operator answers allow-always; after it disconnects the same command
        runs again without an operator (without the grant it would be denied
        at once: nobody can answer), and the grant is in exec-approvals.json."""
        state = self.gateway.directory / "state"
        operator, connection = await self.operator("allow-always")
        command = "echo granted >> log.txt"
        self.fake.responder = ToolConversation(
            FakeReply(text="", tool_calls=(tool("exec", "g1", command=command),)),
            FakeReply(text="Once."),
        )
        self.assertEqual(await self.turn("always-1"), "Once.")
        self.assertEqual(len(operator.requests), 1)
        document = json.loads((state / APPROVALS_FILENAME).read_text())
        self.assertEqual(document["agents"]["main"]["allowlist"][0]["source"], "allow-always")
        connection.sendClose()
        await operator.closed
        second = ToolConversation(
            FakeReply(text="", tool_calls=(tool("exec", "g2", command=command),)),
            FakeReply(text="Twice."),
        )
        self.fake.responder = second
        self.assertEqual(await self.turn("always-2"), "Twice.")
        self.assertNotIn("denied", second.results["g2"].lower())
        self.assertEqual((state / "workspace" / "log.txt").read_text(), "granted\ngranted\n")

    async def test_env_overrides_are_shown_and_bound(self) -> None:
        """The operator's request names the env overrides (envKeys); an allow-always
        for them does not cover the same command with another value, which is
        asked about again."""
        operator, connection = await self.operator("allow-always")
        self.addCleanup(lambda: Deferred.fromCoroutine(self._close(connection, operator)))
        command = "printf '%s\\n' \"$TARGET\" >> env.txt"

        async def run(user: str, target: str) -> None:
            call = tool("exec", user, command=command, env={"TARGET": target})
            self.fake.responder = ToolConversation(
                FakeReply(text="", tool_calls=(call,)), FakeReply(text="Done.")
            )
            self.assertEqual(await self.turn(user), "Done.")

        await run("env-1", "staging")
        self.assertEqual(operator.requests[0]["request"]["envKeys"], ["TARGET"])
        await run("env-2", "production")
        await run("env-3", "staging")
        self.assertEqual(len(operator.requests), 2)
        env_txt = self.gateway.directory / "state" / "workspace" / "env.txt"
        self.assertEqual(env_txt.read_text(), "staging\nproduction\nstaging\n")

    async def _close(self, connection: _Operator, operator: _OperatorFactory) -> None:
        connection.sendClose()
        await operator.closed
