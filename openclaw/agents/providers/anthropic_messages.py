# -*- test-case-name: tests.test_provider_anthropic -*-
"""``api: "anthropic-messages"``: Anthropic's Messages API, streamed.

``POST {baseUrl}/v1/messages`` with ``stream: true``; the answer is SSE with
named events (``message_start``, ``content_block_*``, ``message_delta``,
``message_stop``, ``ping``, ``error``). Sampling parameters Anthropic does not
have (seed, penalties, response_format) are not sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from attrs import define
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent

from openclaw.agents.providers.base import ModelCall, ModelMessage, StreamOutcome, StreamSink
from openclaw.agents.providers.errors import classify_payload, malformed_stream
from openclaw.agents.providers.http import (
    StreamingHTTPProvider,
    UpstreamClient,
    plain,
    schema_copy,
)
from openclaw.agents.providers.sse import SSEEvent
from openclaw.agents.types import StopReason, Usage
from openclaw.config.model import ProviderConfig
from openclaw.core.fastjson import loads

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
#: Anthropic requires ``max_tokens``; used when the call does not set one.
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS: Mapping[str, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def messages_url(base_url: str | None) -> str:
    """``{baseUrl}/v1/messages``, without doubling a ``/v1`` already there."""
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    if base.endswith("/v1"):
        return base + "/messages"
    return base + "/v1/messages"


def _blocks(message: ModelMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or "",
            "content": message.content,
        }
        if message.is_error:
            result["is_error"] = True
        return [result]
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": image.mime_type, "data": image.data},
        }
        for image in message.images
    ]
    if message.content.strip():
        # Anthropic refuses a text block of whitespace only (400), and a stored
        # one would break every later turn of the session.
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            arguments = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": arguments if isinstance(arguments, dict) else {},
            }
        )
    return blocks


def _messages(messages: tuple[ModelMessage, ...]) -> list[dict[str, Any]]:
    """Anthropic wants alternating turns: tool results travel in a user turn,
    and consecutive turns of one role are merged into one."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def request_body(
    call: ModelCall, model_max_tokens: int | None = None, *, cache_prompt: bool = False
) -> dict[str, Any]:
    """The JSON body for one streamed Messages call. ``max_tokens`` is the
    client's cap, within the model's ``maxTokens`` when it has one; else the
    model's ``maxTokens``, else :data:`DEFAULT_MAX_TOKENS`."""
    params = call.stream_params
    max_tokens = model_max_tokens or DEFAULT_MAX_TOKENS
    if params is not None and params.max_tokens is not None:
        max_tokens = min(params.max_tokens, model_max_tokens or params.max_tokens)
    body: dict[str, Any] = {
        "model": call.model,
        "max_tokens": max_tokens,
        "messages": _messages(call.messages),
        "stream": True,
    }
    if call.system_prompt and cache_prompt:
        # One cache breakpoint at the end of the system prompt: Anthropic then
        # caches the tool schemas and the prompt (they come first) for the
        # next steps and turns, as OpenClaw's default short retention does.
        body["system"] = [
            {"type": "text", "text": call.system_prompt, "cache_control": {"type": "ephemeral"}}
        ]
    elif call.system_prompt:
        body["system"] = call.system_prompt
    if call.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": _input_schema(tool.parameters),
            }
            for tool in call.tools
        ]
    if params is not None:
        # Anthropic takes temperature in [0, 1] and, on current models, not
        # together with top_p (OpenClaw forwards temperature alone).
        if params.temperature is not None:
            body["temperature"] = min(max(params.temperature, 0.0), 1.0)
        elif params.top_p is not None:
            body["top_p"] = params.top_p
        stops = [s for s in params.stop or () if s.strip()]  # whitespace-only is refused
        if stops:
            body["stop_sequences"] = stops
    return body


def _input_schema(parameters: Any) -> Any:
    """A tool's ``input_schema``: Anthropic requires ``type: "object"``."""
    if parameters is None:
        return {"type": "object", "properties": {}}
    schema = schema_copy(parameters)
    if isinstance(schema, dict) and "type" not in schema:
        return {"type": "object", **schema}
    return schema


@define
class _ToolBlock:
    """A tool_use content block being streamed."""

    ordinal: int
    start_input: Mapping[str, Any]
    got_arguments: bool = False


def _index(payload: Mapping[str, Any]) -> int:
    index = payload.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else -1


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class _EventDecoder:
    """Messages stream events -> sink calls."""

    def __init__(self, sink: StreamSink, secrets: tuple[str, ...]) -> None:
        self._sink = sink
        self._secrets = secrets
        self._counts = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        self._usage = Usage()
        self._stop_reason: str | None = None
        self._stopped = False
        #: content block index -> the tool_use block started there
        self._tools: dict[int, _ToolBlock] = {}

    def event(self, event: SSEEvent) -> bool:
        try:
            payload = loads(event.data)
        except ValueError:
            raise malformed_stream("upstream sent a stream event that is not JSON") from None
        if not isinstance(payload, dict):
            raise malformed_stream("upstream sent a stream event that is not a JSON object")
        kind = payload.get("type") or event.event
        if kind == "content_block_delta":
            self._block_delta(payload)
        elif kind == "content_block_start":
            self._block_start(payload)
        elif kind == "content_block_stop":
            self._block_stop(payload)
        elif kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self._add_usage(message.get("usage"))
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                reason = delta.get("stop_reason")
                if isinstance(reason, str) and reason:
                    self._stop_reason = reason
            self._add_usage(payload.get("usage"))
        elif kind == "message_stop":
            self._stopped = True
            return True
        elif kind == "error":
            raise classify_payload(payload, secrets=self._secrets)
        # "ping" and unknown events are ignored, as Anthropic asks clients to.
        return False

    def _add_usage(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        for key, field in (
            ("input_tokens", "input"),
            ("output_tokens", "output"),
            ("cache_read_input_tokens", "cache_read"),
            ("cache_creation_input_tokens", "cache_write"),
        ):
            value = _count(raw.get(key))
            if value is not None:
                self._counts[field] = value
        counts = self._counts
        self._usage = Usage(
            input=counts["input"],
            output=counts["output"],
            cache_read=counts["cache_read"],
            cache_write=counts["cache_write"],
            total=sum(counts.values()),
        )
        self._sink.on_usage(self._usage)

    def _block_start(self, payload: Mapping[str, Any]) -> None:
        index = payload.get("index")
        block = payload.get("content_block")
        if not isinstance(block, dict) or not isinstance(index, int):
            return
        if block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                self._sink.on_text(text)
        elif block.get("type") == "tool_use":
            ordinal = len(self._tools)
            start_input = block.get("input")
            self._tools[index] = _ToolBlock(
                ordinal, start_input if isinstance(start_input, dict) else {}
            )
            call_id = block.get("id")
            name = block.get("name")
            self._sink.on_tool_call(
                ordinal,
                # No id (never seen from Anthropic): the run names the call.
                call_id if isinstance(call_id, str) and call_id else None,
                name if isinstance(name, str) else "",
                "",
            )

    def _block_delta(self, payload: Mapping[str, Any]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                self._sink.on_text(text)
        elif delta_type == "input_json_delta":
            tool = self._tools.get(_index(payload))
            partial = delta.get("partial_json")
            if tool is not None and isinstance(partial, str) and partial:
                tool.got_arguments = True
                self._sink.on_tool_call(tool.ordinal, None, None, partial)

    def _block_stop(self, payload: Mapping[str, Any]) -> None:
        tool = self._tools.get(_index(payload))
        if tool is not None and not tool.got_arguments:
            # No input_json_delta: the arguments are the start block's input.
            tool.got_arguments = True
            self._sink.on_tool_call(tool.ordinal, None, None, json.dumps(plain(tool.start_input)))

    def one_shot(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise malformed_stream("upstream answered with JSON that is not an object")
        if payload.get("type") == "error" or payload.get("error"):
            raise classify_payload(payload, secrets=self._secrets)
        content = payload.get("content")
        if payload.get("type") != "message" or not isinstance(content, list):
            raise malformed_stream("upstream answered with JSON that is not a message")
        ordinal = 0
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
                self._sink.on_text(block["text"])
            elif block.get("type") == "tool_use":
                raw_input = block.get("input")
                self._sink.on_tool_call(
                    ordinal,
                    str(block.get("id") or f"toolu_{ordinal}"),
                    str(block.get("name") or ""),
                    json.dumps(plain(raw_input if isinstance(raw_input, dict) else {})),
                )
                ordinal += 1
        reason = payload.get("stop_reason")
        self._stop_reason = reason if isinstance(reason, str) else "end_turn"
        self._add_usage(payload.get("usage"))
        self._stopped = True

    def outcome(self, at_eof: bool) -> StreamOutcome:
        if not self._stopped and self._stop_reason is None:
            raise malformed_stream("upstream stream ended before the message finished")
        reason: StopReason = _STOP_REASONS.get(self._stop_reason or "end_turn", "stop")
        if self._tools and reason == "stop" and self._stop_reason is None:
            reason = "tool_calls"
        return StreamOutcome(stop_reason=reason, usage=self._usage)


class AnthropicMessagesProvider(StreamingHTTPProvider):
    """Streams messages from Anthropic's API (or a compatible upstream)."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        clock: IReactorTime,
        client: UpstreamClient | None = None,
        agent: IAgent | None = None,
    ) -> None:
        api_headers = {"anthropic-version": ANTHROPIC_VERSION}
        if config.api_key:
            api_headers["x-api-key"] = config.api_key
        super().__init__(
            config,
            client=client,
            agent=agent,
            clock=clock,
            url=messages_url(config.base_url),
            api_headers=api_headers,
        )
        #: Anthropic's own API: prompt caching is asked for (compatible servers
        #: may not know ``cache_control``).
        self._native = urlsplit(messages_url(config.base_url)).hostname == "api.anthropic.com"

    def request_body(self, call: ModelCall) -> dict[str, Any]:
        """The JSON request for ``call``."""
        cap = next((m.max_tokens for m in self._config.models if m.id == call.model), None)
        return request_body(call, cap, cache_prompt=self._native)

    def decoder(self, sink: StreamSink, secrets: tuple[str, ...]) -> _EventDecoder:
        """A decoder feeding ``sink``."""
        return _EventDecoder(sink, secrets)
