# -*- test-case-name: tests.test_provider_openai -*-
"""``api: "openai-completions"``: any OpenAI-compatible Chat Completions upstream.

OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio and OpenRouter all take
``POST {baseUrl}/chat/completions`` with ``stream: true`` and answer with SSE
``chat.completion.chunk`` frames ending in ``data: [DONE]``. A server that
ignores ``stream`` and answers one ``chat.completion`` JSON is accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_FINISH_REASONS: Mapping[str, StopReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def chat_completions_url(base_url: str | None) -> str:
    """``{baseUrl}/chat/completions`` (a trailing slash on the base is dropped)."""
    return (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"


def _message(message: ModelMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            out["content"] = message.content or None
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ]
        return out
    if not message.images:
        return {"role": "user", "content": message.content}
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for image in message.images:
        parts.append(
            {
                "type": "image_url",
                "image_url": {"url": f"data:{image.mime_type};base64,{image.data}"},
            }
        )
    return {"role": "user", "content": parts}


def request_body(call: ModelCall, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The JSON body for one streamed call (stream params only when set);
    the output cap goes in ``max_tokens_field``."""
    messages: list[dict[str, Any]] = []
    if call.system_prompt:
        messages.append({"role": "system", "content": call.system_prompt})
    messages.extend(_message(m) for m in call.messages)
    body: dict[str, Any] = {
        "model": call.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if call.tools:
        tools = []
        for tool in call.tools:
            function: dict[str, Any] = {"name": tool.name}
            if tool.description is not None:
                function["description"] = tool.description
            if tool.parameters is not None:
                function["parameters"] = schema_copy(tool.parameters)
            if tool.strict is not None:
                function["strict"] = tool.strict
            tools.append({"type": "function", "function": function})
        body["tools"] = tools
    params = call.stream_params
    if params is not None:
        for key in (
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "frequency_penalty",
            "presence_penalty",
        ):
            value = getattr(params, key)
            if value is not None:
                body[max_tokens_field if key == "max_tokens" else key] = value
        if params.stop is not None:
            body["stop"] = list(params.stop)
        if params.response_format is not None:
            body["response_format"] = plain(params.response_format)
    return body


def usage_from_openai(raw: Mapping[str, Any]) -> Usage:
    """OpenAI usage -> OpenClaw usage: cached prompt tokens become ``cache_read``."""
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    details = raw.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
    total = _int(raw.get("total_tokens")) or prompt + completion
    return Usage(
        input=max(prompt - cached, 0),
        output=completion,
        cache_read=cached,
        cache_write=0,
        total=total,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class _ChunkDecoder:
    """Chat completion chunks -> sink calls (the first choice only)."""

    def __init__(self, sink: StreamSink, secrets: tuple[str, ...]) -> None:
        self._sink = sink
        self._secrets = secrets
        self._finish: str | None = None
        self._done = False
        self._usage = Usage()
        self._tools: set[int] = set()

    def event(self, event: SSEEvent) -> bool:
        data = event.data.strip()
        if data == "[DONE]":
            self._done = True
            return True
        try:
            payload = loads(data)
        except ValueError:
            raise malformed_stream("upstream sent a stream frame that is not JSON") from None
        if not isinstance(payload, dict):
            raise malformed_stream("upstream sent a stream frame that is not a JSON object")
        if payload.get("error") or event.event == "error":
            raise classify_payload(payload, secrets=self._secrets)
        self._chunk(payload)
        return False

    def _chunk(self, payload: Mapping[str, Any]) -> None:
        choices = payload.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    self._delta(delta)
                reason = choice.get("finish_reason")
                if isinstance(reason, str) and reason:
                    self._finish = reason
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._usage = usage_from_openai(usage)
            self._sink.on_usage(self._usage)

    def _delta(self, delta: Mapping[str, Any]) -> None:
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._sink.on_text(content)
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for position, piece in enumerate(tool_calls):
                if isinstance(piece, dict):
                    self._tool_piece(position, piece)

    def _tool_piece(self, position: int, piece: Mapping[str, Any]) -> None:
        index = piece.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = position
        function = piece.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            # Some servers send the arguments as an object, not JSON text.
            arguments = json.dumps(arguments)
        arguments = arguments if isinstance(arguments, str) else ""
        if index not in self._tools:
            self._tools.add(index)
            call_id = piece.get("id")
            name = function.get("name")
            # llama.cpp and older Ollama builds omit the id: the run names the
            # call (agents.model_step.new_tool_call_id, the one generator).
            self._sink.on_tool_call(
                index,
                call_id if isinstance(call_id, str) and call_id else None,
                name if isinstance(name, str) else "",
                arguments,
            )
        elif arguments:
            self._sink.on_tool_call(index, None, None, arguments)

    def one_shot(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise malformed_stream("upstream answered with JSON that is not an object")
        if payload.get("error"):
            raise classify_payload(payload, secrets=self._secrets)
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise malformed_stream("upstream answered with JSON that is not a chat completion")
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict):
            self._delta(message)
        reason = choice.get("finish_reason")
        self._finish = reason if isinstance(reason, str) and reason else "stop"
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._usage = usage_from_openai(usage)
            self._sink.on_usage(self._usage)
        self._done = True

    def outcome(self, at_eof: bool) -> StreamOutcome:
        if not self._done and self._finish is None:
            raise malformed_stream("upstream stream ended before the completion finished")
        reason: StopReason = _FINISH_REASONS.get(self._finish or "stop", "stop")
        if self._tools and reason == "stop":
            reason = "tool_calls"
        return StreamOutcome(stop_reason=reason, usage=self._usage)


class OpenAICompletionsProvider(StreamingHTTPProvider):
    """Streams chat completions from an OpenAI-compatible upstream."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        clock: IReactorTime,
        client: UpstreamClient | None = None,
        agent: IAgent | None = None,
    ) -> None:
        api_headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        super().__init__(
            config,
            client=client,
            agent=agent,
            clock=clock,
            url=chat_completions_url(config.base_url),
            api_headers=api_headers,
        )

    def request_body(self, call: ModelCall) -> dict[str, Any]:
        """The JSON request for ``call``."""
        return request_body(call, self._max_tokens_field(call.model))

    def _max_tokens_field(self, model: str) -> str:
        """``compat.maxTokensField`` of the model's entry; by default OpenAI's
        own API gets ``max_completion_tokens`` (its reasoning models refuse
        ``max_tokens``), other servers ``max_tokens``, as OpenClaw sends them."""
        for entry in self._config.models:
            if entry.id == model and entry.max_tokens_field is not None:
                return entry.max_tokens_field
        host = urlsplit(self._config.base_url or DEFAULT_BASE_URL).hostname or ""
        return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"

    def decoder(self, sink: StreamSink, secrets: tuple[str, ...]) -> _ChunkDecoder:
        """A decoder feeding ``sink``."""
        return _ChunkDecoder(sink, secrets)
