"""What the runtime and the gateway need from session storage.

:class:`TranscriptStore` is the contract; :class:`~openclaw.sessions.store.SessionStore`
(OpenClaw's on-disk layout) is one implementation. ``agents/`` and
``gateway/`` name only these protocols, so another backend (a store shared by
several gateway processes) plugs in by implementing them, without changes
there. :class:`SessionCatalog` is the part the WebSocket methods use (list,
read, reset, delete), so their fakes need not write transcripts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from twisted.internet.defer import Deferred

from openclaw.core.types import ImageInput, StopReason, ToolCall, Usage
from openclaw.sessions.entry import SessionEntry
from openclaw.sessions.reset_policy import ResetPolicy


@runtime_checkable
class SessionCatalog(Protocol):
    """Sessions as an operator sees them: listed, read, reset and deleted."""

    def list_sessions(self, agent_id: str) -> Sequence[SessionEntry]:
        """Every session of the agent, most recently updated first."""
        ...

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        """The session under ``session_key``, if there is one."""
        ...

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> Sequence[dict[str, Any]]:
        """The newest ``limit`` messages, oldest first, in ``chat.history``'s shape
        (user and assistant ones; tool results too with ``include_tools``)."""
        ...

    def reset(self, agent_id: str, session_key: str) -> SessionEntry:
        """Start the session over under a new sessionId (the old transcript is kept aside)."""
        ...

    def delete(self, agent_id: str, session_key: str) -> bool:
        """Remove the session; False when there was none."""
        ...

    def session_path(self, agent_id: str) -> Path:
        """Where the agent's sessions live (reported by ``sessions.list``)."""
        ...


@runtime_checkable
class TranscriptStore(SessionCatalog, Protocol):
    """Sessions (key -> current sessionId) and their append-only transcripts."""

    def load_agent(self, agent_id: str) -> None:
        """Load the agent's index now (at start-up), recovering lost entries."""
        ...

    def ensure_session(
        self,
        agent_id: str,
        session_key: str,
        *,
        cwd: str | None = None,
        reset: ResetPolicy | None = None,
    ) -> SessionEntry:
        """The session under ``session_key``, created (new sessionId) when absent.

        ``reset`` is given when a user's message starts a turn: a session stale
        under that policy (:mod:`openclaw.sessions.reset_policy`) is reset
        first, as :meth:`reset` does, and the row's ``lastInteractionAt``
        becomes now. Without it (background work) neither happens."""
        ...

    def recent_messages(
        self, agent_id: str, session_id: str
    ) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
        """``(run_id, message)`` for the transcript's messages, newest first, in
        pi-agent's shape (``role``, ``content`` blocks, ``stopReason``, ...).
        Callers stop iterating when they have enough."""
        ...

    def append_user(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        images: Sequence[ImageInput] = (),
        timestamp: int,
    ) -> None:
        """Record the user turn; the turn stays open until :meth:`finish_turn`."""
        ...

    def finish_turn(
        self,
        agent_id: str,
        session_key: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        timestamp: int,
        usage: Usage,
        stop_reason: StopReason,
        tool_calls: Sequence[ToolCall] = (),
        message_usage: Usage | None = None,
        error: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        api: str | None = None,
        channel: str | None = None,
        results: Sequence[Mapping[str, Any]] = (),
        session_fields: Mapping[str, Any] | None = None,
    ) -> Deferred[None]:
        """Append the assistant outcome (complete, failed or aborted), then
        ``results`` (``toolResult`` messages answering some of its tool calls),
        and settle the turn; fires once it is durable under the fsync policy.
        ``session_fields`` are set in the session's index entry with the turn's
        (the runtime's own bookkeeping, such as the memory flush's cycle)."""
        ...

    def recent_entries(self, agent_id: str, session_id: str) -> Iterator[Mapping[str, Any]]:
        """The transcript's ``message`` and ``compaction`` entries (OpenClaw's JSONL
        shape: ``type``, ``id``, ``parentId``, ``runId``, ``message`` / ``summary``,
        ``firstKeptEntryId``...), newest first. Callers stop iterating when they
        have enough."""
        ...

    def append_messages(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        messages: Sequence[Mapping[str, Any]],
        timestamp: int,
    ) -> Deferred[None]:
        """Append messages (pi-agent's shape) to a turn still open (an assistant
        step that called tools, ``toolResult`` messages), without closing it."""
        ...

    def append_entry(
        self, agent_id: str, session_id: str, entry: Mapping[str, Any]
    ) -> Deferred[None]:
        """Append a whole entry of another type (a ``compaction`` entry): the
        store keeps its ``id`` and sets ``parentId`` to the transcript's last entry."""
        ...

    def list_sessions(self, agent_id: str) -> list[SessionEntry]:
        """Every session of the agent, most recently updated first."""
        ...

    def message_count(self, agent_id: str, session_key: str) -> int:
        """How many user/assistant messages the session holds."""
        ...

    def count_sessions(self, agent_id: str) -> int:
        """How many sessions the agent has."""
        ...

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` messages, oldest first, in ``chat.history``'s shape
        (user and assistant ones; tool results too with ``include_tools``)."""
        ...

    def flush(self) -> None:
        """Write every changed index now."""
        ...

    def start_upkeep(self) -> None:
        """Begin the store's periodic upkeep (the gateway calls this when it
        starts; a store without any does nothing)."""
        ...

    def close(self) -> Deferred[None]:
        """Wait for pending writes, write the indexes, release IO threads."""
        ...


@runtime_checkable
class SharedCatalog(Protocol):
    """A catalog other processes write too (the Redis store): what it shows is
    what it last read, so the WebSocket methods refresh it before reading."""

    def refresh_session(self, session_key: str) -> Deferred[None]:
        """Re-read ``session_key``'s entry and newest transcript lines."""
        ...

    def refresh_agent(self, agent_id: str) -> Deferred[None]:
        """Re-read the agent's whole index."""
        ...
