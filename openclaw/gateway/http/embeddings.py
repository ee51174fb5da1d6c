# -*- test-case-name: tests.test_embeddings_endpoint -*-
"""``POST /v1/embeddings``: vectors from the selected agent's embedding provider.

``model`` is an agent target, exactly as on chat completions (``openclaw``,
``openclaw/<agentId>``, ...); ``x-openclaw-model`` picks the embedding model
for one request. ``input`` is a string, an array of strings, a token array or
an array of token arrays (token arrays are passed to upstreams that take
them); ``dimensions`` and ``encoding_format`` (``float`` or ``base64``) are
passed through. The answer is OpenAI's ``list`` of ``embedding`` objects with
``usage``; failures are OpenAI errors (provider failures mapped as chat maps
them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request

from openclaw.agents.types import (
    AgentRuntime,
    EmbeddingRequest,
    EmbeddingRequestError,
    EmbeddingResult,
    EmbeddingsUnavailableError,
)
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.agent_endpoint import AgentEndpoint, Answer, runtime_refusals
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.http.chat_request import (
    AGENT_HEADERS,
    MAX_SAFE_INTEGER,
    resolve_agent,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
    write_json,
)
from openclaw.gateway.http.model_header import model_override
from openclaw.gateway.http.responses_request import parse_body
from openclaw.gateway.http.run_support import (
    RunNote,
    map_failure,
    read_body,
    request_headers,
    write_error,
)

#: Inputs per request, at most (OpenAI's own limit).
MAX_INPUTS = 2048
INVALID_INPUT_MESSAGE = (
    "`input` must be a non-empty string, an array of strings, or an array of token arrays."
)


def _whole_number(value: object, least: int) -> int | None:
    """``value`` as an int if it is a whole number from ``least`` to
    ``MAX_SAFE_INTEGER``, else None. ``4.0`` counts, as it does for OpenClaw's
    ``number().int()`` (JSON numbers are JavaScript doubles) and for the chat
    endpoint's integer fields: some clients write every number as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # The range first: comparing is exact, while float() of a 400-digit
    # integer raises OverflowError (NaN fails the comparison).
    if least <= value <= MAX_SAFE_INTEGER and float(value).is_integer():
        return int(value)
    return None


def _token_array(value: object) -> tuple[int, ...] | None:
    if not isinstance(value, list) or not value:
        return None
    tokens: list[int] = []
    for item in value:
        token = _whole_number(item, 0)
        if token is None:
            return None
        tokens.append(token)
    return tuple(tokens)


def parse_inputs(value: object) -> tuple[str | tuple[int, ...], ...]:
    """``input`` as strings and token arrays; 400 for anything else."""
    if isinstance(value, str) and value:
        return (value,)
    tokens = _token_array(value)
    if tokens is not None:
        return (tokens,)
    if isinstance(value, list) and len(value) > MAX_INPUTS:
        raise ChatRequestError(f"Too many inputs (max {MAX_INPUTS}).", param="input")
    if isinstance(value, list) and value:
        items: list[str | tuple[int, ...]] = []
        for item in value:
            single = item if isinstance(item, str) and item else _token_array(item)
            if single is None:
                break
            items.append(single)
        else:
            return tuple(items)
    raise ChatRequestError(INVALID_INPUT_MESSAGE, param="input")


def parse_embedding_request(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    agent_ids: Sequence[str],
    default_agent_id: str,
) -> tuple[str, EmbeddingRequest]:
    """``(model as sent, request)``; ChatRequestError on refusal."""
    override = model_override(headers)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ChatRequestError("model: Expected string", param="model")
    if model is None or not model.strip():
        raise ChatRequestError("Missing `model`.", param="model")  # OpenClaw's refusal
    model = model.strip()
    header_agent = next((headers[h] for h in AGENT_HEADERS if headers.get(h, "").strip()), None)
    agent_id = resolve_agent(
        model, header_agent, agent_ids=agent_ids, default_agent_id=default_agent_id
    )
    inputs = parse_inputs(body.get("input"))
    sent_dimensions = body.get("dimensions")
    dimensions = None if sent_dimensions is None else _whole_number(sent_dimensions, 1)
    if sent_dimensions is not None and dimensions is None:
        raise ChatRequestError("`dimensions` must be a positive integer.", param="dimensions")
    encoding = body.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise ChatRequestError(
            "`encoding_format` must be `float` or `base64`.", param="encoding_format"
        )
    fmt: Literal["float", "base64"] = "base64" if encoding == "base64" else "float"
    return model, EmbeddingRequest(agent_id, inputs, dimensions, fmt, override)


def embeddings_json(model: str, result: EmbeddingResult) -> dict[str, Any]:
    """OpenAI's answer: one ``embedding`` object per input, in order, and usage."""
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": vector if isinstance(vector, str) else list(vector),
            }
            for index, vector in enumerate(result.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.total_tokens},
    }


class EmbeddingsEndpoint(AgentEndpoint):
    """Answers ``POST /v1/embeddings`` (served while chat completions or responses are)."""

    def __init__(self, *, runtime: AgentRuntime, auth: GatewayAuth, clock: IReactorTime) -> None:
        super().__init__(runtime=runtime, auth=auth, clock=clock, keep_alive_seconds=0)

    def _answer(self, request: Request, access: RunNote) -> Answer:
        """401/429, embed, or raise :class:`ChatRequestError` (a 400)."""
        decision = self._auth.check_request(request)
        if not decision.ok:
            return auth_failure_response(request, decision)
        model, embedding = parse_embedding_request(
            parse_body(read_body(request)),
            request_headers(request),
            agent_ids=self._runtime.agent_ids,
            default_agent_id=self._runtime.default_agent_id,
        )
        try:
            with runtime_refusals(embedding.agent_id):
                pending = self._runtime.embed(embedding)
        except EmbeddingsUnavailableError as error:
            raise ChatRequestError(str(error), code="embeddings_unavailable") from None
        except EmbeddingRequestError as error:
            raise ChatRequestError(str(error), param=error.param) from None

        def answered(result: EmbeddingResult) -> bytes:
            return write_json(request, 200, embeddings_json(model, result))

        def failed(failure: Failure) -> bytes | Failure:
            if isinstance(failure.value, CancelledError):
                return failure
            error, why = map_failure(failure, "-")
            access.done(why)
            return write_error(request, error, run_started=False)

        return pending.addCallbacks(answered, failed)
