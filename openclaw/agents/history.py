"""A session's transcript -> the conversation the model is sent.

The session store yields stored messages (pi-agent's shape) newest first;
this module picks what is replayed (OpenClaw's rules for turns that did not
complete) and turns it into
:class:`~openclaw.agents.providers.base.ModelMessage` values. It lives in the
agent layer because the model's message shape is the runtime's business, not
the store's: the store never imports a provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from attrs import frozen

from openclaw.agents.compaction import HistoryEntry, summary_message
from openclaw.agents.providers.base import ModelMessage
from openclaw.core.types import ImageInput, ToolCall
from openclaw.sessions.interface import TranscriptStore
from openclaw.sessions.transcript import FAILED_STOPS, STEP_MARK, message_of

#: How many messages of history the model sees by default.
DEFAULT_HISTORY_LIMIT = 200
#: What replaces the reply of a failed or aborted turn that had produced text
#: (OpenClaw's ``FAILED_ASSISTANT_REPLAY_TEXT``): its partial text is not sent
#: again, but the model learns that the turn did not complete.
FAILED_TURN_MARKER = (
    "[This turn failed before it completed. "
    "Do not redo its work without confirming with the user first.]"
)
#: The result sent for a tool call whose result was never recorded (the run was
#: aborted or the process died while the tool ran): OpenClaw's synthetic one.
MISSING_RESULT_TEXT = "No result provided"
#: OpenClaw's placeholder text for a stream that failed before any content:
#: such a message counts as having no text.
_STREAM_ERROR_FALLBACK = "[assistant turn failed before producing content]"

_Replay = Literal["keep", "marker", "drop"]


def _failed_replay(message: Mapping[str, Any]) -> _Replay:
    """How an assistant message is replayed (OpenClaw's
    ``resolveFailedAssistantReplay``): a completed one as it is; a failed or
    aborted one is dropped when it called tools or has no text, and otherwise
    replaced by :data:`FAILED_TURN_MARKER`."""
    if message.get("stopReason") not in FAILED_STOPS:
        return "keep"
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    if any(isinstance(b, dict) and b.get("type") == "toolCall" for b in blocks):
        return "drop"
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str) and text.strip() not in ("", _STREAM_ERROR_FALLBACK):
                return "marker"
    return "drop"


@frozen
class History:
    """What the model sees of a session, and what compaction works on."""

    #: The conversation to send (normalised for strict upstreams).
    messages: list[ModelMessage]
    #: The same messages before normalisation, each with its JSONL entry id.
    entries: list[HistoryEntry]
    #: The latest compaction summary, when the session was compacted.
    summary: str | None = None
    #: The id of that compaction's entry (None before the first, or when it
    #: lies beyond the history limit): the current compaction cycle.
    compaction_id: str | None = None


def load_history(
    store: TranscriptStore, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
) -> list[ModelMessage]:
    """The last ``limit`` messages of the session, oldest first (see :func:`read_history`)."""
    return read_history(store, agent_id, session_id, limit).messages


def read_history(
    store: TranscriptStore, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
) -> History:
    """The session as the model sees it: after its latest compaction (the summary,
    then the messages from ``firstKeptEntryId`` on), its last ``limit`` messages.

    As in OpenClaw, a turn that failed, was aborted or never finished (the
    process died) keeps its user message and the tool steps it completed,
    since their effects are real; only its failed reply goes: dropped when it
    had no text, otherwise replaced by :data:`FAILED_TURN_MARKER`. Built-in
    tool calls come back as assistant ``tool_calls`` followed by ``tool``
    messages (a call whose result was never recorded gets an error result,
    :data:`MISSING_RESULT_TEXT`); client tool calls (answered in a later user
    turn) as text lines. Consecutive messages of one role are merged and the
    history starts with a user message, so strict upstreams (Anthropic) accept
    it.
    """
    if limit <= 0:
        return History([], [])
    answered: set[str] = set()
    kept: list[HistoryEntry] = []
    summary: str | None = None
    compaction_id: str | None = None
    first_kept: object = None
    for entry in store.recent_entries(agent_id, session_id):
        entry_id = entry.get("id")
        entry_id = entry_id if isinstance(entry_id, str) else ""
        if entry.get("type") == "compaction":
            if summary is not None:
                break  # an older compaction: everything before the newer one is summarised
            raw = entry.get("summary")
            summary = raw if isinstance(raw, str) else ""
            compaction_id = entry_id or None
            first_kept = entry.get("firstKeptEntryId")
            continue
        if summary is not None and first_kept is None:
            break
        message = message_of(entry)
        if message is None:
            continue
        converted = _convert(message, answered)
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
    return History(history, kept, summary, compaction_id)


def _convert(message: Mapping[str, Any], answered: set[str]) -> ModelMessage | None:
    """One stored message for the model, or None when it is not replayed.

    Messages arrive newest first, so a call's result (which follows it in the
    transcript) is seen before the call: ``answered`` collects their ids.
    """
    role = message.get("role")
    if role == "assistant":
        replay = _failed_replay(message)
        if replay == "drop":
            return None
        if replay == "marker":
            return ModelMessage(role="assistant", content=FAILED_TURN_MARKER)
        return _assistant_for_model(message, answered)
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
    ran) stay structured, followed by their results; so do the calls of an
    intermediate tool step (``turnStep``: built-in tools only) whose results
    were never recorded, which :func:`normalise_history` answers with an
    error result. Client tool calls are replayed as text (``tool_call id=...
    name=... arguments=...``, OpenClaw's rendering) because their results come
    back as text in a later user turn; a structured call without a matching
    ``tool`` message would be rejected by OpenAI-compatible upstreams.
    """
    content = message.get("content")
    text = _text_of(content)
    pieces = [text] if text else []
    calls: list[ToolCall] = []
    built_in = message.get(STEP_MARK) is True
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "toolCall":
                args = block.get("arguments")
                args_text = args if isinstance(args, str) else json.dumps(args)
                call_id = block.get("id")
                if isinstance(call_id, str) and (built_in or call_id in answered):
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
    """Merge consecutive messages of one role, start with a user message, keep
    a ``tool`` message only right after the assistant call it answers, and
    answer every call left without a result with an error result
    (:data:`MISSING_RESULT_TEXT`, as OpenClaw does), so strict upstreams
    (Anthropic, OpenAI) accept the history."""
    out: list[ModelMessage] = []
    open_calls: dict[str, None] = {}  # in call order

    def answer_open_calls() -> None:
        for call_id in open_calls:
            out.append(
                ModelMessage(
                    role="tool", content=MISSING_RESULT_TEXT, tool_call_id=call_id, is_error=True
                )
            )
        open_calls.clear()

    for message in messages:
        if not out and message.role != "user":
            continue
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                continue  # its call is not in the history (cut off, or never stored)
            del open_calls[message.tool_call_id]
            out.append(message)
            continue
        answer_open_calls()
        if message.role == "assistant":
            open_calls = dict.fromkeys(call.id for call in message.tool_calls)
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
    answer_open_calls()
    return out
