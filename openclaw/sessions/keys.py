"""Agent ids and session keys, normalised the way OpenClaw does.

A canonical session key is ``agent:<agentId>:<rest>`` with ``<rest>`` lower-cased.
"""

from __future__ import annotations

from openclaw.core.agent_ids import (
    DEFAULT_AGENT_ID,
    MAX_AGENT_ID_LENGTH,
    is_valid_agent_id,
    normalize_agent_id,
)
from openclaw.core.ids import random_uuid4

__all__ = [
    "DEFAULT_AGENT_ID",
    "MAX_AGENT_ID_LENGTH",
    "MAX_SESSION_KEY_LENGTH",
    "InvalidSessionKeyError",
    "agent_session_key",
    "canonical_session_key",
    "fresh_openai_session_key",
    "is_reserved_session_key",
    "is_valid_agent_id",
    "main_session_key",
    "normalize_agent_id",
    "openai_user_session_key",
    "parse_agent_from_key",
]

#: Longer keys are refused: they only serve to bloat indexes and logs.
MAX_SESSION_KEY_LENGTH = 512

_RESERVED_PREFIXES = ("subagent:", "cron:", "acp:")
_RESERVED_AGENT_SCOPED = ("subagent", "cron", "acp", "harness")


class InvalidSessionKeyError(ValueError):
    """A session key that may not be used by a client."""


def agent_session_key(agent_id: str, rest: str) -> str:
    """``agent:<agentId>:<rest>`` with the rest lower-cased."""
    return f"agent:{agent_id}:{rest.strip().lower()}"


def openai_user_session_key(agent_id: str, user: str) -> str:
    """The stable key the chat completions endpoint derives from ``user``."""
    return agent_session_key(agent_id, f"openai-user:{user.strip()}")


def fresh_openai_session_key(agent_id: str) -> str:
    """A new stateless key for a request that names no session."""
    return agent_session_key(agent_id, f"openai:{random_uuid4()}")


def main_session_key(agent_id: str, main_key: str = "main") -> str:
    """The agent's main session (``agent:main:main``)."""
    return agent_session_key(agent_id, main_key)


def parse_agent_from_key(key: str) -> str | None:
    """The agent id a canonical key names, or None for a key without the prefix."""
    parts = key.split(":", 2)
    if len(parts) == 3 and parts[0].lower() == "agent" and parts[1] and parts[2]:
        return normalize_agent_id(parts[1])
    return None


def is_reserved_session_key(key: str) -> bool:
    """True for internal namespaces a client must not write to."""
    lowered = key.strip().lower()
    if lowered.startswith(_RESERVED_PREFIXES):
        return True
    parts = lowered.split(":")
    return len(parts) >= 3 and parts[0] == "agent" and parts[2] in _RESERVED_AGENT_SCOPED


def canonical_session_key(agent_id: str, key: str) -> str:
    """Canonicalise a client-supplied key so it keeps the chosen agent.

    ``agent:<id>:...`` keys are kept (their own agent wins); anything else
    becomes ``agent:<agent_id>:<key>``. Raises InvalidSessionKeyError for empty,
    oversized, control-character or reserved keys, and for ``agent:`` keys
    without an agent id or a rest.
    """
    stripped = key.strip()
    if not stripped:
        raise InvalidSessionKeyError("session key is empty")
    if any(_is_control(ch) for ch in stripped):
        raise InvalidSessionKeyError("session key contains control characters")
    if is_reserved_session_key(stripped):
        raise InvalidSessionKeyError("session key uses a reserved internal namespace")
    owner = parse_agent_from_key(stripped)
    if owner is not None:
        canonical = agent_session_key(owner, stripped.split(":", 2)[2])
    elif stripped[:6].lower() == "agent:":
        # "agent:rok:" or "agent:" would otherwise run the default agent under
        # "agent:main:agent:rok:", a key no client meant.
        raise InvalidSessionKeyError("session key must be agent:<agentId>:<key>")
    else:
        canonical = agent_session_key(agent_id, stripped)
    # Checked again on the canonical form: trimming and lower-casing can turn
    # "agent:main: cron:x" into a reserved key, or grow the length (İ -> i̇).
    if is_reserved_session_key(canonical):
        raise InvalidSessionKeyError("session key uses a reserved internal namespace")
    if len(canonical) > MAX_SESSION_KEY_LENGTH:
        raise InvalidSessionKeyError(
            f"session key is longer than {MAX_SESSION_KEY_LENGTH} characters"
        )
    return canonical


def _is_control(ch: str) -> bool:
    """C0, DEL and C1 control characters."""
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F
