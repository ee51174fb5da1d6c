"""Scripted multi-step conversations for the fake upstreams.

An agent turn with tools is several model requests: the model calls a tool,
the gateway runs it and sends the result back, the model answers. A
:class:`ToolConversation` is a fake upstream's ``responder`` that picks each
step's reply from what the request carries, so one turn works whatever the
timing (and several turns or conversations can share the fake)::

    write = FakeToolCall("write", '{"path": "a.md", "content": "x"}', id="w1")
    read = FakeToolCall("read", '{"path": "a.md"}', id="r1")
    fake.responder = ToolConversation(
        FakeReply(text="", tool_calls=(write,)),
        FakeReply(text="", tool_calls=(read,)),
        FakeReply(text="It says x."),
    )

Step ``n`` answers a request once the results of every tool call of steps
``0..n-1`` are in its messages (OpenAI ``tool`` messages or Anthropic
``tool_result`` blocks); :attr:`ToolConversation.results` keeps the result
text the model got for each call id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openclaw.testing.upstream import FakeReply, ReceivedRequest


def tool_results(body: Any) -> dict[str, str]:
    """``tool_call_id -> result text`` of the tool results a request body carries
    (OpenAI chat completions or Anthropic messages)."""
    found: dict[str, str] = {}
    messages = body.get("messages") if isinstance(body, Mapping) else None
    if not isinstance(messages, list):
        return found
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        if message.get("role") == "tool" and isinstance(message.get("tool_call_id"), str):
            found[message["tool_call_id"]] = _text(message.get("content"))
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if (
                    isinstance(block, Mapping)
                    and block.get("type") == "tool_result"
                    and isinstance(block.get("tool_use_id"), str)
                ):
                    found[block["tool_use_id"]] = _text(block.get("content"))
    return found


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b.get("text", "") for b in content if isinstance(b, Mapping) and b.get("type") == "text"
        )
    return ""


class ToolConversation:
    """Replies chosen by the tool results a request carries (see the module doc)."""

    def __init__(self, *steps: FakeReply) -> None:
        if not steps:
            raise ValueError("a conversation needs at least one step")
        for index, step in enumerate(steps[:-1]):
            if not step.tool_calls or any(call.id is None for call in step.tool_calls):
                raise ValueError(f"step {index} must call tools with explicit ids")
        self.steps = steps
        #: Tool call id -> the result text the gateway sent back.
        self.results: dict[str, str] = {}
        #: The step index answered for each request, in order.
        self.answered: list[int] = []

    def __call__(self, request: ReceivedRequest) -> FakeReply:
        results = tool_results(request.body)
        self.results.update(results)
        index = 0
        for step in self.steps[:-1]:
            if all(call.id in results for call in step.tool_calls):
                index += 1
            else:
                break
        self.answered.append(index)
        return self.steps[index]
