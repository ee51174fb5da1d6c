"""Request checks of ``POST /v1/chat/completions``, in OpenClaw's order and words.

Each test goes through the real endpoint (StubTreq + a Klein app) and checks
both the answer and whether the agent was started.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openclaw.agents.types import StreamParams
from openclaw.config.model import ImagesConfig, RateLimitConfig
from openclaw.gateway.http.chat_request import (
    PreparedChat,
    prepare_chat,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
)
from tests.chat_fakes import PNG_1X1, ChatHarness, ChatTestCase, chat_body, token_auth

FRESH_KEY = re.compile(
    r"^agent:main:openai:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


class MethodAndAuthTests(ChatTestCase):
    """Steps 1 and 2: the method, then the caller."""

    def test_get_is_405_before_auth(self) -> None:
        """An unauthenticated GET gets 405 with ``Allow: POST``, not 401."""
        h = ChatHarness(auth=token_auth())
        reply = self.call(h, method="GET")
        self.assertEqual(reply.status, 405)
        self.assertEqual(reply.headers["allow"], "POST")
        self.assertEqual(reply.error["type"], "invalid_request_error")
        self.assertEqual(h.runtime.requests, [])

    def test_options_is_405(self) -> None:
        """OPTIONS is not special-cased (no CORS here): 405 too."""
        reply = self.call(ChatHarness(auth=token_auth()), method="OPTIONS")
        self.assertEqual(reply.status, 405)
        self.assertEqual(reply.headers["allow"], "POST")

    def test_missing_token_is_401(self) -> None:
        """Token mode without a bearer: 401 with OpenClaw's body, all four keys."""
        h = ChatHarness(auth=token_auth())
        reply = self.call(h, chat_body())
        self.assertEqual(reply.status, 401)
        self.assertEqual(
            reply.json(),
            {
                "error": {
                    "message": "Unauthorized",
                    "type": "unauthorized",
                    "param": None,
                    "code": None,
                }
            },
        )
        self.assertEqual(h.runtime.requests, [])

    def test_wrong_token_is_401(self) -> None:
        """A wrong bearer gets the same 401 as a missing one."""
        h = ChatHarness(auth=token_auth())
        reply = self.call(h, chat_body(), headers={"authorization": "Bearer nope"})
        self.assertError(reply, 401, "Unauthorized", "unauthorized")

    def test_right_token_runs(self) -> None:
        """The gateway token as a bearer (any scheme case) is accepted."""
        h = ChatHarness(auth=token_auth())
        h.runtime.on_start = lambda run: run.finish("ok")
        reply = self.call(h, chat_body(), headers={"authorization": "bearer secret"})
        self.assertEqual(reply.status, 200)

    def test_rate_limited_after_failures(self) -> None:
        """After ``maxAttempts`` failures: 429 with numeric ``Retry-After``, even for the
        right token."""
        limiter = RateLimitConfig(max_attempts=2, exempt_loopback=False)
        h = ChatHarness(auth=token_auth(rate_limit=limiter))
        wrong = {"authorization": "Bearer wrong"}
        first = self.call(h, chat_body(), headers=wrong)
        self.assertEqual(first.status, 401)
        statuses = [self.call(h, chat_body(), headers=wrong).status for _ in range(2)]
        self.assertIn(429, statuses)
        second = self.call(h, chat_body(), headers={"authorization": "Bearer secret"})
        self.assertError(
            second,
            429,
            "Too many failed authentication attempts. Please try again later.",
            "rate_limited",
        )
        self.assertEqual(second.headers["retry-after"], "300")
        self.assertEqual(h.runtime.requests, [])


class BodyTests(ChatTestCase):
    """Step 4 and the schema step."""

    def test_invalid_json(self) -> None:
        """Malformed JSON: 400 with the parser's message, agent not called."""
        h = ChatHarness()
        reply = self.call(h, b'{"messages": [')
        self.assertEqual(reply.status, 400)
        self.assertIn("Expecting", reply.error["message"])
        self.assertEqual(reply.error["type"], "invalid_request_error")
        self.assertEqual(h.runtime.requests, [])

    def test_nan_literal_is_invalid_json(self) -> None:
        """``NaN`` is not JSON (Python would accept it; JSON.parse does not)."""
        reply = self.call(ChatHarness(), b'{"temperature": NaN, "messages": []}')
        self.assertEqual(reply.status, 400)
        self.assertIn("NaN", reply.error["message"])

    def test_deep_nesting_is_400(self) -> None:
        """A nesting bomb is refused with 400, not a 500."""
        reply = self.call(ChatHarness(), b"[" * 100_000 + b"]" * 100_000)
        self.assertEqual(reply.status, 400)

    def test_invalid_utf8_is_400(self) -> None:
        """Bytes that are not UTF-8 JSON: 400 saying so in plain words (where the
        first bad byte is), not Python's codec message."""
        reply = self.call(ChatHarness(), b'{"model": "\xff\xfe"}')
        self.assertEqual(reply.status, 400)
        self.assertEqual(
            reply.error["message"], "The request body is not valid UTF-8 (byte 0xff at offset 11)."
        )

    def test_empty_body_is_missing_user_message(self) -> None:
        """An empty body is ``{}``, so the answer is the missing-message 400."""
        reply = self.call(ChatHarness(), b"")
        error = self.assertError(reply, 400, "Missing user message in `messages`.")
        self.assertEqual(error["param"], "messages")

    def test_non_object_body(self) -> None:
        """A JSON array body is refused."""
        reply = self.call(ChatHarness(), b"[1, 2]")
        self.assertError(reply, 400, "Expected object, received array")

    def test_field_types(self) -> None:
        """Each typed field names itself, the expected and the received type."""
        cases: list[tuple[str, Any, str]] = [
            ("stream", "yes", "stream: Expected boolean, received string"),
            ("model", 5, "model: Expected string, received number"),
            ("messages", {}, "messages: Expected array, received object"),
            ("user", 5, "user: Expected string, received number"),
            ("temperature", "hot", "temperature: Expected number, received string"),
            ("top_p", True, "top_p: Expected number, received boolean"),
            ("seed", [], "seed: Expected number, received array"),
            ("stream_options", "x", "stream_options: Expected object, received string"),
        ]
        for field, value, message in cases:
            h = ChatHarness()
            reply = self.call(h, chat_body(**{field: value}))
            error = self.assertError(reply, 400, message)
            self.assertEqual(error["param"], field)
            self.assertEqual(h.runtime.requests, [])

    def test_include_usage_type(self) -> None:
        """``stream_options.include_usage`` must be a boolean."""
        reply = self.call(ChatHarness(), chat_body(stream_options={"include_usage": "yes"}))
        self.assertError(
            reply, 400, "stream_options.include_usage: Expected boolean, received string"
        )

    def test_n_other_than_one(self) -> None:
        """``n: 2`` is refused with ``param: "n"`` rather than silently giving one choice."""
        h = ChatHarness()
        reply = self.call(h, chat_body(n=2))
        self.assertEqual(reply.status, 400)
        self.assertEqual(reply.error["param"], "n")
        self.assertEqual(h.runtime.requests, [])

    def test_n_one_and_null_accepted(self) -> None:
        """``n: 1`` and ``n: null`` are fine."""
        for n in (1, None):
            h = ChatHarness()
            h.runtime.on_start = lambda run: run.finish("ok")
            self.assertEqual(self.call(h, chat_body(n=n)).status, 200)

    def test_sdk_null_fields_accepted(self) -> None:
        """The nulls an OpenAI SDK may send are all accepted and mean "absent"."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        nulls = {
            name: None
            for name in (
                "stream",
                "stream_options",
                "user",
                "n",
                "max_tokens",
                "max_completion_tokens",
                "temperature",
                "top_p",
                "frequency_penalty",
                "presence_penalty",
                "seed",
                "stop",
                "response_format",
                "tools",
                "tool_choice",
            )
        }
        body = chat_body()
        body.update(nulls)
        reply = self.call(h, body)
        self.assertEqual(reply.status, 200)
        self.assertIsNone(h.runtime.requests[0].stream_params)
        self.assertEqual(h.runtime.requests[0].client_tools, ())

    def test_unknown_fields_ignored(self) -> None:
        """Platform-only and unknown fields (``extra_body``) are ignored."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        body = chat_body(
            store=True,
            metadata={"a": "b"},
            service_tier="auto",
            reasoning_effort="low",
            logit_bias={"1": 2},
            parallel_tool_calls=False,
            top_k=5,
        )
        body["messages"][0]["unknown"] = 1
        self.assertEqual(self.call(h, body).status, 200)


class TokenCapTests(ChatTestCase):
    """``max_completion_tokens`` / ``max_tokens`` (step 7)."""

    def sent_params(self, **fields: Any) -> StreamParams | None:
        """The StreamParams the runtime received for a body with ``fields``."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        reply = self.call(h, chat_body(**fields))
        self.assertEqual(reply.status, 200, reply.body)
        return h.runtime.requests[0].stream_params

    def test_forwarding_and_precedence(self) -> None:
        """Either cap is forwarded; the current name wins; nulls and omission mean none."""
        self.assertEqual(self.sent_params(max_completion_tokens=64), StreamParams(max_tokens=64))
        self.assertEqual(self.sent_params(max_tokens=32), StreamParams(max_tokens=32))
        self.assertEqual(
            self.sent_params(max_completion_tokens=64, max_tokens=32), StreamParams(max_tokens=64)
        )
        self.assertEqual(
            self.sent_params(max_completion_tokens=None, max_tokens=32),
            StreamParams(max_tokens=32),
        )
        self.assertEqual(self.sent_params(max_tokens=2**53 - 1), StreamParams(max_tokens=2**53 - 1))
        self.assertIsNone(self.sent_params())

    def test_malformed_caps(self) -> None:
        """Strings, objects, arrays, 0, negatives, fractions, unsafe and huge numbers: 400."""
        bad: list[Any] = ["10", {}, [], 0, -1, 1.5, 2**53, True]
        for field in ("max_tokens", "max_completion_tokens"):
            for value in bad:
                h = ChatHarness()
                reply = self.call(h, chat_body(**{field: value}))
                error = self.assertError(reply, 400, f"{field} must be a positive safe integer")
                self.assertEqual(error["param"], field)
                self.assertEqual(h.runtime.requests, [])

    def test_raw_overflowing_number(self) -> None:
        """``1e309`` (infinite once parsed) is not a safe integer."""
        body = b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":1e309}'
        reply = self.call(ChatHarness(), body)
        self.assertError(reply, 400, "max_tokens must be a positive safe integer")

    def test_shadowed_malformed_cap(self) -> None:
        """A malformed legacy cap is refused even when the current one would win."""
        reply = self.call(ChatHarness(), chat_body(max_completion_tokens=10, max_tokens="x"))
        self.assertError(reply, 400, "max_tokens must be a positive safe integer")


class SamplingTests(ChatTestCase):
    """Steps 8 to 10: response_format, stop and sampling ranges."""

    def sent_params(self, **fields: Any) -> StreamParams | None:
        """The StreamParams the runtime received for a body with ``fields``."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        reply = self.call(h, chat_body(**fields))
        self.assertEqual(reply.status, 200, reply.body)
        return h.runtime.requests[0].stream_params

    def refused(self, message: str, param: str, **fields: Any) -> None:
        """The body with ``fields`` is refused with ``message`` naming ``param``."""
        h = ChatHarness()
        error = self.assertError(self.call(h, chat_body(**fields)), 400, message)
        self.assertEqual(error["param"], param)
        self.assertEqual(h.runtime.requests, [])

    def test_temperature_and_top_p(self) -> None:
        """Valid values are forwarded (0 is kept); out-of-range ones are refused."""
        self.assertEqual(
            self.sent_params(temperature=0.3, top_p=0.95),
            StreamParams(temperature=0.3, top_p=0.95),
        )
        self.assertEqual(self.sent_params(temperature=0), StreamParams(temperature=0.0))
        self.refused("`temperature` must be between 0 and 2.", "temperature", temperature=999)
        self.refused("`temperature` must be between 0 and 2.", "temperature", temperature=-0.1)
        self.refused("`top_p` must be between 0 and 1.", "top_p", top_p=5)

    def test_penalties_and_seed(self) -> None:
        """Penalties within ±2 and integer seeds are forwarded; others refused."""
        self.assertEqual(
            self.sent_params(frequency_penalty=0.5, presence_penalty=-1.5, seed=42),
            StreamParams(frequency_penalty=0.5, presence_penalty=-1.5, seed=42),
        )
        self.refused(
            "`frequency_penalty` must be between -2.0 and 2.0.",
            "frequency_penalty",
            frequency_penalty=3,
        )
        self.refused(
            "`presence_penalty` must be between -2.0 and 2.0.",
            "presence_penalty",
            presence_penalty=-3,
        )
        self.refused("`seed` must be an integer.", "seed", seed=1.5)

    def test_stop(self) -> None:
        """A string becomes a one-element list; bad shapes are refused."""
        self.assertEqual(self.sent_params(stop="END"), StreamParams(stop=("END",)))
        self.assertEqual(self.sent_params(stop=["a", "b"]), StreamParams(stop=("a", "b")))
        self.refused("Invalid stop: stop supports at most 4 sequences", "stop", stop=list("abcde"))
        self.refused("Invalid stop: stop entries must be non-empty strings", "stop", stop=[""])
        self.refused("Invalid stop: stop entries must be non-empty strings", "stop", stop=[123])
        self.refused("Invalid stop: stop must be a string or array of strings", "stop", stop={})

    def test_response_format(self) -> None:
        """The three OpenAI types are forwarded whole; anything else is refused."""
        schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
        self.assertEqual(
            self.sent_params(response_format={"type": "json_object"}),
            StreamParams(response_format={"type": "json_object"}),
        )
        params = self.sent_params(response_format=schema)
        assert params is not None
        self.assertEqual(params.response_format, schema)
        self.refused(
            "Invalid response_format: response_format.type must be text, json_object, "
            "or json_schema",
            "response_format",
            response_format={"type": "xml"},
        )
        self.refused(
            "Invalid response_format: response_format must be an object",
            "response_format",
            response_format="json",
        )


class AgentResolutionTests(ChatTestCase):
    """Step 11: which agent a request targets."""

    def started(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        """Run a request and return what the runtime received."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        reply = self.call(h, body, headers=headers)
        self.assertEqual(reply.status, 200, reply.body)
        request = h.runtime.requests[0]
        self.assertTrue(request.session_key.startswith(f"agent:{request.agent_id}:"))
        return request.agent_id

    def test_default_agent_without_model(self) -> None:
        """No model and no header: the default agent, channel ``webchat``."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        body = chat_body()
        del body["model"]
        self.assertEqual(self.call(h, body).status, 200)
        self.assertEqual(h.runtime.requests[0].agent_id, "main")
        self.assertEqual(h.runtime.requests[0].channel, "webchat")
        self.assertEqual(h.runtime.requests[0].message, "hi")

    def test_model_forms(self) -> None:
        """Every documented model form selects its agent (case-insensitively)."""
        cases = {
            "openclaw": "main",
            "OpenClaw": "main",
            "openclaw/default": "main",
            "openclaw/beta": "beta",
            "openclaw:beta": "beta",
            "agent:beta": "beta",
            "OPENCLAW/BETA": "beta",
            "openclaw/main": "main",
        }
        for model, agent in cases.items():
            self.assertEqual(self.started(chat_body(model=model)), agent, model)

    def test_header_beats_model(self) -> None:
        """``x-openclaw-agent-id`` (and its alias ``x-openclaw-agent``) wins over model."""
        for header in ("x-openclaw-agent-id", "x-openclaw-agent"):
            agent = self.started(chat_body(model="openclaw/main"), {header: " beta "})
            self.assertEqual(agent, "beta")

    def test_other_models_refused(self) -> None:
        """Backend model names are not agents: 400 with OpenClaw's message."""
        for model in ("openai/", "gpt-4o", "openclaw/", "openclaw/bad agent"):
            h = ChatHarness()
            reply = self.call(h, chat_body(model=model))
            error = self.assertError(
                reply, 400, "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`."
            )
            self.assertEqual(error["param"], "model")
            self.assertEqual(h.runtime.requests, [])

    def test_unknown_agent_from_header(self) -> None:
        """An unconfigured (or malformed) header agent: 400 naming it as sent."""
        for raw in ("missing-agent", "bad agent!"):
            h = ChatHarness()
            reply = self.call(h, chat_body(), headers={"x-openclaw-agent-id": raw})
            self.assertError(reply, 400, f"Unknown agent '{raw}'.")
            self.assertEqual(h.runtime.requests, [])

    def test_unknown_agent_from_model(self) -> None:
        """``openclaw/missing-agent``: 400, agent not called."""
        h = ChatHarness()
        reply = self.call(h, chat_body(model="openclaw/missing-agent"))
        self.assertError(reply, 400, "Unknown agent 'missing-agent'.")
        self.assertEqual(h.runtime.requests, [])

    def test_unknown_agent_echo_is_cut(self) -> None:
        """A long unknown agent id is echoed cut to 64 characters and an ellipsis."""
        raw = "x" * 63 + "yz" + "q" * 4000
        h = ChatHarness()
        reply = self.call(h, chat_body(), headers={"x-openclaw-agent-id": raw})
        error = self.assertError(reply, 400, "Unknown agent '" + "x" * 63 + "y\u2026'.")
        self.assertEqual(error["code"], "agent_not_found")
        self.assertNotIn("q" * 10, reply.body.decode("utf-8"))
        self.assertEqual(h.runtime.requests, [])

    def test_unknown_agent_of_64_characters_is_echoed_whole(self) -> None:
        """An id of exactly 64 characters is not cut."""
        raw = "a" * 64
        reply = self.call(ChatHarness(), chat_body(), headers={"x-openclaw-agent-id": raw})
        self.assertError(reply, 400, f"Unknown agent '{raw}'.")

    def test_runtime_unknown_agent(self) -> None:
        """If the runtime no longer knows the agent at start: the same 400."""
        from openclaw.agents.types import UnknownAgentError

        h = ChatHarness()
        h.runtime.start_error = UnknownAgentError("beta")
        reply = self.call(h, chat_body(model="openclaw/beta"))
        self.assertError(reply, 400, "Unknown agent 'beta'.")
        self.assertNotIn("x-should-retry", reply.headers)

    def test_message_channel_header(self) -> None:
        """``x-openclaw-message-channel`` sets the run's channel (normalised)."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        headers = {"x-openclaw-message-channel": " Custom-Client-Channel "}
        self.call(h, chat_body(), headers=headers)
        self.assertEqual(h.runtime.requests[0].channel, "custom-client-channel")


class SessionKeyTests(ChatTestCase):
    """Step 11: which session a request continues."""

    def session_of(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[str, str]:
        """The (agent, session key) the runtime received."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        reply = self.call(h, body, headers=headers)
        self.assertEqual(reply.status, 200, reply.body)
        request = h.runtime.requests[0]
        return request.agent_id, request.session_key

    def test_fresh_key_per_request(self) -> None:
        """Without header or user, every request gets a new ``openai:<uuid>`` session."""
        _, first = self.session_of(chat_body())
        _, second = self.session_of(chat_body())
        self.assertRegex(first, FRESH_KEY)
        self.assertRegex(second, FRESH_KEY)
        self.assertNotEqual(first, second)

    def test_user_key(self) -> None:
        """``user`` gives a stable, lower-cased ``openai-user:`` key under the agent."""
        self.assertEqual(
            self.session_of(chat_body(user="Alice")), ("main", "agent:main:openai-user:alice")
        )
        self.assertEqual(
            self.session_of(chat_body(user="alice", model="openclaw/beta")),
            ("beta", "agent:beta:openai-user:alice"),
        )

    def test_user_of_512_characters_accepted(self) -> None:
        """``user`` may be as long as a session key (512 characters)."""
        user = "u" * 512
        self.assertEqual(
            self.session_of(chat_body(user=f"  {user}  ")),
            ("main", f"agent:main:openai-user:{user}"),
        )

    def test_oversized_user_refused(self) -> None:
        """A ``user`` over 512 characters: 400 with ``param: "user"``, no run."""
        h = ChatHarness()
        reply = self.call(h, chat_body(user="u" * 513))
        error = self.assertError(reply, 400, "Invalid `user`: longer than 512 characters.")
        self.assertEqual((error["param"], error["code"]), ("user", "invalid_user"))
        self.assertEqual(h.runtime.requests, [])

    def test_user_with_control_characters_refused(self) -> None:
        """Control characters inside ``user`` (as in a session key): 400, no run."""
        for user in ("a\nb", "a\x00b", "a\tb", "a\x7fb", "a\x1bb"):
            h = ChatHarness()
            reply = self.call(h, chat_body(user=user))
            error = self.assertError(reply, 400, "Invalid `user`: contains control characters.")
            self.assertEqual((error["param"], error["code"]), ("user", "invalid_user"), user)
            self.assertEqual(h.runtime.requests, [])

    def test_user_checked_even_when_a_session_header_wins(self) -> None:
        """A bad ``user`` is refused even when the session header would be used."""
        h = ChatHarness()
        reply = self.call(h, chat_body(user="x" * 600), headers={"x-openclaw-session-key": "k"})
        self.assertEqual(reply.status, 400)
        self.assertEqual(reply.error["param"], "user")

    def test_agent_key_used_verbatim(self) -> None:
        """An ``agent:beta:...`` key with agent beta is kept as is."""
        self.assertEqual(
            self.session_of(
                chat_body(),
                {
                    "x-openclaw-agent-id": "beta",
                    "x-openclaw-session-key": "agent:beta:openai:custom",
                },
            ),
            ("beta", "agent:beta:openai:custom"),
        )

    def test_plain_key_keeps_chosen_agent(self) -> None:
        """A key without ``agent:`` is placed under the chosen agent (OpenClaw #74679)."""
        self.assertEqual(
            self.session_of(
                chat_body(model="openclaw/beta"), {"x-openclaw-session-key": "My-Chat"}
            ),
            ("beta", "agent:beta:my-chat"),
        )

    def test_header_key_beats_user(self) -> None:
        """The header key wins over ``user``."""
        self.assertEqual(
            self.session_of(chat_body(user="bob"), {"x-openclaw-session-key": "chat-1"}),
            ("main", "agent:main:chat-1"),
        )

    def test_key_of_another_agent(self) -> None:
        """A key that names another configured agent runs that agent."""
        self.assertEqual(
            self.session_of(chat_body(), {"x-openclaw-session-key": "agent:beta:x"}),
            ("beta", "agent:beta:x"),
        )

    def test_key_of_unknown_agent(self) -> None:
        """A key that names an unconfigured agent: 400."""
        h = ChatHarness()
        reply = self.call(h, chat_body(), headers={"x-openclaw-session-key": "agent:ghost:x"})
        self.assertError(reply, 400, "Unknown agent 'ghost'.")
        self.assertEqual(h.runtime.requests, [])

    def test_reserved_namespaces(self) -> None:
        """Internal namespaces are refused with OpenClaw's message."""
        for key in (
            "agent:main:harness:codex:supervision:1",
            "agent:main:subagent:spoofed",
            "subagent:x",
            "CRON:daily",
            "acp:thing",
        ):
            h = ChatHarness()
            reply = self.call(h, chat_body(), headers={"x-openclaw-session-key": key})
            self.assertError(
                reply,
                400,
                "`x-openclaw-session-key` cannot use reserved internal session namespaces.",
            )
            self.assertEqual(h.runtime.requests, [])

    def test_oversized_key(self) -> None:
        """A 10 KB key is refused cheaply."""
        h = ChatHarness()
        reply = self.call(h, chat_body(), headers={"x-openclaw-session-key": "k" * 10_000})
        self.assertEqual(reply.status, 400)
        self.assertIn("x-openclaw-session-key", reply.error["message"])


class ToolValidationTests(ChatTestCase):
    """Step 14: ``tools`` and ``tool_choice``."""

    WEATHER = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object"},
            "strict": True,
        },
    }
    TIME = {"type": "function", "function": {"name": "get_time"}}

    def refused(self, reason: str, **fields: Any) -> None:
        """The body with ``fields`` is refused with ``message`` naming ``param``."""
        h = ChatHarness()
        reply = self.call(h, chat_body(**fields))
        self.assertError(reply, 400, f"Invalid tools/tool_choice: {reason}")
        self.assertEqual(h.runtime.requests, [])

    def test_tool_shapes_refused(self) -> None:
        """Every malformed tool or choice has its own reason."""
        self.refused("tools must be an array", tools={})
        self.refused("each tool must be an object", tools=["x"])
        self.refused("only function tools are supported", tools=[{"type": "custom"}])
        self.refused(
            "tool.function is required", tools=[{"type": "function", "name": "get_weather"}]
        )
        self.refused("tool.function.name is required", tools=[{"type": "function", "function": {}}])
        self.refused("tool_choice must be a string or object", tools=[self.WEATHER], tool_choice=3)
        self.refused("unsupported tool_choice type", tools=[self.WEATHER], tool_choice="any")
        self.refused(
            "tool_choice.function.name is required",
            tools=[self.WEATHER],
            tool_choice={"type": "function", "function": {}},
        )
        self.refused(
            "tool_choice allowed_tools is not supported",
            tools=[self.WEATHER],
            tool_choice={"type": "allowed_tools"},
        )
        self.refused(
            "tool_choice requested unknown tool: nope",
            tools=[self.WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
        self.refused("tool_choice=required but no tools were provided", tool_choice="required")

    def started(self, **fields: Any) -> Any:
        """Run a request and return what the runtime received."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok", tool_calls=())
        self.call(h, chat_body(**fields))
        return h.runtime.requests[0]

    def test_none_drops_tools(self) -> None:
        """``tool_choice: none`` sends no client tools."""
        self.assertEqual(self.started(tools=[self.WEATHER], tool_choice="none").client_tools, ())

    def test_auto_keeps_tools(self) -> None:
        """``auto`` keeps every tool with its description, schema and ``strict``."""
        request = self.started(tools=[self.WEATHER, self.TIME], tool_choice="auto")
        self.assertEqual([t.name for t in request.client_tools], ["get_weather", "get_time"])
        first = request.client_tools[0]
        self.assertEqual(first.description, "Weather")
        self.assertEqual(first.parameters, {"type": "object"})
        self.assertIs(first.strict, True)
        self.assertIsNone(request.extra_system_prompt)

    def test_pinned_tool(self) -> None:
        """A pinned function keeps only that tool and says so in the system prompt."""
        body = chat_body(
            tools=[self.WEATHER, self.TIME],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        body["messages"].insert(0, {"role": "system", "content": "Be brief."})
        h = ChatHarness()
        self.call_pending(h, body)
        request = h.runtime.requests[0]
        self.assertEqual([t.name for t in request.client_tools], ["get_weather"])
        self.assertEqual(
            request.extra_system_prompt,
            "Be brief.\n\nYou must call the get_weather tool before responding.",
        )

    def test_required(self) -> None:
        """``required`` keeps all tools and adds the instruction, naming the
        client's tools (the agent's built-in tools do not meet it)."""
        request = self.started(tools=[self.WEATHER], tool_choice="required")
        self.assertEqual(
            request.extra_system_prompt,
            "You must call one of these client tools before responding: get_weather. "
            "Other tools do not count.",
        )


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode("ascii")
PART = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "input_text"]), "text": st.text()}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.sampled_from(
                [PNG_URI, {"url": PNG_URI}, "https://x.test/a.png", None, {}, "data:,"]
            ),
        }
    ),
    JSON_VALUES,
)
CONTENT = st.text(max_size=30) | st.lists(PART, max_size=3) | JSON_VALUES
MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(
            ["user", "user", "assistant", "system", "developer", "tool", "function", "x"]
        ),
        "content": CONTENT,
    },
    optional={
        "tool_call_id": JSON_VALUES,
        "name": JSON_VALUES,
        "tool_calls": JSON_VALUES
        | st.just([{"id": "c1", "function": {"name": "f", "arguments": {"a": [1]}}}]),
    },
)
TOOL = {"type": "function", "function": {"name": "get_weather"}}
SENSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["openclaw", "openclaw/beta", "agent:main", "gpt-4o", "openclaw/x"]),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "user": st.text(max_size=12),
    "n": st.sampled_from([1, 2]),
    "max_tokens": st.integers(-1, 2**54),
    "max_completion_tokens": st.integers(-1, 100),
    "temperature": st.floats(-1, 3, allow_nan=False),
    "top_p": st.floats(0, 1.5, allow_nan=False),
    "frequency_penalty": st.floats(-3, 3, allow_nan=False),
    "presence_penalty": st.floats(-3, 3, allow_nan=False),
    "seed": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "stop": st.sampled_from(["x", ["a", "b"], [""], list("abcde")]),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "xml"}, "json"]),
    "tools": st.sampled_from([[TOOL], [], [{"type": "function", "name": "flat"}]]),
    "tool_choice": st.sampled_from(
        ["auto", "none", "required", {"type": "function", "function": {"name": "get_weather"}}]
    ),
}
FIELD_VALUES = {name: strategy | JSON_VALUES for name, strategy in SENSIBLE.items()}
BODIES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"messages": st.lists(MESSAGE | JSON_VALUES, max_size=4) | JSON_VALUES},
        optional=FIELD_VALUES,
    ),
    st.fixed_dictionaries(
        {"messages": st.lists(MESSAGE, min_size=1, max_size=4)},
        optional={name: SENSIBLE[name] for name in ("model", "stream", "user", "tools")},
    ),
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-openclaw-agent-id",
            "x-openclaw-agent",
            "x-openclaw-session-key",
            "x-openclaw-message-channel",
        ]
    ),
    st.text(max_size=30) | st.sampled_from(["beta", "agent:beta:x", "subagent:x", "MAIN"]),
    max_size=3,
)


class ValidatorPropertyTests(ChatTestCase):
    """Any body either validates or is refused with the documented error shape."""

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=BODIES, headers=HEADERS)
    def test_any_json_body(self, body: object, headers: dict[str, str]) -> None:
        """``prepare_chat`` returns a PreparedChat or raises a 400 ChatRequestError."""
        import json

        raw = json.dumps(body).encode("utf-8")
        try:
            prepared = prepare_chat(
                raw,
                headers,
                agent_ids=["main", "beta"],
                default_agent_id="main",
                images=ImagesConfig(),
            )
        except ChatRequestError as error:
            self.assertEqual(error.status, 400)
            payload = error.body()["error"]
            self.assertEqual(set(payload), {"message", "type", "param", "code"})
            self.assertIsInstance(payload["message"], str)
            self.assertTrue(payload["message"])
            self.assertEqual(payload["type"], "invalid_request_error")
        else:
            self.assertIsInstance(prepared, PreparedChat)
            self.assertIn(prepared.agent_id, ("main", "beta"))
            self.assertTrue(prepared.session_key.startswith(f"agent:{prepared.agent_id}:"))
            self.assertTrue(prepared.message)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=BODIES, headers=HEADERS)
    def test_any_json_body_over_http(self, body: object, headers: dict[str, str]) -> None:
        """Through the endpoint: 200 (stream or not) or a 400 in OpenAI's shape, never 500."""
        import json

        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        safe_headers = {k: v for k, v in headers.items() if v.isprintable() and v.isascii()}
        response = self.successResultOf(
            h.request("POST", body=json.dumps(body).encode(), headers=safe_headers)
        )
        self.assertIn(response.code, (200, 400))
        if response.code == 400:
            import treq

            content = treq.content(response)
            h.stub.flush()
            error = json.loads(self.successResultOf(content))["error"]
            self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertEqual(self.flushLoggedErrors(), [])
