"""The WebSocket method table and every error frame, through the real protocol."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.gateway.ws.protocol import MAX_PENDING_REQUESTS
from tests.ws_fakes import START, WsClient, WsHarness, make_config

NOW_MS = int(START * 1000)


class MethodTestCase(SynchronousTestCase):
    """A harness with one authenticated admin connection."""

    config: Any = None
    with_store = True
    scopes: Any = ("operator.admin",)

    def setUp(self) -> None:
        self.h = WsHarness(self.config, with_store=self.with_store)
        self.addCleanup(self.h.cleanup)
        self.client, _ = self.h.connect(scopes=self.scopes)

    def call(self, method: str, params: Any = None, client: WsClient | None = None) -> Any:
        """Send one request and return its single response frame."""
        client = client or self.client
        request_id = client.request(method, params)
        frames = client.messages()
        answers = [f for f in frames if f.get("type") == "res"]
        self.assertEqual(len(answers), 1, frames)
        self.assertEqual(answers[0]["id"], request_id)
        return answers[0]

    def ok(self, method: str, params: Any = None) -> Any:
        """The payload of a successful call."""
        answer = self.call(method, params)
        self.assertTrue(answer["ok"], answer)
        return answer["payload"]

    def error(self, method: str, params: Any = None, code: str = "INVALID_REQUEST") -> str:
        """The message of a failed call (checking its code)."""
        answer = self.call(method, params)
        self.assertFalse(answer["ok"], answer)
        self.assertEqual(answer["error"]["code"], code)
        message: str = answer["error"]["message"]
        self.assertTrue(message)
        return message


class HealthTests(MethodTestCase):
    def test_agents_carry_session_summaries(self) -> None:
        """Each agents[] entry has sessions{path,count,recent[{key,age}]}, newest first."""
        for i in range(7):
            self.h.sessions.add("main", f"agent:main:s{i}", NOW_MS - 1000 * (7 - i))
        health = self.ok("health")
        self.assertTrue(health["ok"])
        self.assertEqual(health["defaultAgentId"], "main")
        main, beta = health["agents"]
        self.assertEqual((main["agentId"], main["isDefault"], main["name"]), ("main", True, "Main"))
        self.assertEqual(main["sessions"]["count"], 7)
        self.assertEqual(main["sessions"]["path"], "/state/agents/main/sessions/sessions.json")
        recent = main["sessions"]["recent"]
        self.assertEqual([r["key"] for r in recent], [f"agent:main:s{i}" for i in (6, 5, 4, 3, 2)])
        self.assertEqual(recent[0]["age"], 1000)
        self.assertEqual(
            beta["sessions"], {"path": beta["sessions"]["path"], "count": 0, "recent": []}
        )
        self.assertEqual(health["sessions"], main["sessions"])

    def test_without_params_key(self) -> None:
        """`openclaw health` sends no params at all."""
        self.client.request("health", with_params=False)
        (answer,) = self.client.messages()
        self.assertTrue(answer["payload"]["ok"])

    def test_store_failure_degrades_to_unavailable_sessions(self) -> None:
        """A store error does not fail health; it is logged."""

        def broken(agent_id: str) -> Any:
            raise OSError("disk gone")

        self.h.sessions.list_sessions = broken  # type: ignore[method-assign]  # inject a failure
        with capturedLogs() as events:
            health = self.ok("health")
        self.assertEqual(health["agents"][0]["sessions"]["path"], "(unavailable)")
        self.assertTrue(any(e.get("log_failure") for e in events))
        self.assertTrue(self.flushLoggedErrors(OSError))


class SharedStateDownTests(MethodTestCase):
    def test_store_unreachable_is_a_retryable_unavailable(self) -> None:
        """sessions.list while Redis is away: UNAVAILABLE "session store
        unavailable", retryable with retryAfterMs, as agent and chat.send say."""

        def unreachable(agent_id: str) -> Any:
            raise SharedStateUnavailableError("the session store (Redis) is unreachable")

        self.h.sessions.list_sessions = unreachable  # type: ignore[method-assign]  # inject a failure
        answer = self.call("sessions.list")
        self.assertFalse(answer["ok"])
        error = answer["error"]
        self.assertEqual(
            (error["code"], error["message"], error["retryable"], error["retryAfterMs"]),
            ("UNAVAILABLE", "session store unavailable", True, 1000),
        )


class HugeNumberTests(MethodTestCase):
    def test_integers_too_big_for_a_float_are_invalid(self) -> None:
        """A 400-digit integer where a number is expected: INVALID_REQUEST
        naming the property, not an internal error."""
        huge = int("9" * 400)
        message = self.error("chat.history", {"sessionKey": "main", "limit": huge})
        self.assertIn("limit", message)
        self.assertIn("timeoutMs", self.error("agent.wait", {"runId": "r", "timeoutMs": huge}))


class NoStoreTests(MethodTestCase):
    with_store = False

    def test_health_and_history_without_a_store(self) -> None:
        """Without a session store health still answers; history is UNAVAILABLE."""
        self.assertEqual(self.ok("health")["sessions"]["path"], "(unavailable)")
        message = self.error("chat.history", {"sessionKey": "main"}, code="UNAVAILABLE")
        self.assertEqual(message, "session store unavailable")
        self.assertEqual(self.ok("status")["sessions"]["count"], 0)


class InfoTests(MethodTestCase):
    def test_status(self) -> None:
        """status reports version, uptime, connections and active runs."""
        self.h.sessions.add("beta", "agent:beta:x", NOW_MS)
        self.ok("agent", {"message": "hi", "idempotencyKey": "k1"})
        status = self.ok("status")
        self.assertEqual(status["version"], "0.1.0")
        self.assertEqual(status["uptimeMs"], 5000)
        self.assertEqual(status["connections"], 1)
        self.assertEqual(
            status["activeRuns"],
            [{"runId": "k1", "agentId": "main", "sessionKey": "agent:main:main"}],
        )
        self.assertEqual(status["sessions"]["count"], 1)
        self.assertIn("python", status["runtimeVersion"])

    def test_status_has_the_shape_openclaw_status_json_reads(self) -> None:
        """``openclaw status --json`` calls ``status`` with includeCliProjection and
        maps ``sessions.byAgent[]`` (it crashed without): one entry per agent with
        its store path, count and newest session rows; ``cliProjection`` names the
        agents. A read-only client gets the counts, not the paths and rows."""
        self.h.sessions.add("beta", "agent:beta:x", NOW_MS - 300)
        self.h.sessions.add("main", "agent:main:main", NOW_MS - 200)
        self.h.sessions.add("main", "agent:main:work", NOW_MS - 100)
        status = self.ok("status", {"includeChannelSummary": False, "includeCliProjection": True})
        sessions = status["sessions"]
        self.assertEqual(sessions["count"], 3)
        by_agent = {entry["agentId"]: entry for entry in sessions["byAgent"]}
        self.assertEqual(set(by_agent), {"main", "beta"})
        main = by_agent["main"]
        self.assertEqual(main["path"], "/state/agents/main/sessions/sessions.json")
        self.assertEqual(main["count"], 2)
        self.assertEqual([r["key"] for r in main["recent"]], ["agent:main:work", "agent:main:main"])
        self.assertEqual(main["recent"][0]["updatedAt"], NOW_MS - 100)
        self.assertEqual(main["recent"][0]["age"], 100)
        self.assertEqual(main["recent"][0]["agentId"], "main")
        self.assertEqual(by_agent["beta"]["count"], 1)
        self.assertEqual(
            [r["key"] for r in sessions["recent"]],
            ["agent:main:work", "agent:main:main", "agent:beta:x"],
        )
        self.assertIn("/state/agents/beta/sessions/sessions.json", sessions["paths"])
        self.assertEqual(sessions["defaults"]["defaultAgentId"], "main")
        self.assertEqual(status["channelSummary"], [])
        self.assertEqual({a["agentId"] for a in status["heartbeat"]["agents"]}, {"main", "beta"})
        projection = status["cliProjection"]["agents"]
        self.assertEqual(projection["defaultId"], "main")
        self.assertEqual({row["id"] for row in projection["rows"]}, {"main", "beta"})
        self.assertNotIn("cliProjection", self.ok("status"))

        reader, _ = self.h.connect(scopes=["operator.read"])
        answer = self.call("status", {}, client=reader)
        self.assertTrue(answer["ok"], answer)
        read_only = answer["payload"]["sessions"]
        self.assertEqual(read_only["count"], 3)
        self.assertEqual(read_only["paths"], [])
        self.assertEqual(read_only["recent"], [])
        for entry in read_only["byAgent"]:
            self.assertEqual((entry["path"], entry["recent"]), ("[redacted]", []))

    def test_agents_list(self) -> None:
        """agents.list names the default and every agent (what `openclaw agent` reads)."""
        listing = self.ok("agents.list")
        self.assertEqual(listing["defaultId"], "main")
        self.assertEqual(
            listing["agents"][0],
            {
                "id": "main",
                "name": "Main",
                "model": {"primary": "demo/echo"},
                "workspace": "/work/space",
                "default": True,
            },
        )
        self.assertEqual(listing["agents"][1], {"id": "beta", "workspace": "/work/space"})

    def test_models_list(self) -> None:
        """models.list lists configured models and the agents' model refs."""
        models = self.ok("models.list")["models"]
        self.assertEqual(models, [{"id": "demo/echo", "name": "echo", "provider": "demo"}])


class ModelsFromConfigTests(MethodTestCase):
    def setUp(self) -> None:
        from openclaw.config.model import ModelEntry, ModelsConfig, ProviderConfig

        base = make_config()
        provider = ProviderConfig(
            id="ollama",
            api="openai-completions",
            base_url="http://127.0.0.1:11434/v1",
            models=(ModelEntry(id="llama3.2", name="Llama", context_window=8192, max_tokens=512),),
        )
        from attrs import evolve

        self.config = evolve(base, models=ModelsConfig(providers={"ollama": provider}))
        super().setUp()

    def test_provider_models(self) -> None:
        """Provider models come with their names and limits."""
        models = self.ok("models.list")["models"]
        self.assertEqual(
            models[0],
            {
                "id": "ollama/llama3.2",
                "name": "Llama",
                "provider": "ollama",
                "api": "openai-completions",
                "contextWindow": 8192,
                "maxTokens": 512,
            },
        )

    def test_published_catalog_params(self) -> None:
        """What ``openclaw models list`` sends once hello-ok advertises
        ``published-model-catalog``: a provider filter (an unknown provider is
        refused), an agent that must exist, a view, and details (``local``)."""
        params = {"view": "all", "includeDetails": True, "agentId": "main"}
        models = self.ok("models.list", {**params, "provider": "OLLAMA"})["models"]
        self.assertEqual([m["id"] for m in models], ["ollama/llama3.2"])
        self.assertIs(models[0]["local"], True)  # a loopback baseUrl
        demo = self.ok("models.list", {**params, "provider": "demo"})["models"]
        self.assertEqual(demo, [{"id": "demo/echo", "name": "echo", "provider": "demo"}])
        self.assertIn(
            "Unknown model catalog provider", self.error("models.list", {"provider": "nope"})
        )
        self.assertIn("unknown agent id", self.error("models.list", {"agentId": "ghost"}))
        self.assertIn("view", self.error("models.list", {"view": "everything"}))
        self.assertEqual(
            len(self.ok("models.list", {"view": "default"})["models"]),
            len(self.ok("models.list")["models"]),
        )


class SessionMethodTests(MethodTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.h.sessions.add(
            "main",
            "agent:main:main",
            NOW_MS - 10,
            [
                {"role": "user", "content": "hi", "timestamp": 1},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "hello there"}],
                    "timestamp": 2,
                },
            ],
        )
        self.h.sessions.add("main", "agent:main:work", NOW_MS)
        self.h.sessions.add("beta", "agent:beta:main", NOW_MS - 5)

    def test_chat_history(self) -> None:
        """chat.history returns the transcript with its sessionId."""
        history = self.ok("chat.history", {"sessionKey": "agent:main:main"})
        self.assertEqual(history["sessionKey"], "agent:main:main")
        self.assertEqual(history["sessionId"], "id-0-agent:main:main")
        self.assertEqual([m["role"] for m in history["messages"]], ["user", "assistant"])

    def test_chat_history_limit_and_max_chars(self) -> None:
        """limit keeps the newest messages; maxChars cuts long texts."""
        history = self.ok("chat.history", {"sessionKey": "main", "limit": 1, "maxChars": 5})
        (message,) = history["messages"]
        self.assertEqual(message["content"], [{"type": "text", "text": "hello"}])
        self.assertTrue(message["truncated"])
        short = self.ok("chat.history", {"sessionKey": "main", "maxChars": 1})["messages"][0]
        self.assertEqual(short["content"], "h")

    def test_chat_history_of_an_unknown_session(self) -> None:
        """A session never used has no id and no messages."""
        history = self.ok("chat.history", {"sessionKey": "agent:beta:nothing"})
        self.assertEqual((history["sessionId"], history["messages"]), (None, []))

    def test_sessions_list(self) -> None:
        """Every agent's sessions, newest first, with limit and hasMore."""
        listing = self.ok("sessions.list")
        self.assertEqual(
            [s["key"] for s in listing["sessions"]],
            ["agent:main:work", "agent:beta:main", "agent:main:main"],
        )
        self.assertEqual(listing["sessions"][0]["kind"], "direct")
        self.assertEqual(listing["sessions"][0]["agentId"], "main")
        # OpenClaw's isMain (its CLI refuses to even dry-run deleting a main session).
        self.assertEqual([s["isMain"] for s in listing["sessions"]], [False, True, True])
        self.assertEqual(listing["path"], "/state/agents/main/sessions/sessions.json")
        limited = self.ok("sessions.list", {"limit": 1})
        self.assertEqual(
            (limited["count"], limited["totalCount"], limited["hasMore"]), (1, 3, True)
        )
        beta = self.ok("sessions.list", {"agentId": "beta"})
        self.assertEqual([s["key"] for s in beta["sessions"]], ["agent:beta:main"])
        self.assertEqual(beta["path"], "/state/agents/beta/sessions/sessions.json")

    def test_reset_and_delete(self) -> None:
        """sessions.reset starts over; sessions.delete removes; both by key."""
        reset = self.ok("sessions.reset", {"key": "agent:main:main"})
        self.assertEqual(
            (reset["ok"], reset["key"], reset["entry"]["sessionId"]),
            (True, "agent:main:main", "fresh"),
        )
        self.assertEqual(self.h.sessions.resets, [("main", "agent:main:main")])
        deleted = self.ok("sessions.delete", {"sessionKey": "work"})
        self.assertEqual(deleted, {"ok": True, "key": "agent:main:work", "deleted": True})
        self.assertFalse(self.ok("sessions.delete", {"key": "work"})["deleted"])

    def test_busy_sessions_are_not_reset(self) -> None:
        """A session with a run in flight is not reset or deleted under it."""
        self.ok("agent", {"message": "hi", "idempotencyKey": "k", "sessionKey": "work"})
        self.h.sessions.add("main", "agent:main:work", NOW_MS)
        for method in ("sessions.reset", "sessions.delete"):
            answer = self.call(method, {"key": "agent:main:work"})
            self.assertEqual(answer["error"]["details"], {"code": "SESSION_BUSY"})
        self.assertEqual(self.h.sessions.resets, [])
        self.assertIsNotNone(self.h.sessions.get_session("main", "agent:main:work"))

    def test_main_sessions_are_not_deleted(self) -> None:
        """An agent's main session (and "global") is refused before the store is
        touched, as OpenClaw does; it can still be reset."""
        self.h.sessions.add("main", "agent:main:main", NOW_MS)
        self.h.sessions.add("beta", "agent:beta:main", NOW_MS)
        self.h.sessions.add("main", "agent:main:global", NOW_MS)
        for key, shown in (
            ("agent:main:main", "agent:main:main"),
            ("main", "agent:main:main"),
            (" Agent:Beta:MAIN ", "agent:beta:main"),
            ("global", "global"),
        ):
            message = self.error("sessions.delete", {"key": key})
            self.assertEqual(message, f"Cannot delete the main session ({shown}).")
        self.assertEqual([len(self.h.sessions.list_sessions(a)) for a in ("main", "beta")], [3, 1])
        self.assertTrue(self.ok("sessions.reset", {"key": "main"})["ok"])
        self.assertTrue(self.ok("sessions.delete", {"key": "agent:beta:work"})["ok"])

    def test_store_exception_is_an_internal_error(self) -> None:
        """An unexpected exception becomes UNAVAILABLE "internal error" and is logged."""

        def broken(
            agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
        ) -> list[dict[str, Any]]:
            raise RuntimeError("kaput")

        self.h.sessions.read_messages = broken  # type: ignore[method-assign]  # inject a failure
        with capturedLogs() as events:
            message = self.error("chat.history", {"sessionKey": "main"}, code="UNAVAILABLE")
        self.assertEqual(message, "internal error")
        self.assertTrue(any(e.get("log_level") == LogLevel.critical for e in events))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.ok("health")["ok"])


class OversizedResponseTests(MethodTestCase):
    config = make_config(max_payload=100_000)

    def test_answer_larger_than_max_payload(self) -> None:
        """A response over maxPayload becomes an error, not a dropped frame."""
        self.h.sessions.add(
            "main", "agent:main:main", NOW_MS, [{"role": "user", "content": "x" * 200_000}]
        )
        message = self.error("chat.history", {"sessionKey": "main"}, code="UNAVAILABLE")
        self.assertEqual(message, "response exceeds the maximum payload size")


class LogsTailTests(MethodTestCase):
    def test_tail_and_follow(self) -> None:
        """logs.tail returns recent lines and a cursor to follow with."""
        for i in range(3):
            self.h.log_buffer.append(f"line {i}")
        first = self.ok("logs.tail", {"limit": 2, "maxBytes": 250000})
        self.assertEqual(first["lines"], ["line 1", "line 2"])
        self.assertEqual(
            (first["file"], first["truncated"], first["reset"]), ("(memory)", True, False)
        )
        self.h.log_buffer.append("line 3")
        follow = self.ok("logs.tail", {"cursor": first["cursor"]})
        self.assertEqual(follow["lines"], ["line 3"])


class ErrorFrameTests(MethodTestCase):
    def test_unknown_method(self) -> None:
        """An unknown method is an error res; the connection stays usable."""
        self.assertEqual(self.error("no.such.method"), "unknown method: no.such.method")
        self.assertTrue(self.ok("health")["ok"])

    def test_invalid_params_messages(self) -> None:
        """Invalid params are named the way the real gateway names them."""
        cases = [
            (
                "agent",
                {"message": "hi"},
                "invalid agent params: must have required property 'idempotencyKey'",
            ),
            (
                "agent",
                {"idempotencyKey": "k"},
                "invalid agent params: must have required property 'message'",
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k", "agentId": "nosuch"},
                'invalid agent params: unknown agent id "nosuch"',
            ),
            (
                "agent",
                {"message": 5, "idempotencyKey": "k"},
                "invalid agent params: property 'message' must be a string",
            ),
            (
                "agent",
                {"message": " ", "idempotencyKey": "k"},
                "invalid agent params: property 'message' must not be empty",
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k", "timeout": "soon"},
                "invalid agent params: property 'timeout' must be a number",
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k", "timeout": -1},
                "invalid agent params: property 'timeout' must be between 0 and 86400",
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k" * 300},
                "invalid agent params: property 'idempotencyKey' must be at most 256 characters",
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k", "sessionKey": "subagent:x"},
                "invalid agent params: session key uses a reserved internal namespace",
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k", "sessionKey": "agent:ghost:x"},
                'invalid agent params: unknown agent id "ghost"',
            ),
            (
                "agent",
                {"message": "hi", "idempotencyKey": "k", "agentId": 7},
                "invalid agent params: property 'agentId' must be a string",
            ),
            ("agent.wait", {}, "invalid agent.wait params: must have required property 'runId'"),
            (
                "agent.wait",
                {"runId": "r", "timeoutMs": 1.5},
                "invalid agent.wait params: property 'timeoutMs' must be an integer",
            ),
            (
                "chat.send",
                {"message": "m", "idempotencyKey": "k"},
                "invalid chat.send params: must have required property 'sessionKey'",
            ),
            (
                "chat.abort",
                {},
                "invalid chat.abort params: must have required property 'sessionKey'",
            ),
            (
                "chat.history",
                {"sessionKey": "main", "limit": 0},
                "invalid chat.history params: property 'limit' must be between 1 and 1000",
            ),
            (
                "sessions.list",
                {"agentId": "ghost"},
                'invalid sessions.list params: unknown agent id "ghost"',
            ),
            (
                "sessions.reset",
                {},
                "invalid sessions.reset params: must have required property 'key'",
            ),
            (
                "sessions.subscribe",
                {"keys": "main"},
                "invalid sessions.subscribe params: property 'keys' must be an array of strings",
            ),
            (
                "sessions.subscribe",
                {"all": "yes"},
                "invalid sessions.subscribe params: property 'all' must be a boolean",
            ),
            (
                "logs.tail",
                {"limit": 0},
                "invalid logs.tail params: property 'limit' must be between 1 and 5000",
            ),
        ]
        for method, params, message in cases:
            self.assertEqual(self.error(method, params), message, (method, params))
        self.assertEqual(self.h.runtime.started, [])

    def test_lone_surrogate_in_a_method_name(self) -> None:
        """Odd but valid JSON text is answered (the lone surrogate as U+FFFD,
        the ingress rule), not fatal to the connection."""
        self.client.send_text('{"type":"req","id":"8:x","method":"\\ud800"}')
        (answer,) = self.client.messages()
        self.assertEqual(answer["error"]["message"], "unknown method: \ufffd")
        self.assertTrue(self.ok("health")["ok"])

    def test_params_that_are_not_an_object(self) -> None:
        """A non-object params is an invalid-params error for that request id."""
        self.client.send({"type": "req", "id": "9:x", "method": "agent", "params": [1]})
        (answer,) = self.client.messages()
        self.assertEqual(answer["id"], "9:x")
        self.assertEqual(
            answer["error"]["message"], "invalid agent params: params must be an object"
        )

    def test_malformed_json_is_an_error_event(self) -> None:
        """Garbage after auth: an error event (with seq); the connection stays open."""
        self.client.send_text("{nope")
        (event,) = self.client.messages()
        self.assertEqual(event["type"], "event")
        self.assertEqual(event["event"], "error")
        self.assertEqual(event["seq"], 1)
        self.assertEqual(event["payload"]["code"], "INVALID_REQUEST")
        self.assertTrue(event["payload"]["message"].startswith("malformed frame"))
        self.assertTrue(self.ok("health")["ok"])

    def test_frame_without_method_is_answered_by_id(self) -> None:
        """A req lacking a method still gets a res for its id."""
        self.client.send({"type": "req", "id": "5:x"})
        (answer,) = self.client.messages()
        self.assertEqual((answer["id"], answer["error"]["code"]), ("5:x", "INVALID_REQUEST"))

    def test_frame_without_id_is_an_error_event(self) -> None:
        """Without a usable id the only answer is an error event."""
        self.client.send({"type": "req", "method": "health"})
        (event,) = self.client.messages()
        self.assertEqual(
            event["payload"]["message"], "invalid frame: id must be a non-empty string"
        )

    def test_binary_frames_are_an_error_event(self) -> None:
        """Binary frames are not part of the protocol; the connection survives."""
        self.client.send_raw(2, b"\x01")
        (event,) = self.client.messages()
        self.assertEqual(event["payload"]["message"], "binary frames are not supported")
        self.assertTrue(self.ok("health")["ok"])

    def test_too_many_requests_in_flight(self) -> None:
        """Past the per-connection cap new requests are refused, not queued."""
        for i in range(MAX_PENDING_REQUESTS):
            self.client.request("agent.wait", {"runId": f"r{i}", "timeoutMs": 60_000})
        self.assertEqual(self.client.messages(), [])
        message = self.error("health", code="UNAVAILABLE")
        self.assertEqual(message, "too many requests in flight on this connection")
        self.h.clock.advance(60)
        answers = [m for m in self.client.messages() if m["type"] == "res"]
        self.assertEqual(len(answers), MAX_PENDING_REQUESTS)
        self.assertEqual(answers[0]["payload"], {"runId": "r0", "status": "timeout"})
        self.assertTrue(self.ok("health")["ok"])


class ReadOnlyScopeTests(MethodTestCase):
    scopes = ("operator.read",)

    def test_write_methods_need_write_scope(self) -> None:
        """A read-only client may read but not start runs (FORBIDDEN + details)."""
        self.assertTrue(self.ok("sessions.list")["sessions"] == [])
        answer = self.call("agent", {"message": "hi", "idempotencyKey": "k"})
        self.assertEqual(
            answer["error"],
            {
                "code": "FORBIDDEN",
                "message": "missing scope: operator.write",
                "details": {
                    "code": "MISSING_SCOPE",
                    "missingScope": "operator.write",
                    "requiredScopes": ["operator.write"],
                },
            },
        )
        self.assertEqual(self.h.runtime.started, [])


class NoScopeTests(MethodTestCase):
    scopes = ()

    def test_health_needs_no_scope(self) -> None:
        """A client without scopes may still ask for health, nothing else."""
        self.assertTrue(self.ok("health")["ok"])
        self.assertEqual(self.error("status", code="FORBIDDEN"), "missing scope: operator.read")


class WriteScopeTests(MethodTestCase):
    scopes = ("operator.write",)

    def test_write_implies_read(self) -> None:
        """`openclaw agent` asks for write only, and first calls agents.list."""
        self.assertEqual(self.ok("agents.list")["defaultId"], "main")
