"""A session's index entry and the rules for the ids that name files.

Values only: the WebSocket views and the runtime read these without loading
any storage backend.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from openclaw.core.agent_ids import normalize_agent_id
from openclaw.core.types import Usage
from openclaw.sessions.keys import parse_agent_from_key

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_STATELESS_KEY = re.compile(
    r"^agent:[^:]+:openai:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


@frozen
class SessionEntry:
    """One row of ``sessions.json``, with the key and agent it belongs to."""

    key: str
    agent_id: str
    session_id: str
    updated_at: int
    #: The other fields of the index entry, as stored (token counts, model, ...).
    extra: Mapping[str, Any] = field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``sessions.list`` shape: ``{key, agentId, sessionId, updatedAt, ...}``."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            key=self.key,
            agentId=self.agent_id,
            sessionId=self.session_id,
            updatedAt=self.updated_at,
        )
        return out


def agent_id_for_session(session_key: str, default_agent_id: str) -> str:
    """The agent whose directory holds ``session_key``: the key's own agent for
    canonical ``agent:<id>:...`` keys, else ``default_agent_id`` (normalised)."""
    return parse_agent_from_key(session_key) or normalize_agent_id(default_agent_id)


def is_valid_session_id(value: str) -> bool:
    """True for ids safe to use as a file name (uuids and OpenClaw's ids are)."""
    return bool(_SESSION_ID.match(value))


def is_stateless_session_key(session_key: str) -> bool:
    """True for the one-off keys chat completions make when a request names no
    session (``agent:<id>:openai:<uuid>``): nobody addresses them again."""
    return bool(_STATELESS_KEY.match(session_key))


def updated_at(raw: Mapping[str, Any]) -> int:
    """An index entry's ``updatedAt`` (epoch ms); junk reads as 0."""
    value = raw.get("updatedAt")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def usage_fields(turn: Usage, last_call: Usage) -> dict[str, int]:
    """The index entry's token counts after a turn, as OpenClaw keeps them.

    ``inputTokens``/``outputTokens`` are the turn's (every model call);
    ``totalTokens`` is the context the last call used (its prompt tokens), so a
    tool turn does not count its history once per step.
    """
    fields = {"inputTokens": turn.input, "outputTokens": turn.output}
    prompt = last_call.input + last_call.cache_read + last_call.cache_write
    if prompt > 0:
        fields["totalTokens"] = prompt
    return fields
