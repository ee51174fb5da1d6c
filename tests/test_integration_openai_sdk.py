"""The official ``openai`` SDK against the real ``twistd openclaw`` process.

One gateway process serves every test of the class; its agents use the
``openai-completions`` provider pointed at a :class:`FakeOpenAIUpstream` that
runs on this process's reactor, so each test scripts what the "model" says and
sees exactly what the gateway sent upstream. SDK calls block, so they run in
threads while the reactor serves the fake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import openai
from openai import OpenAI
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from openclaw.testing import FakeReply, FakeToolCall, FakeUsage
from tests import integration_support as support
from tests.gateway_process import TOKEN
from tests.integration_support import CLIENT_TIMEOUT, UPSTREAM_KEY

_T = TypeVar("_T")

#: OpenClaw's FAILED_ASSISTANT_REPLAY_TEXT, word for word.
OPENCLAW_FAILED_TURN_MARKER = (
    "[This turn failed before it completed. "
    "Do not redo its work without confirming with the user first.]"
)


def user(text: str) -> list[ChatCompletionMessageParam]:
    """A conversation of one user message."""
    return [{"role": "user", "content": text}]


HI = user("hi")

WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "notes": {"type": "string"}},
            "required": ["city", "notes"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}

#: Every disconnect -> upstream-closed delay measured by this module (seconds).
DISCONNECT_DELAYS: list[tuple[str, float]] = []


class OpenAISDKTests(support.GatewayTestCase):
    """Create, stream, the ``.stream()`` helper, tools, models, errors and
    disconnects, all through ``openai.OpenAI`` and the real gateway."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """Two agents on the fake upstream."""
        return {
            "models": {"providers": {"fake": support.openai_provider(port)}},
            "agents": {
                # Upstream errors reach the SDK at once (retries: test_integration_model_retry).
                "defaults": {"modelRetry": {"maxRetries": 0}},
                "list": [
                    {"id": "main", "default": True, "model": "fake/gpt-fake"},
                    {"id": "beta", "model": "fake/gpt-fake"},
                ],
            },
        }

    def setUp(self) -> None:
        super().setUp()
        self.client = self.sdk()

    def sdk(self, **kwargs: Any) -> OpenAI:
        """An SDK client on the gateway (no retries unless asked), closed at cleanup."""
        options: dict[str, Any] = {
            "base_url": f"{self.gateway.base_url}/v1",
            "api_key": TOKEN,
            "max_retries": 0,
            "timeout": CLIENT_TIMEOUT,
            **kwargs,
        }
        client = OpenAI(**options)
        self.addCleanup(client.close)
        return client

    async def call(self, function: Callable[[], _T]) -> _T:
        """Run a blocking SDK call in a thread; the reactor keeps serving the fake."""
        return await deferToThread(function)

    async def raises(self, kind: type[openai.APIError], function: Callable[[], object]) -> Any:
        """Run ``function`` in a thread and return the SDK exception it raised."""

        def run() -> openai.APIError:
            try:
                function()
            except kind as error:
                return error
            raise AssertionError(f"{kind.__name__} was not raised")

        return await self.call(run)

    # -- success paths -----------------------------------------------------------

    async def test_create_returns_upstream_text_and_maps_usage(self) -> None:
        """A non-streaming create returns exactly what the upstream streamed,
        with the upstream's usage mapped (cached prompt tokens included)."""
        self.fake.reply = FakeReply(
            text="Hello from the fake upstream.", usage=FakeUsage(input_tokens=12, cache_read=5)
        )
        completion = await self.call(
            lambda: self.client.chat.completions.create(model="openclaw", messages=HI)
        )
        choice = completion.choices[0]
        self.assertEqual(choice.message.content, "Hello from the fake upstream.")
        self.assertEqual(choice.message.role, "assistant")
        self.assertEqual(choice.finish_reason, "stop")
        self.assertEqual(completion.model, "openclaw")
        self.assertTrue(completion.id.startswith("chatcmpl_"))
        assert completion.usage is not None
        self.assertEqual(completion.usage.prompt_tokens, 17)
        self.assertEqual(completion.usage.completion_tokens, 5)
        self.assertEqual(completion.usage.total_tokens, 22)
        assert completion.usage.prompt_tokens_details is not None
        self.assertEqual(completion.usage.prompt_tokens_details.cached_tokens, 5)
        [sent] = self.fake.requests
        self.assertEqual(sent.body["model"], "gpt-fake")
        self.assertIs(sent.body["stream"], True)
        self.assertEqual(sent.body["messages"][-1], {"role": "user", "content": "hi"})
        self.assertEqual(sent.headers["authorization"], f"Bearer {UPSTREAM_KEY}")

    async def test_stream_deltas_concatenate_with_one_role_and_one_finish(self) -> None:
        """``stream=True``: the deltas concatenate to the upstream text; one role
        chunk first, exactly one finish chunk, one id for every chunk."""
        text = "One two three four five six seven."
        self.fake.reply = FakeReply(text=text)

        def run() -> list[ChatCompletionChunk]:
            stream = self.client.chat.completions.create(
                model="openclaw/main",
                messages=HI,
                stream=True,
            )
            return list(stream)

        chunks = await self.call(run)
        deltas = [c.choices[0].delta for c in chunks]
        self.assertEqual("".join(d.content or "" for d in deltas), text)
        self.assertEqual([d.role for d in deltas if d.role], ["assistant"])
        self.assertEqual(deltas[0].role, "assistant")
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
        self.assertEqual(finishes, ["stop"])
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")
        self.assertEqual({c.id for c in chunks}, {chunks[0].id})
        self.assertEqual({c.model for c in chunks}, {"openclaw/main"})
        self.assertTrue(all(c.usage is None for c in chunks))
        # More than role + finish: the text really arrived in several deltas.
        self.assertGreater(len([d for d in deltas if d.content]), 1)

    async def test_stream_helper_and_final_completion(self) -> None:
        """``chat.completions.stream()`` emits content events and
        ``get_final_completion()`` assembles the whole reply."""
        text = "Streaming through the helper works."
        self.fake.reply = FakeReply(text=text)

        def run() -> tuple[list[Any], Any]:
            with self.client.chat.completions.stream(model="openclaw", messages=HI) as stream:
                events = list(stream)
                return events, stream.get_final_completion()

        events, final = await self.call(run)
        pieces = [e.delta for e in events if e.type == "content.delta"]
        self.assertEqual("".join(pieces), text)
        [done] = [e for e in events if e.type == "content.done"]
        self.assertEqual(done.content, text)
        self.assertEqual(final.choices[0].message.content, text)
        self.assertEqual(final.choices[0].finish_reason, "stop")

    async def test_include_usage_ends_with_a_usage_chunk_without_choices(self) -> None:
        """``stream_options.include_usage``: the last chunk has ``choices == []``
        and the usage; every other chunk has none."""
        self.fake.reply = FakeReply(text="a b c", usage=FakeUsage(input_tokens=30, cache_read=20))

        def run() -> list[ChatCompletionChunk]:
            return list(
                self.client.chat.completions.create(
                    model="openclaw",
                    messages=HI,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )

        chunks = await self.call(run)
        last = chunks[-1]
        self.assertEqual(last.choices, [])
        assert last.usage is not None
        self.assertEqual(
            (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens),
            (50, 3, 53),
        )
        assert last.usage.prompt_tokens_details is not None
        self.assertEqual(last.usage.prompt_tokens_details.cached_tokens, 20)
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))
        self.assertEqual(chunks[-2].choices[0].finish_reason, "stop")

    async def test_tool_call_non_streaming(self) -> None:
        """The upstream calls a client tool: the SDK sees ``tool_calls`` with the
        exact id and name and arguments that parse; the tool went upstream."""
        arguments = json.dumps({"city": "Taipei", "notes": "umbrella?"})
        self.fake.reply = FakeReply(
            text="",
            tool_calls=(FakeToolCall("get_weather", arguments, id="call_weather_1"),),
        )
        completion = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw",
                messages=user("Weather in Taipei?"),
                tools=[WEATHER_TOOL],
            )
        )
        choice = completion.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertEqual(choice.message.content, "")
        assert choice.message.tool_calls is not None
        [call] = choice.message.tool_calls
        assert call.type == "function"
        self.assertEqual(call.id, "call_weather_1")
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), json.loads(arguments))
        [sent] = self.fake.requests
        self.assertIn("get_weather", [t["function"]["name"] for t in sent.body["tools"]])

    async def test_streamed_tool_call_assembles_exactly_in_stream_helper(self) -> None:
        """A streamed tool call with long, non-ASCII arguments (split by the
        gateway into several pieces) is assembled byte for byte by ``.stream()``."""
        arguments = json.dumps(
            {"city": "Taipei", "notes": "晴れ😀 " * 120 + "x" * 300}, ensure_ascii=False
        )
        self.fake.reply = FakeReply(
            text="Let me check.",
            tool_calls=(FakeToolCall("get_weather", arguments, id="call_weather_2"),),
        )

        def run() -> tuple[list[Any], Any]:
            with self.client.chat.completions.stream(
                model="openclaw",
                messages=user("Weather in Taipei?"),
                tools=[WEATHER_TOOL],
            ) as stream:
                events = list(stream)
                return events, stream.get_final_completion()

        events, final = await self.call(run)
        choice = final.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertEqual(choice.message.content, "Let me check.")
        [call] = choice.message.tool_calls
        self.assertEqual((call.id, call.function.name), ("call_weather_2", "get_weather"))
        self.assertEqual(call.function.arguments, arguments)
        self.assertEqual(call.function.parsed_arguments, json.loads(arguments))
        argument_deltas = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
        self.assertGreater(len(argument_deltas), 2)
        [done] = [e for e in events if e.type == "tool_calls.function.arguments.done"]
        self.assertEqual(done.arguments, arguments)

    async def test_tool_round_trip_as_documented(self) -> None:
        """The docs' round trip: the assistant message (``model_dump``) and a
        ``tool`` result go back; the agent's model gets the rendered history
        with the tool result as the turn to answer, and replies in text."""
        self.fake.enqueue(
            FakeReply(
                text="",
                tool_calls=(FakeToolCall("get_weather", '{"city":"Taipei"}', id="call_1"),),
            ),
            FakeReply(text="It is sunny in Taipei."),
        )
        messages: list[Any] = [{"role": "user", "content": "Weather in Taipei?"}]
        first = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=messages, tools=[WEATHER_TOOL]
            )
        )
        [call] = first.choices[0].message.tool_calls or []
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 70F."},
        ]
        second = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=messages, tools=[WEATHER_TOOL]
            )
        )
        self.assertEqual(second.choices[0].message.content, "It is sunny in Taipei.")
        self.assertEqual(second.choices[0].finish_reason, "stop")
        sent = self.fake.requests[1].body["messages"][-1]
        self.assertEqual(sent["role"], "user")
        self.assertEqual(
            sent["content"],
            "[Chat messages since your last reply - for context]\n"
            "User: Weather in Taipei?\n"
            'Assistant: tool_call id=call_1 name=get_weather arguments={"city":"Taipei"}\n'
            "\n"
            "[Current message - respond to this]\n"
            "Tool:call_1: Sunny, 70F.",
        )

    async def test_unsatisfied_tool_choice_required_is_a_502(self) -> None:
        """``tool_choice="required"`` and a model that only talks: a 502
        ``InternalServerError`` (not retried), or an error frame when
        streaming; the prose is never sent."""
        self.fake.reply = FakeReply(text="I would rather chat.")
        error = await self.raises(
            openai.InternalServerError,
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=HI, tools=[WEATHER_TOOL], tool_choice="required"
            ),
        )
        self.assertEqual(error.status_code, 502)
        self.assertEqual(
            error.body["message"], "tool_choice=required was not satisfied by the agent response"
        )
        received: list[str] = []

        def run() -> None:
            stream = self.client.chat.completions.create(
                model="openclaw",
                messages=HI,
                tools=[WEATHER_TOOL],
                tool_choice="required",
                stream=True,
            )
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        streamed = await self.raises(openai.APIError, run)
        self.assertEqual(
            streamed.message, "tool_choice=required was not satisfied by the agent response"
        )
        self.assertNotIn("chat", "".join(received))

    async def test_large_stream_arrives_exactly(self) -> None:
        """Half a megabyte in 1000 chunks streams through the gateway (flow
        control end to end) and concatenates to exactly the upstream text."""
        reply = FakeReply.sized(1000, 512)
        self.fake.reply = reply

        def run() -> str:
            stream = self.client.chat.completions.create(model="openclaw", messages=HI, stream=True)
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream)

        self.assertEqual(await self.call(run), reply.text)

    async def test_agent_header_beats_model(self) -> None:
        """``x-openclaw-agent-id`` picks the agent whatever ``model`` says; the
        response echoes the requested model."""
        completion = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw/main",
                messages=HI,
                extra_headers={"x-openclaw-agent-id": "beta"},
                user="header-check",
            )
        )
        self.assertEqual(completion.model, "openclaw/main")
        sessions = self.gateway.directory / "state" / "agents" / "beta" / "sessions"
        headers = [
            json.loads(path.read_text().splitlines()[0]) for path in sessions.glob("*.jsonl")
        ]
        self.assertIn("agent:beta:openai-user:header-check", [h["sessionKey"] for h in headers])

    async def test_models_list_and_retrieve(self) -> None:
        """``models.list()`` names every agent form; ``retrieve`` returns one;
        an unknown id raises ``NotFoundError``."""
        ids = await self.call(lambda: [m.id for m in self.client.models.list()])
        self.assertEqual(ids, ["openclaw", "openclaw/default", "openclaw/main", "openclaw/beta"])
        model = await self.call(lambda: self.client.models.retrieve("openclaw/main"))
        self.assertEqual(
            (model.id, model.object, model.owned_by), ("openclaw/main", "model", "openclaw")
        )
        error = await self.raises(
            openai.NotFoundError, lambda: self.client.models.retrieve("openclaw/nobody")
        )
        self.assertEqual(error.status_code, 404)
        self.assertEqual(error.code, "model_not_found")

    async def test_x_request_id_reaches_the_sdk(self) -> None:
        """A client ``x-request-id`` is echoed and surfaces as ``_request_id``,
        on successes and on errors; without one the gateway makes one up."""
        completion = await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw",
                messages=HI,
                extra_headers={"x-request-id": "it-request-42"},
            )
        )
        self.assertEqual(completion._request_id, "it-request-42")
        fresh = await self.call(
            lambda: self.client.chat.completions.create(model="openclaw", messages=HI)
        )
        self.assertTrue(fresh._request_id)
        self.assertNotEqual(fresh._request_id, "it-request-42")
        error = await self.raises(
            openai.BadRequestError,
            lambda: self.client.chat.completions.create(
                model="gpt-4o",
                messages=HI,
                extra_headers={"x-request-id": "it-request-43"},
            ),
        )
        self.assertEqual(error.request_id, "it-request-43")

    async def test_same_user_second_turn_carries_the_first(self) -> None:
        """Two turns with the same ``user`` share a session: the second upstream
        request carries the first turn (question and answer) before the new one."""
        self.fake.enqueue(FakeReply(text="Nice to meet you, Ada."), FakeReply(text="You are Ada."))
        for content in ("My name is Ada.", "What is my name?"):
            await self.call(
                lambda content=content: self.client.chat.completions.create(  # type: ignore[misc]  # typing note: default-bound lambda
                    model="openclaw",
                    messages=user(content),
                    user="Ada-Integration",
                )
            )
        first, second = self.fake.requests
        self.assertEqual(first.body["messages"][-1], {"role": "user", "content": "My name is Ada."})
        turns = [
            (m["role"], m["content"]) for m in second.body["messages"] if m["role"] != "system"
        ]
        self.assertEqual(
            turns,
            [
                ("user", "My name is Ada."),
                ("assistant", "Nice to meet you, Ada."),
                ("user", "What is my name?"),
            ],
        )

    # -- errors --------------------------------------------------------------------

    async def test_bad_key_raises_authentication_error(self) -> None:
        """A wrong API key is a 401 ``AuthenticationError``; nothing goes upstream."""
        client = self.sdk(api_key="not-the-token")
        error = await self.raises(
            openai.AuthenticationError,
            lambda: client.chat.completions.create(model="openclaw", messages=HI),
        )
        self.assertEqual(error.status_code, 401)
        self.assertEqual(error.type, "unauthorized")
        self.assertEqual(self.fake.request_count, 0)

    async def test_bad_temperature_raises_bad_request_error_with_param(self) -> None:
        """An out-of-range temperature is a 400 ``BadRequestError`` naming the field."""
        error = await self.raises(
            openai.BadRequestError,
            lambda: self.client.chat.completions.create(
                model="openclaw",
                messages=HI,
                temperature=3,
            ),
        )
        self.assertEqual(error.status_code, 400)
        self.assertEqual(error.param, "temperature")
        self.assertEqual(error.type, "invalid_request_error")
        self.assertEqual(self.fake.request_count, 0)

    async def test_unknown_model_and_agent_raise_bad_request_error(self) -> None:
        """A backend model name or an unknown agent is a 400, not a run."""
        error = await self.raises(
            openai.BadRequestError,
            lambda: self.client.chat.completions.create(model="gpt-4o", messages=HI),
        )
        self.assertEqual(error.param, "model")
        error = await self.raises(
            openai.BadRequestError,
            lambda: self.client.chat.completions.create(model="openclaw/nobody", messages=HI),
        )
        self.assertEqual(error.message.split(" - ")[0], "Error code: 400")
        self.assertIn("Unknown agent 'nobody'.", str(error))
        self.assertEqual(self.fake.request_count, 0)

    async def test_upstream_model_not_found_raises_not_found_error(self) -> None:
        """An upstream 404 ``model_not_found`` reaches the SDK as ``NotFoundError``."""
        self.fake.reply = FakeReply.failing(
            404, "The model `gpt-fake` does not exist", code="model_not_found"
        )
        error = await self.raises(
            openai.NotFoundError,
            lambda: self.client.chat.completions.create(model="openclaw", messages=HI),
        )
        self.assertEqual(error.status_code, 404)
        self.assertEqual(error.code, "model_not_found")
        self.assertEqual(error.response.headers.get("x-should-retry"), "false")

    async def test_upstream_429_raises_rate_limit_error_with_retry_after(self) -> None:
        """An upstream 429 is a ``RateLimitError`` carrying its ``Retry-After``."""
        self.fake.reply = FakeReply.rate_limited("7")
        error = await self.raises(
            openai.RateLimitError,
            lambda: self.client.chat.completions.create(model="openclaw", messages=HI),
        )
        self.assertEqual(error.status_code, 429)
        self.assertEqual(error.type, "rate_limit_error")
        self.assertEqual(error.code, "rate_limit_exceeded")
        self.assertEqual(error.response.headers.get("retry-after"), "7")

    async def test_upstream_500_raises_internal_server_error_and_is_not_retried(self) -> None:
        """An upstream 500 is a 502 ``InternalServerError``; even an SDK that
        retries twice sends it once (``x-should-retry: false``), so the agent
        does not run again."""
        self.fake.reply = FakeReply.failing(500, "boom: internal details")
        client = self.sdk(max_retries=2)
        error = await self.raises(
            openai.InternalServerError,
            lambda: client.chat.completions.create(model="openclaw", messages=HI),
        )
        self.assertEqual(error.status_code, 502)
        self.assertEqual(error.type, "api_error")
        self.assertEqual(error.message.split(" - ")[0], "Error code: 502")
        self.assertNotIn("internal details", str(error.body))
        self.assertEqual(self.fake.request_count, 1)

    async def test_error_mid_stream_raises_api_error(self) -> None:
        """The upstream resets after two chunks: the SDK has received them,
        then raises ``APIError`` (an error frame, not a status)."""
        # A small delay between frames: with none, the reset's RST would reach the
        # gateway together with the chunks, and Linux drops unread data on a RST.
        self.fake.reply = FakeReply(
            text="alpha beta gamma delta",
            mode="reset_mid_stream",
            fail_after_chunks=2,
            chunk_delay=0.02,
        )
        received: list[str] = []

        def run() -> None:
            stream = self.client.chat.completions.create(
                model="openclaw",
                messages=HI,
                stream=True,
            )
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        error = await self.raises(openai.APIError, run)
        self.assertNotIsInstance(error, openai.APIStatusError)
        self.assertEqual(error.message, "upstream provider unavailable")
        self.assertEqual(error.type, "api_error")
        self.assertEqual("".join(received), "alpha beta ")

    # -- disconnects -----------------------------------------------------------------

    async def test_stream_disconnect_closes_the_upstream_at_once(self) -> None:
        """A streaming client that reads the first content chunk and hangs up:
        the gateway closes its upstream connection well under a second later,
        and the transcript records the turn as aborted (the session's next
        turn replays its question and OpenClaw's failed-turn marker, not its
        partial text)."""
        self.fake.enqueue(
            FakeReply(text="tick ", mode="endless", chunk_delay=0.01),
            FakeReply(text="Second answer."),
        )
        client = await self.raw(
            {"model": "openclaw", "stream": True, "user": "Dis-Co", "messages": user("first")}
        )
        await client.wait_for(b'"delta":{"content":"tick')
        self.assertEqual(self.fake.active_streams, 1)
        started = time.monotonic()
        client.abort()
        await self.fake.wait_for_client_closes(1)
        delay = time.monotonic() - started
        DISCONNECT_DELAYS.append(("stream", delay))
        self.assertLess(delay, 1.0)
        self.assertEqual(self.fake.active_streams, 0)
        await client.closed

        # The next turn of the session waits for the aborted one to be on disk.
        await self.call(
            lambda: self.client.chat.completions.create(
                model="openclaw", messages=user("second"), user="Dis-Co"
            )
        )
        # The agent's system prompt, the aborted turn's question with the marker
        # in place of its partial reply, then the new turn.
        system, *rest = self.fake.requests[1].body["messages"]
        self.assertEqual(system["role"], "system")
        self.assertEqual(
            rest,
            [
                *user("first"),
                {"role": "assistant", "content": OPENCLAW_FAILED_TURN_MARKER},
                *user("second"),
            ],
        )
        messages = self.transcript("agent:main:openai-user:dis-co")
        self.assertEqual(
            [(m["role"], m.get("stopReason")) for m in messages],
            [("user", None), ("assistant", "aborted"), ("user", None), ("assistant", "stop")],
        )
        self.assertEqual(messages[0]["content"], "first")
        self.assertTrue(messages[1]["content"][0]["text"].startswith("tick"))

    def transcript(self, session_key: str) -> list[dict[str, Any]]:
        """The messages of the main agent's session ``session_key``, from its JSONL file."""
        sessions = self.gateway.directory / "state" / "agents" / "main" / "sessions"
        for path in sessions.glob("*.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if lines and lines[0].get("sessionKey") == session_key:
                return [line["message"] for line in lines if line.get("type") == "message"]
        raise AssertionError(f"no transcript for {session_key} in {sessions}")

    async def test_non_streaming_disconnect_closes_the_upstream_at_once(self) -> None:
        """A non-streaming client that hangs up while the upstream is still
        streaming: the upstream connection is closed well under a second later."""
        self.fake.reply = FakeReply(text="tick ", mode="endless", chunk_delay=0.01)
        client = await self.raw({"model": "openclaw", "messages": HI})
        await self.fake.wait_for_requests(1)
        # The request is recorded before the fake starts its stream: let
        # render_POST return (one reactor turn, no real time).
        await deferLater(self.reactor, 0, lambda: None)
        self.assertEqual(self.fake.active_streams, 1)
        started = time.monotonic()
        client.abort()
        await self.fake.wait_for_client_closes(1)
        delay = time.monotonic() - started
        DISCONNECT_DELAYS.append(("non-stream", delay))
        self.assertLess(delay, 1.0)
        self.assertEqual(bytes(client.received), b"")
        await client.closed
