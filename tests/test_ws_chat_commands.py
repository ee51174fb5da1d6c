"""Chat slash commands over the WebSocket: /new, /reset, /stop and /compact are
the gateway's to act on (as OpenClaw's are), not text for the model."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import CompactionReport
from openclaw.gateway.ws.chat_commands import (
    CompactCommand,
    ResetCommand,
    is_stop,
    parse_chat_command,
    parse_reset,
)
from tests.ws_fakes import START, WsClient, WsHarness

NOW_MS = int(START * 1000)
MAIN = "agent:main:main"


class CommandTestCase(SynchronousTestCase):
    scopes: Any = ("operator.admin",)

    def setUp(self) -> None:
        self.h = WsHarness()
        self.addCleanup(self.h.cleanup)
        self.client, _ = self.h.connect(scopes=self.scopes)
        self.h.sessions.add("main", MAIN, NOW_MS - 1000)

    def send(self, method: str, params: dict[str, Any], client: WsClient | None = None) -> Any:
        """Send; every frame received, once the next reactor turn has run."""
        client = client or self.client
        client.request(method, params)
        self.h.clock.advance(0)
        return client.messages()

    def chat(self, message: str, key: str = "c-1", session: str = "main") -> Any:
        return self.send(
            "chat.send", {"sessionKey": session, "message": message, "idempotencyKey": key}
        )


def chat_finals(frames: list[Any]) -> list[Any]:
    return [
        f["payload"]
        for f in frames
        if f.get("event") == "chat" and f["payload"]["state"] == "final"
    ]


def responses(frames: list[Any]) -> list[Any]:
    return [f for f in frames if f["type"] == "res"]


class ChatSendResetTests(CommandTestCase):
    def test_new_resets_and_acknowledges_without_a_turn(self) -> None:
        """chat.send "/new" resets the session (as sessions.reset), answers started,
        then the acknowledgement comes as the run's chat final; no model run. A
        resend of the key answers ok; agent.wait knows the run."""
        frames = self.chat("/new")
        (ack,) = responses(frames)
        self.assertEqual(ack["payload"], {"runId": "c-1", "status": "started"})
        self.assertLess(
            frames.index(ack), frames.index(next(f for f in frames if f["type"] == "event"))
        )
        (final,) = chat_finals(frames)
        self.assertEqual(
            (final["runId"], final["sessionKey"], final["message"]["content"]),
            ("c-1", MAIN, [{"type": "text", "text": "✅ New session started."}]),
        )
        self.assertEqual(self.h.sessions.resets, [("main", MAIN)])
        self.assertEqual(self.h.runtime.started, [])
        (again,) = responses(self.chat("/new"))
        self.assertEqual(again["payload"], {"runId": "c-1", "status": "ok"})
        self.assertEqual(self.h.sessions.resets, [("main", MAIN)])
        (waited,) = responses(self.send("agent.wait", {"runId": "c-1", "timeoutMs": 0}))
        self.assertEqual(waited["payload"]["status"], "ok")

    def test_reset_text(self) -> None:
        """/reset (any case) says "Session reset"."""
        (final,) = chat_finals(self.chat("/RESET"))
        self.assertEqual(final["message"]["content"][0]["text"], "✅ Session reset.")

    def test_follow_up_runs_in_the_fresh_session(self) -> None:
        """Text after "/new " is the turn, in the reset session; the key stays
        tied to the whole message."""
        (ack,) = responses(self.chat("/new  summarise this\nplease"))
        self.assertEqual(ack["payload"], {"runId": "c-1", "status": "started"})
        self.assertEqual(self.h.sessions.resets, [("main", MAIN)])
        (run,) = self.h.runtime.started
        self.assertEqual((run.session_key, run.request.message), (MAIN, "summarise this\nplease"))
        (again,) = responses(self.chat("/new  summarise this\nplease"))
        self.assertEqual(again["payload"], {"runId": "c-1", "status": "in_flight"})

    def test_busy_session_is_not_reset(self) -> None:
        """With a run in flight the reset is refused (SESSION_BUSY), as sessions.reset."""
        self.chat("hello", key="first")
        (refused,) = responses(self.chat("/new"))
        self.assertEqual(refused["error"]["details"], {"code": "SESSION_BUSY"})
        self.assertEqual(self.h.sessions.resets, [])
        self.assertEqual(len(self.h.runtime.started), 1)

    def test_soft_reset_is_not_supported(self) -> None:
        """/reset soft (OpenClaw keeps the transcript) resets nothing and says so."""
        (final,) = chat_finals(self.chat("/reset soft keep going"))
        self.assertIn("/reset soft is not supported", final["message"]["content"][0]["text"])
        self.assertEqual((self.h.sessions.resets, self.h.runtime.started), ([], []))


class WriteScopeResetTests(CommandTestCase):
    scopes = ("operator.write",)

    def test_chat_send_reset_needs_admin(self) -> None:
        """Without operator.admin, /new resets nothing and runs nothing (not even
        its follow-up); the reply says why (OpenClaw: a permission notice)."""
        frames = self.chat("/new and then this")
        (ack,) = responses(frames)
        self.assertEqual(ack["payload"]["status"], "started")
        (final,) = chat_finals(frames)
        self.assertIn("operator.admin", final["message"]["content"][0]["text"])
        self.assertEqual((self.h.sessions.resets, self.h.runtime.started), ([], []))

    def test_agent_reset_needs_admin(self) -> None:
        """agent "/new" without operator.admin is FORBIDDEN (OpenClaw's method scope)."""
        (answer,) = self.send("agent", {"message": "/new", "idempotencyKey": "a-1"})
        self.assertEqual(
            (answer["ok"], answer["error"]["code"], answer["error"]["details"]),
            (
                False,
                "FORBIDDEN",
                {
                    "code": "MISSING_SCOPE",
                    "missingScope": "operator.admin",
                    "requiredScopes": ["operator.admin"],
                },
            ),
        )
        self.assertEqual((self.h.sessions.resets, self.h.runtime.started), ([], []))


class ChatSendStopTests(CommandTestCase):
    def test_stop_aborts_the_running_turn(self) -> None:
        """chat.send "/stop" while a turn streams aborts it at once, as chat.abort
        does, and answers chat.abort's {ok,aborted,runIds}; no turn of its own."""
        self.chat("write a long story", key="slow")
        run = self.h.runtime.runs["slow"]
        run.start()
        run.say("Once")
        self.client.messages()
        frames = self.chat("/stop", key="stop-1")
        self.assertEqual(run.cancel_calls, 1)
        (answer,) = responses(frames)
        self.assertEqual(answer["payload"], {"ok": True, "aborted": True, "runIds": ["slow"]})
        chat = [f["payload"]["state"] for f in frames if f.get("event") == "chat"]
        self.assertEqual(chat, ["aborted"])
        self.assertEqual(list(self.h.runtime.runs), ["slow"])

    def test_stop_words(self) -> None:
        """OpenClaw's plain stop words count too; nothing to stop: aborted false."""
        for text in ("Stop!", "please stop", "/STOP"):
            (answer,) = responses(self.chat(text, key=f"k-{text}"))
            self.assertEqual(answer["payload"], {"ok": True, "aborted": False, "runIds": []})
        self.assertEqual(self.h.runtime.started, [])


class ChatSendCompactTests(CommandTestCase):
    def test_compact_compacts_and_reports(self) -> None:
        """chat.send "/compact <focus>" compacts as sessions.compact does (with the
        focus) and tells the result as the chat final; no model turn."""
        asked: list[tuple[str, str, str | None]] = []
        pending: Deferred[CompactionReport] = Deferred()

        def compact(
            agent_id: str, session_key: str, *, focus: str | None = None
        ) -> Deferred[CompactionReport]:
            asked.append((agent_id, session_key, focus))
            return pending

        self.h.runtime.compact_session = compact  # type: ignore[method-assign]  # observe the call
        (ack,) = responses(self.chat("/compact: the API decisions"))
        self.assertEqual(ack["payload"], {"runId": "c-1", "status": "started"})
        self.assertEqual(asked, [("main", MAIN, "the API decisions")])
        pending.callback(CompactionReport(True, tokens_before=9000, tokens_after=1200))
        self.h.clock.advance(0)
        (final,) = chat_finals(self.client.messages())
        self.assertEqual(
            final["message"]["content"][0]["text"], "⚙️ Compacted (9000 → 1200 tokens)."
        )
        self.assertEqual(self.h.runtime.started, [])

    def test_nothing_to_compact(self) -> None:
        """A compaction that did nothing says why."""
        self.h.runtime.compact_session = lambda *a, **k: succeed(  # type: ignore[method-assign]  # a canned report
            CompactionReport(False, reason="no history")
        )
        (final,) = chat_finals(self.chat("/compact"))
        self.assertEqual(
            final["message"]["content"][0]["text"], "⚙️ Compaction skipped: no history."
        )


class AgentCommandTests(CommandTestCase):
    def test_bare_reset_answers_once_with_the_acknowledgement(self) -> None:
        """agent "/new" resets and answers one final (no ack), OpenClaw's status notice."""
        frames = self.send("agent", {"message": "/new", "idempotencyKey": "a-1"})
        (final,) = responses(frames)
        self.assertEqual(
            final["payload"],
            {
                "runId": "a-1",
                "status": "ok",
                "summary": "completed",
                "result": {
                    "payloads": [{"text": "✅ New session started.", "isStatusNotice": True}],
                    "meta": {"durationMs": 0, "agentMeta": {"sessionId": "fresh"}},
                },
            },
        )
        self.assertEqual(self.h.sessions.resets, [("main", MAIN)])
        self.assertEqual(self.h.runtime.started, [])

    def test_reset_with_follow_up(self) -> None:
        """agent "/reset hello" resets, then runs "hello" as the turn (ack, then final)."""
        frames = self.send("agent", {"message": "/reset hello", "idempotencyKey": "a-2"})
        (ack,) = responses(frames)
        self.assertEqual(ack["payload"]["status"], "accepted")
        self.assertEqual(self.h.sessions.resets, [("main", MAIN)])
        run = self.h.runtime.runs["a-2"]
        self.assertEqual(run.request.message, "hello")
        run.finish("hi")
        (final,) = responses(self.client.messages())
        self.assertEqual(final["payload"]["status"], "ok")

    def test_other_commands_are_text_for_the_agent_method(self) -> None:
        """The agent method acts on /new and /reset only: /stop and /compact are
        the model's text there (as in OpenClaw)."""
        for key, text in (("s", "/stop"), ("k", "/compact")):
            self.send("agent", {"message": text, "idempotencyKey": key, "sessionKey": key})
        self.assertEqual([r.request.message for r in self.h.runtime.started], ["/stop", "/compact"])


class ParseTests(SynchronousTestCase):
    def test_parsing(self) -> None:
        """Only whole-message commands count; "/newer" or "/compactly" are text."""
        self.assertEqual(parse_reset(" /New "), ResetCommand("new", "", soft=False))
        self.assertEqual(parse_reset("/reset soft x"), ResetCommand("reset", "soft x", soft=True))
        self.assertIsNone(parse_reset("/newer"))
        self.assertIsNone(parse_reset("please /new"))
        self.assertEqual(parse_chat_command("/compact"), CompactCommand(None))
        self.assertEqual(parse_chat_command("/compact  focus"), CompactCommand("focus"))
        self.assertIsNone(parse_chat_command("/compactly"))
        stops = ("/stop", "stop.", "Please  STOP", "stop don\u2019t do anything")
        self.assertTrue(all(is_stop(t) for t in stops))
        self.assertFalse(any(is_stop(t) for t in ("/stopped", "stop the music", "", "don't stop")))
