"""Wire shapes: usage mapping, provider-error mapping, chunks, tool-call slicing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import AgentResult, FailureKind, ProviderError, ToolCall, Usage
from openclaw.gateway.http.completions_format import (
    ChunkEncoder,
    ChunkFactory,
    completion_json,
    finish_reason_for,
    map_provider_error,
    split_utf16,
    usage_to_openai,
)
from openclaw.gateway.http.sse import data_frame


def utf16_units(text: str) -> int:
    """Length as JavaScript counts it."""
    return len(text.encode("utf-16-le")) // 2


def result(**fields: Any) -> AgentResult:
    """An AgentResult with defaults for the fields a test does not care about."""
    base: dict[str, Any] = {
        "run_id": "chatcmpl_x",
        "agent_id": "main",
        "session_key": "agent:main:x",
        "session_id": "s",
        "text": "hi",
    }
    base.update(fields)
    return AgentResult(**base)


class UsageTests(SynchronousTestCase):
    """OpenClaw's usage table (§1.6)."""

    def test_usage_table(self) -> None:
        """The six upstream cases map exactly."""
        nan = float("nan")
        inf = float("inf")
        cases: list[tuple[Usage, dict[str, Any]]] = [
            (
                Usage(input=42, output=17),
                {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
            ),
            (
                Usage(input=10, output=5, cache_read=20, cache_write=3),
                {
                    "prompt_tokens": 30,
                    "completion_tokens": 5,
                    "total_tokens": 35,
                    "prompt_tokens_details": {"cached_tokens": 20},
                },
            ),
            (
                Usage(input=10, output=5, total=100),
                {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 100},
            ),
            (Usage(total=123), {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 123}),
            (
                Usage(cache_write=10, total=10),
                {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 10},
            ),
            (
                # A sloppy provider can report floats, even non-finite ones.
                Usage(input=inf, output=nan, cache_read=2, total=nan),  # type: ignore[arg-type]
                {
                    "prompt_tokens": 2,
                    "completion_tokens": 0,
                    "total_tokens": 2,
                    "prompt_tokens_details": {"cached_tokens": 2},
                },
            ),
        ]
        for usage, expected in cases:
            self.assertEqual(usage_to_openai(usage), expected, usage)


class ProviderErrorMappingTests(SynchronousTestCase):
    """§1.8: classified provider failures become OpenAI errors."""

    def test_mapping_table(self) -> None:
        """Status, type and message per failure kind."""
        cases = [
            (
                ProviderError(
                    FailureKind.AUTH, "Incorrect API key provided: sk-ab***yz", status=401
                ),
                401,
                "authentication_error",
                "The model provider rejected the gateway's credentials.",
            ),
            (
                ProviderError(FailureKind.PERMISSION, "nope"),
                403,
                "permission_error",
                "The model provider refused access to this model.",
            ),
            (
                ProviderError(
                    FailureKind.FORMAT, "bad", status=400, code="decimal_above_max_value"
                ),
                400,
                "invalid_request_error",
                "bad",
            ),
            (
                ProviderError(FailureKind.CONTEXT_OVERFLOW, "long"),
                400,
                "invalid_request_error",
                "long",
            ),
            (
                ProviderError(FailureKind.MODEL_NOT_FOUND, "no model", status=404),
                404,
                "invalid_request_error",
                "no model",
            ),
            (
                ProviderError(FailureKind.RATE_LIMIT, "slow down"),
                429,
                "rate_limit_error",
                "slow down",
            ),
            (ProviderError(FailureKind.BILLING, "pay"), 402, "insufficient_quota", "pay"),
            (
                ProviderError(FailureKind.SERVER_ERROR, "stack trace", status=500),
                502,
                "api_error",
                "upstream provider error",
            ),
            (
                ProviderError(FailureKind.SERVER_ERROR, "teapot", status=418),
                418,
                "api_error",
                "upstream provider error",
            ),
            (
                ProviderError(FailureKind.TIMEOUT, "t"),
                504,
                "api_error",
                "upstream provider timeout",
            ),
            (
                ProviderError(FailureKind.TIMEOUT, "t", status=408),
                408,
                "api_error",
                "upstream provider timeout",
            ),
            (
                ProviderError(FailureKind.OVERLOADED, "o", status=529),
                529,
                "api_error",
                "upstream provider overloaded",
            ),
            (
                ProviderError(FailureKind.CONNECTION, "refused"),
                502,
                "api_error",
                "upstream provider unavailable",
            ),
            (
                ProviderError(FailureKind.MALFORMED_STREAM, "junk"),
                502,
                "api_error",
                "upstream provider error",
            ),
        ]
        for error, status, error_type, message in cases:
            mapped = map_provider_error(error)
            self.assertEqual(
                (mapped.status, mapped.type, mapped.message), (status, error_type, message), error
            )
            self.assertEqual(set(mapped.body()["error"]), {"message", "type", "param", "code"})

    def test_credentials_masked(self) -> None:
        """Key-shaped text in a passed-through upstream message is redacted."""
        for leaked in ("sk-proj-abcdef123456", "Bearer abc.def", "api_key=hunter2", "token: xyz"):
            mapped = map_provider_error(
                ProviderError(FailureKind.FORMAT, f"bad request ({leaked}) here", status=400)
            )
            self.assertNotIn(leaked.split()[-1].split("=")[-1], mapped.message)
            self.assertIn("[redacted]", mapped.message)

    def test_code_and_retry_after(self) -> None:
        """The provider's code is kept; a rate limit carries a whole-second Retry-After."""
        mapped = map_provider_error(
            ProviderError(FailureKind.FORMAT, "x", code="decimal_above_max_value")
        )
        self.assertEqual(mapped.code, "decimal_above_max_value")
        limited = map_provider_error(
            ProviderError(FailureKind.RATE_LIMIT, "x", retry_after_seconds=2.1)
        )
        self.assertEqual(limited.retry_after_seconds, 3)
        self.assertEqual(limited.code, "rate_limit_exceeded")


class CompletionTests(SynchronousTestCase):
    """The non-streaming ``chat.completion`` object."""

    def test_shape(self) -> None:
        """Every field OpenAI clients expect, with ``refusal`` and ``logprobs`` null."""
        body = completion_json(completion_id="chatcmpl_1", created=5, model="m", result=result())
        self.assertEqual(
            body,
            {
                "id": "chatcmpl_1",
                "object": "chat.completion",
                "created": 5,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi", "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        )

    def test_finish_reasons(self) -> None:
        """Tool calls win; length and content_filter pass through; anything else is stop."""
        call = ToolCall("c", "f", "{}")
        self.assertEqual(finish_reason_for(result(pending_tool_calls=(call,))), "tool_calls")
        self.assertEqual(finish_reason_for(result(stop_reason="length")), "length")
        self.assertEqual(finish_reason_for(result(stop_reason="content_filter")), "content_filter")
        self.assertEqual(finish_reason_for(result(stop_reason="tool_calls")), "stop")
        self.assertEqual(finish_reason_for(result(stop_reason="error")), "stop")


class ChunkTests(SynchronousTestCase):
    """Streaming chunks."""

    def test_usage_key_only_with_include_usage(self) -> None:
        """Without include_usage no chunk has ``usage``; with it, null until the last."""
        plain = ChunkFactory("id", 1, "m")
        self.assertNotIn("usage", plain.content("x"))
        with_usage = ChunkFactory("id", 1, "m", include_usage=True)
        self.assertIsNone(with_usage.content("x")["usage"])
        last = with_usage.usage(Usage(input=1, output=2))
        self.assertEqual(last["choices"], [])
        self.assertEqual(last["usage"]["total_tokens"], 3)

    def test_tool_call_deltas(self) -> None:
        """``index`` on every delta; ``id``/``type``/``name`` only on the first of a call."""
        factory = ChunkFactory("id", 1, "m")
        calls = (ToolCall("call_a", "f", '{"a":1}'), ToolCall("call_b", "g", ""))
        deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in factory.tool_calls(calls)]
        self.assertEqual(
            deltas,
            [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                },
                {"index": 0, "function": {"arguments": '{"a":1}'}},
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "g", "arguments": ""},
                },
                {"index": 1, "function": {"arguments": ""}},
            ],
        )


class ChunkEncoderTests(SynchronousTestCase):
    """Content frames encoded around pre-built bytes equal the generic encoding."""

    def test_same_bytes_as_the_chunk_object(self) -> None:
        """Quotes, escapes, control and non-ASCII characters, an empty text, and
        awkward ids and models: byte for byte what ``data_frame`` makes."""
        texts = ["hi", "", 'say "x"\\y', "tab\tnl\nnul\x00", "\u2028 caf\u00e9 \U0001f600"]
        for include_usage in (False, True):
            for model in ("openclaw", 'open"claw/\u00e9', "\x00text\x00"):
                factory = ChunkFactory("chatcmpl_1", 1700000000, model, include_usage)
                encoder = ChunkEncoder(factory)
                for text in texts:
                    self.assertEqual(
                        encoder.content_frame(text), data_frame(factory.content(text)), text
                    )

    @given(st.text(), st.text(max_size=20), st.booleans())
    def test_same_bytes_for_any_text(self, text: str, model: str, include_usage: bool) -> None:
        """Any text and model, surrogates aside (which neither can encode)."""
        factory = ChunkFactory("chatcmpl_x", 1, model, include_usage)
        try:
            expected = data_frame(factory.content(text))
        except UnicodeEncodeError:
            return
        self.assertEqual(ChunkEncoder(factory).content_frame(text), expected)


class SliceTests(SynchronousTestCase):
    """Tool-call argument slices of at most 256 UTF-16 code units."""

    def test_astral_character_at_boundary(self) -> None:
        """A surrogate pair straddling unit 256 or 512 goes whole into the next slice."""
        for prefix in (255, 511):
            text = "a" * prefix + "\U0001f600" + "b" * 300
            slices = split_utf16(text)
            self.assertEqual("".join(slices), text)
            cut = prefix // 256
            self.assertEqual(utf16_units(slices[cut]), 255)
            self.assertTrue(slices[cut + 1].startswith("\U0001f600"))
            for piece in slices:
                self.assertLessEqual(utf16_units(piece), 256)
                piece.encode("utf-8")  # no lone surrogates
                json.loads(json.dumps(piece))

    def test_empty_arguments(self) -> None:
        """An empty argument string still yields one (empty) slice."""
        self.assertEqual(split_utf16(""), [""])

    @given(st.text(max_size=2000))
    def test_slices_property(self, text: str) -> None:
        """Any text: slices rejoin to it and each is 1..256 UTF-16 units."""
        slices = split_utf16(text)
        self.assertEqual("".join(slices), text)
        for piece in slices:
            self.assertLessEqual(utf16_units(piece), 256)
        if text:
            self.assertTrue(all(slices))
