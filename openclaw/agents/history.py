"""A session's transcript -> the conversation the model is sent.

The session store yields stored messages (pi-agent's shape) newest first;
this module picks the completed turns and turns them into
:class:`~openclaw.agents.providers.base.ModelMessage` values. It lives in the
agent layer because the model's message shape is the runtime's business, not
the store's: the store never imports a provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from openclaw.agents.providers.base import ModelMessage
from openclaw.core.types import ImageInput
from openclaw.sessions.interface import TranscriptStore

#: How many messages of history the model sees by default.
DEFAULT_HISTORY_LIMIT = 200
_FAILED_STOPS = frozenset({"error", "aborted"})


def load_history(
    store: TranscriptStore, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
) -> list[ModelMessage]:
    """The last ``limit`` messages of completed turns, oldest first.

    A turn whose reply failed, was aborted or never arrived (crash) is left
    out entirely, so the model never sees half a turn. Consecutive messages
    of one role are merged and the history starts with a user message, so
    strict upstreams (Anthropic) accept it.
    """
    if limit <= 0:
        return []
    ok_runs: set[str] = set()
    kept: list[ModelMessage] = []
    for run_id, message in store.recent_messages(agent_id, session_id):
        role = message.get("role")
        if role == "assistant":
            if message.get("stopReason") in _FAILED_STOPS:
                continue
            if run_id is not None:
                ok_runs.add(run_id)
            converted = _assistant_for_model(message)
        elif role == "user":
            if run_id is not None and run_id not in ok_runs:
                continue
            converted = _user_for_model(message)
        else:
            continue
        if converted is not None:
            kept.append(converted)
        if len(kept) >= limit + 1:
            break
    kept.reverse()
    history = _normalise_history(kept)
    if len(history) > limit:
        history = _normalise_history(history[-limit:])
    return history


def _text_of(content: object) -> str:
    """The text blocks of a stored ``content`` (or the string itself), joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def _user_for_model(message: Mapping[str, Any]) -> ModelMessage | None:
    """A stored user message as the model sees it: its text and images."""
    content = message.get("content")
    images: list[ImageInput] = []
    if isinstance(content, list):
        for block in content:
            if (
                isinstance(block, dict)
                and block.get("type") == "image"
                and isinstance(block.get("data"), str)
                and isinstance(block.get("mimeType"), str)
            ):
                images.append(ImageInput(data=block["data"], mime_type=block["mimeType"]))
    text = _text_of(content)
    if not text and not images:
        return None
    return ModelMessage(role="user", content=text, images=tuple(images))


def _assistant_for_model(message: Mapping[str, Any]) -> ModelMessage | None:
    """Assistant text plus its tool calls rendered as text lines.

    Client tool calls are replayed as text (``tool_call id=... name=...
    arguments=...``, OpenClaw's rendering) because their results come back as
    text in a later user turn; a structured call without a matching ``tool``
    message would be rejected by OpenAI-compatible upstreams.
    """
    content = message.get("content")
    pieces = [_text_of(content)] if _text_of(content) else []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "toolCall":
                args = block.get("arguments")
                args_text = args if isinstance(args, str) else json.dumps(args)
                pieces.append(
                    f"tool_call id={block.get('id')} name={block.get('name')} arguments={args_text}"
                )
    text = "\n".join(pieces)
    if not text:
        return None
    return ModelMessage(role="assistant", content=text)


def _normalise_history(messages: list[ModelMessage]) -> list[ModelMessage]:
    """Merge consecutive messages of one role and start with a user message,
    so strict upstreams (Anthropic) accept the history."""
    out: list[ModelMessage] = []
    for message in messages:
        if not out and message.role != "user":
            continue
        if out and out[-1].role == message.role:
            previous = out[-1]
            out[-1] = ModelMessage(
                role=previous.role,
                content="\n\n".join(p for p in (previous.content, message.content) if p),
                images=previous.images + message.images,
            )
            continue
        out.append(message)
    return out
