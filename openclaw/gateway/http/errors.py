"""HTTP error responses in OpenAI's shape.

Every JSON error the gateway writes is ``{"error": {"message", "type", "param",
"code"}}`` so OpenAI SDKs raise the right exception with the right fields.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


def openai_error(
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error object (``param`` and ``code`` always present, maybe null)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def json_bytes(body: object) -> bytes:
    """Compact UTF-8 JSON, the one encoding used for every HTTP body we write."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_json(request: Request, status: int, body: object) -> bytes:
    """Set status, content type and length for a JSON body and return the bytes.

    Klein writes the returned bytes; callers return this value from a route.
    """
    data = json_bytes(body)
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    request.setHeader(b"content-length", str(len(data)).encode("ascii"))
    return data


def write_openai_error(
    request: Request,
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """Write an OpenAI-shaped error response and return its body."""
    return write_json(request, status, openai_error(message, error_type, param=param, code=code))


def not_found(request: Request) -> bytes:
    """404 for an unknown path (or a disabled endpoint)."""
    return write_openai_error(request, 404, "Not Found", "invalid_request_error", code="not_found")


def method_not_allowed(request: Request, allow: bytes) -> bytes:
    """405 with ``Allow``, decided before authentication (as OpenClaw does)."""
    request.setHeader(b"allow", allow)
    return write_openai_error(
        request, 405, "Method Not Allowed", "invalid_request_error", code="method_not_allowed"
    )
