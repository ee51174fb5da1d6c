"""``GET /v1/models`` and ``GET /v1/models/{id}``: the agents, as OpenAI models.

Each configured agent is a "model" a client can pick: ``openclaw`` and
``openclaw/default`` (the default agent), then ``openclaw/<agentId>`` for every
agent. Every listed id is accepted as ``model`` by ``/v1/chat/completions``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from twisted.web.server import Request

from openclaw.agents.types import AgentRuntime
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.http.chat_request import (
    resolve_agent,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
    write_json,
    write_openai_error,
)

MODELS_PATH = b"/v1/models"
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
MAX_MODEL_ID_LENGTH = 256


def model_ids(runtime: AgentRuntime) -> list[str]:
    """The listed ids, in OpenClaw's order, without duplicates."""
    ids = ["openclaw", "openclaw/default", f"openclaw/{runtime.default_agent_id}"]
    ids.extend(f"openclaw/{agent_id}" for agent_id in runtime.agent_ids)
    return list(dict.fromkeys(ids))


def model_object(model_id: str) -> dict[str, Any]:
    """One OpenAI ``model`` object."""
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "openclaw",
        "permission": [],
    }


class ModelsEndpoint:
    """Serves ``/v1/models`` and ``/v1/models/<url-encoded id>`` (routes itself)."""

    def __init__(self, *, runtime: AgentRuntime, auth: GatewayAuth) -> None:
        self._runtime = runtime
        self._auth = auth

    def handle(self, request: Request) -> bytes:
        """401/429, then the list or one model (the app's routing answers 405)."""
        decision = self._auth.check_request(request)
        if not decision.ok:
            return auth_failure_response(request, decision)
        path = request.path or b""
        if path == MODELS_PATH:
            return write_json(
                request,
                200,
                {"object": "list", "data": [model_object(i) for i in model_ids(self._runtime)]},
            )
        return self._retrieve(request, path.removeprefix(MODELS_PATH).removeprefix(b"/"))

    def _retrieve(self, request: Request, raw: bytes) -> bytes:
        if not raw:
            return _bad_request(request, "Missing model id.")
        if _BAD_ESCAPE.search(raw):
            return _bad_request(request, "Invalid model id encoding.")
        try:
            model_id = unquote(raw.decode("ascii"), errors="strict")
        except (UnicodeDecodeError, UnicodeEncodeError):
            return _bad_request(request, "Invalid model id encoding.")
        stripped = model_id.strip()
        if (
            not stripped
            or len(stripped) > MAX_MODEL_ID_LENGTH
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in stripped)
        ):
            return _bad_request(request, "Invalid model id.")
        try:  # an agent-target form (OpenClaw's 400 otherwise) of a configured agent
            resolve_agent(
                stripped,
                None,
                agent_ids=self._runtime.agent_ids,
                default_agent_id=self._runtime.default_agent_id,
            )
        except ChatRequestError as error:
            if error.code == "invalid_model":
                return _bad_request(request, "Invalid model id.")
            return write_openai_error(
                request,
                404,
                f"Model '{stripped}' not found.",
                "invalid_request_error",
                param="model",
                code="model_not_found",
            )
        if model_id not in model_ids(self._runtime):
            # As OpenClaw: only the listed spellings are models (``agent:beta``
            # picks an agent in a chat request, but is not a model id).
            return write_openai_error(
                request,
                404,
                f"Model '{model_id}' not found.",
                "invalid_request_error",
                param="model",
                code="model_not_found",
            )
        return write_json(request, 200, model_object(model_id))


def _bad_request(request: Request, message: str) -> bytes:
    return write_openai_error(request, 400, message, "invalid_request_error", param="model")
