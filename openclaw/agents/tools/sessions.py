"""``sessions_list``, ``sessions_history`` and ``session_status``: read-only session tools.

They read through :class:`SessionsView`, a small Protocol the session store
(:class:`openclaw.sessions.interface.SessionCatalog`) already satisfies, so the
gateway passes its store as is. An agent sees only its own sessions. Message
text is bounded (4000 characters per text block, 80 KB per answer) and
credential-shaped text is masked, as OpenClaw's ``sessions_history`` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from openclaw.agents.tools._common import (
    BlockingRunner,
    error,
    guarded,
    inline_runner,
    opt_bool,
    opt_int,
    opt_str,
    req_str,
)
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.user_time import format_user_time
from openclaw.core.redaction import redact_credentials
from openclaw.sessions.entry import SessionEntry

TEXT_BLOCK_CHARS = 4000
HISTORY_BYTES = 80 * 1024
LIST_MAX = 200
KINDS = ("main", "group", "cron", "hook", "node", "other")


class SessionsView(Protocol):
    """What the session tools read (the store's ``SessionCatalog`` fits)."""

    def list_sessions(self, agent_id: str) -> Sequence[SessionEntry]:
        """Every session of the agent, most recently updated first."""
        ...

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        """The session under ``session_key``, if any."""
        ...

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> Sequence[dict[str, Any]]:
        """The newest ``limit`` messages, oldest first, in ``chat.history``'s shape
        (user and assistant ones; tool results too with ``include_tools``)."""
        ...


def kind_of(key: str) -> str:
    """OpenClaw's session kind, from the key's shape."""
    parts = key.split(":")
    rest = parts[2:] if len(parts) > 2 and parts[0] == "agent" else parts
    if rest == ["main"] or key == "main":
        return "main"
    for marker in ("group", "channel"):
        if marker in rest:
            return "group"
    for kind in ("cron", "hook", "node"):
        if rest and rest[0] == kind:
            return kind
    return "other"


def resolve_key(agent_id: str, key: str) -> str:
    """``main`` and bare keys become the agent's canonical ``agent:<id>:<key>``."""
    return key if key.startswith("agent:") or key == "global" else f"agent:{agent_id}:{key}"


def _row(entry: SessionEntry) -> dict[str, Any]:
    extra = entry.extra
    row: dict[str, Any] = {
        "key": entry.key,
        "sessionId": entry.session_id,
        "agentId": entry.agent_id,
        "kind": kind_of(entry.key),
        "updatedAt": entry.updated_at,
    }
    for name in (
        "label",
        "displayName",
        "model",
        "modelProvider",
        "totalTokens",
        "inputTokens",
        "outputTokens",
        "channel",
    ):
        value = extra.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            row[name] = value
    return row


def _clip_text(text: str, flags: dict[str, bool]) -> str:
    masked = redact_credentials(text)
    if masked != text:
        flags["contentRedacted"] = True
    if len(masked) > TEXT_BLOCK_CHARS:
        flags["contentTruncated"] = True
        return masked[:TEXT_BLOCK_CHARS] + "\n[truncated]"
    return masked


def _message(raw: Mapping[str, Any], flags: dict[str, bool]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": raw.get("role")}
    content = raw.get("content")
    if isinstance(content, str):
        out["content"] = _clip_text(content, flags)
    elif isinstance(content, list):
        blocks: list[Any] = []
        for block in content:
            if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                blocks.append({**block, "text": _clip_text(block["text"], flags)})
            elif isinstance(block, Mapping) and block.get("type") in ("image", "image_url"):
                blocks.append({"type": "image", "omitted": True})
            elif isinstance(block, Mapping) and block.get("type") not in ("thinking",):
                blocks.append({k: v for k, v in block.items() if k != "thinkingSignature"})
        out["content"] = blocks
    for name in ("timestamp", "stopReason", "toolName", "toolCallId", "isError"):
        if name in raw:
            out[name] = raw[name]
    return out


class _SessionTool:
    def __init__(self, view: SessionsView, run_blocking: BlockingRunner = inline_runner) -> None:
        self._view = view
        self._blocking = run_blocking

    name = ""

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Validate, then read through the view."""
        return guarded(self.name, self._run, arguments, context)

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        raise NotImplementedError

    @staticmethod
    def _agent(args: Mapping[str, Any], context: ToolContext) -> str:
        agent = opt_str(args, "agentId", max_chars=64)
        if agent is not None and agent != context.agent_id:
            raise ToolArgumentError(f"Sessions of agent {agent!r} are not visible to this agent")
        return context.agent_id


def _json_result(payload: Mapping[str, Any]) -> ToolResult:
    return ToolResult(content=json.dumps(payload, ensure_ascii=False), details=dict(payload))


class SessionsListTool(_SessionTool):
    """``sessions_list``: the agent's sessions with optional filters and previews."""

    name = "sessions_list"
    description = "List this agent's sessions (key, id, kind, label, model, tokens, last update)."
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "kinds": {"type": "array", "items": {"type": "string", "enum": list(KINDS)}},
            "limit": {"type": "number", "description": "Rows per page (default 100, max 200)"},
            "offset": {"type": "number", "description": "Continue from nextOffset"},
            "activeMinutes": {"type": "number", "description": "Only sessions updated recently"},
            "messageLimit": {"type": "number", "description": "Include the last N messages (<=20)"},
            "label": {"type": "string"},
            "agentId": {"type": "string"},
            "search": {"type": "string", "description": "Substring of key or label"},
        },
    }

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        agent = self._agent(args, context)
        limit = opt_int(args, "limit", minimum=1) or 100
        applied = min(limit, LIST_MAX)
        offset = opt_int(args, "offset", minimum=0) or 0
        active = opt_int(args, "activeMinutes", minimum=1)
        message_limit = opt_int(args, "messageLimit", minimum=0, maximum=20) or 0
        label = opt_str(args, "label", max_chars=256)
        search = (opt_str(args, "search", max_chars=256) or "").lower()
        kinds = args.get("kinds")
        if kinds is not None and (
            not isinstance(kinds, list) or any(k not in KINDS for k in kinds)
        ):
            raise ToolArgumentError(f"kinds must be a list of {', '.join(KINDS)}")

        def work() -> ToolResult:
            cutoff = (time.time() - active * 60) * 1000 if active else None
            rows = []
            for entry in self._view.list_sessions(agent):
                row = _row(entry)
                if kinds and row["kind"] not in kinds:
                    continue
                if cutoff is not None and entry.updated_at < cutoff:
                    continue
                if label is not None and row.get("label") != label:
                    continue
                if (
                    search
                    and search not in entry.key.lower()
                    and search not in str(row.get("label", "")).lower()
                ):
                    continue
                rows.append((entry, row))
            page = rows[offset : offset + applied]
            sessions = []
            flags: dict[str, bool] = {}
            for entry, row in page:
                if message_limit:
                    raw = self._view.read_messages(agent, entry.key, message_limit)
                    row["messages"] = [_message(m, flags) for m in raw]
                sessions.append(row)
            more = offset + applied < len(rows)
            payload: dict[str, Any] = {
                "count": len(sessions),
                "sessions": sessions,
                "limitApplied": applied,
                "hasMore": more,
            }
            if more:
                payload["nextOffset"] = offset + applied
            return _json_result(payload)

        return self._blocking(work)


class SessionsHistoryTool(_SessionTool):
    """``sessions_history``: a bounded, redacted transcript tail of one session."""

    name = "sessions_history"
    description = "Read the recent messages of one of this agent's sessions by sessionKey."
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "sessionKey": {"type": "string", "description": "Session key (e.g. main)"},
            "limit": {"type": "number", "description": "Newest N messages (default 50)"},
            "includeTools": {"type": "boolean", "description": "Include tool results"},
        },
        "required": ["sessionKey"],
    }

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        agent = context.agent_id
        key = resolve_key(agent, req_str(args, "sessionKey", max_chars=512))
        limit = opt_int(args, "limit", minimum=1, maximum=500) or 50
        include_tools = opt_bool(args, "includeTools") or False

        def work() -> ToolResult:
            entry = self._view.get_session(agent, key)
            if entry is None or entry.agent_id != agent:
                return error(f"Session not found or not visible: {key}")
            flags = {"contentTruncated": False, "contentRedacted": False}
            messages = [
                _message(m, flags)
                for m in self._view.read_messages(agent, key, limit, include_tools=include_tools)
            ]
            dropped = 0
            while messages and len(json.dumps(messages, ensure_ascii=False)) > HISTORY_BYTES:
                messages.pop(0)
                dropped += 1
            payload = {
                "sessionKey": key,
                "sessionId": entry.session_id,
                "messages": messages,
                "truncated": dropped > 0 or flags["contentTruncated"],
                "droppedMessages": dropped,
                **flags,
                "hasMore": False,
            }
            return _json_result(payload)

        return self._blocking(work)


class SessionStatusTool(_SessionTool):
    """``session_status``: a ``/status``-style card for a session (default: the current one)."""

    name = "session_status"
    description = (
        "Show the current time and a session's status (default: current): id, model,"
        " tokens, last update."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "sessionKey": {"type": "string", "description": "Session key (default: current)"},
            "model": {"type": "string", "description": "Per-session model override"},
        },
    }

    def __init__(
        self,
        view: SessionsView,
        run_blocking: BlockingRunner = inline_runner,
        *,
        clock: IReactorTime,
        timezone: str | None = None,
    ) -> None:
        super().__init__(view, run_blocking)
        self._clock = clock
        self._timezone = timezone

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        agent = context.agent_id
        raw = opt_str(args, "sessionKey", max_chars=512)
        key = context.session_key if raw is None else resolve_key(agent, raw)
        # The prompt carries the date only (a stable prompt cache): this line is
        # how the model learns the time, as from OpenClaw's status card.
        now = format_user_time(self._clock.seconds(), self._timezone)
        if opt_str(args, "model", max_chars=256) is not None:
            raise ToolArgumentError("session_status cannot set a model override on this gateway")

        def work() -> ToolResult:
            entry = self._view.get_session(agent, key)
            if entry is None or entry.agent_id != agent:
                return error(f"Session not found or not visible: {key}")
            row = _row(entry)
            updated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.updated_at / 1000))
            lines = [
                f"Time: {now}",
                f"Session: {entry.key}",
                f"Session id: {entry.session_id}",
                f"Agent: {entry.agent_id}",
                f"Kind: {row['kind']}",
                f"Updated: {updated}",
            ]
            if "model" in row:
                lines.append(f"Model: {row['model']}")
            if "totalTokens" in row:
                lines.append(f"Tokens: {row['totalTokens']}")
            return ToolResult(content="\n".join(lines), details=row)

        return self._blocking(work)
