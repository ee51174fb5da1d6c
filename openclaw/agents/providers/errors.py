# -*- test-case-name: tests.test_provider_errors -*-
"""Classify upstream failures into :class:`~openclaw.agents.types.FailureKind`.

The HTTP and WebSocket layers map a :class:`ProviderError` to the client's
error shape, so everything they need is decided here once: the kind, the
upstream status and code, a bounded message that never carries the API key,
and the ``retry-after`` hint of a 429. Nothing here retries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from twisted.internet.error import (
    ConnectError,
    ConnectionLost,
    DNSLookupError,
)
from twisted.web.iweb import IResponse

from openclaw.agents.types import FailureKind, ProviderError
from openclaw.core.textguard import scrub_text

#: Upstream messages are cut to this many characters.
MAX_MESSAGE_CHARS = 500
#: Failures whose ``retry-after`` is kept: a rate limit, or an overloaded or
#: failing upstream asking for a pause (the same-model retry waits at least
#: that long; an HTTP client is told it).
_PACED_KINDS = frozenset({FailureKind.RATE_LIMIT, FailureKind.OVERLOADED, FailureKind.SERVER_ERROR})

_CONTEXT_WORDS = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|prompt is too long"
    r"|context window|exceeds the context|too many tokens|input is too long",
    re.IGNORECASE,
)
_BILLING_WORDS = re.compile(
    r"insufficient[_ ]quota|billing|credit balance|exceeded your current quota|payment required",
    re.IGNORECASE,
)

_TYPE_KINDS: Mapping[str, FailureKind] = {
    "authentication_error": FailureKind.AUTH,
    "invalid_api_key": FailureKind.AUTH,
    "permission_error": FailureKind.PERMISSION,
    "permission_denied": FailureKind.PERMISSION,
    "rate_limit_error": FailureKind.RATE_LIMIT,
    "rate_limit_exceeded": FailureKind.RATE_LIMIT,
    "overloaded_error": FailureKind.OVERLOADED,
    "not_found_error": FailureKind.MODEL_NOT_FOUND,
    "model_not_found": FailureKind.MODEL_NOT_FOUND,
    "invalid_request_error": FailureKind.FORMAT,
    "request_too_large": FailureKind.FORMAT,
    "timeout_error": FailureKind.TIMEOUT,
    "billing_error": FailureKind.BILLING,
    "insufficient_quota": FailureKind.BILLING,
    "api_error": FailureKind.SERVER_ERROR,
    "server_error": FailureKind.SERVER_ERROR,
}


def config_secrets(api_key: str | None, headers: Mapping[str, str]) -> tuple[str, ...]:
    """What must never appear in an error message: the API key and the value of
    every configured header, whatever it is called (``X-Upstream-Pass`` is as
    secret as ``Authorization``). Values under 4 characters are left alone
    (see :data:`openclaw.core.secret_values.MIN_SECRET_CHARS`)."""
    found = [api_key] if api_key else []
    found += [value for value in headers.values() if value]
    # Longest first, so a secret containing another is masked whole.
    return tuple(sorted(dict.fromkeys(found), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Replace every secret (API keys) in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def bound_message(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Redact, collapse whitespace, replace lone surrogates (an upstream's
    ``"\\ud800"`` escape) with U+FFFD and cut to :data:`MAX_MESSAGE_CHARS`."""
    text = " ".join(scrub_text(redact(text, secrets)).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an
    HTTP-date, relative to ``now`` in epoch seconds); ``None`` when absent."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            pass
        else:
            if value >= 0:
                return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    return value if value >= 0 else None


def response_headers(response: IResponse) -> dict[str, str]:
    """The response headers as a lower-case dict (first value of each)."""
    result: dict[str, str] = {}
    for name, values in response.headers.getAllRawHeaders():
        if values:
            result[name.decode("latin-1").lower()] = values[0].decode("latin-1")
    return result


def _error_fields(payload: Any) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI-, Anthropic- or Ollama-shaped body."""
    if not isinstance(payload, Mapping):
        return None, None, None
    error = payload.get("error")
    if isinstance(error, str):
        return error, None, None
    if isinstance(error, Mapping):
        message = error.get("message")
        err_type = error.get("type")
        code = error.get("code")
        return (
            message if isinstance(message, str) else None,
            err_type if isinstance(err_type, str) else None,
            str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
        )
    message = payload.get("message") or payload.get("detail")
    return (message if isinstance(message, str) else None), None, None


def _kind_for(
    status: int | None, message: str, err_type: str | None, code: str | None
) -> FailureKind:
    tags = {t for t in (err_type, code) if t}
    if status == 529 or "overloaded_error" in tags:
        return FailureKind.OVERLOADED
    if (status is None or 400 <= status < 500) and (
        "context_length_exceeded" in tags or _CONTEXT_WORDS.search(message)
    ):
        return FailureKind.CONTEXT_OVERFLOW
    if status == 402 or "insufficient_quota" in tags or "billing_error" in tags:
        return FailureKind.BILLING
    if status in (400, 403, 429, None) and _BILLING_WORDS.search(message):
        return FailureKind.BILLING
    if "model_not_found" in tags:
        return FailureKind.MODEL_NOT_FOUND
    if status is None:
        for tag in (code, err_type):
            if tag and tag in _TYPE_KINDS:
                return _TYPE_KINDS[tag]
        return FailureKind.SERVER_ERROR
    if status == 401:
        return FailureKind.AUTH
    if status == 403:
        return FailureKind.PERMISSION
    if status == 404:
        return FailureKind.MODEL_NOT_FOUND
    if status in (408, 504):
        return FailureKind.TIMEOUT
    if status == 429:
        return FailureKind.RATE_LIMIT
    if status == 503 and "overloaded" in message.lower():
        return FailureKind.OVERLOADED
    if 400 <= status < 500:
        return FailureKind.FORMAT
    return FailureKind.SERVER_ERROR


def classify_payload(
    payload: Any,
    *,
    status: int | None = None,
    secrets: Iterable[str | None] = (),
    retry_after_seconds: float | None = None,
) -> ProviderError:
    """Classify a parsed error body (or a mid-stream error frame: ``status=None``)."""
    message, err_type, code = _error_fields(payload)
    text = message or (f"upstream returned HTTP {status}" if status else "upstream error")
    effective = status
    if effective is None and code is not None and code.isdigit() and len(code) == 3:
        # vLLM and llama.cpp put the would-be HTTP status in a mid-stream frame's code.
        effective = int(code)
    kind = _kind_for(effective, text, err_type, code)
    tag = code or err_type
    return ProviderError(
        kind,
        bound_message(text, secrets),
        status=status,
        code=None if tag is None else scrub_text(tag),
        retry_after_seconds=retry_after_seconds if kind in _PACED_KINDS else None,
    )


def classify_http_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """Classify a non-2xx answer from its status, body and headers."""
    secrets = tuple(secrets)
    try:
        payload: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        text = body.decode("utf-8", errors="replace").strip()
        payload = {"error": text} if text else None
    retry_after = parse_retry_after(headers, now) if status in (429, 503, 529) else None
    return classify_payload(
        payload, status=status, secrets=secrets, retry_after_seconds=retry_after
    )


def connection_error(reason: BaseException, secrets: Iterable[str | None] = ()) -> ProviderError:
    """A failure to connect, or a connection lost before or during the response."""
    # Imported here: twisted.web.client is 0.4 MB an idle gateway need not hold.
    from twisted.web.client import ResponseFailed

    if isinstance(reason, DNSLookupError):
        summary = "could not resolve the upstream host"
    elif isinstance(reason, ConnectError):
        summary = "could not connect to the upstream"
    elif isinstance(reason, (ResponseFailed, ConnectionLost)):
        summary = "upstream connection lost during the response"
    else:
        summary = "upstream connection failed"
    detail = _describe(reason)
    message = f"{summary}: {detail}" if detail else summary
    return ProviderError(FailureKind.CONNECTION, bound_message(message, secrets))


def _describe(reason: BaseException) -> str:
    inner = getattr(reason, "reasons", None)
    if isinstance(inner, list) and inner:
        first = inner[0]
        value = getattr(first, "value", first)
        return f"{type(value).__name__}: {value}".strip(": ")
    return f"{type(reason).__name__}: {reason}".strip(": ")


def malformed_stream(message: str, secrets: Iterable[str | None] = ()) -> ProviderError:
    """The upstream answered 2xx but the body is not a stream we understand."""
    return ProviderError(FailureKind.MALFORMED_STREAM, bound_message(message, secrets))


def timeout_error(seconds: float) -> ProviderError:
    """No bytes from the upstream for ``seconds`` while we were reading."""
    return ProviderError(
        FailureKind.TIMEOUT, f"upstream sent nothing for {seconds:g}s (provider timeout)"
    )
