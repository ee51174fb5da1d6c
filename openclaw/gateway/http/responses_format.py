# -*- test-case-name: tests.test_responses_format -*-
"""The JSON ``/v1/responses`` writes: the ``response`` object, its output items,
usage, and the streamed events.

Pure functions and small value builders, so the wire shapes are tested
without HTTP. A stream is a :class:`ResponseEvents`: it numbers every event
(``sequence_number``) and frames it as ``event: <type>`` plus ``data: <json>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from attrs import frozen

from openclaw.agents.types import AgentResult, ToolCall, Usage
from openclaw.core.fastjson import dumps_escaped
from openclaw.core.ids import random_uuid4
from openclaw.gateway.http.completions_format import (
    EMPTY_REPLY_TEXT,
    MappedError,
    split_utf16,
    usage_to_openai,
)

Status = Literal["in_progress", "completed", "incomplete", "failed"]
#: An assistant message's role in the turn: narration before client tool calls,
#: or the answer (OpenClaw's and OpenAI's ``phase``).
Phase = Literal["commentary", "final_answer"]


def new_item_id(prefix: str) -> str:
    """``msg_...`` / ``fc_...``: an output item id."""
    return f"{prefix}_{random_uuid4().replace('-', '')}"


def _tokens(value: float) -> int:
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else 0


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenClaw's usage with the Responses API's names (same counting as chat)."""
    chat = usage_to_openai(usage)
    return {
        "input_tokens": chat["prompt_tokens"],
        "input_tokens_details": {
            "cached_tokens": chat.get("prompt_tokens_details", {}).get("cached_tokens", 0),
            "cache_write_tokens": _tokens(usage.cache_write),
        },
        "output_tokens": chat["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat["total_tokens"],
    }


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(
    item_id: str, text: str, status: Status = "completed", phase: Phase | None = None
) -> dict[str, Any]:
    """An assistant ``message`` output item (no parts while it is in progress;
    ``phase`` once it is known, at the end)."""
    item: dict[str, Any] = {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else [text_part(text)],
    }
    if phase is not None:
        item["phase"] = phase
    return item


def message_phase(result: AgentResult) -> Phase:
    """``commentary`` when the reply comes with client tool calls, else ``final_answer``."""
    return "commentary" if result.pending_tool_calls else "final_answer"


def function_call_item(
    item_id: str, call: ToolCall, status: Status = "completed"
) -> dict[str, Any]:
    """A ``function_call`` output item: the client runs the tool."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": "" if status == "in_progress" else call.arguments,
    }


def error_json(error: MappedError) -> dict[str, str]:
    """A ``response.error``: OpenAI's codes are a closed set (the message says more)."""
    code = "rate_limit_exceeded" if error.status == 429 else "server_error"
    return {"code": code, "message": error.message}


def result_status(result: AgentResult) -> Status:
    """``incomplete`` when the output budget cut the reply, else ``completed``."""
    return "incomplete" if result.stop_reason == "length" else "completed"


@frozen
class ResponseShell:
    """What every ``response`` object of one request repeats."""

    response_id: str
    created_at: int
    model: str
    instructions: str | None = None
    previous_response_id: str | None = None
    metadata: Any = None
    user: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: Sequence[Any] = ()
    tool_choice: object = "auto"
    #: ``text.format`` as requested (None: plain text).
    text_format: Any = None

    def response(
        self,
        status: Status,
        output: Sequence[dict[str, Any]] = (),
        *,
        usage: Usage | None = None,
        error: MappedError | None = None,
    ) -> dict[str, Any]:
        """The ``response`` object in ``status``."""
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None if error is None else error_json(error),
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": list(output),
            "parallel_tool_calls": True,
            "previous_response_id": self.previous_response_id,
            "reasoning": None,
            "store": False,
            "temperature": self.temperature,
            "text": {"format": self.text_format or {"type": "text"}},
            "tool_choice": self.tool_choice,
            "tools": list(self.tools),
            "top_p": self.top_p,
            "truncation": "disabled",
            "usage": None if usage is None else usage_json(usage),
            "user": self.user,
            "metadata": dict(self.metadata or {}),
        }

    def completed(self, result: AgentResult) -> dict[str, Any]:
        """The non-streaming answer for a settled run."""
        status = result_status(result)
        output: list[dict[str, Any]] = []
        if result.text or not result.pending_tool_calls:
            text = result.text or EMPTY_REPLY_TEXT
            output.append(message_item(new_item_id("msg"), text, status, message_phase(result)))
        output.extend(
            function_call_item(new_item_id("fc"), call) for call in result.pending_tool_calls
        )
        return self.response(status, output, usage=result.usage)


def event_frame(event: dict[str, Any]) -> bytes:
    """``event: <type>`` and ``data: <json>``: the Responses SSE framing (a
    lone surrogate is written as a ``\\uXXXX`` escape, never an error)."""
    kind = str(event["type"]).encode("ascii")
    return b"event: " + kind + b"\ndata: " + dumps_escaped(event) + b"\n\n"


_encode_string = json.encoder.encode_basestring
_encode_ascii = json.encoder.encode_basestring_ascii


class ResponseEvents:
    """The events of one streamed response, numbered from 0.

    The message item is opened on the first text (a reply that is only tool
    calls has no message item); text deltas are framed from a template, so a
    delta costs one string encoding.
    """

    def __init__(self, shell: ResponseShell) -> None:
        self.shell = shell
        self._sequence = 0
        self.output: list[dict[str, Any]] = []
        self._message_id: str | None = None
        self._message_index = 0
        self._delta_head = b""

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event_frame(event)

    def opening(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        response = self.shell.response("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    @property
    def message_open(self) -> bool:
        """True once the message item has been announced."""
        return self._message_id is not None

    def open_message(self) -> list[bytes]:
        """``output_item.added`` and ``content_part.added`` for the message."""
        item_id = self._message_id = new_item_id("msg")
        self._message_index = len(self.output)
        self.output.append(message_item(item_id, "", "in_progress"))
        ids = {"item_id": item_id, "output_index": self._message_index, "content_index": 0}
        self._delta_head = (
            f'"item_id":"{item_id}","output_index":{self._message_index},"content_index":0,'
        ).encode("ascii")
        return [
            self._event(
                "response.output_item.added", output_index=self._message_index, item=self.output[-1]
            ),
            self._event("response.content_part.added", **ids, part=text_part("")),
        ]

    def text_delta(self, delta: str) -> bytes:
        """One ``response.output_text.delta`` (the message must be open)."""
        sequence = self._sequence
        self._sequence += 1
        try:
            encoded = _encode_string(delta).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: a \uXXXX escape, as in event_frame
            encoded = _encode_ascii(delta).encode("ascii")
        return (
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            + self._delta_head
            + b'"delta":'
            + encoded
            + b',"logprobs":[],"sequence_number":'
            + str(sequence).encode("ascii")
            + b"}\n\n"
        )

    def close_message(self, text: str, status: Status, phase: Phase | None = None) -> list[bytes]:
        """``output_text.done``, ``content_part.done`` and ``output_item.done``."""
        assert self._message_id is not None
        ids = {"item_id": self._message_id, "output_index": self._message_index, "content_index": 0}
        item = message_item(self._message_id, text, status, phase)
        self.output[self._message_index] = item
        return [
            self._event("response.output_text.done", **ids, text=text, logprobs=[]),
            self._event("response.content_part.done", **ids, part=text_part(text)),
            self._event("response.output_item.done", output_index=self._message_index, item=item),
        ]

    def function_calls(self, calls: Sequence[ToolCall]) -> list[bytes]:
        """Each call: added, argument deltas (256 UTF-16 units at most), done."""
        frames: list[bytes] = []
        for call in calls:
            index = len(self.output)
            item_id = new_item_id("fc")
            self.output.append(function_call_item(item_id, call, "in_progress"))
            frames.append(
                self._event("response.output_item.added", output_index=index, item=self.output[-1])
            )
            for piece in split_utf16(call.arguments):
                frames.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=item_id,
                        output_index=index,
                        delta=piece,
                    )
                )
            frames.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=index,
                    name=call.name,
                    arguments=call.arguments,
                )
            )
            item = self.output[index] = function_call_item(item_id, call)
            frames.append(self._event("response.output_item.done", output_index=index, item=item))
        return frames

    def finished(self, status: Status, usage: Usage) -> bytes:
        """``response.completed`` (or ``response.incomplete``) with the whole response."""
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        return self._event(kind, response=self.shell.response(status, self.output, usage=usage))

    def failed(self, error: MappedError) -> bytes:
        """``response.failed``: what was sent so far, and the error."""
        return self._event(
            "response.failed", response=self.shell.response("failed", self.output, error=error)
        )
