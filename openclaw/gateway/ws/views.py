"""What the WebSocket methods need from the session store and the agent registry.

The WebSocket side reads sessions (``health``, ``sessions.list``,
``chat.history``), resets or deletes them, and lists agents; it never writes
transcripts itself (runs do). Keeping these dependencies narrow lets the
methods be tested with in-memory fakes. :class:`openclaw.sessions.store.SessionStore`
and :class:`openclaw.agents.registry.AgentRegistry` satisfy them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from openclaw.agents.types import AgentInfo
from openclaw.sessions.entry import SessionEntry


@runtime_checkable
class SessionsView(Protocol):
    """The session store as the WebSocket methods see it (OpenClaw's layout)."""

    def list_sessions(self, agent_id: str) -> Sequence[SessionEntry]:
        """Every session of the agent (any order)."""
        ...

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None: ...

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
        """The agent's ``sessions.json``."""
        ...


@runtime_checkable
class AgentsView(Protocol):
    """The agent registry as the WebSocket methods see it."""

    @property
    def default_agent_id(self) -> str: ...

    @property
    def agents(self) -> Sequence[AgentInfo]: ...
