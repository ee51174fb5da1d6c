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

from attrs import frozen

from openclaw.agents.compaction import HistoryEntry, summary_message
from openclaw.agents.providers.base import ModelMessage
from openclaw.core.types import ImageInput, ToolCall
from openclaw.sessions.interface import TranscriptStore
from openclaw.sessions.transcript import FAILED_STOPS, STEP_MARK, message_of

#: How many messages of history the model sees by default.
DEFAULT_HISTORY_LIMIT = 200


def _unfinished(message: Mapping[str, Any]) -> bool:
    """Whether a run whose newest assistant message is ``message`` did not
    complete: it failed or was aborted, or it stopped in a tool step."""
    return message.get("stopReason") in FAILED_STOPS or message.get(STEP_MARK) is True


@frozen
class History:
    """What the model sees of a session, and what compaction works on."""

    #: The conversation to send (normalised for strict upstreams).
    messages: list[ModelMessage]
    #: The same messages before normalisation, each with its JSONL entry id.
    entries: list[HistoryEntry]
    #: The latest compaction summary, when the session was compacted.
    summary: str | None = None


def load_history(
    store: TranscriptStore, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
) -> list[ModelMessage]:
    """The last ``limit`` messages of completed turns, oldest first (see :func:`read_history`)."""
    return read_history(store, agent_id, session_id, limit).messages


def read_history(
    store: TranscriptStore, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
) -> History:
    """The session as the model sees it: after its latest compaction (the summary,
    then the messages from ``firstKeptEntryId`` on), the last ``limit`` messages
    of completed turns.

    A turn whose reply failed, was aborted or never arrived (crash) is left
    out entirely (its tool steps too), so the model never sees half a turn.
    Built-in tool calls come back as assistant ``tool_calls`` followed by
    ``tool`` messages; client tool calls (answered in a later user turn) as
    text lines. Consecutive messages of one role are merged and the history
    starts with a user message, so strict upstreams (Anthropic) accept it.
    """
    if limit <= 0:
        return History([], [])
    run_ok: dict[str, bool] = {}
    answered: set[str] = set()
    kept: list[HistoryEntry] = []
    # Tool results newer than their run's last assistant message (a turn that
    # ended with client tool calls pending): held until that message says
    # whether the run completed.
    held: list[tuple[str, Mapping[str, Any]]] = []
    held_run: str | None = None
    summary: str | None = None
    first_kept: object = None
    for entry in store.recent_entries(agent_id, session_id):
        entry_id = entry.get("id")
        entry_id = entry_id if isinstance(entry_id, str) else ""
        if entry.get("type") == "compaction":
            if summary is not None:
                break  # an older compaction: everything before the newer one is summarised
            raw = entry.get("summary")
            summary = raw if isinstance(raw, str) else ""
            first_kept = entry.get("firstKeptEntryId")
            continue
        if summary is not None and first_kept is None:
            break
        message = message_of(entry)
        if message is None:
            continue
        run_id = entry.get("runId") or message.get("runId")
        run_id = run_id if isinstance(run_id, str) else None
        role = message.get("role")
        if role == "toolResult" and run_id is not None and run_id not in run_ok:
            if held_run != run_id:
                held, held_run = [], run_id
            held.append((entry_id, message))
            continue
        if held:
            if run_id is not None and run_id == held_run and role == "assistant":
                run_ok.setdefault(run_id, not _unfinished(message))
            for held_id, held_message in held:
                result = _convert(held_message, held_run, run_ok, answered)
                if result is not None and len(kept) < limit + 1:
                    kept.append(HistoryEntry(held_id, result))
            held, held_run = [], None
        converted = _convert(message, run_id, run_ok, answered)
        if converted is not None and len(kept) < limit + 1:
            kept.append(HistoryEntry(entry_id, converted))
        if summary is not None and entry_id == first_kept:
            break
        if len(kept) >= limit + 1 and summary is None:
            break
    kept.reverse()
    messages = [e.message for e in kept]
    if summary is not None:
        messages.insert(0, summary_message(summary))
    history = normalise_history(messages)
    if len(history) > limit:
        history = normalise_history(history[-limit:])
    return History(history, kept, summary)


def _convert(
    message: Mapping[str, Any], run_id: str | None, run_ok: dict[str, bool], answered: set[str]
) -> ModelMessage | None:
    """One stored message for the model, or None when it is not replayed.

    Messages arrive newest first: a run's final assistant message (which says
    whether the run completed) comes before its earlier steps and user message.
    """
    role = message.get("role")
    if role == "assistant":
        if run_id is not None:
            ok = run_ok.setdefault(run_id, not _unfinished(message))
            if not ok:
                return None
        elif message.get("stopReason") in FAILED_STOPS:
            return None
        return _assistant_for_model(message, answered)
    if run_id is not None and not run_ok.get(run_id, False):
        return None
    if role == "user":
        return _user_for_model(message)
    if role == "toolResult":
        call_id = message.get("toolCallId")
        if not isinstance(call_id, str):
            return None
        answered.add(call_id)
        return ModelMessage(
            role="tool",
            content=_text_of(message.get("content")),
            tool_call_id=call_id,
            is_error=message.get("isError") is True,
        )
    return None


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


def _assistant_for_model(message: Mapping[str, Any], answered: set[str]) -> ModelMessage | None:
    """Assistant text plus its tool calls.

    Calls answered by a ``toolResult`` message (built-in tools the gateway
    ran) stay structured, followed by their results. Client tool calls are
    replayed as text (``tool_call id=... name=... arguments=...``, OpenClaw's
    rendering) because their results come back as text in a later user turn;
    a structured call without a matching ``tool`` message would be rejected
    by OpenAI-compatible upstreams.
    """
    content = message.get("content")
    text = _text_of(content)
    pieces = [text] if text else []
    calls: list[ToolCall] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "toolCall":
                args = block.get("arguments")
                args_text = args if isinstance(args, str) else json.dumps(args)
                call_id = block.get("id")
                if isinstance(call_id, str) and call_id in answered:
                    calls.append(
                        ToolCall(id=call_id, name=str(block.get("name")), arguments=args_text)
                    )
                    continue
                pieces.append(
                    f"tool_call id={block.get('id')} name={block.get('name')} arguments={args_text}"
                )
    joined = "\n".join(pieces)
    if not joined and not calls:
        return None
    return ModelMessage(role="assistant", content=joined, tool_calls=tuple(calls))


def normalise_history(messages: list[ModelMessage]) -> list[ModelMessage]:
    """Merge consecutive messages of one role, start with a user message, and
    keep a ``tool`` message only right after the assistant call it answers, so
    strict upstreams (Anthropic, OpenAI) accept the history."""
    out: list[ModelMessage] = []
    open_calls: set[str] = set()
    for message in messages:
        if not out and message.role != "user":
            continue
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                continue  # its call is not in the history (cut off, or never stored)
            open_calls.discard(message.tool_call_id)
            out.append(message)
            continue
        open_calls = (
            {call.id for call in message.tool_calls} if message.role == "assistant" else set()
        )
        if out and out[-1].role == message.role and not out[-1].tool_calls:
            previous = out[-1]
            out[-1] = ModelMessage(
                role=previous.role,
                content="\n\n".join(p for p in (previous.content, message.content) if p),
                images=previous.images + message.images,
                tool_calls=message.tool_calls,
            )
            continue
        out.append(message)
    return out
