# -*- test-case-name: tests.test_fake_upstream -*-
"""The two wire formats of the fake upstreams: OpenAI chat completions and
Anthropic messages (see :mod:`openclaw.testing.upstream` for the knobs)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from openclaw.testing.upstream import (
    _RESET,
    _STALL,
    FakeReply,
    FakeUpstream,
    Frame,
    _dumps,
    _halves,
)


class FakeOpenAIUpstream(FakeUpstream):
    """An OpenAI-compatible ``POST .../chat/completions`` upstream."""

    def _path_ok(self, path: str) -> bool:
        return path.endswith("/chat/completions")

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.api_key}"

    def _error_json(
        self, status: int, message: str, err_type: str | None, code: str | None
    ) -> bytes:
        default_type = "invalid_request_error" if status < 500 else "server_error"
        return _dumps(
            {
                "error": {
                    "message": message,
                    "type": err_type or default_type,
                    "param": None,
                    "code": code,
                }
            }
        )

    def _usage(self, reply: FakeReply, chunk_count: int | None = None) -> dict[str, Any]:
        usage = reply.usage
        prompt = usage.input_tokens + usage.cache_read
        completion = reply.output_tokens(chunk_count)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read},
        }

    def _finish_reason(self, reply: FakeReply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _one_shot(self, reply: FakeReply, body: Mapping[str, Any], serial: int) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": reply.tool_call_id(i),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for i, call in enumerate(reply.tool_calls)
            ]
        return _dumps(
            {
                "id": f"chatcmpl-fake-{serial}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake-model"),
                "choices": [
                    {"index": 0, "message": message, "finish_reason": self._finish_reason(reply)}
                ],
                "usage": self._usage(reply),
            }
        )

    def _stream(self, reply: FakeReply, body: Mapping[str, Any], serial: int) -> Iterator[Frame]:
        head = (
            b'data: {"id":"chatcmpl-fake-%d","object":"chat.completion.chunk","created":0,'
            b'"model":%s,"choices":[{"index":0,"delta":'
            % (serial, _dumps(str(body.get("model", "fake-model"))))
        )
        tail_open = b',"finish_reason":null}]}\n\n'

        def chunk(delta: bytes) -> bytes:
            return head + delta + tail_open

        def text(piece: str) -> bytes:
            return head + b'{"content":' + _dumps(piece) + b"}" + tail_open

        yield chunk(b'{"role":"assistant","content":""}')
        pieces = reply.pieces()
        if reply.mode == "endless":
            encoded = [text(p) for p in pieces] or [text("x")]
            yield from itertools.cycle(encoded)
            return
        for i, piece in enumerate(pieces):
            if i == reply.fail_after_chunks and self._fails(reply):
                yield from self._failure(reply)
                return
            yield text(piece)
        if self._fails(reply):
            yield from self._failure(reply)
            return
        for i, call in enumerate(reply.tool_calls):
            start = {
                "tool_calls": [
                    {
                        "index": i,
                        "id": reply.tool_call_id(i),
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
            yield chunk(_dumps(start))
            for part in _halves(call.arguments):
                yield chunk(_dumps({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
        finish = _dumps(self._finish_reason(reply))
        yield head + b"{}" + b',"finish_reason":' + finish + b"}]}\n\n"
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            yield (
                b'data: {"id":"chatcmpl-fake-%d","object":"chat.completion.chunk","created":0,'
                b'"model":%s,"choices":[],"usage":%s}\n\n'
                % (
                    serial,
                    _dumps(str(body.get("model", "fake-model"))),
                    _dumps(self._usage(reply, len(pieces))),
                )
            )
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _fails(reply: FakeReply) -> bool:
        return reply.mode in ("reset_mid_stream", "malformed", "stall", "error_frame")

    def _failure(self, reply: FakeReply) -> Iterator[Frame]:
        if reply.mode == "reset_mid_stream":
            yield _RESET
        elif reply.mode == "stall":
            yield _STALL
        elif reply.mode == "malformed":
            yield b"data: {this is not json\n\n"
        else:
            error = {
                "message": reply.error_message,
                "type": reply.error_type or "server_error",
                "code": reply.error_code,
            }
            yield b"data: " + _dumps({"error": error}) + b"\n\n"


class FakeAnthropicUpstream(FakeUpstream):
    """An Anthropic Messages ``POST .../v1/messages`` upstream."""

    def _path_ok(self, path: str) -> bool:
        return path.endswith("/v1/messages")

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("x-api-key") == self.api_key

    def _error_json(
        self, status: int, message: str, err_type: str | None, code: str | None
    ) -> bytes:
        default = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return _dumps({"type": "error", "error": {"type": err_type or default, "message": message}})

    @staticmethod
    def _stop_reason(reply: FakeReply) -> str:
        if reply.finish_reason:
            return reply.finish_reason
        return "tool_use" if reply.tool_calls else "end_turn"

    def _one_shot(self, reply: FakeReply, body: Mapping[str, Any], serial: int) -> bytes:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, call in enumerate(reply.tool_calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": reply.tool_call_id(i),
                    "name": call.name,
                    "input": json.loads(call.arguments or "{}"),
                }
            )
        usage = reply.usage
        return _dumps(
            {
                "id": f"msg_fake_{serial}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "fake-model"),
                "content": content,
                "stop_reason": self._stop_reason(reply),
                "stop_sequence": None,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "cache_read_input_tokens": usage.cache_read,
                    "cache_creation_input_tokens": usage.cache_write,
                    "output_tokens": reply.output_tokens(),
                },
            }
        )

    def _stream(self, reply: FakeReply, body: Mapping[str, Any], serial: int) -> Iterator[Frame]:
        def event(name: bytes, payload: Any) -> bytes:
            return b"event: " + name + b"\ndata: " + _dumps(payload) + b"\n\n"

        usage = reply.usage
        yield event(
            b"message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake_{serial}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", "fake-model"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": usage.input_tokens,
                        "cache_creation_input_tokens": usage.cache_write,
                        "cache_read_input_tokens": usage.cache_read,
                        "output_tokens": 1,
                    },
                },
            },
        )
        yield event(b"ping", {"type": "ping"})
        pieces = reply.pieces()
        block = 0
        if pieces or reply.mode == "endless":
            yield event(
                b"content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            head = (
                b"event: content_block_delta\ndata: "
                b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
            )

            def text(piece: str) -> bytes:
                return head + _dumps(piece) + b"}}\n\n"

            if reply.mode == "endless":
                yield from itertools.cycle([text(p) for p in pieces] or [text("x")])
                return
            for i, piece in enumerate(pieces):
                if i == reply.fail_after_chunks and FakeOpenAIUpstream._fails(reply):
                    yield from self._failure(reply)
                    return
                yield text(piece)
            yield event(b"content_block_stop", {"type": "content_block_stop", "index": 0})
            block = 1
        if FakeOpenAIUpstream._fails(reply):
            yield from self._failure(reply)
            return
        for i, call in enumerate(reply.tool_calls):
            index = block + i
            yield event(
                b"content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": reply.tool_call_id(i),
                        "name": call.name,
                        "input": {},
                    },
                },
            )
            for part in _halves(call.arguments):
                yield event(
                    b"content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part},
                    },
                )
            yield event(b"content_block_stop", {"type": "content_block_stop", "index": index})
        yield event(
            b"message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens(len(pieces))},
            },
        )
        yield event(b"message_stop", {"type": "message_stop"})

    def _failure(self, reply: FakeReply) -> Iterator[Frame]:
        if reply.mode == "reset_mid_stream":
            yield _RESET
        elif reply.mode == "stall":
            yield _STALL
        elif reply.mode == "malformed":
            yield b"event: content_block_delta\ndata: {this is not json\n\n"
        else:
            error = {"type": reply.error_type or "overloaded_error", "message": reply.error_message}
            yield b"event: error\ndata: " + _dumps({"type": "error", "error": error}) + b"\n\n"
