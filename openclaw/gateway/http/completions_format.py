"""The JSON the chat completions endpoint writes: completions, chunks, usage, errors.

Everything here is a pure function of its arguments, so the exact wire shapes
(OpenAI's ``chat.completion`` and ``chat.completion.chunk`` objects, OpenClaw's
usage mapping and provider-error mapping) are tested without HTTP.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import orjson
from attrs import frozen

from openclaw.agents.types import (
    AgentResult,
    FailureKind,
    ProviderError,
    ToolCall,
    Usage,
)

#: What a non-streaming reply says when the agent produced no text at all.
EMPTY_REPLY_TEXT = "No response from OpenClaw."
#: Longest argument slice of one streamed tool-call delta, in UTF-16 code units
#: (what JavaScript clients count), never splitting a surrogate pair.
TOOL_ARGUMENT_SLICE_UNITS = 256

FinishReason = str


def _finite(value: object) -> float | None:
    """A usable token count, or None for absent / non-numeric / non-finite values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(value)


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """OpenClaw's usage (``input``/``output``/``cacheRead``/``total``) as OpenAI usage.

    ``prompt_tokens`` counts cache reads (they are prompt tokens that were
    cheap); ``cacheWrite`` is never counted; ``total_tokens`` is the sum unless
    the provider reported a larger total.
    """
    input_tokens = _finite(usage.input) or 0.0
    output_tokens = _finite(usage.output) or 0.0
    cache_read = _finite(usage.cache_read) or 0.0
    prompt = input_tokens + cache_read
    completion = output_tokens
    total = prompt + completion
    reported_total = _finite(usage.total)
    if reported_total is not None:
        total = max(total, reported_total)
    body: dict[str, Any] = {
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "total_tokens": int(total),
    }
    if cache_read > 0:
        body["prompt_tokens_details"] = {"cached_tokens": int(cache_read)}
    return body


def finish_reason_for(result: AgentResult) -> FinishReason:
    """The OpenAI ``finish_reason`` of a settled run (a closed set, never null)."""
    if result.pending_tool_calls:
        return "tool_calls"
    if result.stop_reason in ("length", "content_filter"):
        return result.stop_reason
    return "stop"


def tool_calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Non-streaming ``message.tool_calls`` (no ``index`` keys, as OpenAI)."""
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def completion_json(
    *,
    completion_id: str,
    created: int,
    model: str,
    result: AgentResult,
) -> dict[str, Any]:
    """The ``chat.completion`` object for a settled run."""
    text = result.text
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if result.pending_tool_calls:
        message["tool_calls"] = tool_calls_json(result.pending_tool_calls)
    elif not text:
        message["content"] = EMPTY_REPLY_TEXT
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_for(result),
            }
        ],
        "usage": usage_to_openai(result.usage),
    }


def split_utf16(text: str, limit: int = TOOL_ARGUMENT_SLICE_UNITS) -> list[str]:
    """Cut ``text`` into slices of at most ``limit`` UTF-16 code units.

    A character outside the BMP (two code units) is never split; an empty
    string gives one empty slice, so every tool call gets an arguments delta.
    """
    if limit < 2:
        raise ValueError("limit must leave room for a surrogate pair")
    slices: list[str] = []
    start = 0
    units = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit:
            slices.append(text[start:index])
            start = index
            units = 0
        units += width
    slices.append(text[start:])
    return slices


@frozen
class ChunkFactory:
    """Builds the ``chat.completion.chunk`` objects of one stream.

    Every chunk repeats the same ``id``, ``created`` and ``model``. With
    ``include_usage`` every chunk but the last carries ``"usage": null`` (as
    OpenAI does); without it no chunk has a ``usage`` key.
    """

    completion_id: str
    created: int
    model: str
    include_usage: bool = False

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return self._chunk(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )

    def role(self) -> dict[str, Any]:
        """The first chunk: the assistant role, sent before the agent says anything."""
        return self._delta({"role": "assistant", "content": ""})

    def content(self, text: str) -> dict[str, Any]:
        """An append-only piece of the reply."""
        return self._delta({"content": text})

    def tool_calls(self, calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
        """Tool-call deltas: ``index`` on every delta; ``id``/``type``/``name`` once."""
        chunks: list[dict[str, Any]] = []
        for index, call in enumerate(calls):
            chunks.append(
                self._delta(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in split_utf16(call.arguments):
                chunks.append(
                    self._delta(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
                )
        return chunks

    def finish(self, finish_reason: str) -> dict[str, Any]:
        """The one terminal chunk: empty delta, non-null ``finish_reason``."""
        return self._delta({}, finish_reason)

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The usage-only chunk (``choices: []``), only sent with ``include_usage``."""
        chunk = self._chunk([])
        chunk["usage"] = usage_to_openai(usage)
        return chunk


_encode_ascii = json.encoder.encode_basestring_ascii  # what json.dumps(...) uses
_orjson_dumps = orjson.dumps


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ChunkEncoder:
    """The SSE frame of a content chunk, without building and encoding a dict.

    Every content chunk of a stream differs only in its text, so the bytes
    around it (``id``, ``object``, ``created``, ``model``, ``choices``...) are
    encoded once per stream; a frame is then ``prefix + text + suffix``. The
    bytes are exactly ``data_frame(factory.content(text))``.
    """

    __slots__ = ("_prefix", "_suffix")

    def __init__(self, factory: ChunkFactory) -> None:
        marker = "\x00text\x00"
        frame = b"data: " + _compact(factory.content(marker)) + b"\n\n"
        prefix, _, suffix = frame.rpartition(_compact(marker))  # the content comes last
        self._prefix = prefix
        self._suffix = suffix

    def content_frame(self, text: str) -> bytes:
        """``data: {...chunk with delta.content = text...}`` and a blank line."""
        try:
            # orjson writes the UTF-8 bytes straight away, with the escapes
            # json.dumps(ensure_ascii=False) makes (0.5 against 0.65 us).
            encoded = _orjson_dumps(text)
        except TypeError:
            # A lone surrogate (no UTF-8 form): written as a \\uXXXX escape, as
            # OpenClaw's JSON.stringify writes it, instead of losing the delta.
            encoded = _encode_ascii(text).encode("ascii")
        return self._prefix + encoded + self._suffix


@frozen
class MappedError:
    """An HTTP status plus an OpenAI error object."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after_seconds: int | None = None

    def body(self) -> dict[str, Any]:
        """``{"error": {...}}`` with ``param`` and ``code`` always present."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


#: Upstream messages are shown to API clients; anything shaped like a credential
#: (``sk-...`` keys, bearer tokens, ``api_key=...``) is masked first.
_CREDENTIAL = re.compile(
    r"(?i)(\bsk-[A-Za-z0-9_*.-]{4,}|\bbearer\s+\S+|\b(?:api[_-]?key|token)\s*[=:]\s*\S+)"
)
UPSTREAM_AUTH_MESSAGE = "The model provider rejected the gateway's credentials."
UPSTREAM_PERMISSION_MESSAGE = "The model provider refused access to this model."


def redact(message: str) -> str:
    """``message`` with credential-like substrings replaced by ``[redacted]``."""
    return _CREDENTIAL.sub("[redacted]", message)


def _status_or(error: ProviderError, default: int) -> int:
    status = error.status
    if status is not None and 400 <= status <= 599:
        return status
    return default


def _upstream_4xx_or(error: ProviderError, default: int) -> int:
    status = error.status
    if status is not None and 400 <= status <= 499:
        return status
    return default


def map_provider_error(error: ProviderError) -> MappedError:
    """OpenClaw's mapping of classified provider failures to OpenAI errors.

    Request problems (bad request, context overflow, rate limit, quota) keep
    the upstream's status and message (credentials masked); upstream breakage
    becomes a generic 502/503/504 message so the upstream's internals do not
    leak. A refused provider key keeps OpenClaw's status and type but gets a
    fixed message: upstream 401 texts often quote (part of) the key.
    """
    kind = error.kind
    message = redact(error.message) if error.message else "upstream provider error"
    code = error.code
    if kind is FailureKind.AUTH:
        return MappedError(
            _status_or(error, 401), UPSTREAM_AUTH_MESSAGE, "authentication_error", code
        )
    if kind is FailureKind.PERMISSION:
        return MappedError(
            _status_or(error, 403), UPSTREAM_PERMISSION_MESSAGE, "permission_error", code
        )
    if kind in (
        FailureKind.FORMAT,
        FailureKind.CONTEXT_OVERFLOW,
        FailureKind.MODEL_NOT_FOUND,
    ):
        default = 404 if kind is FailureKind.MODEL_NOT_FOUND else 400
        return MappedError(_status_or(error, default), message, "invalid_request_error", code)
    if kind is FailureKind.RATE_LIMIT:
        retry_after = (
            max(1, math.ceil(error.retry_after_seconds))
            if error.retry_after_seconds is not None and math.isfinite(error.retry_after_seconds)
            else None
        )
        return MappedError(
            _status_or(error, 429),
            message,
            "rate_limit_error",
            code or "rate_limit_exceeded",
            retry_after_seconds=retry_after,
        )
    if kind is FailureKind.BILLING:
        return MappedError(
            _status_or(error, 402), message, "insufficient_quota", code or "insufficient_quota"
        )
    if kind is FailureKind.TIMEOUT:
        return MappedError(
            _upstream_4xx_or(error, 504), "upstream provider timeout", "api_error", code
        )
    if kind is FailureKind.OVERLOADED:
        return MappedError(
            _status_or(error, 503), "upstream provider overloaded", "api_error", code
        )
    if kind is FailureKind.CONNECTION:
        return MappedError(502, "upstream provider unavailable", "api_error", code)
    # SERVER_ERROR, MALFORMED_STREAM
    return MappedError(_upstream_4xx_or(error, 502), "upstream provider error", "api_error", code)


RUN_TIMEOUT_ERROR = MappedError(504, "agent run timed out", "api_error", "timeout")
RUN_ABORTED_ERROR = MappedError(503, "agent run was aborted", "api_error", "aborted")
INTERNAL_ERROR = MappedError(500, "internal error", "api_error")
#: The shared session store (Redis) is unreachable: try again shortly.
STATE_UNAVAILABLE_ERROR = MappedError(
    503,
    "the session store is unavailable; retry shortly",
    "api_error",
    "session_store_unavailable",
    retry_after_seconds=1,
)
#: The gateway could not write the turn (its disk is full): not saved, so not a success.
TURN_NOT_SAVED_ERROR = MappedError(
    503,
    "the turn could not be saved on the gateway (its storage failed, or another gateway took"
    " over the session); retry later",
    "api_error",
    "turn_not_saved",
    retry_after_seconds=5,
)
APPEND_ONLY_ERROR = MappedError(
    500,
    "Assistant output cannot be represented as an append-only response stream.",
    "api_error",
)
