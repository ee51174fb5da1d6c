"""WebSocket side of the agent loop: exec approvals and sessions.compact."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.approvals import ApprovalBroker
from openclaw.agents.tools.exec_policy import ApprovalRequest
from openclaw.agents.types import CompactionReport
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.testing import Reply, ScriptedProvider, run_due
from tests.agent_loop_support import LoopCase, call
from tests.test_ws_methods import MethodTestCase
from tests.ws_fakes import TOKEN, WsConnector, build_ws_factory, make_config


def ask(broker: Any, approval_id: str = "ap1") -> Deferred[bool]:
    """What the exec tool does: ask the runtime's approver."""
    request = ApprovalRequest(
        id=approval_id,
        command="rm -rf build",
        workdir="/ws",
        agent_id="main",
        session_key="agent:main:main",
        run_id="run-1",
        tool_call_id="call-1",
        reason="command is not on the exec allowlist",
    )
    answer: Deferred[bool] = broker(request)
    return answer


class ExecApprovalTests(MethodTestCase):
    def events(self, name: str, client: Any = None) -> list[Any]:
        frames = (client or self.client).messages()
        return [f for f in frames if f.get("type") == "event" and f.get("event") == name]

    def test_request_event_and_resolve(self) -> None:
        """An approval request reaches the operator as exec.approval.requested with
        the command and session; exec.approval.resolve allow-once lets it run."""
        answer = ask(self.h.runtime.approvals)
        (event,) = self.events("exec.approval.requested")
        payload = event["payload"]
        self.assertEqual(payload["id"], "ap1")
        self.assertEqual(payload["request"]["command"], "rm -rf build")
        self.assertEqual(payload["request"]["sessionKey"], "agent:main:main")
        self.assertGreater(payload["expiresAtMs"], payload["createdAtMs"])
        self.assertEqual(self.ok("exec.approval.list")["approvals"][0]["id"], "ap1")
        result = self.ok("exec.approval.resolve", {"id": "ap1", "decision": "allow-once"})
        self.assertEqual(result, {"ok": True, "id": "ap1", "decision": "allow-once"})
        self.assertIs(self.successResultOf(answer), True)
        self.assertEqual(self.ok("exec.approval.list")["approvals"], [])

    def test_deny_and_unknown_ids(self) -> None:
        """deny answers False (and is broadcast as resolved); an unknown id or a bad
        decision is INVALID_REQUEST."""
        answer = ask(self.h.runtime.approvals)
        self.client.messages()
        self.error("exec.approval.resolve", {"id": "ap1", "decision": "maybe"})
        self.ok("exec.approval.resolve", {"id": "ap1", "decision": "deny"})
        self.assertIs(self.successResultOf(answer), False)
        self.assertIn(
            "unknown", self.error("exec.approval.resolve", {"id": "ap1", "decision": "deny"})
        )

    def test_withdrawn_request_is_resolved_as_denied(self) -> None:
        """When the exec tool stops waiting (timeout, run cancelled), operators see
        the request resolved as denied with source expired."""
        answer = ask(self.h.runtime.approvals)
        self.client.messages()
        answer.cancel()
        self.failureResultOf(answer)
        (event,) = self.events("exec.approval.resolved")
        self.assertEqual(event["payload"]["decision"], "deny")
        self.assertEqual(event["payload"]["source"], "expired")

    def test_read_only_clients_neither_see_nor_answer(self) -> None:
        """A client without operator.approvals gets no event and may not resolve."""
        reader, _ = self.h.connect(scopes=["operator.read"])
        reader.messages()
        ask(self.h.runtime.approvals)
        self.assertEqual(self.events("exec.approval.requested", reader), [])
        answer = self.call("exec.approval.resolve", {"id": "ap1", "decision": "allow-once"}, reader)
        self.assertFalse(answer["ok"])


class ReadOnlyOperatorTests(MethodTestCase):
    scopes = ("operator.read",)

    def test_only_read_only_clients_means_unanswered(self) -> None:
        """With no connected client holding operator.approvals, the request is
        unanswered at once (the exec policy's askFallback decides) and nobody
        gets the event."""
        self.client.messages()
        self.failureResultOf(ask(self.h.runtime.approvals), defer.TimeoutError)
        events = [f for f in self.client.messages() if f.get("type") == "event"]
        self.assertEqual([e for e in events if e["event"].startswith("exec.")], [])


class SessionsCompactTests(MethodTestCase):
    def test_compact_reaches_the_runtime(self) -> None:
        """sessions.compact {key} compacts through the runtime and answers OpenClaw's shape."""
        self.h.runtime.compaction_report = CompactionReport(True, 5000, 900)
        payload = self.ok("sessions.compact", {"key": "main"})
        self.assertEqual(
            payload,
            {
                "ok": True,
                "key": "agent:main:main",
                "compacted": True,
                "result": {"tokensBefore": 5000, "tokensAfter": 900},
            },
        )
        self.assertEqual(self.h.runtime.compactions, [("main", "agent:main:main")])

    def test_nothing_to_compact_and_bad_params(self) -> None:
        """compacted false carries the reason; a missing key or maxLines is refused."""
        payload = self.ok("sessions.compact", {"key": "agent:beta:x"})
        self.assertEqual(payload["compacted"], False)
        self.assertEqual(payload["reason"], "fake runtime")
        self.error("sessions.compact", {})
        self.error("sessions.compact", {"key": "main", "maxLines": 10})
        for agent_id in (7, ["beta"], {"id": "beta"}):
            self.error("sessions.compact", {"key": "main", "agentId": agent_id})


class BrokerTests(SynchronousTestCase):
    def test_without_operators_a_request_is_unanswered_at_once(self) -> None:
        """With no operator client observing, nobody could answer: the request fails
        at once with TimeoutError, which the exec tool treats as unanswered
        (askFallback decides)."""
        broker = ApprovalBroker(Clock())
        self.failureResultOf(ask(broker), defer.TimeoutError)
        self.assertEqual(self.successResultOf(broker.pending()), [])
        seen: list[Any] = []

        def reached_nobody(event: Any) -> bool:
            """A gateway with no operator client connected."""
            seen.append(event)
            return False

        broker.observe(reached_nobody)
        self.failureResultOf(ask(broker, "ap2"), defer.TimeoutError)
        self.assertEqual([e.id for e in seen], ["ap2"])
        self.assertEqual(self.successResultOf(broker.pending()), [])


class RealLoopOverWebSocketTests(LoopCase):
    """A WS ``agent`` run on the real runtime with built-in tools."""

    def setUp(self) -> None:
        super().setUp()
        self.serve()

    def serve(self, **runtime_options: Any) -> None:
        config = evolve(self.runtime.config, gateway=make_config().gateway)
        self.make_runtime(config, **runtime_options)
        self.factory = build_ws_factory(
            config=config,
            runtime=self.runtime,
            auth=GatewayAuth(config.gateway.auth, self.clock),
            reactor=self.clock,
            log_buffer=LogBuffer(),
            started_at_ms=int(self.clock.seconds() * 1000),
        )
        self.h = WsConnector(self.factory, self.clock)
        self.addCleanup(self.h.cleanup)

    def test_tool_events_in_openclaws_shape_and_none_in_chat(self) -> None:
        """A tool-events client sees stream "tool" start then result with OpenClaw's
        data fields; chat events carry only text; the lifecycle end names the model."""
        client, _ = self.h.connect(token=TOKEN, caps=["tool-events"])
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="a.txt", content="hi"),)),
            Reply.text("Saved."),
        )
        client.request("agent", {"message": "save", "idempotencyKey": "k1"})
        run_due(self.clock)
        self.clock.advance(1)
        frames = client.messages()
        events = [f for f in frames if f.get("type") == "event"]
        tools = [e["payload"]["data"] for e in events if e["payload"].get("stream") == "tool"]
        self.assertEqual([t["phase"] for t in tools], ["start", "result"])
        self.assertEqual(tools[0]["args"], {"path": "a.txt", "content": "hi"})
        self.assertEqual((tools[0]["name"], tools[0]["toolCallId"]), ("write", "c1"))
        self.assertIs(tools[1]["isError"], False)
        self.assertIn("a.txt", tools[1]["result"])
        self.assertIsInstance(tools[1]["meta"], dict)
        chat = [e["payload"] for e in events if e["event"] == "chat"]
        self.assertTrue(chat)
        self.assertNotIn("toolCall", str(chat))
        end = [
            e["payload"]["data"]
            for e in events
            if e["payload"].get("stream") == "lifecycle" and e["payload"]["data"]["phase"] == "end"
        ]
        self.assertEqual((end[0]["provider"], end[0]["model"]), ("scripted", "test-model"))
        final = [f for f in frames if f.get("type") == "res" and f["payload"].get("status") == "ok"]
        self.assertEqual(len(final), 1)

    def test_loop_error_reaches_the_client_in_words(self) -> None:
        """A model that never stops calling tools: the agent method's final answer
        says the step limit stopped it (not a bare "agent run failed")."""
        self.provider = ScriptedProvider(
            clock=self.clock, fallback=lambda _c: Reply(tool_calls=(call("read", "c", path="x"),))
        )
        self.serve(max_steps=2)
        client, _ = self.h.connect(token=TOKEN)
        client.request("agent", {"message": "loop", "idempotencyKey": "k2"})
        run_due(self.clock)
        final = [f for f in client.messages() if f.get("type") == "res"][-1]
        self.assertIn("2 model calls", json.dumps(final))
