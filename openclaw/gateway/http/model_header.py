"""``x-openclaw-model``: a caller's backend model for one request.

OpenClaw lets shared-secret callers replace the selected agent's model with
``provider/model`` (or a bare model id of the agent's provider). The header
is only parsed here; whether the model exists is the runtime's decision
(``UnknownModelError``, answered 400 naming the model).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from openclaw.agents.types import UnknownModelError
from openclaw.gateway.http.errors import (
    ChatRequestError,
)

MODEL_HEADER = "x-openclaw-model"
INVALID_MODEL_HEADER_MESSAGE = "Invalid `x-openclaw-model`."
#: ``provider/model`` or a bare id: no spaces or control characters, both parts non-empty.
_MODEL_REF = re.compile(r"^(?:[^\s/]+/)?[^\s]+$")
MAX_MODEL_HEADER_CHARS = 256


def model_override(headers: Mapping[str, str]) -> str | None:
    """The header's model reference (trimmed), None when absent or blank.

    400 ``Invalid `x-openclaw-model`.`` for ``openai/``, ``/gpt``, spaces,
    control characters or an overlong value.
    """
    raw = headers.get(MODEL_HEADER)
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    provider, slash, model = value.partition("/")
    if (
        len(value) > MAX_MODEL_HEADER_CHARS
        or not _MODEL_REF.match(value)
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
        or (slash and (not provider or not model))
    ):
        raise ChatRequestError(INVALID_MODEL_HEADER_MESSAGE, code="invalid_model_override")
    return value


def model_error(error: UnknownModelError) -> ChatRequestError:
    """400 naming the model the header asked for (OpenClaw's message)."""
    return ChatRequestError(str(error), code="model_not_allowed")
