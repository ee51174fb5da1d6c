"""The WebSocket protocol over the real runtime, session store and agent registry.

The runtime is :func:`openclaw.testing.make_runtime` (a scripted provider on a
``Clock``, sessions on disk in a temp dir); the factory finds the store and
the registry on the runtime by itself, as the gateway wires it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import AgentRequest
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.gateway.ws.views import AgentsView, SessionsView
from openclaw.testing import Reply, ScriptedProvider, make_runtime, run_due, scripted_config
from tests.ws_fakes import START, TOKEN, WsClient, WsConnector, build_ws_factory, make_config


class RealRuntimeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        base = scripted_config(self.mktemp())
        from attrs import evolve

        self.config = evolve(base, gateway=make_config().gateway)
        self.provider = ScriptedProvider(clock=self.clock)
        self.runtime = make_runtime(
            self.config, clock=self.clock, providers={"scripted": self.provider}
        )
        self.factory = build_ws_factory(
            config=self.config,
            runtime=self.runtime,
            auth=GatewayAuth(self.config.gateway.auth, self.clock),
            reactor=self.clock,
            log_buffer=LogBuffer(),
            started_at_ms=int(START * 1000),
        )
        self.h = WsConnector(self.factory, self.clock)
        self.addCleanup(self.cleanup)
        self.client, _ = self.h.connect(token=TOKEN)

    def cleanup(self) -> None:
        """Stop the runtime, close everything; nothing may stay scheduled."""
        self.successResultOf(self.runtime.shutdown())
        self.h.cleanup()

    def call(self, method: str, params: Any = None, client: WsClient | None = None) -> Any:
        """One request; every frame received until its first res (events included)."""
        client = client or self.client
        client.request(method, params)
        run_due(self.clock)
        return client.messages()

    def test_views_are_the_runtime_sessions_and_agents(self) -> None:
        """build_ws_factory reads sessions from runtime.sessions and agents from the
        runtime itself (the gateway needs nothing beyond the runtime contract)."""
        services = self.factory.services
        # Also a static check: mypy verifies both structurally fit the views.
        views: tuple[SessionsView | None, AgentsView] = (self.runtime.sessions, self.runtime)
        self.assertEqual(views, (services.sessions, services.agents))
        self.assertIs(services.sessions, self.runtime.store)
        self.assertEqual(
            [a.id for a in services.agents.agents], [a.id for a in self.runtime.registry.agents]
        )
        self.assertIsInstance(self.runtime.store, SessionsView)
        self.assertIsInstance(self.runtime, AgentsView)

    def test_agent_turn_lands_in_the_transcript(self) -> None:
        """A WS agent turn streams, finishes, and shows in history, sessions and health."""
        self.provider.add(Reply.text("Hello", " there"))
        frames = self.call("agent", {"message": "hi", "idempotencyKey": "r-1"})
        ack, *events, final = frames
        self.assertEqual(ack["payload"]["status"], "accepted")
        self.assertEqual(final["payload"]["status"], "ok")
        self.assertEqual(final["payload"]["result"]["payloads"][0]["text"], "Hello there")
        streams = [e["payload"].get("stream") or e["payload"].get("state") for e in events]
        self.assertEqual(streams[0], "lifecycle")
        self.assertEqual(streams[-1], "final")
        (history,) = self.call("chat.history", {"sessionKey": "agent:main:main"})
        messages = history["payload"]["messages"]
        self.assertEqual([m["role"] for m in messages], ["user", "assistant"])
        self.assertEqual(messages[0]["content"], "hi")
        self.assertEqual(messages[1]["content"], [{"type": "text", "text": "Hello there"}])
        self.assertTrue(history["payload"]["sessionId"])
        (listing,) = self.call("sessions.list")
        self.assertEqual([s["key"] for s in listing["payload"]["sessions"]], ["agent:main:main"])
        (health,) = self.call("health")
        main = health["payload"]["agents"][0]
        self.assertEqual(main["sessions"]["count"], 1)
        self.assertTrue(main["sessions"]["path"].endswith("agents/main/sessions/sessions.json"))
        (agents,) = self.call("agents.list")
        self.assertEqual(agents["payload"]["defaultId"], "main")
        self.assertEqual(
            agents["payload"]["agents"][0]["model"], {"primary": "scripted/test-model"}
        )

    def test_abort_a_hanging_turn(self) -> None:
        """chat.abort cancels a real run; the agent request ends "aborted"."""
        self.provider.add(Reply(chunks=("partial",), hang=True))
        self.call("agent", {"message": "hi", "idempotencyKey": "r-2"})
        frames = self.call("chat.abort", {"sessionKey": "agent:main:main"})
        chat = [f["payload"] for f in frames if f.get("event") == "chat"]
        self.assertEqual(chat[-1]["state"], "aborted")
        self.assertEqual(chat[-1]["stopReason"], "rpc")
        results = [f["payload"] for f in frames if f["type"] == "res"]
        self.assertEqual(results[0]["status"], "aborted")
        self.assertEqual(results[1], {"ok": True, "aborted": True, "runIds": ["r-2"]})
        self.assertTrue(self.provider.streams[0].stopped)

    def test_reset_then_history_is_empty(self) -> None:
        """sessions.reset gives the key a fresh, empty session."""
        self.call("agent", {"message": "hi", "idempotencyKey": "r-3"})
        (reset,) = self.call("sessions.reset", {"key": "agent:main:main"})
        self.assertTrue(reset["payload"]["ok"])
        (history,) = self.call("chat.history", {"sessionKey": "agent:main:main"})
        self.assertEqual(history["payload"]["messages"], [])

    def test_history_holds_tool_results_cut_to_8000_characters(self) -> None:
        """As OpenClaw's chat.history: tool results are part of the history (a
        client can show each call's outcome), their text cut to 8,000 characters
        (or maxChars when smaller)."""
        self.call("agent", {"message": "hi", "idempotencyKey": "t-1"})
        store = self.runtime.store
        entry = store.get_session("main", "agent:main:main")
        assert entry is not None
        stamp = int(START * 1000) + 5
        result = {
            "role": "toolResult",
            "toolCallId": "c1",
            "toolName": "read",
            "content": [{"type": "text", "text": "x" * 20_000}],
            "isError": False,
            "timestamp": stamp,
        }
        store.append_messages(
            "main", entry.session_id, run_id="t-2", messages=[result], timestamp=stamp
        )
        run_due(self.clock)
        (history,) = self.call("chat.history", {"sessionKey": "agent:main:main"})
        messages = history["payload"]["messages"]
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "toolResult"])
        self.assertEqual(len(messages[2]["content"][0]["text"]), 8_000)
        self.assertTrue(messages[2]["truncated"])
        self.assertNotIn("truncated", messages[1])
        (short,) = self.call("chat.history", {"sessionKey": "agent:main:main", "maxChars": 100})
        self.assertEqual(len(short["payload"]["messages"][2]["content"][0]["text"]), 100)

    def test_new_over_chat_send_resets_without_a_model_turn(self) -> None:
        """chat.send "/new" on the real store: a fresh sessionId and an empty
        history, the acknowledgement as the chat final, and no model call; text
        after "/new " is a turn that sees none of the old history."""
        self.call(
            "chat.send", {"sessionKey": "main", "message": "remember 42", "idempotencyKey": "c-1"}
        )
        (before,) = self.call("chat.history", {"sessionKey": "main"})
        frames = self.call(
            "chat.send", {"sessionKey": "main", "message": "/new", "idempotencyKey": "c-2"}
        )
        self.assertEqual(frames[0]["payload"], {"runId": "c-2", "status": "started"})
        finals = [f["payload"] for f in frames if f.get("event") == "chat"]
        self.assertEqual(finals[-1]["message"]["content"][0]["text"], "✅ New session started.")
        self.assertEqual(len(self.provider.calls), 1)
        (after,) = self.call("chat.history", {"sessionKey": "main"})
        self.assertNotEqual(after["payload"]["sessionId"], before["payload"]["sessionId"])
        self.assertEqual(after["payload"]["messages"], [])
        self.call(
            "chat.send",
            {"sessionKey": "main", "message": "/new what now?", "idempotencyKey": "c-3"},
        )
        self.assertEqual(len(self.provider.calls), 2)
        said = [m.content for m in self.provider.calls[1].messages if m.role == "user"]
        self.assertEqual(said, ["what now?"])

    def test_stop_over_chat_send_aborts_the_streaming_turn(self) -> None:
        """chat.send "/stop" while a turn streams aborts it now; it is no turn itself."""
        self.provider.add(Reply(chunks=("partial",), hang=True))
        self.call("chat.send", {"sessionKey": "main", "message": "go on", "idempotencyKey": "s-1"})
        frames = self.call(
            "chat.send", {"sessionKey": "main", "message": "/stop", "idempotencyKey": "s-2"}
        )
        (answer,) = [f for f in frames if f["type"] == "res"]
        self.assertEqual(answer["payload"], {"ok": True, "aborted": True, "runIds": ["s-1"]})
        self.assertTrue(self.provider.streams[0].stopped)
        self.assertEqual(len(self.provider.calls), 1)

    def test_http_run_is_visible_and_attachable(self) -> None:
        """A run from another ingress streams to a subscribed client; an agent request
        reusing its id attaches to it instead of starting a duplicate."""
        self.call("sessions.subscribe", {"keys": ["agent:main:main"]})
        run = self.runtime.start(
            AgentRequest(
                agent_id="main", session_key="agent:main:main", message="m", run_id="chatcmpl-1"
            )
        )
        frames = self.call("agent", {"message": "other", "idempotencyKey": "chatcmpl-1"})
        self.assertEqual(frames[0]["payload"]["runId"], "chatcmpl-1")
        self.assertEqual(frames[-1]["payload"]["result"]["payloads"][0]["text"], "echo: m")
        self.assertEqual(len(self.provider.calls), 1)
        self.assertTrue(run.done)

    def test_same_session_runs_are_serialised(self) -> None:
        """An HTTP run and a WS run on one session key run one after the other (the lane)."""
        self.provider.add(Reply(chunks=("first",), hang=True), Reply.text("second"))
        self.runtime.start(
            AgentRequest(
                agent_id="main", session_key="agent:main:main", message="a", run_id="chatcmpl-2"
            )
        )
        run_due(self.clock)
        frames = self.call("agent", {"message": "b", "idempotencyKey": "ws-2"})
        self.assertEqual([f["type"] for f in frames], ["res"])  # the ack; the run waits
        self.assertEqual(len(self.provider.calls), 1)
        self.provider.streams[0].end()
        run_due(self.clock)
        final = [f for f in self.client.messages() if f["type"] == "res"]
        self.assertEqual(final[0]["payload"]["result"]["payloads"][0]["text"], "second")
        self.assertEqual(len(self.provider.calls), 2)

    def test_stopped_runtime(self) -> None:
        """After the runtime shut down, runs are refused as UNAVAILABLE (retryable)."""
        self.successResultOf(self.runtime.shutdown())
        (answer,) = self.call("agent", {"message": "hi", "idempotencyKey": "late"})
        self.assertEqual(
            answer["error"],
            {"code": "UNAVAILABLE", "message": "gateway stopping", "retryable": True},
        )


class SlowDiskAbortTests(SynchronousTestCase):
    """chat.abort on a store whose writes finish later (a real disk, threads)."""

    def test_abort_answers_after_the_aborted_events(self) -> None:
        """The lifecycle end and chat "aborted" events of the aborted run come
        before chat.abort's response, even while the turn is still being written."""
        from pathlib import Path

        from openclaw.agents.runtime import Runtime
        from openclaw.sessions.store import SessionStore
        from tests.test_sessions_durability import ManualIO

        clock = Clock()
        clock.advance(START)
        base = scripted_config(self.mktemp())
        from attrs import evolve

        config = evolve(base, gateway=make_config().gateway)
        provider = ScriptedProvider(clock=clock)
        io = ManualIO()
        store = SessionStore(Path(config.state_dir), clock=clock, fsync="turn", io=io)
        runtime = Runtime(config, clock=clock, providers={"scripted": provider}, store=store)
        factory = build_ws_factory(
            config=config,
            runtime=runtime,
            auth=GatewayAuth(config.gateway.auth, clock),
            reactor=clock,
            log_buffer=LogBuffer(),
            started_at_ms=int(START * 1000),
        )
        connector = WsConnector(factory, clock)
        self.addCleanup(connector.cleanup)
        client, _ = connector.connect(token=TOKEN)
        provider.add(Reply(chunks=("partial",), hang=True))
        client.request("agent", {"message": "hi", "idempotencyKey": "slow-1"})
        run_due(clock)
        io.run_all()
        run_due(clock)
        client.messages()
        abort_id = client.request("chat.abort", {"sessionKey": "agent:main:main"})
        run_due(clock)
        self.assertEqual(
            [f for f in client.messages() if f.get("id") == abort_id], [], "answered too early"
        )
        io.run_all()  # the aborted turn reaches the disk: the run settles
        run_due(clock)
        frames = client.messages()
        kinds = [f.get("event") or f.get("id") for f in frames]
        self.assertLess(kinds.index("chat"), kinds.index(abort_id), kinds)
        answer = frames[kinds.index(abort_id)]
        self.assertEqual(answer["payload"], {"ok": True, "aborted": True, "runIds": ["slow-1"]})
        self.successResultOf(runtime.shutdown())
