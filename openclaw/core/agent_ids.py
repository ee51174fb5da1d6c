"""Agent ids, normalised the way OpenClaw does.

The config loader, the session store and the runtime all normalise agent ids;
the rule lives here so none of them imports another for it.
"""

from __future__ import annotations

import re

from openclaw.core.memo import cache_short_text

DEFAULT_AGENT_ID = "main"
MAX_AGENT_ID_LENGTH = 64

_VALID_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$", re.IGNORECASE)
_INVALID_RUN = re.compile(r"[^a-z0-9_-]+")


def is_valid_agent_id(value: str) -> bool:
    """True when ``value`` is already a syntactically valid agent id."""
    return bool(_VALID_AGENT_ID.match(value))


# About ten calls per request with the same few ids.
@cache_short_text(2 * MAX_AGENT_ID_LENGTH, maxsize=1024)
def normalize_agent_id(value: str | None) -> str:
    """Lower-case; replace runs of invalid characters by ``-``; empty means ``main``."""
    raw = (value or "").strip().lower()
    if _VALID_AGENT_ID.match(raw):
        return raw
    cleaned = _INVALID_RUN.sub("-", raw).strip("-")[:MAX_AGENT_ID_LENGTH].strip("-")
    return cleaned or DEFAULT_AGENT_ID
