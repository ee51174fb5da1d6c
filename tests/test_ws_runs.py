"""Agent runs over the WebSocket: ack/final, events, idempotency, abort, interleaving."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import (
    FailureKind,
    ProviderError,
    RunTimeoutError,
    ToolEvent,
)
from openclaw.core.relay import LocalRelay
from openclaw.gateway.auth import GatewayAuth
from openclaw.testing import FakeRun
from tests.ws_fakes import (
    START,
    FakeRuntime,
    FakeSessions,
    WsClient,
    WsConnector,
    WsHarness,
    build_ws_factory,
    make_config,
)

NOW_MS = int(START * 1000)


class RunTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = WsHarness()
        self.addCleanup(self.h.cleanup)
        self.client, _ = self.h.connect()

    def run_of(self, run_id: str) -> FakeRun:
        """The fake run the runtime started under ``run_id``."""
        return self.h.runtime.runs[run_id]

    def responses(self, client: WsClient | None = None) -> list[Any]:
        """res frames received since the last read (events dropped)."""
        return [m for m in (client or self.client).messages() if m["type"] == "res"]

    def start_agent(self, client: WsClient | None = None, **params: Any) -> tuple[str, Any]:
        """Send an agent request; return its id and the ack frame."""
        client = client or self.client
        body = {"message": "hi", "idempotencyKey": "run-1", **params}
        request_id = client.request("agent", body)
        (ack,) = self.responses(client)
        return request_id, ack


class AgentTests(RunTestCase):
    def test_ack_events_then_final(self) -> None:
        """ack (accepted), agent/chat events, then the final on the same id."""
        request_id, ack = self.start_agent(agentId="main", deliver=False, timeout=600)
        self.assertEqual(ack["id"], request_id)
        self.assertEqual(
            ack["payload"],
            {
                "runId": "run-1",
                "sessionKey": "agent:main:main",
                "agentId": "main",
                "status": "accepted",
                "acceptedAt": NOW_MS,
            },
        )
        run = self.run_of("run-1")
        self.assertEqual(run.request.timeout_seconds, 600)
        self.assertEqual(run.request.message, "hi")
        run.start()
        run.say("Hello")
        run.say(" from the gateway.")
        run.finish()
        frames = self.client.messages()
        events = [
            (f["event"], f["payload"].get("stream") or f["payload"].get("state"))
            for f in frames[:-1]
        ]
        self.assertEqual(
            events,
            [
                ("agent", "lifecycle"),
                ("agent", "assistant"),
                ("chat", "delta"),
                ("agent", "assistant"),
                ("agent", "lifecycle"),
                ("chat", "delta"),
                ("chat", "final"),
            ],
        )
        self.assertEqual([f["seq"] for f in frames[:-1]], [1, 2, 3, 4, 5, 6, 7])
        self.assertEqual([f["payload"]["seq"] for f in frames[:-1]], [1, 2, 2, 3, 4, 4, 4])
        delta = frames[5]["payload"]
        self.assertEqual(delta["deltaText"], " from the gateway.")
        self.assertEqual(delta["message"]["content"][0]["text"], "Hello from the gateway.")
        self.assertEqual(frames[4]["payload"]["data"]["phase"], "end")
        self.assertEqual(frames[6]["payload"]["usage"]["total"], 8)
        final = frames[-1]
        self.assertEqual((final["type"], final["id"], final["ok"]), ("res", request_id, True))
        payload = final["payload"]
        self.assertEqual(
            {k: payload[k] for k in ("runId", "status", "summary")},
            {"runId": "run-1", "status": "ok", "summary": "completed"},
        )
        self.assertEqual(
            payload["result"]["payloads"], [{"text": "Hello from the gateway.", "mediaUrl": None}]
        )
        self.assertEqual(payload["result"]["meta"]["agentMeta"]["sessionId"], "sess-run-1")
        self.assertEqual(payload["result"]["meta"]["durationMs"], 250)

    def test_empty_reply_has_no_payloads(self) -> None:
        """A run that produced no text finishes with an empty payload list."""
        self.start_agent()
        self.run_of("run-1").finish()
        (final,) = self.responses()
        self.assertEqual(final["payload"]["result"]["payloads"], [])

    def test_chat_deltas_are_throttled(self) -> None:
        """At most one chat delta per 150 ms per run; the next carries what accumulated."""
        self.start_agent()
        run = self.run_of("run-1")
        run.say("a")
        run.say("b")
        run.say("c")
        chat = [m["payload"]["deltaText"] for m in self.client.messages() if m["event"] == "chat"]
        self.assertEqual(chat, ["a"])
        self.h.clock.advance(0.15)
        (flushed,) = self.client.messages()
        self.assertEqual(flushed["payload"]["deltaText"], "bc")
        self.assertEqual(flushed["payload"]["message"]["content"][0]["text"], "abc")
        self.h.clock.advance(1)
        run.say("d")
        self.assertEqual([m["event"] for m in self.client.messages()], ["agent", "chat"])
        run.say("e")
        run.fail(RunTimeoutError("slow"))
        states = [m["payload"].get("state") for m in self.client.messages() if m["type"] == "event"]
        self.assertEqual(states, [None, None, "delta", "error"])

    def test_session_routing(self) -> None:
        """sessionKey wins over agentId; agentId alone means its main session."""
        self.start_agent(agentId="beta", idempotencyKey="a")
        self.assertEqual(self.run_of("a").session_key, "agent:beta:main")
        self.start_agent(agentId="main", sessionKey="agent:beta:work", idempotencyKey="b")
        self.assertEqual(
            (self.run_of("b").agent_id, self.run_of("b").session_key), ("beta", "agent:beta:work")
        )
        self.start_agent(agentId="beta", sessionKey="Work", idempotencyKey="c")
        self.assertEqual(self.run_of("c").session_key, "agent:beta:work")
        self.start_agent(idempotencyKey="d", timeout=0, extraSystemPrompt="be brief")
        run = self.run_of("d")
        self.assertEqual((run.session_key, run.request.timeout_seconds), ("agent:main:main", None))
        self.assertEqual(run.request.extra_system_prompt, "be brief")

    def test_provider_failure(self) -> None:
        """An upstream failure: ok:false UNAVAILABLE with payload {runId,status:"error",summary}."""
        request_id, _ = self.start_agent()
        self.run_of("run-1").fail(ProviderError(FailureKind.FORMAT, "bad schema", status=400))
        frames = self.client.messages()
        lifecycle, chat, final = frames
        self.assertEqual(lifecycle["payload"]["data"]["phase"], "error")
        self.assertEqual(chat["payload"]["state"], "error")
        self.assertEqual(chat["payload"]["errorMessage"], "LLM request failed: bad schema")
        self.assertEqual(chat["payload"]["errorKind"], "unknown")
        self.assertEqual(
            final,
            {
                "type": "res",
                "id": request_id,
                "ok": False,
                "payload": {
                    "runId": "run-1",
                    "status": "error",
                    "summary": "LLM request failed: bad schema",
                },
                "error": {
                    "code": "UNAVAILABLE",
                    "message": "LLM request failed: bad schema",
                    "retryable": False,
                },
            },
        )

    def test_rate_limited_failure_is_retryable(self) -> None:
        """Rate limits carry retryable and retryAfterMs; chat errorKind is rate_limit."""
        self.start_agent()
        error = ProviderError(FailureKind.RATE_LIMIT, "slow down", retry_after_seconds=2.5)
        self.run_of("run-1").fail(error, emit_lifecycle=False)
        lifecycle, chat, final = self.client.messages()
        self.assertEqual(lifecycle["payload"]["data"]["phase"], "error")
        self.assertEqual(chat["payload"]["errorKind"], "rate_limit")
        self.assertEqual(final["error"]["retryable"], True)
        self.assertEqual(final["error"]["retryAfterMs"], 2500)

    def test_timeout(self) -> None:
        """A run timeout: AGENT_TIMEOUT with status "timeout"."""
        self.start_agent()
        self.run_of("run-1").fail(RunTimeoutError("run timed out after 600s"))
        (final,) = self.responses()
        self.assertEqual(
            final["error"], {"code": "AGENT_TIMEOUT", "message": "run timed out after 600s"}
        )
        self.assertEqual(final["payload"]["status"], "timeout")

    def test_unexpected_failure(self) -> None:
        """A bug in a run is reported generically and logged."""
        self.start_agent()
        self.run_of("run-1").fail(KeyError("secret detail"))
        (final,) = self.responses()
        self.assertEqual(final["error"]["message"], "agent run failed")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_tool_events_need_the_cap(self) -> None:
        """Tool streams go only to clients that declared the tool-events cap."""
        tooled, _ = self.h.connect(caps=["tool-events"])
        tooled.request("sessions.subscribe", {"keys": ["main"]})
        tooled.messages()
        self.start_agent()
        run = self.run_of("run-1")
        run.emit(ToolEvent(run_id="run-1", phase="start", name="search", tool_call_id="c1", ts=1))
        self.assertEqual(self.client.messages(), [])
        (event,) = tooled.messages()
        self.assertEqual(
            event["payload"]["data"], {"phase": "start", "name": "search", "toolCallId": "c1"}
        )


class IdempotencyTests(RunTestCase):
    def test_cached_final_on_another_connection(self) -> None:
        """A repeated key after the run ended returns the cached final, without a run."""
        self.start_agent()
        self.run_of("run-1").finish("done")
        (final,) = self.responses()
        other, _ = self.h.connect()
        repeat_id = other.request("agent", {"message": "hi again", "idempotencyKey": "run-1"})
        (cached,) = self.responses(other)
        self.assertEqual(cached["id"], repeat_id)
        self.assertEqual(cached["payload"], final["payload"])
        self.assertEqual(len(self.h.runtime.started), 1)

    def test_cached_failure(self) -> None:
        """A failed run's final error is replayed too."""
        self.start_agent()
        self.run_of("run-1").fail(ProviderError(FailureKind.AUTH, "bad key"))
        (final,) = self.responses()
        self.client.request("agent", {"message": "hi", "idempotencyKey": "run-1"})
        (again,) = self.responses()
        self.assertEqual(again["error"], final["error"])
        self.assertEqual(again["payload"], final["payload"])

    def test_attach_to_run_in_flight_across_reconnect(self) -> None:
        """The CLI's reconnect resends the key: it gets the ack and the same final.

        The first connection drops mid-run; the run is not cancelled.
        """
        self.start_agent()
        run = self.run_of("run-1")
        run.start()
        run.say("par")
        self.client.lose()
        self.assertEqual(run.cancel_calls, 0)
        again, _ = self.h.connect()
        repeat_id = again.request("agent", {"message": "hi", "idempotencyKey": "run-1"})
        (ack,) = self.responses(again)
        self.assertEqual((ack["id"], ack["payload"]["status"]), (repeat_id, "accepted"))
        run.say("tial")
        run.finish()
        frames = again.messages()
        self.assertEqual(frames[0]["payload"]["data"]["delta"], "tial")
        final = frames[-1]
        self.assertEqual(
            (final["id"], final["payload"]["result"]["payloads"][0]["text"]), (repeat_id, "partial")
        )
        self.assertEqual(len(self.h.runtime.started), 1)

    def test_chat_send_dedupes(self) -> None:
        """chat.send with a known key reports in_flight, then ok, without a new run."""
        payload = {"sessionKey": "main", "message": "m", "idempotencyKey": "c-1"}
        self.client.request("chat.send", payload)
        self.client.messages()
        self.client.request("chat.send", payload)
        (answer,) = self.responses()
        self.assertEqual(answer["payload"], {"runId": "c-1", "status": "in_flight"})
        self.run_of("c-1").finish("x")
        self.client.messages()
        self.client.request("chat.send", payload)
        (answer,) = self.responses()
        self.assertEqual(answer["payload"], {"runId": "c-1", "status": "ok"})
        self.assertEqual(len(self.h.runtime.started), 1)

    def test_chat_send_resend_of_a_failed_run_is_its_error(self) -> None:
        """A resent key whose run failed answers UNAVAILABLE with {status:"error",
        summary} (OpenClaw's cached failure), not "ok"; a timed-out one says "timeout"."""
        self.client.request(
            "chat.send", {"sessionKey": "main", "message": "m", "idempotencyKey": "f"}
        )
        self.run_of("f").fail(ProviderError(FailureKind.AUTH, "bad key"))
        self.client.request(
            "chat.send", {"sessionKey": "work", "message": "n", "idempotencyKey": "t"}
        )
        self.run_of("t").fail(RunTimeoutError("agent run timed out"))
        self.client.messages()
        answers = []
        for key, message in (("f", "m"), ("t", "n")):
            self.client.request(
                "chat.send", {"sessionKey": "main", "message": message, "idempotencyKey": key}
            )
            (answer,) = self.responses()
            answers.append((answer["ok"], answer["error"]["code"], answer["payload"]))
        summary = "LLM request failed: bad key"
        self.assertEqual(
            answers,
            [
                (
                    False,
                    "UNAVAILABLE",
                    {"runId": "f", "status": "error", "summary": summary, "endedAt": NOW_MS},
                ),
                (
                    False,
                    "UNAVAILABLE",
                    {
                        "runId": "t",
                        "status": "timeout",
                        "summary": "agent run timed out",
                        "endedAt": NOW_MS,
                    },
                ),
            ],
        )
        self.assertEqual(len(self.h.runtime.started), 2)

    def test_chat_send_resend_of_an_aborted_run(self) -> None:
        """An aborted run's key answers {status:"timeout", summary:"aborted"}, as OpenClaw."""
        params = {"sessionKey": "main", "message": "m", "idempotencyKey": "a"}
        self.client.request("chat.send", params)
        self.h.clock.advance(2)
        self.client.request("chat.abort", {"sessionKey": "main"})
        self.client.messages()
        self.client.request("chat.send", params)
        (answer,) = self.responses()
        self.assertEqual(
            (answer["ok"], answer["payload"]),
            (
                True,
                {"runId": "a", "status": "timeout", "summary": "aborted", "endedAt": NOW_MS + 2000},
            ),
        )

    def test_chat_send_key_reused_for_other_input_is_refused(self) -> None:
        """A key already used for another message is INVALID_REQUEST
        chat-request-conflict, in flight or finished, whichever method used it
        first; the new message is not silently dropped. The session is not part
        of the identity (OpenClaw's): the same message elsewhere is a resend."""
        self.client.request(
            "chat.send", {"sessionKey": "main", "message": "m", "idempotencyKey": "c"}
        )
        self.client.messages()
        self.start_agent(idempotencyKey="g", message="from agent")
        conflicts = []
        for key in ("c", "g"):
            self.client.request(
                "chat.send", {"sessionKey": "main", "message": "other", "idempotencyKey": key}
            )
            (answer,) = self.responses()
            conflicts.append((answer["ok"], answer["error"]["code"], answer["error"]["details"]))
        self.run_of("c").finish("x")
        self.client.messages()
        self.client.request(
            "chat.send", {"sessionKey": "main", "message": "other", "idempotencyKey": "c"}
        )
        (finished,) = self.responses()
        conflicts.append((finished["ok"], finished["error"]["code"], finished["error"]["details"]))
        conflict = (False, "INVALID_REQUEST", {"reason": "chat-request-conflict"})
        self.assertEqual(conflicts, [conflict] * 3)
        self.assertIn("already used for different input", finished["error"]["message"])
        self.client.request(
            "chat.send", {"sessionKey": "elsewhere", "message": "m", "idempotencyKey": "c"}
        )
        (resend,) = self.responses()
        self.assertEqual(resend["payload"], {"runId": "c", "status": "ok"})
        self.assertEqual(len(self.h.runtime.started), 2)

    def test_cache_expires(self) -> None:
        """Finished keys are forgotten after ten minutes."""
        self.start_agent()
        self.run_of("run-1").finish("a")
        self.client.messages()
        self.h.clock.advance(601)
        self.client.messages()
        self.start_agent()
        self.assertEqual(len(self.h.runtime.started), 2)


class ClaimedElsewhere(LocalRelay):
    """A shared store's relay for which another instance runs every key."""

    def __init__(self) -> None:
        #: How the other instance's runs ended (RunOutcome fields), by run id.
        self.outcomes: dict[str, Mapping[str, Any]] = {}

    def claim(self, run_id: str) -> Deferred[bool]:
        return succeed(False)

    def outcome(self, run_id: str) -> Deferred[Mapping[str, Any] | None]:
        return succeed(self.outcomes.get(run_id))


class SharedSessions(FakeSessions):
    """A session store that comes with a relay (as the Redis store does)."""

    def __init__(self, relay: ClaimedElsewhere) -> None:
        super().__init__()
        self.run_relay = relay


class SharedStoreRuntime(FakeRuntime):
    """A runtime whose session store is shared with other gateway instances."""

    def __init__(self, clock: Clock, store: SharedSessions) -> None:
        super().__init__(clock)
        self._store = store

    @property
    def sessions(self) -> SharedSessions:  # type: ignore[override]  # the fake's is None
        return self._store


class RelayedChatSendTests(SynchronousTestCase):
    """chat.send resending a key another gateway instance ran (a shared store)."""

    def setUp(self) -> None:
        clock = Clock()
        clock.advance(START)
        config = make_config()
        self.relay = ClaimedElsewhere()
        self.runtime = SharedStoreRuntime(clock, SharedSessions(self.relay))
        factory = build_ws_factory(
            config=config,
            runtime=self.runtime,
            auth=GatewayAuth(config.gateway.auth, clock),
            reactor=clock,
            started_at_ms=NOW_MS,
        )
        self.h = WsConnector(factory, clock)
        self.addCleanup(self.h.cleanup)
        self.client, _ = self.h.connect()

    def answer(self, key: str) -> Any:
        self.client.request(
            "chat.send", {"sessionKey": "main", "message": "m", "idempotencyKey": key}
        )
        (answer,) = [m for m in self.client.messages() if m["type"] == "res"]
        return answer

    def test_outcomes_of_the_other_instance(self) -> None:
        """Running: in_flight; ok: ok; aborted: timeout/aborted; failed: UNAVAILABLE
        with its error (it answered "ok" for every ended run)."""
        ended = {"agent_id": "main", "session_key": "agent:main:main", "ended_at": NOW_MS}
        self.relay.outcomes["ok"] = {**ended, "run_id": "ok", "status": "ok"}
        self.relay.outcomes["ab"] = {**ended, "run_id": "ab", "status": "aborted"}
        self.relay.outcomes["er"] = {**ended, "run_id": "er", "status": "error", "error": "boom"}
        self.assertEqual(self.answer("run")["payload"], {"runId": "run", "status": "in_flight"})
        self.assertEqual(self.answer("ok")["payload"], {"runId": "ok", "status": "ok"})
        self.assertEqual(
            self.answer("ab")["payload"],
            {"runId": "ab", "status": "timeout", "summary": "aborted", "endedAt": NOW_MS},
        )
        failed = self.answer("er")
        self.assertEqual(
            (failed["ok"], failed["error"]["code"], failed["payload"]),
            (
                False,
                "UNAVAILABLE",
                {"runId": "er", "status": "error", "summary": "boom", "endedAt": NOW_MS},
            ),
        )
        self.assertEqual(self.runtime.started, [])


class ChatTests(RunTestCase):
    def test_chat_send_acks_then_streams(self) -> None:
        """chat.send answers {runId,status:"started"} at once; output comes as chat events."""
        request_id = self.client.request(
            "chat.send",
            {
                "sessionKey": "agent:beta:ui",
                "message": "m",
                "idempotencyKey": "c-1",
                "timeoutMs": 5000,
            },
        )
        (ack,) = self.client.messages()
        self.assertEqual(
            ack,
            {
                "type": "res",
                "id": request_id,
                "ok": True,
                "payload": {"runId": "c-1", "status": "started"},
            },
        )
        run = self.run_of("c-1")
        self.assertEqual((run.session_key, run.request.timeout_seconds), ("agent:beta:ui", 5.0))
        run.say("Hi")
        run.finish()
        states = [m["payload"].get("state") for m in self.client.messages() if m["event"] == "chat"]
        self.assertEqual(states, ["delta", "final"])

    def test_abort_by_session(self) -> None:
        """chat.abort cancels the session's run: aborted events, then {ok,aborted,runIds}.

        The agent request still gets its final res, with status "aborted".
        """
        agent_id, _ = self.start_agent()
        run = self.run_of("run-1")
        run.start()
        run.say("half")
        self.client.messages()
        abort_id = self.client.request(
            "chat.abort", {"sessionKey": "agent:main:main", "runId": "run-1", "agentId": "main"}
        )
        frames = self.client.messages()
        self.assertEqual(run.cancel_calls, 1)
        lifecycle = frames[0]["payload"]
        self.assertEqual(lifecycle["data"]["status"], "cancelled")
        self.assertTrue(lifecycle["data"]["aborted"])
        chat = frames[1]["payload"]
        self.assertEqual((chat["state"], chat["stopReason"]), ("aborted", "rpc"))
        self.assertEqual(chat["message"]["content"][0]["text"], "half")
        agent_final = frames[2]
        self.assertEqual(
            (agent_final["id"], agent_final["payload"]["status"]), (agent_id, "aborted")
        )
        self.assertEqual(
            frames[3],
            {
                "type": "res",
                "id": abort_id,
                "ok": True,
                "payload": {"ok": True, "aborted": True, "runIds": ["run-1"]},
            },
        )

    def test_abort_by_run_id_only(self) -> None:
        """A runId alone is enough; other runs keep going."""
        self.start_agent(idempotencyKey="a", sessionKey="one")
        self.start_agent(idempotencyKey="b", sessionKey="two")
        self.client.request("chat.abort", {"runId": "b"})
        answer = self.responses()[-1]
        self.assertEqual(answer["payload"]["runIds"], ["b"])
        self.assertEqual((self.run_of("a").cancel_calls, self.run_of("b").cancel_calls), (0, 1))

    def test_abort_with_nothing_running(self) -> None:
        """Nothing to abort: aborted false, no run ids."""
        self.client.request("chat.abort", {"sessionKey": "main"})
        (answer,) = self.responses()
        self.assertEqual(answer["payload"], {"ok": True, "aborted": False, "runIds": []})

    def test_abort_of_another_sessions_run_id(self) -> None:
        """runId and sessionKey must agree."""
        self.start_agent(idempotencyKey="a", sessionKey="one")
        self.client.request("chat.abort", {"sessionKey": "two", "runId": "a"})
        self.assertFalse(self.responses()[-1]["payload"]["aborted"])
        self.assertEqual(self.run_of("a").cancel_calls, 0)


class FanOutTests(RunTestCase):
    def test_interleaved_runs_on_one_connection(self) -> None:
        """Two runs on different sessions stream concurrently; each final has its own id."""
        id_a, _ = self.start_agent(idempotencyKey="a", sessionKey="one")
        id_b, _ = self.start_agent(idempotencyKey="b", sessionKey="two")
        run_a, run_b = self.run_of("a"), self.run_of("b")
        run_a.say("A1")
        run_b.say("B1")
        run_a.say("A2")
        run_b.finish("B2")
        run_a.finish()
        frames = self.client.messages()
        deltas = [
            (f["payload"]["runId"], f["payload"]["data"]["delta"])
            for f in frames
            if f["type"] == "event" and f["payload"].get("stream") == "assistant"
        ]
        self.assertEqual(deltas, [("a", "A1"), ("b", "B1"), ("a", "A2"), ("b", "B2")])
        finals = [
            (f["id"], f["payload"]["result"]["payloads"][0]["text"])
            for f in frames
            if f["type"] == "res"
        ]
        self.assertEqual(finals, [(id_b, "B1B2"), (id_a, "A1A2")])
        self.assertEqual([f["seq"] for f in frames if f["type"] == "event"], list(range(1, 13)))

    def test_runs_from_other_ingress_reach_interested_clients(self) -> None:
        """A run started over HTTP reaches clients that asked about its session only."""
        watcher, _ = self.h.connect()
        watcher.request("chat.history", {"sessionKey": "agent:main:main"})
        watcher.messages()
        everything, _ = self.h.connect()
        everything.request("sessions.subscribe", {"all": True})
        self.assertEqual(everything.messages()[0]["payload"], {"ok": True, "all": True, "keys": []})
        from openclaw.agents.types import AgentRequest

        run = self.h.runtime.start(
            AgentRequest(
                agent_id="main",
                session_key="agent:main:main",
                message="m",
                run_id="chatcmpl-1",
                channel="openai",
            )
        )
        run.say("hey")
        run.finish()
        self.assertEqual(len(watcher.messages()), 4)
        self.assertEqual(len(everything.messages()), 4)
        self.assertEqual(self.client.messages(), [])

    def test_closed_connection_gets_nothing(self) -> None:
        """Events of a run whose caller left go nowhere and break nothing."""
        self.start_agent()
        self.client.lose()
        run = self.run_of("run-1")
        run.say("x")
        run.finish()
        self.assertEqual(self.client.frames(), [])


class AgentWaitTests(RunTestCase):
    def wait(self, run_id: str, timeout_ms: int | None = None) -> str:
        params: dict[str, Any] = {"runId": run_id}
        if timeout_ms is not None:
            params["timeoutMs"] = timeout_ms
        return self.client.request("agent.wait", params)

    def test_finished_run(self) -> None:
        """A run that already ended is reported at once."""
        self.start_agent()
        self.run_of("run-1").finish("done")
        self.client.messages()
        self.wait("run-1")
        (answer,) = self.responses()
        self.assertEqual(answer["payload"]["status"], "ok")
        self.assertEqual(answer["payload"]["endedAt"], NOW_MS)
        self.assertEqual(answer["payload"]["terminalReply"]["text"], "done")

    def test_run_in_flight(self) -> None:
        """Waiting for a running run fires when it ends."""
        self.start_agent()
        wait_id = self.wait("run-1", 5000)
        self.assertEqual(self.responses(), [])
        self.run_of("run-1").fail(RunTimeoutError("late"))
        answer = next(r for r in self.responses() if r["id"] == wait_id)
        self.assertEqual(
            answer["payload"],
            {"runId": "run-1", "status": "timeout", "endedAt": NOW_MS, "error": "late"},
        )

    def test_unknown_run_times_out(self) -> None:
        """An unknown run id reports timeout after timeoutMs (default 30 s)."""
        self.wait("ghost")
        self.h.clock.advance(29.9)
        self.assertEqual(self.responses(), [])
        self.h.clock.advance(0.2)
        (answer,) = self.responses()
        self.assertEqual(answer["payload"], {"runId": "ghost", "status": "timeout"})

    def test_run_that_starts_later(self) -> None:
        """Waiting before the run exists works once it starts and ends."""
        self.wait("later", 10_000)
        self.start_agent(idempotencyKey="later")
        self.run_of("later").finish("x")
        answers = [r for r in self.responses() if r["payload"].get("status") == "ok"]
        self.assertEqual(len(answers), 2)

    def test_disconnect_cancels_waits(self) -> None:
        """A waiting client that leaves leaves no timer behind (checked by cleanup)."""
        self.wait("ghost", 60_000)
        self.wait("ghost", 60_000)
        self.client.lose()
